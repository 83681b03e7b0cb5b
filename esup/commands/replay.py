"""``esup replay``: re-run the rules over recorded history (审计重放) and compare with what fired live.

The work is in ``streams.replay`` (selection, catalogs, buckets, checkpoint; the engine is driven by
``streams.embedded.run_events``) and ``streams.replay_diff`` (the comparison); this module parses options,
shows progress and prints Chinese tables or ``--json``.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from esup.commands.run import naive_tz_from, parse_instant, summary_table, warehouse_target
from rules.registry import RULES

console = Console(stderr=True)

STATE_DIR_NAME = "replay-runs"


class _Speed(ProgressColumn):
    """Events per second over rich's sliding window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
        return Text(f"{speed:,.0f} 事件/秒" if speed else "-- 事件/秒", style="cyan")


class _Count(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = f"{task.total:,.0f}" if task.total is not None else "?"
        return Text(f"{task.completed:,.0f}/{total} 事件", style="green")


def state_dir(data_dir: Path | None, clickhouse_url: str | None, explicit: Path | None) -> Path:
    """Where checkpoints live: under the embedded warehouse's directory, else ./data (server targets)."""
    if explicit is not None:
        return explicit
    target = warehouse_target(data_dir, clickhouse_url)
    if target.startswith(("clickhouse://", "clickhouses://")):
        return Path("data") / STATE_DIR_NAME
    path = target[len("chdb://"):] if target.startswith("chdb://") else target
    return Path(path) / STATE_DIR_NAME


def _day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{name} {text!r}：应为日期，例如 2026-10-01") from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]错误[/] {message}", highlight=False)
    return typer.Exit(code)


