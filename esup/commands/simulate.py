"""``esup simulate``: realistic case events for one or more service centers, with their ground truth.

The truth file lists every finding the injected violations should raise, so ``esup run`` over the
events can be checked for exact precision and recall; it also lists the malformed lines added by
``--bad-rate``.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rules.registry import RULES, SEVERITY_NAMES


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"日期格式应为 YYYY-MM-DD，收到：{text!r}") from None


def simulate_command(
    cases: Annotated[int, typer.Option("--cases", help="办件数量")],
    days: Annotated[int, typer.Option("--days", help="收件窗口天数（自然日；办件流程可延续到窗口之后）")],
    seed: Annotated[int, typer.Option("--seed", help="随机种子：参数与种子相同则输出逐字节相同")],
    out: Annotated[Path, typer.Option("--out", help="事件输出文件（JSON Lines）")],
    truth: Annotated[Path | None, typer.Option("--truth", help="真值文件：注入违规应产生的监察发现及畸形行")] = None,
    start: Annotated[str, typer.Option("--start", help="收件窗口起始日期 YYYY-MM-DD")] = "2026-10-01",
    centers: Annotated[int, typer.Option("--centers", help="政务服务中心数量（各有行政区划代码）")] = 1,
    violation_rate: Annotated[float, typer.Option("--violation-rate", help="注入一项违规的办件比例")] = 0.05,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="事项目录文件（默认随附目录）")] = None,
    bad_rate: Annotated[float, typer.Option("--bad-rate", help="插入畸形行的比例（按输出行计）")] = 0.0,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="监察参数文件（须与 esup run 一致）")] = None,
) -> None:
    """生成模拟办件事件流（含注入违规、迟到、重复与畸形行）及真值文件。"""
    from rules.catalog import CatalogError
    from simulator import SimulationError, write

    console = Console()
    began = time.perf_counter()
    try:
        summary = write(out, truth, cases=cases, days=days, seed=seed, start=_parse_date(start), centers=centers,
                        violation_rate=violation_rate, bad_rate=bad_rate, catalog=catalog, config=rules_config)
    except (SimulationError, CatalogError) as exc:
        Console(stderr=True).print(f"[red]模拟失败：[/]{exc}", highlight=False)
        raise typer.Exit(2) from None
    seconds = time.perf_counter() - began

    head = Table(title="模拟结果", show_header=False)
    head.add_column("项目")
    head.add_column("数值", justify="right")
    head.add_row("办件", f"{summary.cases:,}")
    head.add_row("事件（含重复）", f"{summary.events:,}")
    head.add_row("其中重复事件", f"{summary.duplicates:,}")
    head.add_row("畸形行", f"{summary.malformed:,}")
    head.add_row("输出行数", f"{summary.lines:,}")
    head.add_row("注入违规的办件", f"{summary.injected_cases:,}")
    head.add_row("应产生的监察发现", f"{sum(summary.truth_by_rule.values()):,}")
    if summary.first_event and summary.last_event:
        head.add_row("事件时间范围", f"{summary.first_event:%Y-%m-%d %H:%M} 至 {summary.last_event:%Y-%m-%d %H:%M}")
    head.add_row("耗时", f"{seconds:.1f} 秒（{summary.events / max(seconds, 1e-9):,.0f} 事件/秒）")
    console.print(head)

    table = Table(title="注入违规与应产生的监察发现（按规则）")
    table.add_column("规则编码")
    table.add_column("规则名称")
    table.add_column("等级")
    table.add_column("注入办件", justify="right")
    table.add_column("应产生发现", justify="right")
    for code in sorted(set(summary.injected_by_rule) | set(summary.truth_by_rule)):
        info = RULES.get(code)
        table.add_row(code, info.name if info else "", SEVERITY_NAMES.get(info.severity, "") if info else "",
                      str(summary.injected_by_rule.get(code, 0)), str(summary.truth_by_rule.get(code, 0)))
    table.add_row("合计", "", "", str(summary.injected_cases), str(sum(summary.truth_by_rule.values())), style="bold")
    console.print(table)
    if summary.normal_cases_firing:
        console.print(f"[yellow]注意：{summary.normal_cases_firing} 件正常办件无法排布为不触发任何规则，"
                      "其应产生的监察发现已写入真值（injected 为 none）。[/]", highlight=False)
    if summary.missed_injections:
        console.print(f"[yellow]注意：{summary.missed_injections} 件注入办件未触发目标规则，"
                      "真值按其实际应产生的监察发现记录。[/]", highlight=False)
    if summary.skipped_rules:
        console.print("[yellow]目录中没有可注入以下规则的事项，已跳过：[/]" + "、".join(summary.skipped_rules),
                      highlight=False)
    console.print(f"事件已写入 {out}" + (f"；真值已写入 {truth}" if truth else ""), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
