"""The live clock: how far the ticker may let each partition's cases run.

The engine fires a deadline once a case's clock passes it; a satisfying event that *occurred* before
the deadline prevents the finding, wherever it sits in the input. So the ticker must never move a
case's clock past events still waiting in its partition: a worker catching up on a backlog (after
an outage, or when history is loaded) would otherwise report every open case overdue although its
``completed`` event is a few thousand records further on.

Per partition the clock is therefore

* the wall clock, once the partition is caught up (everything up to the broker's end offset has
  been applied), and
* the partition's event-time watermark (the latest ``occurred_at`` applied) while it is behind,

in both cases minus ``lateness_seconds``, the allowance for events that reach the broker after
later ones (a source system's retry queue). Findings are identical to the embedded runner's when
no event arrives later than that allowance; an event later than that is what a live system cannot
know in time, and an audit replay shows the difference.

``clock`` may also name an offset from the wall clock (``wall+86400``) or a frozen instant (an ISO
8601 time): for demonstrations and tests on historical data.

The wall clock is read once, when the worker starts, and carried forward by the monotonic clock. An
NTP step (or an operator setting the date) while the worker runs would otherwise move every case's
clock at once: a step forward would fire deadlines early, a step back would hold them. A restarted
worker takes the corrected time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

_EPS = 1e-6  # the clock stays strictly before the watermark: an event at exactly that instant may follow


def parse_clock(spec: str) -> Callable[[], float]:
    """``wall`` | ``wall+SECONDS`` | ``wall-SECONDS`` | ISO 8601 instant with offset -> now() in epoch seconds."""
    s = spec.strip()
    if s == "wall":
        return _anchored(0.0)
    if s.startswith(("wall+", "wall-")):
        try:
            offset = float(s[4:])
        except ValueError:
            raise ValueError(f"clock {spec!r}: expected wall+SECONDS or wall-SECONDS") from None
        return _anchored(offset)
    try:
        at = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"clock {spec!r}: expected wall, wall±SECONDS or an ISO 8601 instant") from None
    if at.tzinfo is None:
        raise ValueError(f"clock {spec!r}: an instant needs its UTC offset, e.g. +08:00")
    frozen = at.timestamp()
    return lambda: frozen


def _anchored(offset: float) -> Callable[[], float]:
    """The wall clock at this moment plus ``offset``, advanced by the monotonic clock from here on."""
    wall0, mono0 = time.time() + offset, time.monotonic()
    return lambda: wall0 + (time.monotonic() - mono0)


class PartitionClocks:
    """Watermark and progress of each owned partition; ``time_for`` is the instant the ticker may use."""

    def __init__(self, now: Callable[[], float], lateness: float = 0.0) -> None:
        self.now = now
        self.lateness = lateness
        self.watermark: dict[int, float] = {}  # latest occurred_at applied, epoch seconds
        self.next_offset: dict[int, int] = {}  # the offset to apply next (kept by streams.order.ReadOrder)

    def observe(self, partition: int, occurred: float) -> None:
        """An event of ``partition`` that occurred at ``occurred`` was applied (its offset: ``ReadOrder``)."""
        if occurred > self.watermark.get(partition, float("-inf")):
            self.watermark[partition] = occurred

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.watermark.pop(p, None)
            self.next_offset.pop(p, None)

    def caught_up(self, partition: int, highwater: int | None) -> bool:
        if highwater is None:
            return False
        return self.next_offset.get(partition, -1) >= highwater

    def time_for(self, partition: int, highwater: int | None, now: float | None = None) -> float | None:
        """The instant the partition's cases may be advanced to, or None (nothing known yet)."""
        now = self.now() if now is None else now
        if self.caught_up(partition, highwater):
            return now - self.lateness
        wm = self.watermark.get(partition)
        if wm is None:
            return None
        return min(now, wm - _EPS) - self.lateness
