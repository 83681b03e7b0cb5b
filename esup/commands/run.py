"""``esup run``: the embedded driver on a JSON Lines file or stdin.

Its options are a stable interface: held-out real-world logs are run through it. By default it
stores every input line (valid or not), the case facts, findings and notes in the embedded warehouse.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from rules.registry import RULES, SEVERITY_NAMES

console = Console(stderr=True)


def parse_instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise typer.BadParameter(f"{text!r} 缺少时区（例如 2026-11-01T00:00+08:00）")
    return value


def naive_tz_from(config_value: str | None) -> timezone | None:
    if not config_value:
        return None
    sign = -1 if config_value.startswith("-") else 1
    hh, mm = config_value.lstrip("+-").split(":")
    return timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))


def summary_table(by_rule: dict[tuple[str, str], int], title: str) -> Table:
    table = Table(title=title)
    table.add_column("规则编码")
    table.add_column("规则名称")
    table.add_column("等级")
    table.add_column("数量", justify="right")
    for (rule, sev), n in sorted(by_rule.items()):
        info = RULES.get(rule)
        table.add_row(rule, info.name if info else "", SEVERITY_NAMES.get(sev, sev), str(n))
    table.add_row("合计", "", "", str(sum(by_rule.values())), style="bold")
    return table


def warehouse_target(data_dir: Path | None, clickhouse_url: str | None) -> str:
    import os

    if clickhouse_url:
        return clickhouse_url
    if data_dir is not None:
        return str(data_dir)
    return os.environ.get("CLICKHOUSE_URL") or "./data"


def execute(events_path: str, *, catalog: Path | None = None, rules_config: Path | None = None,
            until: datetime | None = None, findings_out: Path | None = None, store: Any = None,
            report_invalid: bool = True) -> dict[str, Any]:
    """The run itself, shared by ``esup run`` and ``esup demo``: read, supervise, store, write findings.

    ``store`` is a warehouse target (str; opened and closed here) or an open warehouse (left open).
    """
    from rules.engine import Engine
    from rules.findings import encode_finding
    from streams.embedded import load, run_events
    from warehouse.server import printable_target

    engine = Engine.default(str(catalog) if catalog else None, str(rules_config) if rules_config else None)
    naive = naive_tz_from(engine.config.naive_timezone)
    raws: list[bytes] | None = [] if store else None
    if events_path == "-":
        valid, invalid, lines = load(sys.stdin.buffer, naive, raws)
    else:
        with open(events_path, "rb") as fh:
            valid, invalid, lines = load(fh, naive, raws)
    if report_invalid:
        for bad in invalid:
            console.print(f"[yellow]无效事件[/] {bad.describe()}", highlight=False, markup=True)

    wh = sink = None
    if store:
        from warehouse import Sink, open_warehouse

        wh = open_warehouse(store) if isinstance(store, str) else store
        wh.migrate()
        sink = Sink(wh)
        received = datetime.now(UTC)
        sink.add_events((ev, raw, received) for ev, raw in zip(valid, raws or [], strict=True))
        sink.add_events((bad, bad.raw, received) for bad in invalid)
    try:
        result = run_events(engine, valid, until=until,
                            on_findings=sink.add_findings if sink else None,
                            on_notes=sink.add_notes if sink else None)
        if sink is not None:
            sink.add_facts(engine.facts(st) for st in result.states.values())
            sink.flush()
    finally:
        if sink is not None:
            sink.close()
        if wh is not None and isinstance(store, str):
            wh.close()
    result.lines = lines
    result.invalid = invalid
    if findings_out:
        with open(findings_out, "wb") as fh:
            for f in result.findings:
                fh.write(encode_finding(f) + b"\n")
    return {
        "result": result, "lines": lines, "valid": len(valid), "invalid": len(invalid),
        "catalog_version": engine.catalogs.latest.version, "rules_version": engine.config.version,
        "stored_in": printable_target(store) if isinstance(store, str) or store is None else store.kind,
    }


def run_command(
    events: Annotated[str, typer.Option("--events", help="事件文件（JSON Lines），- 表示标准输入")],
    catalog: Annotated[Path | None, typer.Option(help="事项目录文件（默认随附目录）")] = None,
    until: Annotated[str | None, typer.Option(help="时钟推进到此时刻（ISO 8601，带时区；默认最后一个事件时间）")] = None,
    findings_out: Annotated[Path | None, typer.Option("--findings-out", help="监察发现输出文件（JSON Lines）")] = None,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="监察参数文件")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="内嵌数据仓库目录（默认 ./data）")] = None,
    clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", envvar="CLICKHOUSE_URL",
                                                       help="ClickHouse 服务器地址（clickhouse://…）")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="不写入数据仓库")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出汇总")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="不逐行报告无效事件")] = False,
) -> None:
    """按事件时间顺序运行监察规则，推进时钟，存储事实并输出监察发现与汇总。"""
    store = None if no_store else warehouse_target(data_dir, clickhouse_url)
    try:
        out = execute(events, catalog=catalog, rules_config=rules_config, until=parse_instant(until),
                      findings_out=findings_out, store=store, report_invalid=not quiet)
    except Exception as exc:  # operator-facing: one clear line, not a traceback
        from warehouse import WarehouseError

        if isinstance(exc, (WarehouseError, OSError)):
            console.print(f"[red]错误[/] {exc}")
            raise typer.Exit(2) from None
        raise
    result = out["result"]
    from warehouse.server import printable_target

    shown = printable_target(store)  # never the password of a clickhouse:// URL
    if as_json:
        doc = {
            "lines": out["lines"], "valid": out["valid"], "invalid": out["invalid"], "cases": result.cases,
            "until": result.until.isoformat() if result.until else None,
            "findings": len(result.findings),
            "by_rule": {f"{r}/{s}": n for (r, s), n in sorted(result.by_rule().items())},
            "notes": dict(sorted(result.notes_by_kind().items())), "stored_in": shown,
        }
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        return
    c = Console()
    c.print(f"读取 {out['lines']} 行：有效 {out['valid']}，无效 {out['invalid']}；办件 {result.cases} 件；"
            f"时钟推进至 {result.until.isoformat() if result.until else '-'}")
    if result.notes:
        c.print("数据说明：" + "，".join(f"{k} {v}" for k, v in sorted(result.notes_by_kind().items())))
    if store:
        c.print(f"已写入数据仓库：{shown}")
    c.print(summary_table(result.by_rule(), "监察发现（按规则与等级）"))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
