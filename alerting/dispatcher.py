"""The dispatcher (告警投递): findings in, each notice delivered once, storms folded into digests.

For each finding it opens (or finds) the alert, routes it, and turns it into notices — one per
recipient and channel, each with a deterministic delivery id. Notices already delivered (alone or
inside a digest) are skipped, so restarts and replays send nothing twice. The rest are grouped per
recipient and channel and, per group, either sent one by one or folded into one digest:

* more than ``digest.threshold`` notices within ``digest.window`` (counting what was sent in the
  window) → digest mode;
* in digest mode at most one digest per window goes out; notices arriving meanwhile are held
  (recorded ``deferred``) and go out together when the window has passed;
* a per-recipient ``rate_limit`` caps messages per period; beyond it notices wait for budget.

Held, failed and interrupted notices are kept in the delivery log and picked up by the next call
(``deliver`` or the lifecycle tick), so nothing waits forever and nothing is lost. Every try is
recorded before and after it happens. Logic time is the ``now`` argument; no wall clock decides.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from alerting.channels import ChannelError, PermanentError, Sender, TransientError, build_senders
from alerting.config import AlertingConfig
from alerting.delivery_log import DeliveryLog
from alerting.masking import mask_email, mask_phone
from alerting.model import (
    AlertState,
    Channel,
    DeliveryAttempt,
    DeliveryReport,
    Failure,
    MessageKind,
    Notice,
    NoticeKind,
    OutgoingMessage,
    SendResult,
    delivery_id,
    notice_key,
)
from alerting.render import DigestItem, Renderer
from alerting.routing import Target, route_finding
from rules.findings import Finding

log = logging.getLogger(__name__)


def require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. China time, UTC+8)")
    return now


def _utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def digest_delivery_id(notices: Sequence[Notice], recipient_id: str, channel: str) -> str:
    """Deterministic over the set of notices carried, so the same set maps to the same digest id."""
    h = hashlib.blake2b(digest_size=16)
    for did in sorted(n.delivery_id for n in notices):
        h.update(did.encode())
    return delivery_id(f"digest:{h.hexdigest()}", recipient_id, channel)


class Dispatcher:
    """Delivers notices through the configured senders and records everything in the delivery log.

    Reuse one per process (it keeps HTTP clients open); give it a new ``cfg`` to pick up a new
    routing version without a restart.
    """

    def __init__(
        self,
        cfg: AlertingConfig,
        log: DeliveryLog,
        senders: dict[Channel, Sender] | None = None,
        *,
        outbox_dir: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.log = log
        self._own_senders = senders is None
        self.senders = senders if senders is not None else build_senders(cfg, outbox_dir=outbox_dir)
        self._sleep = sleep
        self._wall = wall_clock
        self.cfg = cfg
        self.renderer = Renderer(cfg)

    def reconfigure(self, cfg: AlertingConfig) -> None:
        """Use a reloaded routing file from the next call on (senders stay as they are)."""
        self.cfg = cfg
        self.renderer = Renderer(cfg)

    def close(self) -> None:
        if self._own_senders:
            for s in self.senders.values():
                s.close()

    # ------------------------------------------------------------------------- public entry points

    def deliver(self, findings: Iterable[Finding], now: datetime) -> DeliveryReport:
        """Open alerts for new findings and deliver every notice not yet delivered."""
        now = require_aware(now)
        report = DeliveryReport()
        uniq: dict[str, Finding] = {}
        for f in findings:
            uniq.setdefault(f.finding_id, f)
        report.findings = len(uniq)
        existing = self.log.get_alerts(uniq)
        new_states: list[AlertState] = []
        alerts: dict[str, AlertState] = {}
        notices: list[Notice] = []
        for fid, f in uniq.items():
            routing = route_finding(f, self.cfg)
            st = existing.get(fid)
            if st is None:
                st = AlertState(
                    alert_id=fid,
                    finding=f,
                    severity=f.severity,
                    opened_at=now,
                    red_since=now if f.severity == "red" else None,
                    updated_at=now,
                    routes=routing.routes,
                    unrouted=routing.unrouted,
                    routing_version=self.cfg.version,
                )
                new_states.append(st)
                report.new_alerts += 1
                if routing.unrouted:
                    report.unrouted += 1
                    log.warning(
                        "finding %s (rule %s, region %s, department %s) matched no route; sent to fallback",
                        fid,
                        f.rule,
                        f.region_code,
                        f.department,
                    )
            elif not st.is_open:
                report.closed_skipped += 1
                continue
            alerts[fid] = st
            notices.extend(self.make_notices("finding", fid, routing.targets, report))
        if new_states:
            self.log.put_alerts(new_states)
        self.dispatch(notices, alerts, now, report)
        return report

    def flush(self, now: datetime) -> DeliveryReport:
        """Deliver what is held, interrupted or due for another try; the lifecycle tick calls this."""
        report = DeliveryReport()
        self.dispatch([], {}, require_aware(now), report)
        return report

    # ------------------------------------------------------------------------- notices

    def make_notices(
        self, kind: NoticeKind, alert_id: str, targets: Sequence[Target], report: DeliveryReport
    ) -> list[Notice]:
        out: list[Notice] = []
        key = notice_key(kind, alert_id)
        for t in targets:
            rcpt = self.cfg.recipients[t.recipient_id]
            for ch in t.channels:
                if not rcpt.address(ch):
                    report.no_address += 1
                    log.warning(
                        "recipient %s has no %s address; notice for alert %s skipped on that channel",
                        rcpt.id,
                        ch,
                        alert_id,
                    )
                    continue
                out.append(
                    Notice(
                        kind=kind,
                        alert_id=alert_id,
                        recipient_id=t.recipient_id,
                        channel=ch,
                        delivery_id=delivery_id(key, t.recipient_id, ch),
                    )
                )
        return out

    def dispatch(
        self, fresh: list[Notice], alerts: dict[str, AlertState], now: datetime, report: DeliveryReport
    ) -> None:
        """Merge fresh notices with the log's unfinished ones, drop delivered ones, deliver per group."""
        retry = self.cfg.transport.retry
        prior: dict[str, DeliveryAttempt] = {}
        notices: dict[str, Notice] = {}
        for a in self.log.unfinished():
            if a.alert_id is None or a.kind == "digest":
                continue
            if a.result == "failed" and (
                a.failures >= retry.redeliver_max or now < a.at + retry.redeliver_delta
            ):
                continue
            prior[a.delivery_id] = a
            notices[a.delivery_id] = Notice(
                kind=a.kind,
                alert_id=a.alert_id,
                recipient_id=a.recipient_id,  # type: ignore[arg-type]
                channel=a.channel,
                delivery_id=a.delivery_id,
            )
        for n in fresh:
            notices.setdefault(n.delivery_id, n)
        if not notices:
            return
        done = self.log.delivered_among(notices)
        report.already_delivered += sum(1 for n in fresh if n.delivery_id in done)
        todo = [n for did, n in notices.items() if did not in done]
        missing = {n.alert_id for n in todo if n.alert_id not in alerts}
        if missing:
            alerts = {**alerts, **self.log.get_alerts(missing)}
        groups: dict[tuple[str, Channel], list[Notice]] = {}
        cancelled: list[DeliveryAttempt] = []
        for n in todo:
            st = alerts.get(n.alert_id)
            if st is None or not st.is_open or n.recipient_id not in self.cfg.recipients:
                why = (
                    "alert closed"
                    if st is not None and not st.is_open
                    else "alert or recipient no longer known"
                )
                cancelled.append(
                    self._attempt(
                        n.delivery_id,
                        n.kind,
                        n.recipient_id,
                        n.channel,
                        "cancelled",
                        now,
                        alert_id=n.alert_id,
                        error=why,
                    )
                )
                continue
            groups.setdefault((n.recipient_id, n.channel), []).append(n)
        if cancelled:
            self.log.record_many(cancelled)
            report.cancelled += len(cancelled)
        report.notices += sum(len(g) for g in groups.values())
        for (rid, ch), group in groups.items():
            self._deliver_group(rid, ch, group, alerts, prior, now, report)

    def _deliver_group(
        self,
        rid: str,
        ch: Channel,
        group: list[Notice],
        alerts: dict[str, AlertState],
        prior: dict[str, DeliveryAttempt],
        now: datetime,
        report: DeliveryReport,
    ) -> None:
        dcfg = self.cfg.digest
        window = dcfg.window_delta
        recent = self.log.sent_since(rid, ch, now - window)
        recent_notices = sum(1 for a in recent if a.kind != "digest")
        last_digest = max((a.at for a in recent if a.kind == "digest"), default=None)
        budget: float = float("inf")
        rl = self.cfg.rate_limit_for(rid, ch)
        if rl is not None:
            used = sum(1 for a in self.log.sent_since(rid, ch, now - rl.per_delta) if a.digest_id is None)
            budget = rl.max_messages - used
        held_since = min(
            (
                prior[n.delivery_id].at
                for n in group
                if n.delivery_id in prior and prior[n.delivery_id].result == "deferred"
            ),
            default=now,
        )
        n = len(group)
        digest_mode = recent_notices + n > dcfg.threshold or n > budget
        if budget <= 0:
            decision, why = "defer", "rate limit"
        elif not digest_mode:
            decision, why = "single", ""
        elif last_digest is not None and now < last_digest + window:
            decision, why = "defer", "one digest per window"
        elif n > dcfg.threshold or now - held_since >= window:
            decision, why = ("single" if n == 1 else "digest"), ""
        else:
            decision, why = "defer", "held for digest"
        if decision == "defer":
            fresh = [
                x for x in group if not (x.delivery_id in prior and prior[x.delivery_id].result == "deferred")
            ]
            if fresh:
                self.log.record_many(
                    [
                        self._attempt(
                            x.delivery_id, x.kind, rid, ch, "deferred", now, alert_id=x.alert_id, error=why
                        )
                        for x in fresh
                    ]
                )
            report.deferred += n
            return
        rcpt = self.cfg.recipients[rid]
        address = rcpt.address(ch) or ""
        if decision == "single":
            for x in group:
                st = alerts[x.alert_id]
                ctx = self.renderer.notice_context(x.kind, st, rcpt)
                msg = self.renderer.message(
                    kind=x.kind,
                    channel=ch,
                    recipient=rcpt,
                    address=address,
                    delivery_id=x.delivery_id,
                    ctx=ctx,
                    now=now,
                    alert_id=x.alert_id,
                )
                self._send(msg, [], prior, now, report)
            return
        did = digest_delivery_id(group, rid, ch)
        items = [DigestItem(kind=x.kind, alert=alerts[x.alert_id]) for x in group]
        ctx = self.renderer.digest_context(items, rcpt, now)
        msg = self.renderer.message(
            kind="digest", channel=ch, recipient=rcpt, address=address, delivery_id=did, ctx=ctx, now=now
        )
        self._send(msg, group, prior, now, report)

    # ------------------------------------------------------------------------- sending

    def _attempt(
        self,
        did: str,
        kind: MessageKind,
        rid: str,
        ch: Channel,
        result: str,
        now: datetime,
        **extra: object,
    ) -> DeliveryAttempt:
        rcpt = self.cfg.recipients.get(rid)
        addr = rcpt.address(ch) if rcpt else None
        masked = (mask_email(addr) if ch == "email" else mask_phone(addr)) if addr else None
        return DeliveryAttempt(
            delivery_id=did,
            kind=kind,
            recipient_id=rid,
            channel=ch,
            result=result,  # type: ignore[arg-type]
            at=now,
            wall_at=self._wall(),
            address=masked,
            routing_version=self.cfg.version,
            **extra,  # type: ignore[arg-type]
        )

    def _send(
        self,
        msg: OutgoingMessage,
        covered: list[Notice],
        prior: dict[str, DeliveryAttempt],
        now: datetime,
        report: DeliveryReport,
    ) -> None:
        """Record, try with retries, record the outcome — for the message and every notice it carries."""
        rid, ch = msg.recipient_id, msg.channel
        summary = msg.subject if ch == "email" else msg.body
        is_digest = msg.kind == "digest"

        def rows(result: str, **extra: object) -> list[DeliveryAttempt]:
            out = [
                self._attempt(
                    msg.delivery_id,
                    msg.kind,
                    rid,
                    ch,
                    result,
                    now,
                    alert_id=msg.alert_id,
                    summary=summary,
                    covers=len(covered),
                    **extra,
                )
            ]
            for x in covered:
                ex = {k: v for k, v in extra.items() if k in ("error", "failures")}
                if "failures" in ex:
                    ex["failures"] = (prior[x.delivery_id].failures if x.delivery_id in prior else 0) + 1
                out.append(
                    self._attempt(
                        x.delivery_id,
                        x.kind,
                        rid,
                        ch,
                        result,
                        now,
                        alert_id=x.alert_id,
                        digest_id=msg.delivery_id,
                        **ex,
                    )
                )
            return out

        self.log.record_many(rows("pending", attempt=1))
        sender = self.senders[ch]
        retry = self.cfg.transport.retry
        tries = 0
        try:
            result: SendResult | None = None
            for attempt in Retrying(
                stop=stop_after_attempt(max(1, retry.attempts)),
                wait=wait_exponential(multiplier=retry.initial, max=retry.max),
                retry=retry_if_exception_type(TransientError),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    tries = attempt.retry_state.attempt_number
                    try:
                        result = sender.send(msg)
                    except TransientError as exc:
                        self.log.record(
                            self._attempt(
                                msg.delivery_id,
                                msg.kind,
                                rid,
                                ch,
                                "error",
                                now,
                                alert_id=msg.alert_id,
                                attempt=tries,
                                error=str(exc),
                            )
                        )
                        log.info(
                            "delivery %s to %s via %s: try %d failed: %s",
                            msg.delivery_id,
                            rid,
                            ch,
                            tries,
                            exc,
                        )
                        raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, ChannelError) else f"{type(exc).__name__}: {exc}"[:300]
            if not isinstance(exc, ChannelError):
                log.exception("delivery %s to %s via %s: unexpected error", msg.delivery_id, rid, ch)
            kind = (
                "permanent"
                if isinstance(exc, PermanentError) or not isinstance(exc, ChannelError)
                else "retries exhausted"
            )
            failures = (prior[msg.delivery_id].failures if msg.delivery_id in prior else 0) + 1
            self.log.record_many(rows("failed", attempt=tries, error=f"{kind}: {error}", failures=failures))
            log.error(
                "delivery %s to %s via %s failed after %d tries (%s): %s",
                msg.delivery_id,
                rid,
                ch,
                tries,
                kind,
                error,
            )
            report.failed += 1
            report.failures.append(
                Failure(delivery_id=msg.delivery_id, recipient_id=rid, channel=ch, kind=msg.kind, error=error)
            )
            return
        self.log.record_many(rows("sent", attempt=tries, provider_id=result.provider_id if result else None))
        report.messages_sent += 1
        report.count_sent(rid, ch)
        if is_digest:
            report.digests_sent += 1
            report.notices_in_digests += len(covered)


def deliver_findings(
    findings: Iterable[Finding],
    cfg: AlertingConfig,
    log: DeliveryLog,
    now: datetime,
    *,
    senders: dict[Channel, Sender] | None = None,
    outbox_dir: str | None = None,
) -> DeliveryReport:
    """Deliver ``findings`` (what ``esup demo`` and the live stream call); counts per recipient and channel.

    Without ``senders`` the configured transports are used — the outbox by default, writing ``.eml``
    and ``.sms.txt`` files to ``outbox_dir`` (or the configured directory).
    """
    d = Dispatcher(cfg, log, senders, outbox_dir=outbox_dir)
    try:
        return d.deliver(findings, now)
    finally:
        d.close()
