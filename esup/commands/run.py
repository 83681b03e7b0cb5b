"""``esup run``: the embedded driver on a JSON Lines file or stdin.

Its options are a stable interface: held-out real-world logs are run through it.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

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
        raise typer.BadParameter(f"{text!r} has no UTC offset; write e.g. 2026-10-31T24:00+08:00 as 2026-11-01T00:00+08:00")
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


def run_command(
    events: Annotated[str, typer.Option("--events", help="事件文件（JSON Lines），- 表示标准输入")],
    catalog: Annotated[Path | None, typer.Option(help="事项目录文件（默认随附目录）")] = None,
    until: Annotated[str | None, typer.Option(help="时钟推进到此时刻（ISO 8601，带时区；默认最后一个事件时间）")] = None,
    findings_out: Annotated[Path | None, typer.Option("--findings-out", help="监察发现输出文件（JSON Lines）")] = None,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="监察参数文件")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出汇总")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="不逐行报告无效事件")] = False,
) -> None:
    """按事件时间顺序运行监察规则，推进时钟，输出监察发现与汇总。"""
    from rules.engine import Engine
    from rules.findings import encode_finding
    from streams.embedded import load, run_events

    engine = Engine.default(str(catalog) if catalog else None, str(rules_config) if rules_config else None)
    naive = naive_tz_from(engine.config.naive_timezone)
    if events == "-":
        valid, invalid, lines = load(sys.stdin.buffer, naive)
    else:
        with open(events, "rb") as fh:
            valid, invalid, lines = load(fh, naive)
    if not quiet:
        for bad in invalid:
            console.print(f"[yellow]无效事件[/] {bad.describe()}", highlight=False)
    result = run_events(engine, valid, until=parse_instant(until))
    result.lines = lines
    result.invalid = invalid
    if findings_out:
        with open(findings_out, "wb") as fh:
            for f in result.findings:
                fh.write(encode_finding(f) + b"\n")
    if as_json:
        doc = {
            "lines": lines, "valid": len(valid), "invalid": len(invalid), "cases": result.cases,
            "until": result.until.isoformat() if result.until else None,
            "findings": len(result.findings),
            "by_rule": {f"{r}/{s}": n for (r, s), n in sorted(result.by_rule().items())},
            "notes": dict(sorted(result.notes_by_kind().items())),
        }
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        return
    out = Console()
    out.print(f"读取 {lines} 行：有效 {len(valid)}，无效 {len(invalid)}；办件 {result.cases} 件；"
              f"时钟推进至 {result.until.isoformat() if result.until else '-'}")
    if result.notes:
        out.print("数据说明：" + "，".join(f"{k} {v}" for k, v in sorted(result.notes_by_kind().items())))
    out.print(summary_table(result.by_rule(), "监察发现（按规则与等级）"))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
