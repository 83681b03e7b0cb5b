"""The working-day calendar (工作日历): every time limit in the rules counts working days.

China moves weekends around long holidays (调休), so "Monday to Friday" is wrong several times a
year. The maintained ``chinesecalendar`` library is the source of truth; ``config/holidays.yaml``
fills the years it does not cover yet (cases accepted in November run into the next year before the
library knows it). A date outside both is never guessed silently: it raises ``CalendarError``, or,
when the caller opts into ``fallback="weekends"``, is counted Monday–Friday with a WARNING.

The engine asks these questions about ten times per event at 100,000 events/s, so the whole
calendar is flattened once into per-day arrays over date ordinals: a working-day flag, a cumulative
working-day count and the sorted list of working-day ordinals. Every unpaused query is then an index
or a bisect; the library is only called while building.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import chinese_calendar
import yaml

from schemas.events import CHINA_TZ

__all__ = [
    "CHINA_TZ",
    "DEFAULT_OVERRIDES",
    "CalendarConfigError",
    "CalendarError",
    "Source",
    "WorkCalendar",
]

log = logging.getLogger(__name__)

DEFAULT_OVERRIDES = Path(__file__).resolve().parent.parent / "config" / "holidays.yaml"

Source = Literal["library", "override", "fallback"]
"""Who decided whether a day is a working day: chinesecalendar, the override file, or Mon–Fri."""

_DAY = timedelta(days=1)
_SECONDS_PER_DAY = 86400
_CHINA_EPOCH = datetime(1970, 1, 1, tzinfo=CHINA_TZ)
_CHINA_EPOCH_ORD = date(1970, 1, 1).toordinal()

# Year states inside the precomputed span.
_OK, _MISSING, _PROVISIONAL, _FALLBACK = 0, 1, 2, 3


class CalendarError(ValueError):
    """A date no calendar knows; counting it as Monday–Friday could misstate a legal deadline."""

    def __init__(self, day: date, covered: Sequence[int]) -> None:
        self.day = day
        self.covered = tuple(covered)
        super().__init__(
            f"{day.isoformat()} is outside every known working-day calendar "
            f"(covered years: {_describe_years(self.covered)}); add the year to config/holidays.yaml "
            f"or upgrade chinesecalendar"
        )


class CalendarConfigError(ValueError):
    """The override file is unreadable or inconsistent; loading it anyway would skew deadlines."""


def _describe_years(years: Sequence[int]) -> str:
    if not years:
        return "none"
    runs: list[str] = []
    start = prev = years[0]
    for y in (*years[1:], None):
        if y is not None and y == prev + 1:
            prev = y
            continue
        runs.append(str(start) if start == prev else f"{start}–{prev}")
        if y is not None:
            start = prev = y
    return ", ".join(runs)


# ----------------------------------------------------------------------------------------- loading


class _YearOverride:
    __slots__ = ("year", "holidays", "workdays", "status", "source")

    def __init__(
        self, year: int, holidays: frozenset[date], workdays: frozenset[date], status: str, source: str
    ):
        self.year = year
        self.holidays = holidays
        self.workdays = workdays
        self.status = status
        self.source = source


def _parse_days(path: Path, year: int, key: str, raw: Any) -> frozenset[date]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise CalendarConfigError(f"{path}: years.{year}.{key} must be a list of dates or ranges")
    out: set[date] = set()
    for item in raw:
        where = f"{path}: years.{year}.{key}: {item!r}"
        try:
            if isinstance(item, datetime):
                raise TypeError
            if isinstance(item, date):
                days = [item]
            elif isinstance(item, str) and ".." in item:
                a_txt, b_txt = (p.strip() for p in item.split("..", 1))
                a, b = date.fromisoformat(a_txt), date.fromisoformat(b_txt)
                if b < a:
                    raise CalendarConfigError(f"{where}: range ends before it starts")
                days = [a + timedelta(days=i) for i in range((b - a).days + 1)]
            elif isinstance(item, str):
                days = [date.fromisoformat(item.strip())]
            else:
                raise TypeError
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CalendarConfigError):
                raise
            raise CalendarConfigError(f"{where}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
        for d in days:
            if d.year != year:
                raise CalendarConfigError(f"{where}: {d.isoformat()} is not in {year}")
        out.update(days)
    return frozenset(out)


def _load_overrides(path: Path) -> dict[int, _YearOverride]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise CalendarConfigError(f"{path}: cannot read the calendar override file: {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for dates like 2027-02-30
        raise CalendarConfigError(f"{path}: {exc} (dates must be YYYY-MM-DD)") from None
    if not isinstance(data, dict) or not isinstance(data.get("years", {}), dict):
        raise CalendarConfigError(f"{path}: expected a mapping with a 'years' mapping")
    result: dict[int, _YearOverride] = {}
    for key, entry in (data.get("years") or {}).items():
        try:
            year = int(key)
        except (TypeError, ValueError):
            raise CalendarConfigError(f"{path}: year key {key!r} is not a year") from None
        if not isinstance(entry, dict):
            raise CalendarConfigError(f"{path}: years.{year} must be a mapping")
        unknown = set(entry) - {"holidays", "workdays", "status", "source"}
        if unknown:
            raise CalendarConfigError(f"{path}: years.{year}: unknown keys {sorted(unknown)}")
        status = entry.get("status")
        if status not in ("official", "provisional"):
            raise CalendarConfigError(f"{path}: years.{year}.status must be 'official' or 'provisional'")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise CalendarConfigError(f"{path}: years.{year}.source is required (where the dates come from)")
        holidays = _parse_days(path, year, "holidays", entry.get("holidays"))
        workdays = _parse_days(path, year, "workdays", entry.get("workdays"))
        both = holidays & workdays
        if both:
            raise CalendarConfigError(
                f"{path}: years.{year}: {sorted(d.isoformat() for d in both)} listed as holiday and workday"
            )
        weekday_workdays = sorted(d.isoformat() for d in workdays if d.weekday() < 5)
        if weekday_workdays:
            raise CalendarConfigError(
                f"{path}: years.{year}.workdays {weekday_workdays} are Monday–Friday; "
                f"only weekend days can be make-up working days (调休上班)"
            )
        result[year] = _YearOverride(year, holidays, workdays, status, source)
    return result


def _library_years() -> tuple[int, ...]:
    """The years chinesecalendar answers for: the same bounds its own ``is_workday`` enforces."""
    if not chinese_calendar.holidays:
        return ()
    return tuple(range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1))


def _library_flags(year: int) -> bytes:
    """Reads the library's public tables directly: 365 ``is_workday`` calls per year cost ~15 ms."""
    holidays, workdays = chinese_calendar.holidays, chinese_calendar.workdays
    return bytes(
        1 if (d in workdays or (d.weekday() < 5 and d not in holidays)) else 0 for d in _days_of(year)
    )


