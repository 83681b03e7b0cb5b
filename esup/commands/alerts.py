"""``esup alerts list|show|ack|resolve|dismiss|tick``: the inspectors' side of alerting (告警处置).

Inspectors see what is open, look at one alert with every delivery attempt behind it, acknowledge
it (签收) so it is not escalated, and close it (办结 / 撤销) with a reason. ``tick`` runs the
lifecycle clock once (escalations, yellow → red, held digests) for a deployment without a live
ticker. Output is Chinese tables; ``--json`` gives the same data for scripts. Personal data in
finding texts is masked here as in every message.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

DEFAULT_LOG_DIR = Path("data/alerts")
LOG_ENV = "ESUP_ALERT_LOG"
WAREHOUSE_ENV = "ESUP_ALERT_WAREHOUSE"

_SEVERITY = {"yellow": "黄牌", "red": "红牌"}
_RESULT = {
    "pending": "发送中",
    "sent": "已送达",
    "error": "失败待重试",
    "failed": "发送失败",
    "deferred": "暂缓（汇总/限流）",
    "cancelled": "已取消",
}
_CHANNEL = {"email": "邮件", "sms": "短信"}

LogOpt = Annotated[
    Path | None,
    typer.Option(
        "--log", help=f"投递记录目录（JSONL，默认 ${LOG_ENV} 或 {DEFAULT_LOG_DIR}）", show_default=False
    ),
]
WarehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--warehouse", help=f"改用数据仓库中的投递记录（目标，如 chdb:data/warehouse；或 ${WAREHOUSE_ENV}）"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="输出 JSON（供脚本使用）")]
AtOpt = Annotated[
    datetime | None,
    typer.Option(
        "--at",
        help="操作时间（ISO 8601，默认当前时间；无时区按北京时间）",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"],
    ),
]


def _open_log(ctx: typer.Context, log_dir: Path | None, warehouse: str | None) -> Any:
    """The delivery log, closed when the command ends (a chDB warehouse is one per process)."""
    target = warehouse or os.environ.get(WAREHOUSE_ENV)
    if target:
        from alerting.log_warehouse import WarehouseDeliveryLog

        log: Any = WarehouseDeliveryLog.open(target)
    else:
        from alerting.log_jsonl import JsonlDeliveryLog

        log = JsonlDeliveryLog(log_dir or Path(os.environ.get(LOG_ENV) or DEFAULT_LOG_DIR))
    ctx.call_on_close(log.close)
    return log


def _now(at: datetime | None) -> datetime:
    from schemas.events import CHINA_TZ

    if at is None:
        return datetime.now(UTC).astimezone(CHINA_TZ)
    return at if at.tzinfo is not None else at.replace(tzinfo=CHINA_TZ)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=1)


def _status_label(st: Any) -> str:
    from alerting.lifecycle import STATUS_LABELS

    return STATUS_LABELS.get(st.status, st.status)


def _alert_dict(st: Any) -> dict[str, Any]:
    """An alert as plain JSON data, with the finding's texts masked."""
    from alerting.masking import mask_text
    from alerting.render import rule_name

    d = msgspec.to_builtins(st)
    d["finding"]["message"] = mask_text(st.finding.message)
    d["finding"]["basis"] = mask_text(st.finding.basis)
    d["status_label"] = _status_label(st)
    d["severity_label"] = _SEVERITY.get(st.severity, st.severity)
    d["rule_name"] = rule_name(st.finding.rule)
    return d


def _print_json(data: Any) -> None:
    typer.echo(msgspec.json.encode(data).decode())


def _cn(dt: datetime | None) -> str:
    from alerting.render import cn_time

    return cn_time(dt) if dt else "—"