def execute_replay(*, data_dir: Path | None = None, clickhouse_url: str | None = None, events: Path | None = None,
                   day_from: date | None = None, day_to: date | None = None, cases: list[str] | None = None,
                   department: str | None = None, catalog: Path | None = None, catalog_as_of: str | None = None,
                   catalogs_dir: Path | None = None, rules_config: Path | None = None, until: Any = None,
                   run_id: str | None = None, resume: str | None = None, diff: bool = False,
                   findings_out: Path | None = None, no_store: bool = False, state: Path | None = None,
                   bucket_events: int | None = None, show_progress: bool = True, workers: int = 1,
                   ) -> dict[str, Any]:
    """The replay as a function (the command and the tests call it): plan or resume, run, store, diff.

    Returns the plan, the result, the diff (when asked) and the figures printed by the command.
    Raises ReplayError (operator message), ReplayInterrupted (Ctrl-C), WarehouseError.
    """
    from rules.findings import encode_finding
    from streams.replay import (
        BUCKET_EVENTS,
        LIVE_RUN,
        ArchiveSource,
        CatalogChoice,
        Checkpoint,
        ReplayError,
        Selection,
        WarehouseSource,
        clear_run,
        engines_for,
        finding_rows,
        gather_evidence,
        plan_replay,
        row_to_finding,
        run_replay,
        stored_findings,
    )
    from streams.replay_diff import compare, explain
    from warehouse import Sink, open_warehouse
    from warehouse.server import printable_target

    target = warehouse_target(data_dir, clickhouse_url)
    need_wh = not no_store or diff or events is None
    if resume and no_store:
        raise ReplayError("--resume 需要数据仓库：未存储的重放无法继续")
    wh = open_warehouse(target) if need_wh else None
    sink = None
    try:
        if wh is not None:
            wh.migrate()
        checkpoints = state_dir(data_dir, clickhouse_url, state)
        if resume:
            if any(x is not None for x in (day_from, day_to, department, catalog, catalog_as_of, run_id, until,
                                            events, catalogs_dir, rules_config)) or cases:
                raise ReplayError("--resume 沿用断点中记录的选择、目录、参数与时钟截止时间，请不要再指定这些选项")
            cp = Checkpoint(checkpoints, resume).load()
            plan = cp.plan
            assert plan is not None
            engines = engines_for(plan.catalog, plan.catalogs_dir, plan.rules_config)
            if engines.fingerprint != plan.fingerprint:
                raise ReplayError(f"重放 {resume} 开始后，事项目录或监察参数文件已改变，结果将不一致；"
                                  "请重新运行（不带 --resume）")
            naive = naive_tz_from(engines.config.naive_timezone)
            if plan.source.startswith("archive:"):
                source: Any = ArchiveSource(plan.source[len("archive:"):], naive,
                                            WarehouseSource(wh, naive) if wh is not None else None)
            else:
                source = WarehouseSource(wh, naive)
            dept_items = engines.department_items(plan.selection.department) if plan.selection.department else []
            selected = source.select(plan.selection, dept_items)
        else:
            choice = CatalogChoice.parse(catalog, catalog_as_of)
            engines = engines_for(choice, str(catalogs_dir) if catalogs_dir else None,
                                  str(rules_config) if rules_config else None)
            naive = naive_tz_from(engines.config.naive_timezone)
            selection = Selection(day_from, day_to, tuple(cases or ()), department)
            if day_from and day_to and day_from > day_to:
                raise ReplayError(f"--from {day_from} 晚于 --to {day_to}")
            if events is not None:
                source = ArchiveSource(events, naive, WarehouseSource(wh, naive) if wh is not None else None)
                source_name = f"archive:{Path(events).resolve()}"
            else:
                assert wh is not None
                source = WarehouseSource(wh, naive)
                source_name = "warehouse"
            plan, selected = plan_replay(
                source, selection, engines, run_id=run_id, until=until, source_name=source_name,
                catalogs_dir=str(catalogs_dir) if catalogs_dir else None,
                rules_config=str(rules_config) if rules_config else None,
                target_events=bucket_events or BUCKET_EVENTS)
            cp = Checkpoint(checkpoints, plan.run_id)
            if not no_store and cp.exists():
                try:
                    unfinished = not Checkpoint(checkpoints, plan.run_id).load().finished
                except ReplayError:
                    unfinished = False
                if unfinished:
                    console.print(f"[yellow]注意[/] 重放运行 {plan.run_id} 有未完成的断点，本次从头重新运行"
                                  f"（继续原运行请用 --resume {plan.run_id}）", highlight=False)
            cp.plan = plan
            if not no_store:
                assert wh is not None
                clear_run(wh, plan.run_id)
                cp.save()
        if plan.run_id == LIVE_RUN:
            raise ReplayError("运行编号 live 属于实时运行")
        if wh is not None and not no_store:
            sink = Sink(wh)
        todo = sum(b.events for i, b in enumerate(plan.buckets) if i not in cp.done)
        progress = None
        if show_progress and not cp.finished:
            progress = Progress(TextColumn("[bold]重放[/] {task.description}"), BarColumn(), _Count(), _Speed(),
                                TextColumn("剩余"), TimeRemainingColumn(), TextColumn("已用"), TimeElapsedColumn(),
                                console=console, transient=False)
        if cp.finished:
            from streams.replay import ReplayResult

            result = ReplayResult(plan.run_id, plan, skipped_buckets=len(plan.buckets))
        elif progress is not None:
            with progress:
                task = progress.add_task(plan.run_id, total=todo)
                result = run_replay(source, plan, engines, selected, sink=sink,
                                    checkpoint=None if no_store else cp, workers=workers,
                                    progress=lambda n: progress.update(task, completed=n))
                progress.update(task, completed=result.events, total=max(result.events, 1))
        else:
            result = run_replay(source, plan, engines, selected, sink=sink, checkpoint=None if no_store else cp,
                                workers=workers)
        if sink is not None:
            sink.close()
            sink = None
        # A resumed run did part of its work in an earlier session: read the whole run back.
        whole = result.skipped_buckets == 0
        replay_rows: list[dict[str, Any]] | None = None
        if not whole and wh is not None:
            replay_rows = stored_findings(wh, plan.run_id, plan, selected)
            findings = sorted((row_to_finding(r) for r in replay_rows), key=lambda f: (f.fired_at, f.finding_id))
        else:
            findings = result.findings
        if findings_out is not None:
            with open(findings_out, "wb") as fh:
                for f in findings:
                    fh.write(encode_finding(f) + b"\n")
        out: dict[str, Any] = {"plan": plan, "result": result, "findings": findings, "selected": selected,
                               "stored_in": None if no_store else printable_target(target), "engines": engines, "diff": None,
                               "cases_not_found": sorted(set(plan.selection.cases) - {c.case_id for c in selected}),
                               "archive_invalid": len(source.invalid) if isinstance(source, ArchiveSource) else 0}
        if diff:
            assert wh is not None
            live_rows = stored_findings(wh, LIVE_RUN, plan, selected)
            if replay_rows is None:
                replay_rows = (stored_findings(wh, plan.run_id, plan, selected) if not no_store
                               else finding_rows(findings, plan.run_id))
            precision = 1 if getattr(getattr(wh, "dialect", None), "datetime64", True) else 1000
            d = compare(live_rows, replay_rows, precision_ms=precision)
            from datetime import timedelta

            explain(d, gather_evidence(source, engines, d),
                    backdate_tolerance=timedelta(hours=engines.config.backdate_tolerance_hours),
                    replay_until=plan.until)
            out["diff"] = d
        return out
    finally:
        if sink is not None:
            sink.close()
        if wh is not None:
            wh.close()


