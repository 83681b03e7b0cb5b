"""``esup export monthly``: the monthly accountability report (月度考核) as xlsx or CSV.

The efficiency office (效能办) runs it once a month and publishes the ranking and the 三优三差; each
department gets the evidence sheets to check and contest its points. Data comes from the warehouse
(chDB directory or ClickHouse server), or — where no warehouse runs — from JSON Lines files: the
case-events file alone (the rules engine runs on the spot), or case facts + findings (+ events).
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]导出失败：[/]{message}", highlight=False)
    return typer.Exit(code)


def _instant(text: str | None, name: str) -> datetime | None:
    """ISO 8601; a time without offset is China time (the users' time)."""
    from schemas.events import CHINA_TZ

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{name} 应为 ISO 8601 时间（如 2026-11-02T09:00:00+08:00），收到：{text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=CHINA_TZ)


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "未知用户"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def ranking_table(rows: list[dict[str, Any]], title: str, windows: bool = True) -> Table:
    """The ranking as a rich table (rows from ``reports.monthly.ranking_rows``)."""
    table = Table(title=title)
    table.add_column("排名", justify="right", no_wrap=True)
    if windows:
        table.add_column("优差", no_wrap=True)
    table.add_column("部门")
    if windows:
        table.add_column("窗口")
    for name in ("总分", "等级", "办结", "按时办结率", "满意率", "扣分", "红牌"):
        table.add_column(name, justify="left" if name == "等级" else "right", no_wrap=True)
    for r in rows:
        mark = r["mark"]
        style = "green" if mark == "三优" else "red" if mark == "三差" else None
        cells = [str(r["rank"]) if r["rank"] is not None else "—"]
        if windows:
            cells.append(mark)
        cells.append(r["department"])
        if windows:
            cells.append(r["window"] or "")
        cells += [f"{r['score']}", r["grade"], str(r["completed"]), _pct(r["on_time_rate"]),
                  _pct(r["satisfaction_rate"]), f"{r['deductions']}", str(r["red_findings"])]
        table.add_row(*cells, style=style)
    return table


def monthly_command(
    month: Annotated[str, typer.Option("--month", help="考核月份 YYYY-MM（按北京时间划分月份）")],
    region: Annotated[str | None, typer.Option("--region", help="行政区划代码（6 位），默认全部")] = None,
    fmt: Annotated[str, typer.Option("--format", help="输出格式：xlsx 或 csv")] = "xlsx",
    out: Annotated[Path | None, typer.Option(
        "--out", help="输出路径：xlsx 文件；csv 为目录（每表一个文件），以 .zip 结尾则打包为一个 zip")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="嵌入式数据仓库（chDB）目录，默认 ./data")] = None,
    clickhouse_url: Annotated[str | None, typer.Option(
        "--clickhouse-url", help="ClickHouse 服务器，如 clickhouse://user:pass@host:9000/db（默认读取 $CLICKHOUSE_URL）")] = None,
    facts: Annotated[Path | None, typer.Option("--facts", help="办件事实文件（JSON Lines，CaseFacts 字段）")] = None,
    findings: Annotated[Path | None, typer.Option(
        "--findings", help="监察发现文件（JSON Lines，esup run --findings-out 的输出）")] = None,
    events: Annotated[Path | None, typer.Option(
        "--events", help="办件事件文件（JSON Lines）；单独给出时先运行监察规则得到办件事实与监察发现")] = None,
    run_id: Annotated[str, typer.Option("--run-id", help="数据仓库中的监察运行编号（live 为实时监察）")] = "live",
    scoring: Annotated[Path | None, typer.Option("--scoring", help="评分办法文件（默认 config/scoring.yaml）")] = None,
    generated_by: Annotated[str | None, typer.Option("--generated-by", help="生成人（默认当前系统用户）")] = None,
    generated_at: Annotated[str | None, typer.Option(
        "--generated-at", help="生成时间（ISO 8601，默认当前时间；固定它可逐字节复现 CSV）")] = None,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="仅 --events：事项目录文件")] = None,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="仅 --events：监察参数文件")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="仅 --events：监察时钟推进到此时刻（默认月末或最后一个事件，取较晚者，不超过当前时间）")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="不打印排名表")] = False,
) -> None:
    """导出月度考核报表：窗口与部门得分、等级、排名、三优三差，以及每项扣分的明细依据。"""
    from reports.monthly import ReportInputError, build, month_bounds, ranking_rows, write_csv, write_xlsx
    from reports.scoring import ScoringConfigError, load_scoring
    from reports.source import load_from_events, load_from_files, open_and_load
    from schemas.events import CHINA_TZ

    fmt = fmt.lower().strip()
    if fmt not in ("xlsx", "csv"):
        raise _fail(f"--format 只能是 xlsx 或 csv，收到：{fmt!r}")
    if region is not None and not (len(region) == 6 and region.isdigit()):
        raise _fail(f"--region 应为 6 位行政区划代码，收到：{region!r}")
    if (facts is None) != (findings is None):
        raise _fail("--facts 与 --findings 须同时给出（或只给 --events，由规则引擎计算）")
    files_mode = facts is not None or events is not None
    if files_mode and (data_dir or clickhouse_url):
        raise _fail("数据来源只能选一种：数据仓库（--data-dir / --clickhouse-url）或 JSON Lines 文件")
    if data_dir and clickhouse_url:
        raise _fail("--data-dir 与 --clickhouse-url 只能选一个")
    now = datetime.now(UTC).astimezone(CHINA_TZ)
    try:
        month_bounds(month)
        gen_at = _instant(generated_at, "--generated-at") or now
        until_at = _instant(until, "--until")
        cfg = load_scoring(scoring)
        if facts is not None and findings is not None:
            inp = load_from_files(facts, findings, events)
        elif events is not None:
            inp = load_from_events(events, month, until=until_at, catalog=str(catalog) if catalog else None,
                                   rules_config=str(rules_config) if rules_config else None, now=now)
        else:
            target = clickhouse_url or data_dir or os.environ.get("CLICKHOUSE_URL") or "./data"
            if not target.startswith(("clickhouse://", "clickhouses://")):
                path = target.removeprefix("chdb://")
                if not Path(path).is_dir():
                    raise _fail(f"数据目录 {path} 不存在：请用 --data-dir 指定数据仓库目录，"
                                "或用 --events / --facts --findings 从文件导出")
            inp = open_and_load(target, month, region, run_id)
        report = build(inp.facts, inp.findings, inp.events, month=month, region=region, config=cfg,
                       generated_at=gen_at, generated_by=generated_by or _default_user(), source=inp.source,
                       run_id=run_id)
    except typer.Exit:
        raise
    except (ReportInputError, ScoringConfigError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # the warehouse's own errors (locked directory, server down) in one sentence
        from warehouse import WarehouseError

        if isinstance(exc, WarehouseError):
            raise _fail(f"数据仓库不可用：{exc}") from None
        raise
    suffix = f"-{region}" if region else ""
    if out is None:
        out = Path(f"monthly-{report.month}{suffix}.xlsx" if fmt == "xlsx" else f"monthly-{report.month}{suffix}-csv")
    written = write_xlsx(report, out) if fmt == "xlsx" else write_csv(report, out)

    console = Console()
    if not quiet:
        title = f"{report.month} 窗口考核排名（{report.region or '全部区划'}；评分办法 {report.scoring.version}）"
        console.print(ranking_table(ranking_rows(report, "window"), title, windows=True))
        console.print(ranking_table(ranking_rows(report, "department"), f"{report.month} 部门考核排名", windows=False))
    for p in report.problems:
        err.print(f"[yellow]注意：[/]{p}", highlight=False)
    best = "、".join(w.label for w in report.best) or "无"
    worst = "、".join(w.label for w in report.worst) or "无"
    console.print(f"三优：{best}；三差：{worst}", highlight=False)
    console.print(f"已写出 {written}（数据 SHA-256 {report.data_sha256}）", highlight=False)


def register(app: typer.Typer) -> None:
    export_app = typer.Typer(help="导出报表：月度考核（窗口与部门评分、排名、三优三差及扣分明细）。",
                             no_args_is_help=True)
    export_app.command("monthly")(monthly_command)
    app.add_typer(export_app, name="export")
