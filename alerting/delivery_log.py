"""The delivery log (投递记录) the dispatcher codes against: a small protocol, two implementations.

It answers the questions that make delivery "once, not a storm": was this delivery id already
sent (alone or inside a digest)? What was sent to this recipient on this channel lately (digest
threshold, rate limit)? Which notices are unfinished (deferred, in flight when a process died,
failed and due for another try)? It also keeps the alerts' lifecycle state, so acknowledging an
alert and escalating it read and write one place.

Implementations: ``alerting.log_jsonl.JsonlDeliveryLog`` (files; the demo and tests) and
``alerting.log_warehouse.WarehouseDeliveryLog`` (ClickHouse through ``warehouse``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import msgspec

from alerting.model import AlertState, Channel, DeliveryAttempt

UNFINISHED_RESULTS = frozenset({"pending", "error", "deferred", "failed"})


class SentStats(msgspec.Struct, frozen=True, kw_only=True):
    """What one recipient got on one channel since some instant: enough for digests and rate limits."""

    notices: int = 0  # notices delivered, alone or inside digests
    messages: int = 0  # messages (single notices and digests)
    last_digest_at: datetime | None = None


@runtime_checkable
class DeliveryLog(Protocol):
    def already_delivered(self, delivery_id: str) -> bool:
        """True once a message with this id, or a digest carrying it, was accepted by a channel."""
        ...

    def delivered_among(self, delivery_ids: Iterable[str]) -> set[str]:
        """The subset of ``delivery_ids`` already delivered (one query instead of thousands)."""
        ...

    def record(self, attempt: DeliveryAttempt) -> None:
        """Append one attempt; durable when this returns."""
        ...

    def record_many(self, attempts: Sequence[DeliveryAttempt]) -> None:
        """Append several attempts in one write (a digest and every notice it carries)."""
        ...

    def attempts(
        self, *, alert_id: str | None = None, delivery_id: str | None = None
    ) -> list[DeliveryAttempt]:
        """Attempts for an alert (its notices) or a delivery id, oldest first."""
        ...

    def sent_stats(self, recipient_id: str, channel: Channel, since: datetime) -> SentStats:
        """Counts of what was sent to this recipient on this channel with ``at >= since``."""
        ...

    def unfinished(self) -> list[DeliveryAttempt]:
        """Latest record of every notice not delivered whose result is pending, error, deferred or failed.

        Read once when a dispatcher starts: this is how held digests and interrupted sends survive a
        restart without the findings being fed in again.
        """
        ...

    def get_alert(self, alert_id: str) -> AlertState | None: ...

    def get_alerts(self, alert_ids: Iterable[str]) -> dict[str, AlertState]: ...

    def put_alerts(self, states: Sequence[AlertState]) -> None:
        """Store new versions (each with a higher ``version`` than the one it replaces)."""
        ...

    def list_alerts(self, *, statuses: Iterable[str] | None = None) -> list[AlertState]:
        """Current version of every alert, optionally only those in ``statuses``; newest first."""
        ...

    def close(self) -> None: ...
