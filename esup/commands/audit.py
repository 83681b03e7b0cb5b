"""``esup audit verify``: prove to an auditor that the stored history of cases is what was received.

Every stored line is linked into a SHA-256 chain of its case when it is written (``warehouse.chain``).
``verify`` recomputes the chains from the stored lines and names every line altered, removed or
inserted after it was stored, every edited chain record, and every stored column that no longer says
what the line's raw bytes say. Exit status 0: everything intact; 1: something was found; 2: the
warehouse could not be read. Output is Chinese for inspectors, ``--json`` for scripts (with each
case's chain head, to keep outside the warehouse as a fixed point).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console

from esup.commands.run import naive_tz_from, warehouse_target

console = Console(stderr=True)
T = TypeVar("T")


def _on_warehouse(data_dir: Path | None, clickhouse_url: str | None, failed: str,
                  work: Callable[[Any], T]) -> tuple[T, str]:
    """Open the warehouse, bring its tables up to date, run ``work`` on it and close it; returns what
    ``work`` returned and where the warehouse is. Exit status 2, with ``failed`` or the opening error, if
    the warehouse cannot be opened or used."""
    from warehouse import WarehouseError, open_warehouse

    try:
        wh = open_warehouse(warehouse_target(data_dir, clickhouse_url))
    except WarehouseError as exc:
        console.print(f"[red]无法打开数据仓库[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        wh.migrate()
        return work(wh), wh.describe()
    except WarehouseError as exc:
        console.print(f"[red]{failed}[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        wh.close()


def verify_command(
    case: Annotated[list[str] | None, typer.Option("--case", help="只校验这些办件（可多次指定；默认全部）")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="内嵌数据仓库目录（默认 ./data）")] = None,
    clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", envvar="CLICKHOUSE_URL",
                                                       help="ClickHouse 服务器地址（clickhouse://…）")] = None,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="监察参数文件（无时区时间的解释）")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="最多列出的问题条数")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出（含各办件哈希链末端）")] = False,
) -> None:
    """校验入库事件的哈希链：报告入库后被修改、删除或插入的事件（发现问题时退出码为 1）。"""
    from rules.config import load_rule_config
    from warehouse.chain import KINDS, verify

    naive = naive_tz_from(load_rule_config(str(rules_config) if rules_config else None).naive_timezone)
    report, where = _on_warehouse(data_dir, clickhouse_url, "读取失败", lambda wh: verify(wh, case or None, naive))
    if as_json:
        doc = {"warehouse": where, "ok": report.ok, "cases": report.cases, "events": report.events,
               "links": report.links, "by_kind": report.by_kind(),
               "problems": [asdict(p) for p in report.problems],
               "heads": report.heads}
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        raise typer.Exit(0 if report.ok else 1)
    out = Console()
    if case and report.cases == 0:
        out.print(f"{where}：没有找到办件 {'、'.join(case)} 的任何入库事件", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if report.ok:
        out.print(f"{where}：已校验 {report.cases} 件办件、{report.events} 条入库事件、{report.links} 条哈希链记录，"
                  "全部完好，未发现入库后修改、删除或插入。", highlight=False, soft_wrap=True)
        return
    shown = report.problems[: max(0, limit)]
    out.print(f"哈希链校验发现 {len(report.problems)} 个问题（列出 {len(shown)} 个）：", highlight=False, soft_wrap=True)
    for p in shown:
        out.print(f"  {p.describe()}", highlight=False, soft_wrap=True)
    summary = "，".join(f"{KINDS[k]} {n} 条" for k, n in sorted(report.by_kind().items()))
    out.print(f"{where}：已校验 {report.cases} 件办件、{report.events} 条入库事件；{summary}。", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def seal_command(
    case: Annotated[list[str] | None, typer.Option("--case", help="只处理这些办件（可多次指定；默认全部）")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="内嵌数据仓库目录（默认 ./data）")] = None,
    clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", envvar="CLICKHOUSE_URL",
                                                       help="ClickHouse 服务器地址（clickhouse://…）")] = None,
) -> None:
    """把尚未入链的入库事件按接收顺序补入哈希链（升级前已入库的数据、批量导入的数据）。

    会把所有未入链的行都补入，包括入库后被插入的行：请先运行 esup audit verify，确认“不在哈希链中”的行都可信后再执行。
    """
    from warehouse.chain import seal

    n, where = _on_warehouse(data_dir, clickhouse_url, "写入失败", lambda wh: seal(wh, case or None))
    Console().print(f"{where}：补入哈希链 {n} 条入库事件。", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="审计：入库事件防篡改校验（哈希链）。", no_args_is_help=True)
    audit_app.command("verify")(verify_command)
    audit_app.command("seal")(seal_command)
    app.add_typer(audit_app, name="audit")
