"""Working days and China clock times as plain integers, for planning a hundred thousand cases a second.

The simulator plans every event time with the same working-day calendar the engine uses
(``rules.calendar.WorkCalendar``), but asks it once per date: the answers are flattened into a table
over the simulated span, so "the n-th working day after d" is one index on plain date ordinals.
Instants are UTC epoch seconds (ints) until they are written, because datetime arithmetic is the
slow part of a simulator. The day arithmetic of ``rules.clock`` is deliberately not reused: the
calendar is shared data, but the truth must not share the engine's reading of the rules.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, timedelta

from rules.calendar import CalendarError, WorkCalendar

EPOCH_ORD = date(1970, 1, 1).toordinal()
UTC8 = 8 * 3600
DAY = 86400

# Office hours (办公时间) 08:30–12:00 and 13:30–17:30 as one 7.5-hour axis of "office seconds", so
# a chain of steps can be laid out without falling into the lunch break.
AM_START = 8 * 3600 + 30 * 60
AM_LEN = 3 * 3600 + 30 * 60
PM_START = 13 * 3600 + 30 * 60
OFFICE_LEN = AM_LEN + 4 * 3600  # 27000 s; offsets beyond it run on past 17:30 (overtime)


class SimulationError(ValueError):
    """Arguments the simulator cannot honour (e.g. dates no calendar covers); the message is Chinese."""


def day_start(ordinal: int) -> int:
    """00:00 China time of the date, as epoch seconds (``start(d)`` in docs/rules.md)."""
    return (ordinal - EPOCH_ORD) * DAY - UTC8


def day_end(ordinal: int) -> int:
    """24:00 China time of the date (``end(d)``)."""
    return day_start(ordinal) + DAY


def china_ord(ts: int) -> int:
    """The China date ordinal of an instant (``D(t)``)."""
    return (ts + UTC8) // DAY + EPOCH_ORD


def second_of_day(ts: int) -> int:
    return (ts + UTC8) % DAY


def office_second(offset: int) -> int:
    """Office offset (0 = 08:30) -> seconds since China midnight, skipping lunch."""
    if offset < AM_LEN:
        return AM_START + offset
    return PM_START + offset - AM_LEN


class DayTable:
    """Working-day flags from a first date onwards, read from the calendar as far as they are needed.

    Dates the calendar does not cover raise ``SimulationError`` rather than being guessed: a guessed
    holiday would move a planned completion across a deadline and corrupt the ground truth. The table
    grows on demand, so a short run never touches (or warns about) a provisional year it does not use.
    """

    GROW_DAYS = 120

    def __init__(self, calendar: WorkCalendar, first: date, initial_days: int = 120):
        covered = list(calendar.covered_years)
        if not covered or not covered[0] <= first.year <= covered[-1]:
            raise SimulationError(f"日期 {first.isoformat()} 不在工作日历覆盖的年份内")
        self.calendar = calendar
        self.base = first.toordinal()
        self.limit = date(covered[-1], 12, 31).toordinal()  # the last date any calendar may know
        self.work = bytearray()
        self.cum = [0]
        self.ords: list[int] = []
        self.last = self.base - 1
        self._grow(self.base + initial_days)

    def _grow(self, upto: int) -> None:
        """Extend the table through ``upto`` (or raise if no calendar knows that far).

        Grows in chunks, but never into a new year before a date there is asked for.
        """
        target = max(upto, self.last + 1)
        year_end = date(date.fromordinal(target).year, 12, 31).toordinal()
        upto = min(max(target, self.last + self.GROW_DAYS), year_end)
        if self.last >= self.limit:
            raise self._out(self.last + 1)
        upto = min(upto, self.limit)
        day = date.fromordinal(self.last + 1)
        step = timedelta(days=1)
        work, cum, ords = self.work, self.cum, self.ords
        running = cum[-1]
        for o in range(self.last + 1, upto + 1):
            try:
                w = 1 if self.calendar.is_working_day(day) else 0
            except CalendarError:
                self.limit = o - 1
                break
            work.append(w)
            running += w
            cum.append(running)
            if w:
                ords.append(o)
            self.last = o
            day += step

    def _out(self, ordinal: int) -> SimulationError:
        return SimulationError(
            f"模拟需要 {date.fromordinal(ordinal).isoformat()} 的工作日信息，但工作日历只覆盖到 "
            f"{date.fromordinal(self.limit).isoformat()}；请缩短 --days、提前 --start，或补充 config/holidays.yaml")

    def is_working(self, ordinal: int) -> bool:
        i = ordinal - self.base
        if i < 0:
            raise SimulationError(f"{date.fromordinal(ordinal).isoformat()} 早于模拟起始日期")
        while i >= len(self.work):
            self._grow(ordinal)
        return self.work[i] == 1

    def nth_after(self, ordinal: int, n: int) -> int:
        """``WD#n after d`` with no paused dates; n = 0 gives the date itself."""
        if n == 0:
            return ordinal
        i = ordinal - self.base
        if i < -1:
            raise SimulationError(f"{date.fromordinal(ordinal).isoformat()} 早于模拟起始日期")
        while i >= len(self.work) or self.cum[i + 1] + n > len(self.ords):
            self._grow(self.last + 1)
        return self.ords[self.cum[i + 1] + n - 1]

    def nth_after_paused(self, ordinal: int, n: int, paused: list[tuple[int, int]],
                         open_from: int | None = None) -> int | None:
        """``WD#n after d`` skipping paused dates (the calendar's own counting when there are any).

        ``paused`` holds (d0, d1) ordinal pairs covering (d0, d1]; a pause not yet ended covers every
        date after ``open_from``, so a day beyond it is unknown (None), as docs/rules.md says.
        """
        if paused:
            dates = frozenset(date.fromordinal(o) for d0, d1 in paused for o in range(d0 + 1, d1 + 1))
            result = self.calendar.nth_working_day_after(date.fromordinal(ordinal), n, dates).toordinal()
        else:
            result = self.nth_after(ordinal, n)
        if open_from is not None and result > open_from:
            return None
        return result

    def working_days_between(self, a: int, b: int) -> int:
        """Working days d with a < d <= b."""
        if b <= a:
            return 0
        while b - self.base >= len(self.work):
            self._grow(b)
        return self.cum[b - self.base + 1] - self.cum[a - self.base + 1]

    def working_days_in(self, first: int, last: int) -> list[int]:
        """Working-day ordinals in [first, last]."""
        while last - self.base >= len(self.work):
            self._grow(last)
        lo = bisect_right(self.ords, first - 1)
        hi = bisect_right(self.ords, last)
        return self.ords[lo:hi]