# ------------------------------------------------------------------------------------------- span


class _Span:
    """Immutable per-day arrays over whole years ``lo..hi``; replaced, never mutated, when extended."""

    __slots__ = ("lo", "hi", "base", "ndays", "work", "cum", "ords", "state", "source")

    def __init__(
        self, lo: int, hi: int, year_flags: dict[int, bytes], state: dict[int, int], source: dict[int, Source]
    ):
        self.lo = lo
        self.hi = hi
        self.base = date(lo, 1, 1).toordinal()
        self.work = b"".join(year_flags[y] for y in range(lo, hi + 1))
        self.ndays = len(self.work)
        cum = [0] * (self.ndays + 1)  # cum[i] = working days among span indices [0, i)
        ords: list[int] = []
        running = 0
        base = self.base
        for i, flag in enumerate(self.work):
            if flag:
                running += 1
                ords.append(base + i)
            cum[i + 1] = running
        self.cum = cum
        self.ords = ords
        self.state = state
        self.source = source


def _weekend_flags(year: int) -> bytes:
    start = date(year, 1, 1)
    n = (date(year + 1, 1, 1) - start).days
    wd = start.weekday()
    return bytes(1 if (wd + i) % 7 < 5 else 0 for i in range(n))


def _days_of(year: int) -> Iterable[date]:
    d = date(year, 1, 1)
    while d.year == year:
        yield d
        d += _DAY


