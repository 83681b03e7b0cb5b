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
from dataclasses import dataclass, field
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

try:  # the process's Prometheus metrics (esup_alert_deliveries_total{channel,result})
    from esup.metrics import record_deliveries as _count_deliveries
except ImportError:  # pragma: no cover - metrics are optional for library use

    def _count_deliveries(attempts: Iterable[DeliveryAttempt]) -> None:
        pass


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


@dataclass
class _Held:
    notice: Notice
    result: str
    since: datetime  # deferred: when it was first held; failed: when it last failed
    failures: int = 0


@dataclass
class _GroupQueue:
    """Notices waiting for one recipient and channel: held for a digest or a rate limit, or failed."""

    held: dict[str, _Held] = field(default_factory=dict)
    failed: dict[str, _Held] = field(default_factory=dict)
    _oldest: datetime | None = None
    _dirty: bool = False

    @property
    def oldest_deferred(self) -> datetime | None:
        """When the longest-waiting held notice was deferred (recomputed lazily after removals)."""
        if self._dirty:
            deferred = [h.since for h in self.held.values() if h.result == "deferred"]
            self._oldest = min(deferred) if deferred else None
            self._dirty = False
        return self._oldest

    def put(self, n: Notice, result: str, since: datetime, failures: int) -> None:
        self.drop(n.delivery_id)
        h = _Held(n, result, since, failures)
        if result == "failed":
            self.failed[n.delivery_id] = h
            return
        self.held[n.delivery_id] = h
        if result == "deferred" and not self._dirty and (self._oldest is None or since < self._oldest):
            self._oldest = since

    def mark_in_flight(self, n: Notice) -> None:
        """Being sent now: no longer waiting (an outcome follows: dropped, or put back as failed)."""
        self.drop(n.delivery_id)

    def drop(self, did: str) -> None:
        self.failed.pop(did, None)
        if self.held.pop(did, None) is not None:
            self._dirty = True


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
        self._queues: dict[tuple[str, Channel], _GroupQueue] | None = None

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
        self.dispatch([], {}, require_aware(now), report, flush_all=True)
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

    def _held_queues(self) -> dict[tuple[str, Channel], _GroupQueue]:
        """Held notices per recipient and channel, read from the log once, then kept up to date here."""
        if self._queues is None:
            self._queues = {}
            for a in self.log.unfinished():
                if a.kind == "digest" or a.alert_id is None:
                    continue
                n = Notice(
                    kind=a.kind,
                    alert_id=a.alert_id,
                    recipient_id=a.recipient_id,  # type: ignore[arg-type]
                    channel=a.channel,
                    delivery_id=a.delivery_id,
                )
                q = self._queues.setdefault((a.recipient_id, a.channel), _GroupQueue())
                q.put(n, a.result, a.at, a.failures)
        return self._queues

    def _queue_for(self, key: tuple[str, Channel]) -> _GroupQueue:
        return self._held_queues().setdefault(key, _GroupQueue())

    def dispatch(
        self,
        fresh: list[Notice],
        alerts: dict[str, AlertState],
        now: datetime,
        report: DeliveryReport,
        *,
        flush_all: bool = False,
    ) -> None:
        """Deliver fresh notices together with what is held for the same recipients and channels.

        ``flush_all`` also visits every recipient and channel with held or failed notices (the tick).
        """
        queues = self._held_queues()
        by_id: dict[str, Notice] = {}
        for n in fresh:
            by_id.setdefault(n.delivery_id, n)
        done = self.log.delivered_among(by_id) if by_id else set()
        report.already_delivered += len(done)
        groups: dict[tuple[str, Channel], list[Notice]] = {}
        for did, n in by_id.items():
            if did not in done:
                groups.setdefault((n.recipient_id, n.channel), []).append(n)
        keys = list(groups)
        if flush_all:
            keys += [k for k, q in queues.items() if k not in groups and (q.held or q.failed)]
        for key in keys:
            self._deliver_group(key, groups.get(key, []), alerts, now, report)

    def _deliver_group(
        self,
        key: tuple[str, Channel],
        fresh: list[Notice],
        alerts: dict[str, AlertState],
        now: datetime,
        report: DeliveryReport,
    ) -> None:
        rid, ch = key
        q = self._queue_for(key)
        retry = self.cfg.transport.retry
        new = [n for n in fresh if n.delivery_id not in q.held]
        for n in new:
            q.failed.pop(n.delivery_id, None)  # seen again (a replay): try it now
        due_failed = [
            h
            for h in q.failed.values()
            if h.failures < retry.redeliver_max and now >= h.since + retry.redeliver_delta
        ]
        count = len(q.held) + len(new) + len(due_failed)
        if count == 0:
            return
        report.notices += len(new)
        dcfg = self.cfg.digest
        window = dcfg.window_delta
        recent = self.log.sent_stats(rid, ch, now - window)
        budget: float = float("inf")
        rl = self.cfg.rate_limit_for(rid, ch)
        if rl is not None:
            budget = rl.max_messages - self.log.sent_stats(rid, ch, now - rl.per_delta).messages
        held_since = q.oldest_deferred or now
        digest_mode = recent.notices + count > dcfg.threshold or count > budget
        if budget <= 0:
            decision, why = "defer", "rate limit"
        elif not digest_mode:
            decision, why = "send", ""
        elif recent.last_digest_at is not None and now < recent.last_digest_at + window:
            decision, why = "defer", "one digest per window"
        elif count > dcfg.threshold or now - held_since >= window:
            decision, why = "send", ""
        else:
            decision, why = "defer", "held for digest"
        if decision == "defer":
            # New notices, and ones recovered from a crash or due for another try, start waiting
            # now, so that the digest they end up in goes out one window later at the latest.
            waiting = [(n, 0) for n in new]
            waiting += [(h.notice, h.failures) for h in q.held.values() if h.result != "deferred"]
            waiting += [(h.notice, h.failures) for h in due_failed]
            if waiting:
                self._record(
                    [
                        self._attempt(
                            n.delivery_id,
                            n.kind,
                            rid,
                            ch,
                            "deferred",
                            now,
                            alert_id=n.alert_id,
                            error=why,
                            failures=failures,
                        )
                        for n, failures in waiting
                    ]
                )
                for n, failures in waiting:
                    q.put(n, "deferred", now, failures)
            report.deferred += len(new)
            return
        # Sending: everything held for this recipient and channel goes now, checked once more
        # against the log (another process may have sent or closed some meanwhile).
        batch = [h.notice for h in q.held.values()] + new + [h.notice for h in due_failed]
        prior_failures = {h.notice.delivery_id: h.failures for h in (*q.held.values(), *due_failed)}
        done = self.log.delivered_among([n.delivery_id for n in batch])
        for did in done:
            q.drop(did)
        batch = [n for n in batch if n.delivery_id not in done]
        missing = {n.alert_id for n in batch if n.alert_id not in alerts}
        if missing:
            alerts = {**alerts, **self.log.get_alerts(missing)}
        live: list[Notice] = []
        cancelled: list[DeliveryAttempt] = []
        for n in batch:
            st = alerts.get(n.alert_id)
            if st is None or not st.is_open or rid not in self.cfg.recipients:
                why = (
                    "alert closed"
                    if st is not None and not st.is_open
                    else "alert or recipient no longer known"
                )
                cancelled.append(
                    self._attempt(
                        n.delivery_id, n.kind, rid, ch, "cancelled", now, alert_id=n.alert_id, error=why
                    )
                )
                q.drop(n.delivery_id)
            else:
                live.append(n)
        if cancelled:
            self._record(cancelled)
            report.cancelled += len(cancelled)
        if not live:
            return
        rcpt = self.cfg.recipients[rid]
        address = rcpt.address(ch) or ""
        single = not (digest_mode and len(live) > 1)
        if single:
            for n in live:
                ctx = self.renderer.notice_context(n.kind, alerts[n.alert_id], rcpt)
                msg = self.renderer.message(
                    kind=n.kind,
                    channel=ch,
                    recipient=rcpt,
                    address=address,
                    delivery_id=n.delivery_id,
                    ctx=ctx,
                    now=now,
                    alert_id=n.alert_id,
                )
                self._send(msg, [], prior_failures, q, now, report, notice=n)
            return
        did = digest_delivery_id(live, rid, ch)
        items = [DigestItem(kind=n.kind, alert=alerts[n.alert_id]) for n in live]
        ctx = self.renderer.digest_context(items, rcpt, now)
        msg = self.renderer.message(
            kind="digest", channel=ch, recipient=rcpt, address=address, delivery_id=did, ctx=ctx, now=now
        )
        self._send(msg, live, prior_failures, q, now, report)

    # ------------------------------------------------------------------------- sending

    def _record(self, attempts: list[DeliveryAttempt]) -> None:
        """Write attempts to the log (durable first), then count the message-level ones as metrics."""
        self.log.record_many(attempts)
        _count_deliveries([a for a in attempts if a.digest_id is None])

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
        prior_failures: dict[str, int],
        q: _GroupQueue,
        now: datetime,
        report: DeliveryReport,
        *,
        notice: Notice | None = None,
    ) -> None:
        """Record, try with retries, record the outcome — for the message and every notice it carries."""
        rid, ch = msg.recipient_id, msg.channel
        summary = msg.subject if ch == "email" else msg.body
        is_digest = msg.kind == "digest"
        notices = covered if is_digest else ([notice] if notice else [])

        def rows(result: str, **extra: object) -> list[DeliveryAttempt]:
            base = dict(extra)
            if "failures" in base:
                base["failures"] = prior_failures.get(msg.delivery_id, 0) + 1
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
                    **base,
                )
            ]
            for x in covered:
                ex = {k: v for k, v in extra.items() if k in ("error", "failures")}
                if "failures" in ex:
                    ex["failures"] = prior_failures.get(x.delivery_id, 0) + 1
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

        self._record(rows("pending", attempt=1))
        for n in notices:
            q.mark_in_flight(n)
        sender = self.senders[ch]
        retry = self.cfg.transport.retry
        tries = 0
        result: SendResult | None = None
        try:
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
                        self._record(
                            [
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
                            ]
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
            how = (
                "permanent"
                if isinstance(exc, PermanentError) or not isinstance(exc, ChannelError)
                else "retries exhausted"
            )
            self._record(rows("failed", attempt=tries, error=f"{how}: {error}", failures=1))
            for n in notices:
                q.put(n, "failed", now, prior_failures.get(n.delivery_id, 0) + 1)
            log.error(
                "delivery %s to %s via %s failed after %d tries (%s): %s",
                msg.delivery_id,
                rid,
                ch,
                tries,
                how,
                error,
            )
            report.failed += 1
            report.failures.append(
                Failure(delivery_id=msg.delivery_id, recipient_id=rid, channel=ch, kind=msg.kind, error=error)
            )
            return
        self._record(rows("sent", attempt=tries, provider_id=result.provider_id if result else None))
        for n in notices:
            q.drop(n.delivery_id)
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
