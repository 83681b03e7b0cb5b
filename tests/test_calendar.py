"""The working-day calendar against real 2025/2026 arrangements, the 2027 override and the edges.

Dates are asserted exactly: a deadline one day off is a false alarm or a missed one.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rules.calendar import (
    CHINA_TZ,
    DEFAULT_OVERRIDES,
    CalendarConfigError,
    CalendarError,
    WorkCalendar,
)

D = date.fromisoformat


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar()


def china(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHINA_TZ)  # type: ignore[misc]


def write_overrides(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "holidays.yaml"
    path.write_text(body, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------- real calendars


def test_covered_years_span_library_and_override(cal: WorkCalendar) -> None:
    assert cal.covered_years == range(2004, 2028)
    assert CHINA_TZ.utcoffset(None) == timedelta(hours=8)


@pytest.mark.parametrize(
    "day, working",
    [
        # 2025 Spring Festival: 01-28..02-04 off, Sunday 01-26 and Saturday 02-08 worked.
        ("2025-01-26", True),
        ("2025-01-27", True),
        ("2025-01-28", False),
        ("2025-02-04", False),
        ("2025-02-05", True),
        ("2025-02-08", True),
        ("2025-02-09", False),
        # 2025 National Day + Mid-Autumn: 10-01..10-08 off, Sunday 09-28 and Saturday 10-11 worked.
        ("2025-09-28", True),
        ("2025-10-01", False),
        ("2025-10-06", False),
        ("2025-10-08", False),
        ("2025-10-09", True),
        ("2025-10-11", True),
        ("2025-10-12", False),
        # 2026 Spring Festival: 02-15..02-23 off, Saturdays 02-14 and 02-28 worked.
        ("2026-02-13", True),
        ("2026-02-14", True),
        ("2026-02-15", False),
        ("2026-02-17", False),
        ("2026-02-23", False),
        ("2026-02-24", True),
        ("2026-02-28", True),
        # 2026 Mid-Autumn 09-25..27 and National Day 10-01..07; Sunday 09-20, Saturday 10-10 worked.
        ("2026-09-20", True),
        ("2026-09-25", False),
        ("2026-10-01", False),
        ("2026-10-07", False),
        ("2026-10-08", True),
        ("2026-10-10", True),
        # Ordinary days.
        ("2026-11-23", True),
        ("2026-11-21", False),
        ("2026-11-22", False),
    ],
)
def test_real_2025_2026(cal: WorkCalendar, day: str, working: bool) -> None:
    assert cal.is_working_day(D(day)) is working
    assert cal.source_of(D(day)) == "library"


def test_matches_chinesecalendar_on_every_covered_day(cal: WorkCalendar) -> None:
    d = date(2004, 1, 1)
    while d.year <= 2026:
        assert cal.is_working_day(d) is chinese_calendar.is_workday(d), d
        d += timedelta(days=1)


def test_makeup_workday(cal: WorkCalendar) -> None:
    assert cal.is_makeup_workday(D("2026-02-14"))
    assert cal.is_makeup_workday(D("2026-09-20"))
    assert not cal.is_makeup_workday(D("2026-02-13"))  # ordinary Friday
    assert not cal.is_makeup_workday(D("2026-02-21"))  # Saturday inside the holiday


# ------------------------------------------------------------------------------------ 2027 override


def test_2027_from_provisional_override(cal: WorkCalendar) -> None:
    assert cal.is_working_day(D("2027-02-08")) is False  # 春节 初三, Monday
    assert cal.is_working_day(D("2027-02-05")) is False  # 除夕, Friday
    assert cal.is_working_day(D("2027-02-09")) is True  # Tuesday after
    assert cal.is_working_day(D("2027-03-03")) is True  # ordinary Wednesday
    assert cal.is_working_day(D("2027-03-06")) is False  # ordinary Saturday
    assert cal.is_working_day(D("2027-01-01")) is False  # 元旦
    assert cal.is_working_day(D("2027-04-05")) is False  # 清明
    assert cal.is_working_day(D("2027-06-09")) is False  # 端午
    assert cal.is_working_day(D("2027-09-15")) is False  # 中秋
    assert cal.is_working_day(D("2027-10-01")) is False  # 国庆
    assert cal.is_working_day(D("2027-10-04")) is True  # no invented bridging days
    assert cal.source_of(D("2027-02-08")) == "override"
    assert cal.override_status(2027) is not None
    assert cal.override_status(2027)[0] == "provisional"  # type: ignore[index]


def test_shipped_file_marks_2027_provisional() -> None:
    text = DEFAULT_OVERRIDES.read_text(encoding="utf-8")
    assert "status: provisional" in text


def test_provisional_year_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    c = WorkCalendar()
    with caplog.at_level(logging.WARNING, logger="rules.calendar"):
        assert c.is_working_day(D("2026-11-23"))
        assert not caplog.records  # 2027 not used yet
        c.is_working_day(D("2027-02-08"))
        c.is_working_day(D("2027-02-09"))
        c.nth_working_day_after(D("2026-12-30"), 5)
        c.working_days_between(D("2026-12-01"), D("2027-03-01"))
    provisional = [r for r in caplog.records if "provisional" in r.getMessage()]
    assert len(provisional) == 1
    assert provisional[0].levelno == logging.WARNING
    assert "2027" in provisional[0].getMessage()


def test_nth_across_new_year_into_override(cal: WorkCalendar) -> None:
    # 12-31 Thu (1); 2027-01-01 元旦; weekend; 01-04 Mon (2).
    assert cal.nth_working_day_after(D("2026-12-30"), 1) == D("2026-12-31")
    assert cal.nth_working_day_after(D("2026-12-30"), 2) == D("2027-01-04")
    # Spring Festival 2027: 02-04 Thu (1), 02-05..08 off, 02-09 Tue (2).
    assert cal.nth_working_day_after(D("2027-02-03"), 2) == D("2027-02-09")


def test_override_wins_over_library(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_overrides(
        tmp_path,
        """
