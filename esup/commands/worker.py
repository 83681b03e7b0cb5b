"""``esup worker``: one live worker (Faust on Kafka) — supervise, warehouse sink, alerts.

Settings come from ``--config`` / ``$ESUP_WORKER_CONFIG`` (YAML), the environment (``ESUP_BROKER``,
``CLICKHOUSE_URL``, ``ESUP_METRICS_PORT``, ``ESUP_<SETTING>``) and the options below, in rising
precedence; see ``streams/README.md``. Every topic is declared with the admin client before Faust
starts, because auto-created topics get one partition and break co-partitioning.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def _settings(config: Path | None, **overrides: object):
    from streams.settings import SettingsError, load_settings

    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        console.print(f"[red]配置错误[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def topics_table(settings) -> Table:
    from streams.topics import topic_specs

    table = Table(title="Kafka 主题（worker 启动前用管理客户端创建）")
    table.add_column("主题")
    table.add_column("分区", justify="right")
    table.add_column("配置")
    table.add_column("用途")
    for sp in topic_specs(settings):
        table.add_row(sp.name, str(sp.partitions), ", ".join(f"{k}={v}" for k, v in sp.config.items()), sp.purpose)
    return table


def worker_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="worker 配置文件（YAML）")] = None,
    broker: Annotated[str | None, typer.Option(help="Kafka 地址，如 kafka://localhost:9092（$ESUP_BROKER）")] = None,
    warehouse: Annotated[str | None, typer.Option(
        help="数据仓库：clickhouse://… 或 chdb:///目录（$CLICKHOUSE_URL）")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", help="Prometheus 指标端口，0 关闭（$ESUP_METRICS_PORT）")] = None,
    role: Annotated[str | None, typer.Option(
        help="all：监察+入库+告警；supervise：仅监察；sink：仅入库（独立消费组）")] = None,
    partitions: Annotated[int | None, typer.Option(help="各主题分区数（须与已有主题一致）")] = None,
    web_port: Annotated[int | None, typer.Option("--web-port", help="Faust 自带 web 端口（默认关闭）")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="日志级别：debug/info/warn/error")] = "info",
    declare_only: Annotated[bool, typer.Option("--declare-only", help="只创建/检查主题，然后退出")] = False,
    show_topics: Annotated[bool, typer.Option("--show-topics", help="列出本配置使用的主题，然后退出")] = False,
    no_declare: Annotated[bool, typer.Option("--no-declare", help="不创建主题（由运维预先创建）")] = False,
) -> None:
    """启动一个实时监察 worker（Kafka + Faust）：校验事件、运行监察规则、计时器触发超时、写入数据仓库、推送告警。"""
    settings = _settings(config, broker=broker, warehouse=warehouse, metrics_port=metrics_port, role=role,
                         partitions=partitions, web_port=web_port)
    if show_topics:
        Console().print(topics_table(settings))
        return
    level = {"warn": "WARNING", "warning": "WARNING"}.get(loglevel.lower(), loglevel.upper())
    logging.basicConfig(level=level, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    from streams.topics import TopicMismatch, declare_topics

    if not no_declare:
        try:
            created = declare_topics(settings)
        except TopicMismatch as exc:
            console.print(f"[red]主题不一致[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        if created:
            console.print(f"已创建主题：{', '.join(created)}", highlight=False)
    if declare_only:
        Console().print(topics_table(settings))
        return

    import faust

    from streams import metrics
    from streams.app import create_app, tune_gc

    metrics.serve(settings.metrics_port)
    app = create_app(settings)
    tune_gc(settings)
    worker = faust.Worker(app, loglevel=level.lower() if level != "WARNING" else "warn", quiet=True)
    sys.argv = sys.argv[:1]  # Faust's worker does not read our options
    worker.execute_from_commandline()


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
