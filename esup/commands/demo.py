"""``esup demo``: the main job end to end on the embedded default, with nothing to install.

Simulates a month of one service center, supervises it, stores every fact in the embedded warehouse,
delivers the alerts to an outbox of .eml files, writes the monthly accountability export, and prints
what it found, read back from the warehouse.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

# Not a terminal (make demo piped, CI logs): rich would fold tables to 80 columns and hide names.
console = Console(width=None if sys.stdout.isatty() else 150)


def demo_command(
    cases: Annotated[int, typer.Option(help="模拟办件数（一个政务服务中心一个月）")] = 8000,
    seed: Annotated[int, typer.Option(help="随机种子")] = 2026,
    month: Annotated[str, typer.Option(help="模拟月份 YYYY-MM")] = "2026-10",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="内嵌数据仓库目录")] = Path("data"),
    out: Annotated[Path, typer.Option("--out", help="输出目录（事件、发现、告警发件箱、考核表）")] = Path("out"),
    keep: Annotated[bool, typer.Option("--keep", help="保留已有数据（默认每次重建演示数据）")] = False,
) -> None:
    """演示：模拟一个月的政务服务中心办件，实时监察、入库、告警、月度考核。"""
    from esup.commands.run import execute, summary_table
    from simulator import write
    from warehouse import open_warehouse
    from warehouse.reads import counts

    start = date.fromisoformat(month + "-01")
    if not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    events = out / "events.jsonl"
    truth = out / "truth.jsonl"

    console.rule("1. 模拟办件事件流")
    summary = write(events, truth, cases=cases, days=30, seed=seed, start=start)
    lines = sum(1 for _ in open(events, "rb"))
    console.print(f"{cases} 件办件，{lines} 条事件 → {events}（注入违规见 {truth}）")
    del summary

    console.rule("2. 监察规则 + 入库（内嵌 ClickHouse / chDB）")
    wh = open_warehouse(str(data_dir))
    try:
        done = execute(str(events), findings_out=out / "findings.jsonl", store=wh, report_invalid=False)
        result = done["result"]
        console.print(f"有效事件 {done['valid']}，无效 {done['invalid']}，办件 {result.cases}，"
                      f"监察发现 {len(result.findings)} 条 → {out / 'findings.jsonl'}")
        console.print(summary_table(result.by_rule(), "监察发现（按规则与等级）"))

        console.rule("3. 告警（默认写入发件箱目录，不需要邮件服务器）")
        _alerts(wh, result.findings, out / "outbox", result.until or datetime.now(UTC))

        console.rule("4. 从数据仓库读回")
        table = Table(title="数据仓库行数")
        table.add_column("表")
        table.add_column("行数", justify="right")
        for name, n in counts(wh).items():
            table.add_row(name, str(n))
        console.print(table)

        console.rule("5. 月度考核（三优三差）")
        _export(wh, month, out)
    finally:
        wh.close()


def _alerts(wh, findings, outbox: Path, now: datetime) -> None:
    try:
        from alerting import deliver_findings
        from alerting.config import load_alerting_config
        from alerting.log_warehouse import WarehouseDeliveryLog
    except ImportError as exc:  # pragma: no cover - alerting is part of the distribution
        console.print(f"[yellow]告警模块不可用：{exc}[/]")
        return
    import logging

    quiet = logging.getLogger("alerting")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one line per unrouted finding would bury the summary below
    try:
        report = deliver_findings(findings, load_alerting_config(), WarehouseDeliveryLog(wh), now,
                                  outbox_dir=str(outbox))
    finally:
        quiet.setLevel(level)
    table = Table(title=f"告警投递（发件箱 {outbox}）")
    table.add_column("接收人")
    table.add_column("渠道")
    table.add_column("消息数", justify="right")
    for rid, per in sorted(report.sent.items()):
        for ch, n in sorted(per.items()):
            table.add_row(rid, ch, str(n))
    console.print(table)
    console.print(f"新告警 {report.new_alerts}，消息 {report.messages_sent}（其中汇总 {report.digests_sent} 封，"
                  f"涵盖 {report.notices_in_digests} 条），未匹配路由转兜底 {report.unrouted}，失败 {report.failed}")


def _export(wh, month: str, out: Path) -> None:
    from esup.commands.export import ranking_table
    from reports.monthly import ranking_rows, write_csv, write_xlsx
    from reports.source import monthly_report

    report = monthly_report(wh, month, generated_by="esup demo", source="demo")
    xlsx = write_xlsx(report, out / f"月度考核-{month}.xlsx")
    csv_dir = write_csv(report, out / f"月度考核-{month}-csv")
    console.print(ranking_table(ranking_rows(report, "window"), f"{month} 窗口排名（三优三差）"))
    console.print(ranking_table(ranking_rows(report, "department"), f"{month} 部门排名", windows=False))
    console.print(f"考核表：{xlsx}；CSV：{csv_dir}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