years:
  2026:
    status: official
    source: test
    holidays: ["2026-11-23..2026-11-24"]
    workdays: [2026-11-21]
""",
    )
    c = WorkCalendar(path)
    assert c.is_working_day(D("2026-11-23")) is False
    assert c.is_working_day(D("2026-11-24")) is False
    assert c.is_working_day(D("2026-11-21")) is True
    # The override replaces the whole year: the library's 2026 Spring Festival is gone.
    assert c.is_working_day(D("2026-02-16")) is True
    assert c.is_working_day(D("2026-02-14")) is False
    assert c.source_of(D("2026-11-23")) == "override"
    assert c.source_of(D("2025-11-24")) == "library"
    # 2027 is no longer known at all.
    assert c.covered_years == range(2004, 2027)


def test_no_overrides(tmp_path: Path) -> None:
    c = WorkCalendar(None)
    assert c.covered_years == range(2004, 2027)
    with pytest.raises(CalendarError):
        c.is_working_day(D("2027-02-08"))


@pytest.mark.parametrize(
    "body, message",
    [
        ("years:\n  2027:\n    status: maybe\n    source: x\n", "status"),
        ("years:\n  2027:\n    status: official\n", "source"),
        ("years:\n  2027:\n    status: official\n    source: x\n    holidays: [2026-12-31]\n", "not in 2027"),
        ("years:\n  2027:\n    status: official\n    source: x\n    workdays: [2027-03-03]\n", "Monday"),
        (
            "years:\n  2027:\n    status: official\n    source: x\n    holidays: [2027-02-06]\n    workdays: [2027-02-06]\n",
            "holiday and workday",
        ),
        ("years:\n  2027:\n    status: official\n    source: x\n    holidays: [2027-02-30]\n", "YYYY-MM-DD"),
        (
            "years:\n  2027:\n    status: official\n    source: x\n    holidays: ['2027-02-08..2027-02-05']\n",
            "ends before",
        ),
        ("years:\n  2027:\n    status: official\n    source: x\n    extra: 1\n", "unknown keys"),
        ("years: [1, 2]\n", "mapping"),
    ],
)
def test_bad_override_file(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(CalendarConfigError, match=message):
        WorkCalendar(write_overrides(tmp_path, body))


def test_missing_override_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarConfigError, match="cannot read"):
        WorkCalendar(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------- beyond coverage


def test_error_fallback_names_date_and_years(cal: WorkCalendar) -> None:
    with pytest.raises(CalendarError) as info:
        cal.is_working_day(D("2029-03-01"))
    assert info.value.day == D("2029-03-01")
    assert "2029-03-01" in str(info.value)
    assert "2004–2027" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(CalendarError, match="2003-12-31"):
        cal.is_working_day(D("2003-12-31"))


def test_error_fallback_when_counting_runs_past_coverage(cal: WorkCalendar) -> None:
    assert cal.nth_working_day_after(D("2027-12-30"), 1) == D("2027-12-31")
    with pytest.raises(CalendarError, match="2028-01-01"):
        cal.nth_working_day_after(D("2027-12-30"), 2)
    with pytest.raises(CalendarError, match="2028-01-01"):
        cal.working_days_between(D("2027-12-01"), D("2028-01-10"))
    with pytest.raises(CalendarError, match="2028-01-01"):
        cal.add_working_days(china(2027, 12, 30, 10), 2)
    with pytest.raises(CalendarError, match="2028-03-02"):
        cal.nth_working_day_after(D("2028-03-01"), 1)
    # Starting just before the first covered year only needs the covered days.
    assert cal.working_days_between(D("2003-12-31"), D("2004-01-05")) == 2  # 01-02, 01-05
    assert cal.nth_working_day_after(D("2003-12-31"), 1) == D("2004-01-02")


def test_gap_year_between_known_years(tmp_path: Path) -> None:
    path = write_overrides(
        tmp_path,
        "years:\n  2029:\n    status: official\n    source: test\n    holidays: [2029-01-01]\n",
    )
    c = WorkCalendar(path)
    assert c.covered_years == (*range(2004, 2027), 2029)
    assert c.is_working_day(D("2029-01-01")) is False
    assert c.is_working_day(D("2029-01-02")) is True
    with pytest.raises(CalendarError, match="2027-01-01"):
        c.nth_working_day_after(D("2026-12-30"), 2)
    with pytest.raises(CalendarError, match="2027-01-01"):
        c.working_days_between(D("2026-12-30"), D("2029-01-05"))
    with pytest.raises(CalendarError, match="2028-05-05"):
        c.is_working_day(D("2028-05-05"))


def test_weekends_fallback_warns_once_per_year(caplog: pytest.LogCaptureFixture) -> None:
    c = WorkCalendar(fallback="weekends")
    with caplog.at_level(logging.WARNING, logger="rules.calendar"):
        assert c.is_working_day(D("2029-03-01")) is True  # Thursday
        assert c.is_working_day(D("2029-03-03")) is False  # Saturday
        assert c.is_working_day(D("2029-10-01")) is True  # no holidays known: Monday counts
        assert c.source_of(D("2029-03-01")) == "fallback"
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert msgs.count("year 2029 not in any calendar; counting Monday–Friday only") == 1
    assert c.covered_years == range(2004, 2028)  # fallback years are not "covered"


def test_weekends_fallback_extends_counting(caplog: pytest.LogCaptureFixture) -> None:
    c = WorkCalendar(fallback="weekends")
    with caplog.at_level(logging.WARNING, logger="rules.calendar"):
        # 2027-12-31 Fri (1); 2028-01-01/02 weekend; 01-03 Mon (2).
        assert c.nth_working_day_after(D("2027-12-30"), 2) == D("2028-01-03")
        # A long run through two unknown years: 2028 and 2029 have 260 + 261 weekdays.
        assert c.working_days_between(D("2027-12-31"), D("2029-12-31")) == 521
        assert c.nth_working_day_after(D("2027-12-31"), 521) == D("2029-12-31")
        # Before the library's first year.
        assert c.is_working_day(D("2003-10-01")) is True
        assert c.working_days_between(D("2003-12-30"), D("2004-01-05")) == 3  # 12-31, 01-02, 01-05
    msgs = [r.getMessage() for r in caplog.records]
    for year in (2028, 2029, 2003):
        assert msgs.count(f"year {year} not in any calendar; counting Monday–Friday only") == 1
    # Known years are unaffected by the fallback.
    assert c.is_working_day(D("2026-02-14")) is True
    assert c.is_working_day(D("2027-02-08")) is False


def test_bad_fallback_value() -> None:
    with pytest.raises(ValueError, match="fallback"):
        WorkCalendar(fallback="guess")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ counting forward


def test_nth_across_spring_festival_2026(cal: WorkCalendar) -> None:
    start = D("2026-02-12")  # Thursday
    assert cal.nth_working_day_after(start, 0) == start
    assert cal.nth_working_day_after(start, 1) == D("2026-02-13")
    assert cal.nth_working_day_after(start, 2) == D("2026-02-14")  # make-up Saturday
    assert cal.nth_working_day_after(start, 3) == D("2026-02-24")  # after 02-15..23
    assert cal.nth_working_day_after(start, 5) == D("2026-02-26")
    assert cal.nth_working_day_after(start, 7) == D("2026-02-28")  # make-up Saturday
    assert cal.nth_working_day_after(start, 8) == D("2026-03-02")
    # Starting on a holiday counts from the next working day.
    assert cal.nth_working_day_after(D("2026-02-16"), 1) == D("2026-02-24")


def test_nth_across_spring_festival_2025(cal: WorkCalendar) -> None:
    start = D("2025-01-24")  # Friday
    assert cal.nth_working_day_after(start, 1) == D("2025-01-26")  # make-up Sunday
    assert cal.nth_working_day_after(start, 2) == D("2025-01-27")
    assert cal.nth_working_day_after(start, 3) == D("2025-02-05")  # after 01-28..02-04
    assert cal.nth_working_day_after(start, 5) == D("2025-02-07")
    assert cal.nth_working_day_after(start, 6) == D("2025-02-08")  # make-up Saturday


def test_nth_across_makeup_sunday_and_mid_autumn(cal: WorkCalendar) -> None:
    start = D("2026-09-18")  # Friday
    assert cal.nth_working_day_after(start, 1) == D("2026-09-20")  # make-up Sunday
    assert cal.nth_working_day_after(start, 5) == D("2026-09-24")
    assert cal.nth_working_day_after(start, 6) == D("2026-09-28")  # 09-25..27 Mid-Autumn
    assert cal.nth_working_day_after(start, 9) == D("2026-10-08")  # 10-01..07 National Day
    assert cal.nth_working_day_after(start, 11) == D("2026-10-10")  # make-up Saturday
    # The statutory 20 working days from acceptance on 2026-09-18.
    assert cal.nth_working_day_after(start, 20) == D("2026-10-22")


def test_nth_rejects_negative(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError):
        cal.nth_working_day_after(D("2026-11-23"), -1)


def test_paused_dates_are_skipped(cal: WorkCalendar) -> None:
    start = D("2026-11-20")  # Friday
    assert cal.nth_working_day_after(start, 3) == D("2026-11-25")
    # Two paused working days push the deadline two working days out.
    assert cal.nth_working_day_after(start, 3, frozenset({D("2026-11-24"), D("2026-11-25")})) == D(
        "2026-11-27"
    )
    # Paused weekend days change nothing; neither do paused days before the start.
    assert cal.nth_working_day_after(start, 3, {D("2026-11-21"), D("2026-11-22"), D("2026-11-10")}) == D(
        "2026-11-25"
    )
    # A pause that lands the candidate on another paused day keeps going.
    paused = {D("2026-11-23"), D("2026-11-24"), D("2026-11-25"), D("2026-11-26")}
    assert cal.nth_working_day_after(start, 1, paused) == D("2026-11-27")
    assert cal.nth_working_day_after(start, 2, paused) == D("2026-11-30")
    # A paused make-up Saturday is skipped like any other working day.
    assert cal.nth_working_day_after(D("2026-02-12"), 2, {D("2026-02-14")}) == D("2026-02-24")
    # n == 0 ignores pauses.
    assert cal.nth_working_day_after(start, 0, paused) == start


def test_paused_range_of_dates_like_a_supplement(cal: WorkCalendar) -> None:
    # Pause from D(t0)=2026-11-24 to D(t1)=2026-12-04 covers (11-24, 12-04] = 11-25..12-04.
    paused = {D("2026-11-24") + timedelta(days=i) for i in range(1, 11)}
    # Accepted 2026-11-20; 20 working days: 11-23, 11-24 (2), then from 12-07: 18 more.
    assert cal.nth_working_day_after(D("2026-11-20"), 20, paused) == D("2026-12-30")
    assert cal.nth_working_day_after(D("2026-11-20"), 20) == D("2026-12-18")


def test_working_days_between(cal: WorkCalendar) -> None:
    assert cal.working_days_between(D("2026-02-12"), D("2026-02-24")) == 3
    assert cal.working_days_between(D("2025-09-30"), D("2025-10-31")) == 18
    assert cal.working_days_between(D("2026-11-23"), D("2026-11-23")) == 0
    assert cal.working_days_between(D("2026-11-24"), D("2026-11-23")) == 0
    assert cal.working_days_between(D("2026-11-22"), D("2026-11-23")) == 1
    assert cal.working_days_between(D("2026-11-23"), D("2026-11-24")) == 1
    # 2026: 261 weekdays − 19 weekday holidays + 6 make-up weekend days.
    assert cal.working_days_between(D("2025-12-31"), D("2026-12-31")) == 248


def _naive_nth(cal: WorkCalendar, day: date, n: int, paused: set[date]) -> date:
    d = day
    while n > 0:
        d += timedelta(days=1)
        if cal.is_working_day(d) and d not in paused:
            n -= 1
    return d


@settings(max_examples=300, deadline=None)
@given(
    day=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 10, 1)),
    n=st.integers(min_value=0, max_value=40),
    paused_offsets=st.sets(st.integers(min_value=-5, max_value=60), max_size=25),
)
def test_nth_and_between_agree_with_day_by_day(day: date, n: int, paused_offsets: set[int]) -> None:
    cal = WorkCalendar.default()
    paused = {day + timedelta(days=o) for o in paused_offsets}
    assert cal.nth_working_day_after(day, n, paused) == _naive_nth(cal, day, n, paused)
    result = cal.nth_working_day_after(day, n)
    assert result == _naive_nth(cal, day, n, set())
    assert cal.working_days_between(day, result) == n


# ------------------------------------------------------------------------------------ instants


def test_start_and_end_of_day_are_aware(cal: WorkCalendar) -> None:
    end = cal.end_of_day(D("2026-02-24"))
    assert end == datetime(2026, 2, 25, tzinfo=CHINA_TZ)
    assert end.utcoffset() == timedelta(hours=8)
    assert end == datetime(2026, 2, 24, 16, tzinfo=UTC)
    start = cal.start_of_day(D("2026-02-24"))
    assert start == datetime(2026, 2, 24, tzinfo=CHINA_TZ)
    assert start.utcoffset() == timedelta(hours=8)
    assert cal.end_of_day(D("2026-12-31")) == datetime(2027, 1, 1, tzinfo=CHINA_TZ)


def test_add_working_days(cal: WorkCalendar) -> None:
    deadline = cal.add_working_days(china(2026, 2, 12, 15, 30), 3)
    assert deadline == datetime(2026, 2, 25, tzinfo=CHINA_TZ)
    assert deadline.utcoffset() == timedelta(hours=8)
    # 2026-02-12 20:00 UTC is already 02-13 in China: counting starts a day later.
    assert cal.add_working_days(datetime(2026, 2, 12, 20, tzinfo=UTC), 1) == china(2026, 2, 15)
    assert cal.add_working_days(datetime(2026, 2, 12, 15, tzinfo=UTC), 1) == china(2026, 2, 14)
    assert cal.add_working_days(china(2026, 11, 23, 9), 0) == china(2026, 11, 24)


def test_china_date_rejects_naive(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        cal.china_date(datetime(2026, 11, 23, 9))
    with pytest.raises(ValueError, match="naive"):
        cal.add_working_days(datetime(2026, 11, 23, 9), 1)
    with pytest.raises(ValueError, match="naive"):
        cal.working_time_between(datetime(2026, 11, 23, 9), china(2026, 11, 24))


def test_china_date_across_new_york_dst(cal: WorkCalendar) -> None:
    ny = ZoneInfo("America/New_York")  # DST began 2026-03-08 02:00 local: EST -5 -> EDT -4
    # Same wall clock 11:30, one day apart, lands on the same China date because the offset changed.
    assert cal.china_date(datetime(2026, 3, 7, 11, 30, tzinfo=ny)) == D("2026-03-08")  # 16:30Z -> 00:30+08
    assert cal.china_date(datetime(2026, 3, 8, 11, 30, tzinfo=ny)) == D("2026-03-08")  # 15:30Z -> 23:30+08
    assert cal.china_date(datetime(2026, 3, 8, 12, 30, tzinfo=ny)) == D("2026-03-09")  # 16:30Z -> 00:30+08


def test_china_date_across_berlin_dst(cal: WorkCalendar) -> None:
    berlin = ZoneInfo("Europe/Berlin")  # DST began 2026-03-29 02:00 local: CET +1 -> CEST +2
    assert cal.china_date(datetime(2026, 3, 28, 17, 30, tzinfo=berlin)) == D("2026-03-29")  # 16:30Z
    assert cal.china_date(datetime(2026, 3, 29, 17, 30, tzinfo=berlin)) == D("2026-03-29")  # 15:30Z
    assert cal.china_date(datetime(2026, 3, 29, 18, 30, tzinfo=berlin)) == D("2026-03-30")  # 16:30Z
    # Saturday 03-28 17:30 CET is already Sunday 03-29 in China; the next working day is Monday 03-30.
    assert cal.add_working_days(datetime(2026, 3, 28, 17, 30, tzinfo=berlin), 1) == china(2026, 3, 31)


def test_working_time_between(cal: WorkCalendar) -> None:
    start, end = china(2026, 2, 13, 12), china(2026, 2, 24, 6)
    # Half of Fri 02-13, all of make-up Sat 02-14, nothing for 02-15..23, a quarter of 02-24.
    assert cal.working_time_between(start, end) == pytest.approx(1.75)
    # Pause 06:00-18:00 on 02-14 takes half a day.
    paused = [(china(2026, 2, 14, 6), china(2026, 2, 14, 18))]
    assert cal.working_time_between(start, end, paused) == pytest.approx(1.25)
    # Overlapping pauses count once.
    overlapping = [
        (china(2026, 2, 14, 9), china(2026, 2, 14, 18)),
        (china(2026, 2, 14, 6), china(2026, 2, 14, 12)),
    ]
    assert cal.working_time_between(start, end, overlapping) == pytest.approx(1.25)
    # Paused time on holidays or outside [start, end) takes nothing away.
    outside = [(china(2026, 2, 16), china(2026, 2, 20)), (china(2026, 2, 1), china(2026, 2, 13, 12))]
    assert cal.working_time_between(start, end, outside) == pytest.approx(1.75)
    # A pause covering everything leaves nothing.
    assert cal.working_time_between(start, end, [(china(2026, 2, 1), china(2026, 3, 1))]) == 0.0
    # Other offsets are the same instants.
    assert cal.working_time_between(start.astimezone(UTC), end.astimezone(ZoneInfo("Europe/Berlin"))) == (
        pytest.approx(1.75)
    )
    assert cal.working_time_between(end, start) == 0.0
    # Whole days on an ordinary week: Mon 00:00 to next Mon 00:00 is 5 working days.
    assert cal.working_time_between(china(2026, 11, 23), china(2026, 11, 30)) == pytest.approx(5.0)
    # Ending exactly at midnight after the last covered day is fine.
    assert cal.working_time_between(china(2027, 12, 31), china(2028, 1, 1)) == pytest.approx(1.0)
    with pytest.raises(CalendarError):
        cal.working_time_between(china(2027, 12, 31), china(2028, 1, 1, 0, 0, 1))


def test_working_time_agrees_with_day_count(cal: WorkCalendar) -> None:
    a, b = D("2025-09-30"), D("2025-10-31")
    assert cal.working_time_between(cal.end_of_day(a), cal.end_of_day(b)) == pytest.approx(
        cal.working_days_between(a, b)
    )


# --------------------------------------------------------------------------------- shared / speed


def test_default_is_cached() -> None:
    assert WorkCalendar.default() is WorkCalendar.default()
    assert WorkCalendar.default().covered_years == range(2004, 2028)


def test_queries_are_fast(cal: WorkCalendar) -> None:
    days = [date(2025, 1, 1) + timedelta(days=i % 700) for i in range(100_000)]
    t0 = time.perf_counter()
    for d in days:
        cal.is_working_day(d)
        cal.nth_working_day_after(d, 20)
    elapsed = time.perf_counter() - t0
    # ~1 µs each on a laptop; generous so a loaded CI box does not flake.
    assert elapsed < 3.0, elapsed


# ------------------------------------------------------------------------------------------- CLI


def test_cli_check() -> None:
    from esup.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["calendar", "check", "2026-02-14"])
    assert res.exit_code == 0, res.output
    assert "调休上班" in res.output and "chinesecalendar" in res.output and "星期六" in res.output

    res = runner.invoke(app, ["calendar", "check", "2026-02-16"])
    assert res.exit_code == 0 and "休息日" in res.output

    res = runner.invoke(app, ["calendar", "check", "2026-11-23"])
    assert res.exit_code == 0 and "工作日" in res.output

    res = runner.invoke(app, ["calendar", "check", "2027-02-08"])
    assert res.exit_code == 0 and "休息日" in res.output and "覆盖文件" in res.output and "暂定" in res.output

    res = runner.invoke(app, ["calendar", "check", "2029-03-01"])
    assert res.exit_code == 0 and "工作日" in res.output and "兜底" in res.output

    res = runner.invoke(app, ["calendar", "check", "2029-03-01", "--strict"])
    assert res.exit_code == 1 and "不在任何已知工作日历中" in res.output

    res = runner.invoke(app, ["calendar", "check", "2026-13-01"])
    assert res.exit_code != 0 and "YYYY-MM-DD" in res.output


@settings(max_examples=300, deadline=None)
@given(t=st.floats(min_value=1.70e9, max_value=1.80e9), n=st.integers(min_value=0, max_value=60),
       pause=st.sampled_from([None, (2, 5), (0, 30), (3, None)]))
def test_clock_shortcut_equals_the_date_path(t: float, n: int, pause: tuple[int, int | None] | None) -> None:
    """``Clock.end_after`` (day numbers, memoised) answers what ``end_of(nth(china_date(t), n))`` does,
    with and without paused dates, on any instant of 2023–2027, both the first time and from the memo."""
    from rules.clock import Clock, PauseView, china_date, end_of, pause_view
    from rules.state import Derived, Pause

    clock = Clock(WorkCalendar(fallback="weekends"))
    pv: PauseView = pause_view(Derived())
    if pause is not None:
        start = t + pause[0] * 86400
        end = start + pause[1] * 86400 if pause[1] is not None else None
        pv = pause_view(Derived(pauses=(Pause(kind="supplement", start=start, end=end, eid="p"),)))
    day = clock.nth(china_date(t), n, pv)
    want = end_of(day) if day is not None else None
    assert clock.end_after(t, n, pv) == want
    assert clock.end_after(t, n, pv) == want  # memoised
    assert clock.working_at(t) == clock.is_working_day(china_date(t))
