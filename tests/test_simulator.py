"""The traffic simulator: deterministic, contract-valid, realistic, and honest about its ground truth.

The truth file is only useful if it is exactly right, so besides the shape of the output these tests
check the simulator's own reading of docs/rules.md (``simulator.oracle``) on hand-worked cases, check
that no normal case would ever fire, and compare with the engine when it is importable.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import jsonschema
import pytest

from rules.calendar import WorkCalendar
from rules.catalog import load_catalog
from rules.config import RuleConfig, load_rule_config
from schemas.events import CHINA_TZ, InvalidEvent, decode_event
from simulator import simulate
from simulator.oracle import expected
from simulator.timeline import DayTable, china_ord, day_end, day_start, second_of_day
from simulator.traffic import PEvent

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "case_event.schema.json"
RULES_DOC = ROOT / "docs" / "rules.md"
MINI = Path(__file__).parent / "fixtures" / "mini_catalog.yaml"


def run(cases: int, days: int, seed: int, **kw: object) -> tuple[list[bytes], list[dict]]:
    """Events and truth of a run whose planner kept every normal case clean and every injection on target."""
    sim = simulate(cases, days, seed, **kw)  # type: ignore[arg-type]
    lines = list(sim.lines())
    assert sim.summary.normal_cases_firing == 0
    assert sim.summary.missed_injections == 0
    return lines, sim.truth


@pytest.fixture(scope="module")
def thousand() -> tuple[list[bytes], list[dict]]:
    return run(1000, 30, 42, centers=2)


@pytest.fixture(scope="module")
def two_thousand() -> tuple[list[bytes], list[dict]]:
    return run(2000, 45, 7)


def rule_codes() -> list[str]:
    """Every rule code named in a table row of docs/rules.md."""
    return sorted(set(re.findall(r"^\| `([A-Z]+\.[A-Z_]+)`", RULES_DOC.read_text(encoding="utf-8"), re.M)))


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes() -> None:
    a_lines, a_truth = run(400, 20, 99, centers=2, bad_rate=0.01)
    b_lines, b_truth = run(400, 20, 99, centers=2, bad_rate=0.01)
    assert b"".join(a_lines) == b"".join(b_lines)
    assert json.dumps(a_truth, ensure_ascii=False) == json.dumps(b_truth, ensure_ascii=False)


def test_different_seed_gives_different_output() -> None:
    a_lines, _ = run(400, 20, 1)
    b_lines, _ = run(400, 20, 2)
    assert b"".join(a_lines) != b"".join(b_lines)


def test_write_produces_the_same_files_as_the_iterator(tmp_path: Path) -> None:
    from simulator import write

    out, truth = tmp_path / "e.jsonl", tmp_path / "t.jsonl"
    summary = write(out, truth, cases=300, days=15, seed=5)
    lines, rows = run(300, 15, 5)
    assert out.read_bytes() == b"".join(lines)
    assert [json.loads(x) for x in truth.read_text(encoding="utf-8").splitlines()] == rows
    assert summary.cases == 300 and summary.events == len(lines)


# ---------------------------------------------------------------------------------- the contract


@pytest.mark.skipif(not SCHEMA.exists(), reason="schemas/case_event.schema.json is not written yet")
def test_every_line_validates_against_the_json_schema_and_the_decoder(thousand) -> None:
    lines, _ = thousand
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for n, raw in enumerate(lines, start=1):
        errors = list(validator.iter_errors(json.loads(raw)))
        assert not errors, f"line {n}: {errors[0].message}"
        ev = decode_event(raw, position=n)
        assert not isinstance(ev, InvalidEvent), ev.describe()


def test_every_line_decodes_and_is_one_line(thousand) -> None:
    lines, _ = thousand
    for n, raw in enumerate(lines, start=1):
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        assert not isinstance(decode_event(raw.strip(), position=n), InvalidEvent)


def test_malformed_lines_are_rejected_and_listed_in_the_truth() -> None:
    lines, truth = run(800, 20, 3, bad_rate=0.02)
    bad = {row["line"] for row in truth if row.get("kind") == "malformed"}
    assert len(bad) > 50
    assert all(set(row) == {"line", "kind"} for row in truth if "line" in row)
    for n, raw in enumerate(lines, start=1):
        ev = decode_event(raw.strip(), position=n)
        assert isinstance(ev, InvalidEvent) == (n in bad), f"line {n}: {raw[:120]!r}"
    # The malformed lines are extra: the valid stream is the same as without them.
    clean, clean_truth = run(800, 20, 3)
    assert [x for n, x in enumerate(lines, start=1) if n not in bad] == clean
    assert [r for r in truth if "case_id" in r] == clean_truth


# ---------------------------------------------------------------------------------- realism


def _events(lines: list[bytes]) -> list[dict]:
    return [json.loads(x) for x in lines]


def test_arrivals_on_working_days_in_office_hours(thousand) -> None:
    cal = WorkCalendar.default()
    subs = [e for e in _events(thousand[0]) if e["event_type"] == "submitted"]
    assert len({e["case_id"] for e in subs}) == 1000
    for e in subs:
        t = datetime.fromisoformat(e["occurred_at"]).astimezone(CHINA_TZ)
        assert cal.is_working_day(t.date()), e
        minute = t.hour * 60 + t.minute
        assert 8 * 60 + 30 <= minute < 12 * 60 or 13 * 60 + 30 <= minute < 17 * 60 + 30, e


def test_traffic_looks_like_a_service_center(two_thousand) -> None:
    events = _events(two_thousand[0])
    catalog = load_catalog()
    first: dict[str, dict] = {}
    for e in events:
        if e["event_type"] == "submitted":
            first[e["case_id"]] = e
    kinds = Counter(catalog.item(e["item_code"]).kind for e in first.values())
    assert 0.55 <= kinds["on_the_spot"] / len(first) <= 0.75  # 即办件 are the majority
    for e in first.values():
        a = e["applicant"]
        assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", a["name"])
        assert re.fullmatch(r"\d{17}[\dX]", a["id_number"])
        assert re.fullmatch(r"1[3-9]\d{9}", a["phone"])
        assert re.fullmatch(r"\d{6}", e["region_code"])
    types = Counter(e["event_type"] for e in events)
    for t in ("supplement_requested", "suspended", "resumed", "fee_paid", "fee_refunded", "decided", "completed",
              "delivered", "rated", "complaint_filed", "complaint_resolved", "intake_rejected", "withdrawn"):
        assert types[t] > 0, t
    levels = Counter(e["level"] for e in events if e["event_type"] == "rated")
    assert sum(levels[x] for x in (3, 4, 5)) / sum(levels.values()) > 0.97
    channels = Counter(e["channel"] for e in events if e["event_type"] == "fee_paid")
    assert channels["bank"] + channels["online"] > 0.95 * sum(channels.values())
    assert all(re.fullmatch(r"OF-[A-Z0-9]+-\d{2}", e["officer_id"]) for e in events
               if e["event_type"] == "step_completed")
    suspended = [e for e in events if e["event_type"] == "suspended"]
    assert all(e["planned_days"] >= 1 for e in suspended)
    # Duplicates repeat the same line; a few events are written out of event-time order.
    ids = Counter(e["event_id"] for e in events)
    dup = [i for i, n in ids.items() if n > 1]
    assert dup and len(dup) < 0.02 * len(ids)
    occurred = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert any(b < a for a, b in zip(occurred, occurred[1:], strict=False))
    recorded = [datetime.fromisoformat(e["recorded_at"]) for e in events if e["event_id"] not in dup]
    assert sum(b < a for a, b in zip(recorded, recorded[1:], strict=False)) == 0  # file ordered by recorded time


def test_several_centers_have_their_own_region_codes(thousand) -> None:
    regions = Counter(e["region_code"] for e in _events(thousand[0]) if e["event_type"] == "submitted")
    assert len(regions) == 2 and min(regions.values()) > 200


# ---------------------------------------------------------------------------------- ground truth


def test_every_rule_code_is_injected(two_thousand) -> None:
    _, truth = two_thousand
    codes = rule_codes()
    assert len(codes) >= 27
    assert set(codes) <= {row["rule"] for row in truth if "rule" in row}


def test_violation_rate_is_the_share_of_cases_with_one_injection(two_thousand) -> None:
    _, truth = two_thousand
    cases = {row["case_id"] for row in truth if "case_id" in row}
    assert len(cases) == 100  # 5 % of 2,000
    kinds = {}
    for row in truth:
        if "case_id" in row:
            assert kinds.setdefault(row["case_id"], row["injected"]) == row["injected"]


def test_rows_are_sorted_and_unique(two_thousand) -> None:
    _, truth = two_thousand
    rows = [(r["case_id"], r["rule"]) for r in truth if "case_id" in r]
    assert rows == sorted(set(rows))


# ---------------------------------------------------------------------------------- the oracle


def _at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ).timestamp())


def _day(text: str) -> int:
    return date.fromisoformat(text).toordinal()


def _case(*spec: tuple) -> list[PEvent]:
    out = []
    for typ, when, *fields in spec:
        out.append(PEvent(_at(when), typ, "OF-T-01", "test", dict(fields[0]) if fields else {}, 5))
    return out


@pytest.fixture(scope="module")
def mini():
    return load_catalog(MINI)


@pytest.fixture(scope="module")
def tab() -> DayTable:
    return DayTable(WorkCalendar.default(), date(2026, 1, 1))


def _when(found: dict[str, int]) -> dict[str, str]:
    return {r: datetime.fromtimestamp(t, CHINA_TZ).strftime("%Y-%m-%d %H:%M") for r, t in found.items()}


def test_oracle_two_supplements_across_spring_festival(mini, tab) -> None:
    # 5 promised working days from Tue 02-10; pauses (02-11, 02-12] and (02-13, 02-24]; 02-14 is a make-up
    # Saturday inside the second pause. Unpaused days: 02-11, 02-13, 02-25, 02-26, 02-27.
    evs = _case(("submitted", "2026-02-10 10:00", {"item_code": "T-PROM5"}), ("accepted", "2026-02-10 10:01"),
                ("supplement_requested", "2026-02-11 10:00"), ("supplement_received", "2026-02-12 15:00"),
                ("supplement_requested", "2026-02-13 09:00"), ("supplement_received", "2026-02-24 10:00"))
    found = _when(expected(evs, mini.item("T-PROM5"), RuleConfig(), tab))
    assert found["PROCEDURE.REPEATED_SUPPLEMENT"] == "2026-02-13 09:00"
    assert found["TIMEOUT.PROMISED_WARNING"] == "2026-02-27 00:00"
    assert found["TIMEOUT.PROMISED_OVERDUE"] == "2026-02-28 00:00"
    assert "TIMEOUT.STEP_OVERDUE" not in found  # 受理 never done: the 审查 limit never starts


def test_oracle_make_up_sunday_and_the_warning_day(mini, tab) -> None:
    # Accepted Fri 09-18; Sun 09-20 is a make-up working day: #1 09-20 … #5 09-24, warning at start of #5.
    on_time = _case(("submitted", "2026-09-18 10:00"), ("accepted", "2026-09-18 10:01"),
                    ("completed", "2026-09-23 16:00"))
    assert "TIMEOUT.PROMISED_WARNING" not in expected(on_time, mini.item("T-PROM5"), RuleConfig(), tab)
    late = _case(("submitted", "2026-09-18 10:00"), ("accepted", "2026-09-18 10:01"), ("completed", "2026-09-28 10:00"))
    found = _when(expected(late, mini.item("T-PROM5"), RuleConfig(), tab))
    assert found["TIMEOUT.PROMISED_WARNING"] == "2026-09-24 00:00"
    assert found["TIMEOUT.PROMISED_OVERDUE"] == "2026-09-25 00:00"
    assert "TIMEOUT.STATUTORY_OVERDUE" not in found


def test_oracle_late_acceptance_moves_the_clock_start_back(mini, tab) -> None:
    # Submitted Mon 11-02, accepted 11-11 (after WD#5 = 11-09): S = 11-02 (第32条). Promised 5 days: overdue
    # at end of 11-09 — already past when the acceptance arrives, so it fires at that instant.
    evs = _case(("submitted", "2026-11-02 10:00"), ("accepted", "2026-11-11 10:00"), ("completed", "2026-11-11 15:00"))
    found = _when(expected(evs, mini.item("T-PROM5"), RuleConfig(), tab))
    assert found["TIMEOUT.INTAKE_OVERDUE"] == "2026-11-10 00:00"
    assert found["TIMEOUT.PROMISED_OVERDUE"] == "2026-11-10 00:00"
    assert found["TIMEOUT.PROMISED_WARNING"] == "2026-11-09 00:00"


def test_oracle_terminal_events_satisfy_the_intake_limit(mini, tab) -> None:
    # docs/rules.md: completed, withdrawn and intake_rejected stop every TIMEOUT.* rule.
    evs = _case(("submitted", "2026-11-02 10:00"), ("step_completed", "2026-11-02 10:10", {"step": "受理"}),
                ("decided", "2026-11-02 10:20", {"outcome": "approved"}), ("completed", "2026-11-02 10:30"))
    found = expected(evs, mini.item("T-SPOT"), RuleConfig(), tab)
    assert "PROCEDURE.NOT_ACCEPTED" in found and "TIMEOUT.INTAKE_OVERDUE" not in found


def test_oracle_suspension_counts_every_working_day(mini, tab) -> None:
    evs = _case(("submitted", "2026-11-02 09:00"), ("accepted", "2026-11-02 09:05"),
                ("suspended", "2026-11-02 10:00", {"procedure": "专家评审", "planned_days": 3}),
                ("resumed", "2026-11-06 10:00"))
    found = _when(expected(evs, mini.item("T-PROM5"), RuleConfig(), tab))
    assert found["TIMEOUT.SUSPENSION_OVERRUN"] == "2026-11-06 00:00"  # WD#3 after 11-02 is 11-05


def test_day_table_agrees_with_the_calendar(tab) -> None:
    cal = WorkCalendar.default()
    rng = random.Random(4)
    for _ in range(300):
        d = date(2026, 1, 1).toordinal() + rng.randrange(360)
        n = rng.randint(1, 25)
        assert tab.nth_after(d, n) == cal.nth_working_day_after(date.fromordinal(d), n).toordinal()
        p0 = d + rng.randrange(10)
        p1 = p0 + rng.randrange(1, 12)
        paused = frozenset(date.fromordinal(o) for o in range(p0 + 1, p1 + 1))
        want = cal.nth_working_day_after(date.fromordinal(d), n, paused).toordinal()
        assert tab.nth_after_paused(d, n, [(p0, p1)]) == want
    assert day_end(_day("2026-10-08")) - day_start(_day("2026-10-08")) == 86400
    assert china_ord(_at("2026-10-08 23:59")) == _day("2026-10-08")
    assert second_of_day(_at("2026-10-08 08:30")) == 8 * 3600 + 1800


def test_a_catalog_and_thresholds_other_than_the_shipped_ones(mini) -> None:
    cfg = RuleConfig(intake_days=3, complaint_days=3, bad_rating_days=5, warning_fraction=0.6)
    lines, truth = run(1500, 30, 12, catalog=mini, config=cfg)
    assert {json.loads(x)["item_code"] for x in lines if b'"submitted"' in x} <= {"T-PROM5", "T-PROM1", "T-SPOT"}
    assert {r["rule"] for r in truth} >= {"QUALITY.COMPLAINT_OVERDUE", "FEE.CASH_AT_WINDOW", "PROCEDURE.SAME_OFFICER"}


# ---------------------------------------------------------------------------------- the engine


def compare_with_engine(lines: list[bytes], truth: list[dict]) -> None:
    """(case, rule) of the engine's findings must equal (case, rule) of the truth, rule by rule."""
    engine_mod = pytest.importorskip("rules.engine")
    embedded = pytest.importorskip("streams.embedded")
    events = [ev for ev in (decode_event(x.strip()) for x in lines) if not isinstance(ev, InvalidEvent)]
    engine = engine_mod.Engine(load_catalog(), WorkCalendar.default(), load_rule_config())
    result = embedded.run_events(engine, events)  # clock runs to the last event, as `esup run` does
    found = {(f.case_id, f.rule) for f in result.findings}
    want = {(r["case_id"], r["rule"]) for r in truth if "case_id" in r}
    for rule in sorted({r for _, r in found | want}):
        extra = sorted(x for x in found - want if x[1] == rule)
        missing = sorted(x for x in want - found if x[1] == rule)
        assert not extra and not missing, f"{rule}: engine also found {extra[:5]}, missed {missing[:5]}"


def test_engine_findings_equal_the_truth(two_thousand) -> None:
    """The acceptance criterion in miniature."""
    compare_with_engine(*two_thousand)


def test_engine_agrees_on_a_window_too_short_for_open_cases() -> None:
    """Three days of arrivals: deadlines of cases left open mostly fall after the last event and must
    be left out of the truth; those that do fall before it must be in."""
    compare_with_engine(*run(300, 3, 8, start=date(2026, 11, 2), violation_rate=0.3, bad_rate=0.01))


# ---------------------------------------------------------------------------------- benchmark


def test_bench_simulate_reports_its_speed() -> None:
    from bench.simulate import bench_simulate

    result = bench_simulate(events=20_000)
    assert result["events"] >= 20_000 and result["seconds"] > 0 and result["events_per_second"] > 1000
