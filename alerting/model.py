"""Alerting records (告警记录): alerts, notices, delivery attempts and reports, as plain data.

An *alert* is the supervision office's handle on one finding: it has a lifecycle (open →
acknowledged → resolved/dismissed) and may be escalated. A *notice* is one thing one recipient
must learn on one channel (a new finding, a yellow card turned red, an unacknowledged red card);
it is delivered alone or folded into a digest. Every try to deliver is a *delivery attempt*, and
attempts are append-only facts: the latest one for a delivery id says where it stands.

Delivery ids are deterministic so that a restart, a replay or a second worker recomputes the same
id and the delivery log can say "already delivered" before anything is sent twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec

from rules.findings import Finding, Severity

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

AlertStatus = Literal["open", "acknowledged", "resolved", "dismissed"]
OPEN_STATUSES: frozenset[str] = frozenset({"open", "acknowledged"})
CLOSED_STATUSES: frozenset[str] = frozenset({"resolved", "dismissed"})

NoticeKind = Literal["finding", "upgrade", "escalation"]
"""finding: a new finding; upgrade: a yellow card not cleared in time became red;
escalation: a red card not acknowledged in time, sent to the route's escalation target."""

MessageKind = Literal["finding", "upgrade", "escalation", "digest"]

AttemptResult = Literal["pending", "sent", "error", "failed", "deferred", "cancelled"]
"""pending: about to try (recorded before the channel is called); sent: the channel accepted it;
error: one try failed transiently and will be retried; failed: given up (permanent error or retries
exhausted) — kept, shown, and tried again on the next run that sees the finding; deferred: held for
a digest or by a rate limit; cancelled: a deferred notice whose alert was closed before it went out."""


def delivery_id(key: str, recipient_id: str, channel: str) -> str:
    """hash(finding id or digest key, recipient, channel): the same in every run, so sends are once."""
    raw = f"{key}|{recipient_id}|{channel}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def notice_key(kind: NoticeKind, alert_id: str) -> str:
    """A new finding is keyed by the finding id itself; later notices about it by kind and id."""
    return alert_id if kind == "finding" else f"{kind}:{alert_id}"


class AlertState(msgspec.Struct, kw_only=True):
    """One alert, one version. Versions are appended; the highest ``version`` is current."""

    alert_id: str  # = finding_id
    finding: Finding
    severity: Severity  # current severity: a yellow card not cleared in time becomes red
    status: AlertStatus = "open"
    opened_at: datetime  # when alerting first handled the finding (the ``now`` of that call)
    red_since: datetime | None = None  # start of the acknowledgement clock for a red card
    updated_at: datetime
    version: int = 1
    routes: tuple[str, ...] = ()
    unrouted: bool = False  # no route matched: sent to the fallback
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None
    reason: str | None = None
    escalated_at: datetime | None = None  # red, unacknowledged: escalation target notified
    upgraded_at: datetime | None = None  # yellow → red
    routing_version: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class DeliveryAttempt(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of the delivery log: what was tried, to whom, on which channel, and how it went."""

    delivery_id: str
    kind: MessageKind  # for a notice's own record, the notice kind; "digest" for a digest message
    recipient_id: str
    channel: Channel
    result: AttemptResult
    at: datetime  # logical time (the ``now`` of the call): what rate limits and digests count
    wall_at: datetime  # when it really happened, for the operator
    attempt: int = 0  # the try within one send (1, 2, … with retries)
    failures: int = 0  # on a failed record: how many sends of this delivery id have failed so far
    alert_id: str | None = None  # None for a digest message
    address: str | None = None  # masked: 138****5678, a***@example.gov.cn
    digest_id: str | None = None  # on a notice delivered inside a digest: that digest's delivery id
    covers: int = 0  # on a digest: how many notices it carries
    provider_id: str | None = None  # Message-ID, BizId, the gateway's id
    error: str | None = None
    summary: str | None = None  # masked subject or SMS text, for ``esup alerts show``
    routing_version: str | None = None


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One thing one recipient must learn on one channel, before it is sent alone or in a digest."""

    kind: NoticeKind
    alert_id: str
    recipient_id: str
    channel: Channel
    delivery_id: str


class OutgoingMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered, masked message for a channel. ``address`` is the real one; it is never logged."""

    delivery_id: str
    kind: MessageKind
    channel: Channel
    recipient_id: str
    recipient_name: str
    address: str
    subject: str  # e-mail subject; for SMS a short label
    body: str  # e-mail text, or the full SMS text including 【签名】
    sms_sign: str | None = None  # the signature alone (gateways that add it themselves)
    sms_content: str | None = None  # SMS text without the signature
    sms_params: dict[str, str] = {}  # template parameters for template-based gateways (Aliyun)
    alert_id: str | None = None
    at: datetime | None = None  # logical send time: the Date header of an e-mail


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    provider_id: str | None = None


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: str
    recipient_id: str
    channel: Channel
    kind: MessageKind
    error: str


class DeliveryReport(msgspec.Struct, kw_only=True):
    """What one call did, counted per recipient and channel for the demo summary and the live stream."""

    findings: int = 0
    new_alerts: int = 0
    closed_skipped: int = 0  # findings whose alert was already resolved or dismissed
    notices: int = 0  # new (alert, recipient, channel) notices to deliver in this call
    already_delivered: int = 0
    messages_sent: int = 0  # messages a channel accepted (single + digest)
    digests_sent: int = 0
    notices_in_digests: int = 0
    deferred: int = 0  # notices newly held in this call for the next digest or by a rate limit
    cancelled: int = 0
    failed: int = 0  # messages given up on: recorded, tried again on the next run
    unrouted: int = 0  # findings no route matched: sent to the fallback
    no_address: int = 0  # a route asked for a channel the recipient has no address for
    upgraded: int = 0  # yellow → red (lifecycle)
    escalated: int = 0  # red unacknowledged → escalation target (lifecycle)
    sent: dict[str, dict[str, int]] = {}  # recipient id -> channel -> messages sent
    failures: list[Failure] = []

    def count_sent(self, recipient_id: str, channel: str) -> None:
        per = self.sent.setdefault(recipient_id, {})
        per[channel] = per.get(channel, 0) + 1

    def merge(self, other: DeliveryReport) -> DeliveryReport:
        """Add another report's counts to this one (a lifecycle tick also delivers)."""
        for f in self.__struct_fields__:
            if f in ("sent", "failures"):
                continue
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for rid, per in other.sent.items():
            for ch, n in per.items():
                mine = self.sent.setdefault(rid, {})
                mine[ch] = mine.get(ch, 0) + n
        self.failures.extend(other.failures)
        return self