# --------------------------------------------------------------------------------------- calendar

_default_lock = threading.Lock()
_default_instance: WorkCalendar | None = None


class WorkCalendar:
    """Working days of mainland China government offices, by China date (UTC+8)."""

    def __init__(
        self,
        overrides_path: str | Path | None = DEFAULT_OVERRIDES,
        fallback: Literal["error", "weekends"] = "error",
    ) -> None:
        if fallback not in ("error", "weekends"):
            raise ValueError(f"fallback must be 'error' or 'weekends', not {fallback!r}")
        self.fallback: Literal["error", "weekends"] = fallback
        self.overrides_path = Path(overrides_path) if overrides_path is not None else None
        self._overrides = _load_overrides(self.overrides_path) if self.overrides_path is not None else {}
        self._library = frozenset(_library_years())
        for year, ov in sorted(self._overrides.items()):
            if year in self._library:
                level = logging.WARNING if ov.status == "provisional" else logging.INFO
                log.log(
                    level,
                    "calendar override for %d (%s) replaces chinesecalendar, which now covers that year; "
                    "consider removing it from %s",
                    year,
                    ov.status,
                    self.overrides_path,
                )
        self._covered = tuple(sorted(self._library | set(self._overrides)))
        self._lock = threading.Lock()
        self._warned: set[int] = set()
        self._year_info: dict[int, tuple[bytes, int, Source | None]] = {}
        if self._covered:
            self._span = self._build(self._covered[0], self._covered[-1])
        else:
            self._span = self._build(date.today().year, date.today().year)

    @classmethod
    def default(cls) -> WorkCalendar:
        """One shared instance with the shipped override file: building it probes the library."""
        global _default_instance
        inst = _default_instance
        if inst is None:
            with _default_lock:
                inst = _default_instance
                if inst is None:
                    inst = _default_instance = cls()
        return inst

    # -------------------------------------------------------------------------------- building

    def _flags_for(self, year: int) -> tuple[bytes, int, Source | None]:
        ov = self._overrides.get(year)
        if ov is not None:
            flags = bytes(
                1 if (d in ov.workdays or (d.weekday() < 5 and d not in ov.holidays)) else 0
                for d in _days_of(year)
            )
            return flags, (_PROVISIONAL if ov.status == "provisional" else _OK), "override"
        if year in self._library:
            flags = _library_flags(year)
            return flags, _OK, "library"
        if self.fallback == "weekends":
            return _weekend_flags(year), _FALLBACK, "fallback"
        return bytes(len(_weekend_flags(year))), _MISSING, None

    def _build(self, lo: int, hi: int) -> _Span:
        state: dict[int, int] = {}
        source: dict[int, Source] = {}
        for y in range(lo, hi + 1):
            info = self._year_info.get(y)
            if info is None:
                info = self._year_info[y] = self._flags_for(y)
            _, st, src = info
            state[y] = _OK if (st in (_PROVISIONAL, _FALLBACK) and y in self._warned) else st
            if src is not None:
                source[y] = src
        return _Span(lo, hi, {y: self._year_info[y][0] for y in range(lo, hi + 1)}, state, source)

    def _extend(self, year: int) -> _Span:
        """Grow the span to ``year`` (weekends fallback only): rare, so a full rebuild is fine."""
        with self._lock:
            span = self._span
            if span.lo <= year <= span.hi:
                return span
            span = self._build(min(span.lo, year), max(span.hi, year))
            self._span = span
            return span

    # ------------------------------------------------------------------------------- coverage

    @property
    def covered_years(self) -> range | tuple[int, ...]:
        """Years some real calendar (library or override file) knows; fallback years are not counted."""
        yrs = self._covered
        if yrs and yrs[-1] - yrs[0] + 1 == len(yrs):
            return range(yrs[0], yrs[-1] + 1)
        return yrs

    def _touch(self, first: date, last: date) -> _Span:
        """Make sure every year of ``first..last`` may be used; warn, extend or raise as configured."""
        span = self._span
        y0, y1 = first.year, last.year
        if span.lo <= y0 and y1 <= span.hi:
            state = span.state
            if state[y0] == _OK and (y0 == y1 or all(state[y] == _OK for y in range(y0 + 1, y1 + 1))):
                return span
        return self._touch_slow(first, last)

    def _touch_slow(self, first: date, last: date) -> _Span:
        span = self._span
        for y in range(first.year, last.year + 1):
            if not (span.lo <= y <= span.hi):
                if self.fallback != "weekends":
                    raise CalendarError(max(first, date(y, 1, 1)), self._covered)
                span = self._extend(y)
            st = span.state[y]
            if st == _MISSING:
                raise CalendarError(max(first, date(y, 1, 1)), self._covered)
            if st in (_PROVISIONAL, _FALLBACK):
                self._warn(y, st)
                span = self._span
        return span

    def _warn(self, year: int, st: int) -> None:
        with self._lock:
            if year in self._warned:
                return
            self._warned.add(year)
            span = self._span
            state = dict(span.state)
            state[year] = _OK
            span.state = state  # same arrays, only the warn-once marks change
        if st == _PROVISIONAL:
            ov = self._overrides[year]
            log.warning(
                "calendar year %d comes from a provisional entry in %s (statutory holidays only, "
                "调休 not yet published; source: %s); deadlines in %d may be off by a few days",
                year,
                self.overrides_path,
                ov.source,
                year,
            )
        else:
            log.warning("year %d not in any calendar; counting Monday–Friday only", year)

    def override_status(self, year: int) -> tuple[str, str] | None:
        """``(status, source)`` of the override entry for ``year``, so operators can see how firm it is."""
        ov = self._overrides.get(year)
        return None if ov is None else (ov.status, ov.source)

    def source_of(self, day: date) -> Source:
        """Which calendar decides ``day``: shown to operators so a surprising answer can be traced."""
        span = self._touch(day, day)
        return span.source[day.year]

    # -------------------------------------------------------------------------------- queries

    def is_working_day(self, day: date) -> bool:
        span = self._touch(day, day)
        return span.work[day.toordinal() - span.base] == 1

    def is_makeup_workday(self, day: date) -> bool:
        """A Saturday or Sunday worked to bridge a holiday (调休上班): users ask about these the most."""
        return day.weekday() >= 5 and self.is_working_day(day)

    def nth_working_day_after(
        self, day: date, n: int, paused: frozenset[date] | set[date] = frozenset()
    ) -> date:
        """The n-th working day strictly after ``day``, not counting paused dates (补正, 特别程序).

        Unpaused this is one bisect-free index into the sorted working-day ordinals. With pauses,
        the paused working days inside the tentative window are counted and the window widened by
        that many, until it stops growing: each paused date is looked at once.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return day
        start_ord = day.toordinal()
        result = self._nth_unpaused(day, start_ord, n)
        if not paused:
            return result
        pending = sorted(o for o in (p.toordinal() for p in paused) if o > start_ord)
        if not pending:
            return result
        i = 0
        skipped = 0
        npend = len(pending)
        while True:
            res_ord = result.toordinal()
            work = self._span.work
            base = self._span.base
            while i < npend and pending[i] <= res_ord:
                skipped += work[pending[i] - base]
                i += 1
            nxt = self._nth_unpaused(day, start_ord, n + skipped)
            if nxt == result:
                return result
            result = nxt

    def _nth_unpaused(self, day: date, start_ord: int, n: int) -> date:
        span = self._span
        while True:
            idx = start_ord - span.base  # may be -1 (31 Dec before the span) or below
            if idx < -1:
                span = self._touch(day + _DAY, day + _DAY)
                continue
            k = (span.cum[idx + 1] if idx < span.ndays else span.cum[span.ndays]) + n
            if idx >= span.ndays or k > len(span.ords):
                # Ran past the last known year.
                nxt_year = max(span.hi + 1, day.year)
                if self.fallback != "weekends":
                    raise CalendarError(max(date(nxt_year, 1, 1), day + _DAY), self._covered)
                span = self._extend(nxt_year)
                continue
            result = date.fromordinal(span.ords[k - 1])
            span2 = self._touch(day + _DAY, result)
            if span2 is span:
                return result
            span = span2  # the span grew or a year was first used; recompute on the current arrays

    def working_days_between(self, a: date, b: date) -> int:
        """Working days d with a < d <= b: how many of a limit's days are used up."""
        if b <= a:
            return 0
        span = self._touch(a + _DAY, b)
        base = span.base
        return span.cum[b.toordinal() - base + 1] - span.cum[max(a.toordinal() - base + 1, 0)]

    # --------------------------------------------------------------------------------- instants

    @staticmethod
    def start_of_day(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)

    @staticmethod
    def end_of_day(day: date) -> datetime:
        """00:00 of the next day rather than 23:59:59, so "before the end" is a plain ``<``."""
        return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ) + _DAY

    @staticmethod
    def china_date(instant: datetime) -> date:
        """The China date of an instant; a naive time is refused because its zone is a guess."""
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(
                f"naive datetime {instant.isoformat()} has no UTC offset; cannot place it in China time"
            )
        return instant.astimezone(CHINA_TZ).date()

    def add_working_days(self, instant: datetime, n: int) -> datetime:
        return self.end_of_day(self.nth_working_day_after(self.china_date(instant), n))

    def working_time_between(
        self,
        start: datetime,
        end: datetime,
        paused: Sequence[tuple[datetime, datetime]] = (),
    ) -> float:
        """Working time used, in days, for "% of time used" displays: smooth where day counts jump.

        Each working day counts as its full 24 hours in China time; the union of the paused
        intervals is taken out. Computed from the cumulative array, so it costs O(pauses).
        """
        s_pos = _china_position(start)
        e_pos = _china_position(end)
        if e_pos <= s_pos:
            return 0.0
        intervals: list[tuple[tuple[int, float], tuple[int, float]]] = []
        for p0, p1 in paused:
            a, b = max(_china_position(p0), s_pos), min(_china_position(p1), e_pos)
            if a < b:
                intervals.append((a, b))
        intervals.sort()
        keep: list[tuple[tuple[int, float], tuple[int, float]]] = []
        cur = s_pos
        for a, b in intervals:
            if a > cur:
                keep.append((cur, a))
            if b > cur:
                cur = b
        if cur < e_pos:
            keep.append((cur, e_pos))
        if not keep:
            return 0.0
        first_day = date.fromordinal(s_pos[0])
        last_ord = e_pos[0] if e_pos[1] > 0 else e_pos[0] - 1
        span = self._touch(first_day, date.fromordinal(max(last_ord, s_pos[0])))
        total = 0.0
        for a, b in keep:
            total += _working_seconds_to(span, b) - _working_seconds_to(span, a)
        return total / _SECONDS_PER_DAY


def _china_position(instant: datetime) -> tuple[int, float]:
    """(China date ordinal, seconds into that day): exact day split without float drift."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            f"naive datetime {instant.isoformat()} has no UTC offset; cannot place it in China time"
        )
    delta = instant - _CHINA_EPOCH
    return delta.days + _CHINA_EPOCH_ORD, delta.seconds + delta.microseconds / 1e6


def _working_seconds_to(span: _Span, pos: tuple[int, float]) -> float:
    """Working seconds from the span's start up to the instant ``pos``."""
    idx = pos[0] - span.base
    secs = span.cum[idx] * float(_SECONDS_PER_DAY)
    if pos[1] > 0 and span.work[idx]:
        secs += pos[1]
    return secs
