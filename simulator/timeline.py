"""Working days and China clock times as plain integers, for planning a hundred thousand cases a second.

The simulator plans every event time with the same working-day calendar the engine uses
(``rules.calendar.WorkCalendar``), but asks it once per date: the answers are flattened into a table
over the simulated span, so "the n-th working day after d" is one index. Instants are UTC epoch
seconds (ints) until they are written, because datetime arithmetic is the slow part of a simulator.
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
    """Working-day flags over a span of dates, read once from the calendar.

    Dates outside the span raise ``SimulationError`` rather than being guessed: a guessed holiday
    would move a planned completion across a deadline and corrupt the ground truth.
    """

    def __init__(self, calendar: WorkCalendar, first: date, last: date):
        covered = list(calendar.covered_years)
        if not covered or first.year < covered[0] or first.year > covered[-1]:
            raise SimulationError(f"起始日期 {first.isoformat()} 不在工作日历覆盖的年份内（{covered[:1]}…{covered[-1:]}）")
        last = min(last, date(covered[-1], 12, 31))
        self.calendar = calendar
        self.base = first.toordinal()
        n = last.toordinal() - self.base + 1
        work = bytearray(n)
        day = first
        step = timedelta(days=1)
        for i in range(n):
            try:
                work[i] = 1 if calendar.is_working_day(day) else 0
            except CalendarError:
                n = i
                work = work[:i]
                break
            day += step
        self.work = bytes(work)
        self.last = self.base + len(self.work) - 1
        self.ords = [self.base + i for i, w in enumerate(self.work) if w]
        cum = [0] * (len(self.work) + 1)
        running = 0
        for i, w in enumerate(self.work):
            running += w
            cum[i + 1] = running
        self.cum = cum

    def _out(self, ordinal: int) -> SimulationError:
        return SimulationError(
            f"模拟需要 {date.fromordinal(ordinal).isoformat()} 的工作日信息，但工作日历只覆盖到 "
            f"{date.fromordinal(self.last).isoformat()}；请缩短 --days 或更早的 --start，或补充 config/holidays.yaml")

    def is_working(self, ordinal: int) -> bool:
        i = ordinal - self.base
        if not 0 <= i < len(self.work):
            raise self._out(ordinal)
        return self.work[i] == 1

    def nth_after(self, ordinal: int, n: int) -> int:
        """``WD#n after d`` with no paused dates; n = 0 gives the date itself."""
        if n == 0:
            return ordinal
        i = ordinal - self.base
        if not -1 <= i < len(self.work):
            raise self._out(ordinal)
        k = self.cum[i + 1] + n
        if k > len(self.ords):
            raise self._out(self.last + 1)
        return self.ords[k - 1]

    def nth_after_paused(self, ordinal: int, n: int, paused: list[tuple[int, int]],
                         open_from: int | None = None) -> int | None:
        """``WD#n after d`` skipping paused dates.

        ``paused`` holds (d0, d1) ordinal pairs covering (d0, d1]; a pause not yet ended covers every
        date after ``open_from``, so a day beyond it is unknown (None), as docs/rules.md says.
        """
        if not paused:
            result = self.nth_after(ordinal, n)
        else:
            count = 0
            day = ordinal
            while count < n:
                day = self.nth_after(day, 1)
                if not any(d0 < day <= d1 for d0, d1 in paused):
                    count += 1
            result = day
        if open_from is not None and result > open_from:
            return None
        return result

    def working_days_between(self, a: int, b: int) -> int:
        """Working days d with a < d <= b."""
        if b <= a:
            return 0
        return self.cum[b - self.base + 1] - self.cum[a - self.base + 1]

    def working_days_in(self, first: int, last: int) -> list[int]:
        """Working-day ordinals in [first, last]."""
        lo = bisect_right(self.ords, first - 1)
        hi = bisect_right(self.ords, last)
        return self.ords[lo:hi]
