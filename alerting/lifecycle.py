"""Alert lifecycle (告警处置): acknowledge, resolve or dismiss, and the clock that escalates.

An alert is ``open`` until someone ``acknowledged`` it (签收: by whom, when), and ends ``resolved``
(办结) or ``dismissed`` (撤销, e.g. a false positive) with a reason. Two deadlines keep alerts from
being ignored, both from ``config/routing.yaml`` (``lifecycle``):

* a red card not acknowledged within ``red_ack_within`` is escalated once to the route's
  ``escalate_to`` recipients (升级督办);
* a yellow card not resolved within ``yellow_clear_within`` (per rule if configured; ``wd`` counts
  working days) becomes red (黄转红): an upgrade record and a red delivery to the red routes, which
  include the discipline-inspection office; its acknowledgement clock starts then.

``process_due(now)`` applies both and flushes held deliveries. It takes ``now`` as an argument —
the live stream's ticker, the demo and the tests drive it; no wall clock is read here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import msgspec

from alerting.config import AlertingConfig
from alerting.delivery_log import DeliveryLog
from alerting.dispatcher import Dispatcher, require_aware
from alerting.model import OPEN_STATUSES, AlertState, DeliveryReport, Notice
from alerting.routing import escalation_targets, route_finding

log = logging.getLogger(__name__)


class AlertLifecycleError(ValueError):
    """An operation the alert's state does not allow (message in Chinese: it is shown to the user)."""


STATUS_LABELS = {"open": "待签收", "acknowledged": "已签收", "resolved": "已办结", "dismissed": "已撤销"}


def _next(st: AlertState, now: datetime, **changes: object) -> AlertState:
    return msgspec.structs.replace(st, version=st.version + 1, updated_at=now, **changes)


def find_alert(log_: DeliveryLog, ref: str) -> AlertState:
    """An alert by id or by a unique prefix of at least 6 characters (as inspectors type them)."""
    ref = ref.strip().lower()
    st = log_.get_alert(ref)
    if st is not None:
        return st
    if len(ref) < 6:
        raise AlertLifecycleError(f"找不到告警 {ref}（编号前缀至少 6 位）")
    hits = [a for a in log_.list_alerts() if a.alert_id.startswith(ref)]
    if not hits:
        raise AlertLifecycleError(f"找不到告警 {ref}")
    if len(hits) > 1:
        raise AlertLifecycleError(f"编号前缀 {ref} 对应 {len(hits)} 条告警，请输入更长的编号")
    return hits[0]


def acknowledge(log_: DeliveryLog, ref: str, by: str, now: datetime) -> AlertState:
    """签收: the inspector has it. Stops the red-card escalation clock."""
    now = require_aware(now)
    if not by.strip():
        raise AlertLifecycleError("签收人不能为空")
    st = find_alert(log_, ref)
    if st.status != "open":
        raise AlertLifecycleError(f"告警 {st.alert_id} 当前状态为「{STATUS_LABELS[st.status]}」，不能签收")
    new = _next(st, now, status="acknowledged", acknowledged_by=by.strip(), acknowledged_at=now)
    log_.put_alerts([new])
    log.info("alert %s acknowledged", st.alert_id)
    return new


def close(
    log_: DeliveryLog, ref: str, by: str, reason: str, now: datetime, *, dismiss: bool = False
) -> AlertState:
    """办结 (resolved) or 撤销 (dismissed), always with a reason; held deliveries for it are cancelled."""
    now = require_aware(now)
    if not by.strip():
        raise AlertLifecycleError("处理人不能为空")
    if not reason.strip():
        raise AlertLifecycleError("必须填写办结或撤销原因")
    st = find_alert(log_, ref)
    if st.status not in OPEN_STATUSES:
        raise AlertLifecycleError(f"告警 {st.alert_id} 已{STATUS_LABELS[st.status][1:]}，不能重复处理")
    new = _next(
        st,
        now,
        status="dismissed" if dismiss else "resolved",
        closed_by=by.strip(),
        closed_at=now,
        reason=reason.strip(),
    )
    log_.put_alerts([new])
    log.info("alert %s %s", st.alert_id, new.status)
    return new


def resolve(log_: DeliveryLog, ref: str, by: str, reason: str, now: datetime) -> AlertState:
    return close(log_, ref, by, reason, now)


def dismiss(log_: DeliveryLog, ref: str, by: str, reason: str, now: datetime) -> AlertState:
    return close(log_, ref, by, reason, now, dismiss=True)


def due_changes(
    cfg: AlertingConfig, alerts: Iterable[AlertState], now: datetime
) -> list[tuple[str, AlertState]]:
    """Which alerts change at ``now`` and how: ("upgrade" | "escalation", new state). Pure."""
    lc = cfg.lifecycle
    out: list[tuple[str, AlertState]] = []
    for st in alerts:
        if not st.is_open:
            continue
        f = st.finding
        if st.severity == "yellow":
            if st.upgraded_at is None and now >= lc.yellow_clear_deadline(f.rule, st.opened_at):
                out.append(
                    (
                        "upgrade",
                        _next(
                            st,
                            now,
                            severity="red",
                            upgraded_at=now,
                            red_since=now,
                            status="open",
                            acknowledged_by=None,
                            acknowledged_at=None,
                        ),
                    )
                )
        elif st.status == "open" and st.escalated_at is None:
            red_since = st.red_since or st.opened_at
            if now >= lc.red_ack_deadline(red_since):
                out.append(("escalation", _next(st, now, escalated_at=now)))
    return out


def process_due(dispatcher: Dispatcher, now: datetime) -> DeliveryReport:
    """Upgrade overdue yellow cards, escalate unacknowledged red ones, flush held deliveries.

    Deliveries come first and the new alert versions are stored after them: if the process dies in
    between, the next tick recomputes the same changes, finds the deliveries already made (same
    delivery ids) and only stores the states.
    """
    now = require_aware(now)
    cfg = dispatcher.cfg
    report = DeliveryReport()
    changes = due_changes(cfg, dispatcher.log.list_alerts(statuses=OPEN_STATUSES), now)
    notices: list[Notice] = []
    alerts: dict[str, AlertState] = {}
    for what, new in changes:
        alerts[new.alert_id] = new
        if what == "upgrade":
            targets = route_finding(new.finding, cfg, "red").targets
            notices.extend(dispatcher.make_notices("upgrade", new.alert_id, targets, report))
            report.upgraded += 1
            log.info("alert %s: yellow not cleared in time, now red", new.alert_id)
        else:
            targets = escalation_targets(new.finding, cfg)
            notices.extend(dispatcher.make_notices("escalation", new.alert_id, targets, report))
            report.escalated += 1
            log.info("alert %s: red not acknowledged in time, escalated", new.alert_id)
    dispatcher.dispatch(notices, alerts, now, report, flush_all=True)
    if changes:
        dispatcher.log.put_alerts([new for _, new in changes])
    return report
