"""The case clock: working-day deadlines with paused dates, as docs/rules.md defines them.

Everything here is China-date arithmetic on top of the working-day calendar. Instants are UTC epoch
seconds (floats) because the engine compares them millions of times; dates are ``datetime.date``.
A pause from t0 to t1 covers the dates (D(t0), D(t1)]; a pause not yet ended makes every deadline
that falls after its start unknown (None) until it ends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from rules.calendar import WorkCalendar
from rules.state import Derived

_UTC8 = 8 * 3600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCHS: dict[tzinfo, datetime] = {}  # fixed offset -> 1970-01-01 00:00 UTC expressed in it (a memo)


def instant(dt: datetime) -> float:
    """Epoch seconds of ``dt``: equal to ``dt.timestamp()``, at half its cost for a fixed UTC offset.

    ``timestamp()`` on an aware time calls the zone's ``utcoffset`` for both sides of a subtraction
    (~450 ns); the drivers and the engine need two per event. Subtracting the epoch written in the same
    fixed-offset zone is a plain subtraction. Any other zone (or a naive time) goes the stock way.
    """
    tz = dt.tzinfo
    epoch = _EPOCHS.get(tz)  # type: ignore[arg-type]
    if epoch is None:
        if type(tz) is not timezone:
            return dt.timestamp()
        epoch = _EPOCHS[tz] = _EPOCH_UTC.astimezone(tz)  # type: ignore[arg-type]
    return (dt - epoch).total_seconds()


def day_number(t: float) -> int:
    """The China date of instant ``t`` as days since 1970-01-01 (a dictionary key; no date object)."""
    return int((t + _UTC8) // 86400)


def china_date(t: float) -> date:
    return date.fromordinal(day_number(t) + _EPOCH_ORDINAL)


def start_of(d: date) -> float:
    """00:00 China time of ``d``, as epoch seconds."""
    return (d.toordinal() - _EPOCH_ORDINAL) * 86400 - _UTC8


def end_of(d: date) -> float:
    """24:00 China time of ``d`` (00:00 of the next day), as epoch seconds."""
    return start_of(d) + 86400


def day_end(t: float) -> float:
    """24:00 China time of the day instant ``t`` falls on (``end_of(china_date(t))`` without a date)."""
    return ((t + _UTC8) // 86400 + 1) * 86400 - _UTC8


class PauseView:
    """The paused dates of a case, and where an unfinished pause begins."""

    __slots__ = ("dates", "open_from")

    def __init__(self, dates: frozenset[date], open_from: date | None):
        self.dates = dates
        self.open_from = open_from


_EMPTY: frozenset[date] = frozenset()
_NO_PAUSE = PauseView(_EMPTY, None)


def pause_view(d: Derived, kinds: tuple[str, ...] = ("supplement", "suspension")) -> PauseView:
    if not d.pauses:
        return _NO_PAUSE
    dates: set[date] = set()
    open_from: date | None = None
    for p in d.pauses:
        if p.kind not in kinds:
            continue
        d0 = china_date(p.start)
        if p.end is None:
            open_from = d0 if open_from is None else min(open_from, d0)
            continue
        d1 = china_date(p.end)
        day = d0 + timedelta(days=1)
        while day <= d1:
            dates.add(day)
            day += timedelta(days=1)
    if not dates and open_from is None:
        return _NO_PAUSE
    return PauseView(frozenset(dates), open_from)


class Clock:
    """Working-day arithmetic bound to one calendar, memoised (deadlines repeat across cases)."""

    def __init__(self, calendar: WorkCalendar):
        self.calendar = calendar
        self._nth = lru_cache(maxsize=1 << 16)(self._nth_uncached)
        self._ends: dict[tuple[int, int], float] = {}  # (China day number, n) -> end instant, unpaused
        self._working: dict[int, bool] = {}  # China day number -> a working day?

    def end_after(self, t: float, n: int, pauses: PauseView = _NO_PAUSE) -> float | None:
        """24:00 of the n-th working day after the China date of instant ``t``, skipping paused dates;
        None while an unfinished pause hides it.

        Most deadlines of most cases are unpaused, and they repeat across cases (same day, same limit):
        those are one dictionary lookup on the day number, with no date objects made.
        """
        if pauses is _NO_PAUSE:
            key = (int((t + _UTC8) // 86400), n)  # day_number(t), inlined: the hottest call of the clock
            end = self._ends.get(key)
            if end is None:
                if len(self._ends) > 1 << 18:  # years of days times every limit in use: far beyond
                    self._ends.clear()
                end = self._ends[key] = end_of(self._nth(date.fromordinal(key[0] + _EPOCH_ORDINAL), n, _EMPTY))
            return end
        day = self.nth(china_date(t), n, pauses)
        return end_of(day) if day is not None else None

    def _nth_uncached(self, day: date, n: int, paused: frozenset[date]) -> date:
        return self.calendar.nth_working_day_after(day, n, paused)

    def working_at(self, t: float) -> bool:
        """Whether instant ``t`` falls on a working day (China date), memoised by day number."""
        key = day_number(t)
        known = self._working.get(key)
        if known is None:
            known = self._working[key] = self.calendar.is_working_day(date.fromordinal(key + _EPOCH_ORDINAL))
        return known

    def nth(self, day: date, n: int, pauses: PauseView = _NO_PAUSE) -> date | None:
        """WD#n after ``day`` skipping paused dates; None while an unfinished pause hides it."""
        if not pauses.dates:
            result = self._nth(day, n, _EMPTY)
        else:
            result = self._nth(day, n, pauses.dates)
        if pauses.open_from is not None and result > pauses.open_from:
            return None
        return result

    def working_days_between(self, a: date, b: date) -> int:
        return self.calendar.working_days_between(a, b)

    def is_working_day(self, day: date) -> bool:
        return self.calendar.is_working_day(day)