def register(app: typer.Typer) -> None:
    alerts_app = typer.Typer(
        help="告警处置：查看告警、签收、办结或撤销，以及运行升级与黄转红检查。", no_args_is_help=True
    )

    @alerts_app.command("list")
    def list_(
        ctx: typer.Context,
        status: Annotated[
            list[str] | None,
            typer.Option(
                "--status",
                "-s",
                help="状态：open 待签收、acknowledged 已签收、resolved 已办结、dismissed 已撤销、all 全部（可多次指定；默认未办结的）",
            ),
        ] = None,
        severity: Annotated[
            str | None, typer.Option("--severity", help="等级：yellow 黄牌 / red 红牌")
        ] = None,
        department: Annotated[str | None, typer.Option("--department", "-d", help="部门名称")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", help="最多显示条数")] = 50,
        log_dir: LogOpt = None,
        warehouse: WarehouseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """列出告警（默认：待签收与已签收的），最新的在前。"""
        from alerting.model import OPEN_STATUSES
        from alerting.render import rule_name

        wanted = set(status or OPEN_STATUSES)
        valid = {"open", "acknowledged", "resolved", "dismissed", "all"}
        if wanted - valid:
            raise _fail(f"未知状态：{'、'.join(sorted(wanted - valid))}（可选 {'、'.join(sorted(valid))}）")
        log = _open_log(ctx, log_dir, warehouse)
        rows = log.list_alerts(statuses=None if "all" in wanted else wanted)
        if severity:
            rows = [a for a in rows if a.severity == severity]
        if department:
            rows = [a for a in rows if (a.finding.department or "") == department]
        total = len(rows)
        rows = rows[: max(0, limit)]
        if as_json:
            _print_json({"total": total, "alerts": [_alert_dict(a) for a in rows]})
            return
        table = Table(title=f"告警（共 {total} 条，显示 {len(rows)} 条）")
        for h in ("编号", "等级", "状态", "规则", "办件", "部门", "发出时间", "签收/处理"):
            table.add_column(h, no_wrap=h in ("编号", "等级", "状态"))
        for a in rows:
            who = a.acknowledged_by or a.closed_by or ""
            sev = Text(_SEVERITY[a.severity], style="red" if a.severity == "red" else "yellow")
            if a.upgraded_at:
                sev.append("（黄转红）")
            if a.escalated_at:
                sev.append("（已升级）")
            table.add_row(
                a.alert_id[:12],
                sev,
                _status_label(a),
                rule_name(a.finding.rule),
                a.finding.case_id,
                a.finding.department or "—",
                _cn(a.opened_at),
                who,
            )
        Console().print(table)

    @alerts_app.command("show")
    def show(
        ctx: typer.Context,
        alert: Annotated[str, typer.Argument(metavar="ALERT", help="告警编号（或至少 6 位前缀）")],
        log_dir: LogOpt = None,
        warehouse: WarehouseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """显示一条告警：监察发现、处置经过与每一次投递尝试。"""
        from alerting.lifecycle import AlertLifecycleError, find_alert
        from alerting.masking import mask_text
        from alerting.render import rule_name

        log = _open_log(ctx, log_dir, warehouse)
        try:
            st = find_alert(log, alert)
        except AlertLifecycleError as exc:
            raise _fail(str(exc)) from None
        attempts = log.attempts(alert_id=st.alert_id)
        if as_json:
            _print_json({"alert": _alert_dict(st), "deliveries": [msgspec.to_builtins(a) for a in attempts]})
            return
        f = st.finding
        info = Table(title=f"告警 {st.alert_id}", show_header=False, show_lines=True)
        info.add_column("字段", style="bold", no_wrap=True)
        info.add_column("内容")
        rows = [
            ("等级", _SEVERITY[st.severity] + ("（由黄牌转为红牌）" if st.upgraded_at else "")),
            ("状态", _status_label(st)),
            ("监察规则", f"{rule_name(f.rule)}（{f.rule}）"),
            ("办件编号", f.case_id),
            ("事项编码", f.item_code or "—"),
            ("部门 / 窗口", f"{f.department or '—'} / {f.window or '—'}"),
            ("行政区划", f.region_code or "—"),
            ("发生时间", _cn(f.fired_at)),
            ("时限截止", _cn(f.deadline)),
            ("情况说明", mask_text(f.message)),
            ("依据", mask_text(f.basis)),
            ("路由", "、".join(st.routes) + ("（未匹配路由，已发送兜底收件人）" if st.unrouted else "")),
            ("告警发出", _cn(st.opened_at)),
        ]
        if st.acknowledged_at:
            rows.append(("签收", f"{st.acknowledged_by}　{_cn(st.acknowledged_at)}"))
        if st.upgraded_at:
            rows.append(("黄转红", _cn(st.upgraded_at)))
        if st.escalated_at:
            rows.append(("升级督办", _cn(st.escalated_at)))
        if st.closed_at:
            rows.append(("办结/撤销", f"{st.closed_by}　{_cn(st.closed_at)}　原因：{st.reason}"))
        for k, v in rows:
            info.add_row(Text(k), Text(v))
        console = Console()
        console.print(info)
        dt = Table(title=f"投递记录（{len(attempts)} 条）")
        for h in ("时间", "渠道", "收件人", "地址", "类型", "结果", "第几次", "说明"):
            dt.add_column(h)
        kinds = {"finding": "新发现", "upgrade": "黄转红", "escalation": "升级督办", "digest": "汇总"}
        for a in attempts:
            note = a.error or ""
            if a.digest_id and a.kind != "digest":
                note = (note + " " if note else "") + f"随汇总 {a.digest_id[:12]} 发送"
            if a.kind == "digest":
                note = (note + " " if note else "") + f"汇总 {a.covers} 条"
            dt.add_row(
                _cn(a.wall_at),
                _CHANNEL.get(a.channel, a.channel),
                a.recipient_id,
                a.address or "—",
                kinds.get(a.kind, a.kind),
                _RESULT.get(a.result, a.result),
                str(a.attempt or ""),
                Text(note),
            )
        console.print(dt)

    @alerts_app.command("ack")
    def ack(
        ctx: typer.Context,
        alert: Annotated[str, typer.Argument(metavar="ALERT", help="告警编号（或至少 6 位前缀）")],
        by: Annotated[str, typer.Option("--by", help="签收人")],
        at: AtOpt = None,
        log_dir: LogOpt = None,
        warehouse: WarehouseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """签收告警：表示已有人负责处理，红牌不再按时升级。"""
        from alerting.lifecycle import AlertLifecycleError, acknowledge

        log = _open_log(ctx, log_dir, warehouse)
        try:
            st = acknowledge(log, alert, by, _now(at))
        except AlertLifecycleError as exc:
            raise _fail(str(exc)) from None
        if as_json:
            _print_json(_alert_dict(st))
        else:
            typer.echo(
                f"已签收告警 {st.alert_id}（{st.finding.case_id}），签收人：{st.acknowledged_by}，时间：{_cn(st.acknowledged_at)}"
            )

    def _close(
        ctx: typer.Context,
        alert: str,
        by: str,
        reason: str,
        at: datetime | None,
        log_dir: Path | None,
        warehouse: str | None,
        as_json: bool,
        dismiss: bool,
    ) -> None:
        from alerting.lifecycle import AlertLifecycleError, close

        log = _open_log(ctx, log_dir, warehouse)
        try:
            st = close(log, alert, by, reason, _now(at), dismiss=dismiss)
        except AlertLifecycleError as exc:
            raise _fail(str(exc)) from None
        if as_json:
            _print_json(_alert_dict(st))
        else:
            what = "撤销" if dismiss else "办结"
            typer.echo(
                f"已{what}告警 {st.alert_id}（{st.finding.case_id}），处理人：{st.closed_by}，原因：{st.reason}"
            )

    @alerts_app.command("resolve")
    def resolve(
        ctx: typer.Context,
        alert: Annotated[str, typer.Argument(metavar="ALERT", help="告警编号（或至少 6 位前缀）")],
        by: Annotated[str, typer.Option("--by", help="处理人")],
        reason: Annotated[str, typer.Option("--reason", help="办结说明（必填）")],
        dismiss: Annotated[bool, typer.Option("--dismiss", help="作为误报撤销，而不是办结")] = False,
        at: AtOpt = None,
        log_dir: LogOpt = None,
        warehouse: WarehouseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """办结告警（已整改），或加 --dismiss 撤销（误报）；必须说明原因。"""
        _close(ctx, alert, by, reason, at, log_dir, warehouse, as_json, dismiss)

    @alerts_app.command("dismiss")
    def dismiss_(
        ctx: typer.Context,
        alert: Annotated[str, typer.Argument(metavar="ALERT", help="告警编号（或至少 6 位前缀）")],
        by: Annotated[str, typer.Option("--by", help="处理人")],
        reason: Annotated[str, typer.Option("--reason", help="撤销原因（必填）")],
        at: AtOpt = None,
        log_dir: LogOpt = None,
        warehouse: WarehouseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """撤销告警（误报等），必须说明原因。"""
        _close(ctx, alert, by, reason, at, log_dir, warehouse, as_json, True)

    @alerts_app.command("tick")
    def tick(
        ctx: typer.Context,
        at: AtOpt = None,
        config: Annotated[
            Path | None, typer.Option("--config", help="路由配置（默认 config/routing.yaml）")
        ] = None,
        outbox: Annotated[
            Path | None, typer.Option("--outbox", help="发件箱目录（使用 outbox 渠道时）")
        ] = None,
        log_dir: LogOpt = None,
        warehouse: WarehouseOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """运行一次告警时钟：红牌逾期未签收升级、黄牌逾期未办结转红牌、发送暂缓的汇总。"""
        from alerting.config import RoutingConfigError, load_alerting_config
        from alerting.dispatcher import Dispatcher
        from alerting.lifecycle import process_due

        try:
            cfg = load_alerting_config(config)
        except RoutingConfigError as exc:
            raise _fail(f"路由配置有误：{exc}") from None
        log = _open_log(ctx, log_dir, warehouse)
        d = Dispatcher(cfg, log, outbox_dir=str(outbox) if outbox else None)
        try:
            report = process_due(d, _now(at))
        finally:
            d.close()
        if as_json:
            _print_json(msgspec.to_builtins(report))
            return
        typer.echo(
            f"黄转红 {report.upgraded} 条，升级督办 {report.escalated} 条；发送消息 {report.messages_sent} 条"
            f"（其中汇总 {report.digests_sent} 条），暂缓 {report.deferred} 条，失败 {report.failed} 条。"
        )

    app.add_typer(alerts_app, name="alerts")