# ----------------------------------------------------------------------------------------- output


def _plan_json(out: dict[str, Any]) -> dict[str, Any]:
    plan, result = out["plan"], out["result"]
    doc = {
        "run_id": plan.run_id, "source": plan.source, "selection": plan.selection.to_json(),
        "selection_text": plan.selection.describe(), "catalog": plan.catalog.to_json(),
        "catalog_text": plan.catalog.describe(), "until": plan.until.isoformat() if plan.until else None,
        "cases": plan.selected_cases, "buckets": len(plan.buckets),
        "buckets_from_earlier_session": result.skipped_buckets,
        "events_replayed": result.events, "cases_replayed": result.cases, "undecodable": result.undecodable,
        "findings": len(out["findings"]),
        "by_rule": {f"{r}/{s}": n for (r, s), n in sorted(_by_rule(out["findings"]).items())},
        "catalog_versions": dict(sorted(result.catalog_versions.items())),
        "recorded_versions_missing": dict(sorted(result.missing_versions.items())),
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()}, "wall_seconds": round(result.wall, 3),
        "workers": result.workers,
        "stored_in": out["stored_in"], "cases_not_found": out["cases_not_found"],
        "archive_invalid_lines": out["archive_invalid"],
    }
    if out["diff"] is not None:
        doc["diff"] = out["diff"].to_json()
    return doc


def _by_rule(findings: list[Any]) -> dict[tuple[str, str], int]:
    from collections import Counter

    return Counter((f.rule, f.severity) for f in findings)


