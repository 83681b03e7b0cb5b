"""``esup dashboards``: build, check and publish the inspectors' Grafana dashboards.

* ``build`` writes ``dashboards/json/*.json`` and the provisioning files (for a Grafana provisioned
  from files, e.g. docker-compose).
* ``push`` publishes the folder, the two data sources and the dashboards to a running Grafana over
  its HTTP API (``grafana-client``); the token comes from ``GRAFANA_TOKEN`` (the environment, or the
  secrets file named by ``ESUP_SECRETS_FILE``) or ``--token``, and is never printed.
* ``check`` runs every ClickHouse panel query against a warehouse exactly as Grafana would send it,
  so a schema change that breaks a panel is found before the inspectors find it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

_ACTIONS = {"created": "新建", "updated": "更新"}
_KINDS = {"folder": "文件夹", "datasource": "数据源", "dashboard": "仪表盘"}


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]错误：[/]{message}", highlight=False)
    return typer.Exit(1)


def _secrets(token: str | None, password: str | None) -> tuple[str | None, str | None]:
    """The Grafana token and the ClickHouse password: options (or their environment variables), else the
    secrets file. A value typed on the command line is visible in the process list and the shell's
    history, so it works but is discouraged."""
    import os

    from alerting.secrets import get_secret

    if token is not None and token != os.environ.get("GRAFANA_TOKEN"):
        Console(stderr=True).print("[yellow]提示：[/]--token 会留在进程列表和命令历史中，请改用环境变量 "
                                   "GRAFANA_TOKEN 或密钥文件（ESUP_SECRETS_FILE）", highlight=False)
    if token is None:
        found = get_secret("GRAFANA_TOKEN", required=False)
        token = found.reveal() if found else None
    if password is None:
        found = get_secret("ESUP_CLICKHOUSE_PASSWORD", required=False)
        password = found.reveal() if found else None
    return token, password


def _instant(text: str | None, default: datetime) -> datetime:
    if text is None:
        return default
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise typer.BadParameter(f"{text!r} 缺少时区，例如 2026-10-28T17:00+08:00")
    return value


def register(app: typer.Typer) -> None:
    dash_app = typer.Typer(help="监察看板（Grafana）：生成、检查与发布。", no_args_is_help=True)

    @dash_app.command("build")
    def build_(
        out: Annotated[Path | None, typer.Option("--out", help="仪表盘 JSON 输出目录（默认 dashboards/json）")] = None,
    ) -> None:
        """生成仪表盘 JSON 与 Grafana 配置文件（provisioning）。"""
        from dashboards.build import JSON_DIR, PROVISIONING_DIR, write_all

        for path in write_all(out or JSON_DIR, PROVISIONING_DIR):
            typer.echo(str(path))

    @dash_app.command("push")
    def push_(
        url: Annotated[str, typer.Option("--url", help="Grafana 地址，例如 http://grafana:3000")],
        token: Annotated[str | None, typer.Option("--token", envvar="GRAFANA_TOKEN", show_envvar=True,
                                                  help="Grafana 服务账号令牌（不会被打印或记录）")] = None,
        clickhouse_host: Annotated[str, typer.Option("--clickhouse-host", help="Grafana 访问 ClickHouse 的主机名")] = "clickhouse",
        clickhouse_port: Annotated[int, typer.Option("--clickhouse-port", help="ClickHouse 原生协议端口")] = 9000,
        clickhouse_user: Annotated[str, typer.Option("--clickhouse-user", help="ClickHouse 用户（建议只读用户）")] = "default",
        clickhouse_database: Annotated[str, typer.Option("--clickhouse-database", help="数据库")] = "esup",
        clickhouse_password: Annotated[str | None, typer.Option(
            "--clickhouse-password", envvar="ESUP_CLICKHOUSE_PASSWORD", show_envvar=True,
            help="只读用户密码（不指定则保留 Grafana 中已保存的密码）")] = None,
        prometheus_url: Annotated[str, typer.Option("--prometheus-url", help="Grafana 访问 Prometheus 的地址")] = "http://prometheus:9090",
        no_datasources: Annotated[bool, typer.Option("--no-datasources", help="只发布仪表盘，不写数据源")] = False,
        timeout: Annotated[float, typer.Option("--timeout", help="每个请求的超时（秒）")] = 15.0,
        as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出结果")] = False,
    ) -> None:
        """发布数据源与仪表盘到 Grafana（已存在的按 uid 更新）。"""
        from dashboards.build import build_all, datasources
        from dashboards.push import PushError, connect, push, safe_url

        token, clickhouse_password = _secrets(token, clickhouse_password)

        dss = [] if no_datasources else datasources(clickhouse_host, clickhouse_port, clickhouse_user,
                                                     clickhouse_database, clickhouse_password, prometheus_url)
        try:
            api = connect(url, token, timeout)
            done = push(api, build_all(), dss)
        except PushError as exc:
            raise _fail(f"{exc}（{safe_url(url)}）") from None
        if as_json:
            typer.echo(msgspec.json.encode(done).decode())  # dataclasses encode as objects
            return
        table = Table(title=f"已发布到 {safe_url(url)}")
        for h in ("类型", "标识", "名称", "操作", "地址"):
            table.add_column(h)
        for p in done:
            table.add_row(_KINDS.get(p.kind, p.kind), p.uid, p.title, _ACTIONS.get(p.action, p.action), p.url)
        Console().print(table)

    @dash_app.command("check")
    def check_(
        target: Annotated[str | None, typer.Option("--target", help="仓库：目录、chdb://目录 或 clickhouse://…（默认 CLICKHOUSE_URL 或 ./data）")] = None,
        start: Annotated[str | None, typer.Option("--from", help="时间范围起点（ISO 8601，带时区；默认终点前 30 天）")] = None,
        end: Annotated[str | None, typer.Option("--to", help="时间范围终点（默认现在）")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出结果")] = False,
    ) -> None:
        """按 Grafana 的方式展开并执行每个 ClickHouse 面板查询，报告行数与错误。"""
        from dashboards.build import build_all
        from dashboards.check import run_dashboard
        from schemas.events import CHINA_TZ
        from warehouse import WarehouseError, open_warehouse

        t1 = _instant(end, datetime.now(CHINA_TZ))
        t0 = _instant(start, t1 - timedelta(days=30))
        try:
            wh = open_warehouse(target)
        except WarehouseError as exc:
            raise _fail(str(exc)) from None
        try:
            runs = [r for board in build_all().values() for r in run_dashboard(wh, board, t0, t1)]
        finally:
            wh.close()
        failed = [r for r in runs if not r.ok]
        if as_json:
            typer.echo(msgspec.json.encode([{"dashboard": r.dashboard, "panel": r.panel, "rows": len(r.rows),
                                             "columns": r.columns, "error": r.error} for r in runs]).decode())
        else:
            table = Table(title=f"看板查询检查：{len(runs)} 个查询，失败 {len(failed)} 个")
            for h in ("看板", "面板", "行数", "结果"):
                table.add_column(h)
            for r in runs:
                table.add_row(r.dashboard, r.panel, str(len(r.rows)),
                              "[green]通过[/]" if r.ok else f"[red]{(r.error or '')[:200]}[/]")
            Console().print(table)
        if failed:
            raise typer.Exit(1)

    app.add_typer(dash_app, name="dashboards")