def print_diff(c: Console, d: Any, limit: int = 50) -> None:
    from streams.replay_diff import KIND_NAMES, REASON_NAMES

    if d.empty:
        c.print(f"[green]对比实时运行：无差异[/]（双方各 {d.live_count} 条监察发现，编号与触发时间完全一致）")
        return
    c.print(f"[yellow]对比实时运行：{len(d.entries)} 处差异[/]，涉及办件 {len(d.cases())} 件"
            f"（实时 {d.live_count} 条，重放 {d.replay_count} 条，一致 {d.same} 条）")
    t = Table(title="差异（按规则）")
    for col, just in (("规则编码", "left"), ("规则名称", "left"), ("仅实时", "right"), ("仅重放", "right"),
                      ("时间/等级不同", "right"), ("办件", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for rule, s in d.by_rule().items():
        info = RULES.get(rule)
        shown = s.cases[:6]
        more = f" 等 {len(s.cases)} 件" if len(s.cases) > 6 else ""
        t.add_row(rule, info.name if info else "", str(len(s.only_live)), str(len(s.only_replay)),
                  str(len(s.changed)), "、".join(shown) + more)
    c.print(t)
    reasons = d.reasons()
    if reasons:
        rt = Table(title="可识别的原因")
        rt.add_column("原因")
        rt.add_column("差异数", justify="right")
        for code, n in reasons.most_common():
            rt.add_row(REASON_NAMES.get(code, code), str(n))
        c.print(rt)
    dt = Table(title=f"差异明细（前 {min(limit, len(d.entries))} 条，共 {len(d.entries)} 条）", show_lines=True)
    for col in ("类别", "规则", "办件", "实时触发", "重放触发", "原因"):
        dt.add_column(col)
    from streams.replay_diff import fmt_time

    for e in d.entries[:limit]:
        dt.add_row(KIND_NAMES[e.kind], e.rule, e.case_id,
                   fmt_time(e.live["fired_at"]) if e.live else "-", fmt_time(e.replay["fired_at"]) if e.replay else "-",
                   "\n".join(f"{REASON_NAMES.get(r.code, r.code)}：{r.text}" for r in e.reasons))
    c.print(dt)


def replay_command(
    day_from: Annotated[str | None, typer.Option("--from", help="起始日期：办件首个事件在此日期或之后（北京时间）")] = None,
    day_to: Annotated[str | None, typer.Option("--to", help="截止日期：办件首个事件在此日期或之前（含当日）")] = None,
    case: Annotated[list[str] | None, typer.Option("--case", help="只重放此办件（可重复）")] = None,
    department: Annotated[str | None, typer.Option("--department", help="只重放此部门的办件（按受理/收件字段）")] = None,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="所有办件按此目录文件判断（\"按今天的规则\"）")] = None,
    catalog_as_of: Annotated[str | None, typer.Option(
        "--catalog-as-of", help="按某日生效的目录版本判断：日期、today，或 accepted（各办件受理日）")] = None,
    catalogs_dir: Annotated[Path | None, typer.Option("--catalogs", help="目录历史版本目录（默认 config/catalogs）")] = None,
    rules_config: Annotated[Path | None, typer.Option("--rules-config", help="监察参数文件")] = None,
    until: Annotated[str | None, typer.Option(help="时钟推进到此时刻（ISO 8601，带时区；默认仓库中最后一个事件时间）")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="重放运行编号（默认由选择与配置生成，相同问题相同编号）")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="继续一次被中断的重放（运行编号）")] = None,
    diff: Annotated[bool, typer.Option("--diff", help="与实时运行的监察发现对比，并说明可识别的原因")] = False,
    findings_out: Annotated[Path | None, typer.Option("--findings-out", help="重放发现输出文件（JSON Lines）")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="改为重放导出的事件归档（JSON Lines）")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="内嵌数据仓库目录（默认 ./data）")] = None,
    clickhouse_url: Annotated[str | None, typer.Option("--clickhouse-url", envvar="CLICKHOUSE_URL",
                                                       help="ClickHouse 服务器地址（clickhouse://…）")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="不把重放发现写入数据仓库")] = False,
    state: Annotated[Path | None, typer.Option("--state-dir", help="断点文件目录（默认 数据目录/replay-runs）")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="引擎工作进程数（分桶相互独立，结果与 1 相同）")] = 1,
    bucket_events: Annotated[int | None, typer.Option("--bucket-events", hidden=True)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="不显示进度条")] = False,
) -> None:
    """按事件时间重放已记录的办件事件，存入独立的重放运行，并可与实时发现对比（审计重放）。"""
    from streams.replay import ReplayError, ReplayInterrupted
    from warehouse import WarehouseError

    try:
        out = execute_replay(
            data_dir=data_dir, clickhouse_url=clickhouse_url, events=events, day_from=_day(day_from, "--from"),
            day_to=_day(day_to, "--to"), cases=case, department=department, catalog=catalog,
            catalog_as_of=catalog_as_of, catalogs_dir=catalogs_dir, rules_config=rules_config,
            until=parse_instant(until), run_id=run_id, resume=resume, diff=diff, findings_out=findings_out,
            no_store=no_store, state=state, bucket_events=bucket_events, show_progress=not quiet, workers=workers)
    except ReplayInterrupted as exc:
        console.print(f"[yellow]已中断[/] {exc}；已完成的分桶已存储。继续：esup replay --resume {exc.run_id}")
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        console.print("[yellow]已中断[/]（重放尚未开始处理分桶）")
        raise typer.Exit(130) from None
    except (ReplayError, WarehouseError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(msgspec.json.encode(_plan_json(out)).decode() + "\n")
        return
    plan, result = out["plan"], out["result"]
    c = Console()
    c.print(f"重放运行 [bold]{plan.run_id}[/]：{plan.selection.describe()}；目录：{plan.catalog.describe()}；"
            f"时钟推进至 {plan.until.isoformat() if plan.until else '-'}", highlight=False)
    secs = result.total_seconds
    rate = f"，{result.events / secs:,.0f} 事件/秒" if secs > 0 and result.events else ""
    earlier = f"（另有 {result.skipped_buckets} 个分桶在此前的会话中完成）" if result.skipped_buckets else ""
    c.print(f"办件 {plan.selected_cases} 件，分 {len(plan.buckets)} 个分桶{earlier}；本次重放事件 {result.events} 条，"
            f"用时 {secs:.1f} 秒{rate}（读取 {result.seconds['read']:.1f}，解码 {result.seconds['decode']:.1f}，"
            f"引擎 {result.seconds['engine']:.1f}，写入 {result.seconds['write']:.1f}"
            f"{'；解码与引擎为 ' + str(result.workers) + ' 个进程合计' if result.workers > 1 else ''}）",
            highlight=False)
    if out["cases_not_found"]:
        c.print(f"[yellow]未找到办件[/] {'、'.join(out['cases_not_found'])}（数据仓库中没有其有效事件）", highlight=False)
    if out["archive_invalid"]:
        c.print(f"[yellow]归档中有 {out['archive_invalid']} 行无效事件[/]，未参与重放（实时运行同样不会使用）")
    if result.undecodable:
        c.print(f"[yellow]{result.undecodable} 行已存为有效但现在无法解码，未参与重放[/]")
    if result.missing_versions:
        c.print("[yellow]以下记录的目录版本不在目录历史中，相关办件按受理日选用版本：[/]"
                + "，".join(f"{v}（{n} 件）" for v, n in sorted(result.missing_versions.items())))
    if out["stored_in"]:
        c.print(f"已写入数据仓库：{out['stored_in']}（运行编号 {plan.run_id}，与实时发现分开存放）", highlight=False)
    c.print(summary_table(_by_rule(out["findings"]), "重放监察发现（按规则与等级）"))
    if out["diff"] is not None:
        print_diff(c, out["diff"])


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
