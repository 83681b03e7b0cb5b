"""The live driver's parts without a broker: deadline index, partition clocks, record layouts, settings,
the commit order, HTTP body splitting, and the Supervisor on the real engine against the embedded runner."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from esup.commands.publish import case_key
from rules.engine import Engine
from rules.findings import Finding, encode_finding
from schemas.events import InvalidEvent, read_events
from streams.clock import PartitionClocks, parse_clock
from streams.commit import CommitPipeline
from streams.deadlines import DeadlineIndex
from streams.ingest_http import split_body
from streams.records import (
    HEADER_SIZE,
    RawEvent,
    RecordError,
    WarehouseBatch,
    decode_batch,
    encode_batch,
    encode_record,
    record_header,
    record_state,
    split_batch,
)
from streams.settings import SettingsError, load_settings
from streams.supervise import Effects, InRecord, Supervisor, validate
from tests.engine_kit import CaseScript, engine

CHINA = "+08:00"


# ---------------------------------------------------------------------------------------- index
def test_deadline_index_pops_only_current_entries_in_order() -> None:
    ix = DeadlineIndex()
    ix.rebuild(0, [("a", 30.0), ("b", 10.0), ("c", None)])
    ix.set(0, "b", 20.0)  # moved: the entry at 10 is stale now
    ix.set(0, "d", 5.0)
    ix.set(1, "x", 1.0)  # partition 1 is not owned: ignored
    assert ix.pending() == 3 and ix.next_at(0) == 5.0
    assert ix.pop_due(0, 15.0) == ["d"]
    assert ix.pop_due(0, 25.0) == ["b"]
    assert ix.pending(0) == 1
    ix.set(0, "a", None)
    assert ix.pop_due(0, 1e9) == [] and ix.next_at(0) is None
    ix.drop(0)
    assert ix.partitions() == []


def test_deadline_index_compacts_stale_entries() -> None:
    ix = DeadlineIndex()
    ix.rebuild(3, [])
    for i in range(5000):
        ix.set(3, "one", float(i))
    assert len(ix._heaps[3]) < 2 * 1 + 1024 + 2
    assert ix.pop_due(3, 1e9) == ["one"]


# ---------------------------------------------------------------------------------------- clock
def test_partition_clock_follows_watermark_while_behind_and_wall_once_caught_up() -> None:
    clocks = PartitionClocks(lambda: 1000.0, lateness=10.0)
    assert clocks.time_for(0, highwater=5) is None  # nothing applied, behind: nothing known
    clocks.next_offset[0] = 3  # applied up to offset 2 (streams.order.ReadOrder.admit)
    clocks.observe(0, occurred=500.0)
    t = clocks.time_for(0, highwater=5)
    assert t is not None and t < 490.0 and t > 489.99  # strictly before watermark - lateness
    clocks.next_offset[0] = 5
    clocks.observe(0, occurred=400.0)  # late event: the watermark does not go back
    assert clocks.caught_up(0, 5)
    assert clocks.time_for(0, highwater=5) == 990.0  # caught up: wall clock - lateness
    clocks.next_offset[1] = 7  # positioned at 7 (streams.order.ReadOrder.start)
    assert clocks.time_for(1, highwater=7) == 990.0 and clocks.time_for(1, highwater=8) is None
    clocks.forget([0, 1])
    assert clocks.time_for(0, highwater=5) is None


def test_parse_clock_forms() -> None:
    frozen = parse_clock("2026-11-01T00:00:00+08:00")
    assert frozen() == datetime(2026, 10, 31, 16, tzinfo=UTC).timestamp()
    now = datetime.now(UTC).timestamp()
    assert abs(parse_clock("wall")() - now) < 5
    assert abs(parse_clock("wall+3600")() - now - 3600) < 5
    assert abs(parse_clock("wall-60")() - now + 60) < 5
    for bad in ("tomorrow", "wall+x", "2026-11-01T00:00:00"):
        with pytest.raises(ValueError):
            parse_clock(bad)


# ---------------------------------------------------------------------------------------- records
def test_state_record_header_round_trip() -> None:
    rec = encode_record(7, 1234.5, b"state-bytes")
    assert record_header(rec) == (7, 1234.5) and record_state(rec) == b"state-bytes"
    assert record_header(encode_record(0, None, b""))[1] is None
    assert len(encode_record(1, None, b"x")) == HEADER_SIZE + 1
    with pytest.raises(RecordError):
        record_header(b"\x02" + encode_record(1, 2.0, b"")[1:])
    with pytest.raises(RecordError):
        record_header(b"abc")


def _finding(i: int) -> Finding:
    return Finding(finding_id=f"f{i}", rule="FEE.NO_BASIS", severity="red", case_id=f"C{i}", item_code=None,
                   department=None, window=None, region_code=None, officer_id=None,
                   fired_at=datetime(2026, 10, 9, tzinfo=UTC), message="无依据收费" * 10, basis="b",
                   catalog_version="v", occurrence=f"e{i}")


def test_warehouse_batch_split_stays_under_limit_and_round_trips() -> None:
    batch = WarehouseBatch(events=[RawEvent(b"x" * 900, 1_700_000_000_000 + i, 3, i) for i in range(500)],
                           findings=[_finding(i) for i in range(50)], facts=[], notes=[])
    pieces = split_batch(batch, 64 * 1024)
    assert len(pieces) > 1
    assert all(len(encode_batch(p)) < 64 * 1024 for p in pieces)
    back = [decode_batch(encode_batch(p)) for p in pieces]
    assert [e.offset for p in back for e in p.events] == list(range(500))
    assert [f.finding_id for p in back for f in p.findings] == [f"f{i}" for i in range(50)]
    assert back[0].events[0].received_at == datetime.fromtimestamp(1_700_000_000, UTC)


# ---------------------------------------------------------------------------------------- settings
def test_settings_precedence_file_env_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yaml"
    cfg.write_text("partitions: 4\nbroker: kafka://file:9092\ntopics:\n  events: ev\nclock: wall+60\n")
    s = load_settings(cfg, env={"ESUP_BROKER": "env:1,env:2", "CLICKHOUSE_URL": "clickhouse://h/db",
                                "ESUP_METRICS_PORT": "0", "ESUP_TICK_SECONDS": "0.25"}, partitions=6)
    assert s.partitions == 6 and s.topics.events == "ev" and s.topics.dlq == "case-events-dlq"
    assert s.bootstrap_servers == ["env:1", "env:2"] and s.faust_broker == "kafka://env:1;kafka://env:2"
    assert s.warehouse == "clickhouse://h/db" and s.metrics_port == 0 and s.tick_seconds == 0.25
    assert s.changelog_topic == "esup-case_state-changelog"
    assert load_settings(None, env={"ESUP_WORKER_CONFIG": str(cfg)}).partitions == 4


def test_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yaml"
    cfg.write_text("partitons: 16\n")
    with pytest.raises(SettingsError, match="partitons"):
        load_settings(cfg, env={})
    with pytest.raises(SettingsError, match="partitions"):
        load_settings(None, env={"ESUP_PARTITIONS": "0"})
    with pytest.raises(SettingsError, match="clock"):
        load_settings(None, env={"ESUP_CLOCK": "yesterday"})
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "missing.yaml", env={})


def test_publish_key_is_the_case_number_or_nothing() -> None:
    assert case_key(b'{"case_id": "610113-1", "x": 1}') == b"610113-1"
    assert case_key(b'{"case_id": 5}') is None
    assert case_key(b"not json") is None
    assert case_key(b'{"event_id": "e"}') is None


def test_http_body_split_json_array_and_lines() -> None:
    one = b'{"a": 1}'
    assert split_body(one, "application/json") == [(1, one)]
    assert split_body(b'[{"a": 1}, {"b": [2, 3]}]', "application/json") == [(0, b'{"a": 1}'), (1, b'{"b": [2, 3]}')]
    assert split_body(b'{\n  "a": 1\n}\n', "application/json") == [(1, b'{\n  "a": 1\n}')]
    lines = b'{"a": 1}\n\n{"b": 2}\nbroken\n'
    assert split_body(lines, "application/x-ndjson") == [(1, b'{"a": 1}'), (3, b'{"b": 2}'), (4, b"broken")]
    assert split_body(lines, "application/json") == [(1, b'{"a": 1}'), (3, b'{"b": 2}'), (4, b"broken")]
    assert split_body(b"  ", "application/json") == []


# ---------------------------------------------------------------------------------------- commit order
class FakeOutput:
    def __init__(self, fail_states: bool = False) -> None:
        self.log: list[str] = []
        self.fail_states = fail_states

    async def send_outputs(self, eff: Effects) -> list[asyncio.Future]:
        fut = asyncio.get_running_loop().create_future()
        tag = eff.findings[0].finding_id if eff.findings else "-"

        def done() -> None:
            self.log.append(f"effects {tag}")
            fut.set_result(None)

        asyncio.get_running_loop().call_later(0.02 if tag == "f1" else 0.001, done)
        return [fut]

    async def send_states(self, states: dict) -> list[asyncio.Future]:
        if self.fail_states:
            raise OSError("broker gone")
        self.log.append(f"states {sorted(states)}")
        return []


def test_commit_pipeline_orders_effects_state_offsets_and_drops_moved_partitions() -> None:
    async def scenario() -> list[str]:
        out = FakeOutput()
        owned = {0}
        pipe = CommitPipeline(out, lambda: owned, max_inflight=2)  # type: ignore[arg-type]
        released: list[str] = []

        async def release(tag: str, dropped: set[int]) -> None:
            released.append(tag)
            out.log.append(f"release {tag} {sorted(dropped)}")

        for i, parts in ((1, {0: {b"k": b"v"}}), (2, {0: {b"k": b"v2"}, 1: {b"j": b"w"}})):
            await pipe.reserve()
            pipe.submit(Effects(findings=[_finding(i)], states=parts),
                        lambda dropped, i=i: release(f"b{i}", dropped))
        assert await pipe.drain(5)
        assert pipe.dropped_states == 1  # partition 1 is not owned: its state is the new owner's to write
        return out.log

    log = asyncio.run(scenario())
    # batch 2's effects may land first, but its state waits for batch 1's, and offsets come last
    assert log.index("states [0]") > log.index("effects f1")
    # batch 2's state for partition 1 was dropped: its release is told so (its events stay unacknowledged)
    assert log[-4:] == ["states [0]", "release b1 []", "states [0]", "release b2 [1]"]


def test_commit_pipeline_stops_releasing_after_a_failed_write() -> None:
    async def scenario() -> tuple[list[str], BaseException | None]:
        out = FakeOutput(fail_states=True)
        errors: list[BaseException] = []

        async def on_error(exc: BaseException) -> None:
            errors.append(exc)

        pipe = CommitPipeline(out, lambda: {0}, on_error=on_error)  # type: ignore[arg-type]
        released: list[str] = []

        async def release(dropped: set[int]) -> None:
            released.append("x")

        await pipe.reserve()
        pipe.submit(Effects(findings=[_finding(3)], states={0: {b"k": b"v"}}), release)
        await pipe.drain(5)
        with pytest.raises(RuntimeError, match="stopped"):
            await pipe.reserve()
        return released, errors[0] if errors else None

    released, err = asyncio.run(scenario())
    assert released == [] and isinstance(err, OSError)


# ---------------------------------------------------------------------------------------- supervisor
def _records(lines: list[bytes], partitions: int = 4) -> list[InRecord]:
    from kafka.partitioner.default import murmur2

    out = []
    offsets = [0] * partitions
    for i, line in enumerate(lines):
        key = case_key(line)
        p = (murmur2(key) & 0x7FFFFFFF) % partitions if key else 0
        out.append(InRecord(key, line, p, offsets[p], 1_790_000_000_000 + i))
        offsets[p] += 1
    return out


def _sim_lines(tmp_path: Path, cases: int = 150, bad_rate: float = 0.01) -> list[bytes]:
    from simulator import write

    out = tmp_path / "sim.jsonl"
    write(out, cases=cases, days=12, seed=3, bad_rate=bad_rate)
    return [line for line in out.read_bytes().splitlines() if line.strip()]


def test_validate_splits_events_from_dead_letters() -> None:
    recs = [InRecord(b"k", b'{"event_type": "submitted"}', 0, 0, 0), InRecord(None, b"{", 0, 1, 0)]
    good, bad = validate(recs)
    assert good == [] and [r.offset for r, _ in bad] == [0, 1]
    assert "schema" in bad[0][1].error and "malformed" in bad[1][1].error


def test_supervisor_matches_embedded_runner_on_a_simulation(tmp_path: Path) -> None:
    """Batches in arrival order, the ticker between them on watermark clocks, then caught up: same findings."""
    from streams.embedded import run_events

    lines = _sim_lines(tmp_path)
    recs = _records(lines)
    items = list(read_events(lines))
    valid = [e for e in items if not isinstance(e, InvalidEvent)]
    lateness = 0.0
    high = float("-inf")
    for ev in valid:
        t = ev.occurred_at.timestamp()
        lateness = max(lateness, high - t)
        high = max(high, t)
    lateness += 1.0
    now = high + 40 * 86400.0
    eng = Engine.default()
    table: dict[bytes, bytes] = {}
    sup = Supervisor(eng, table, owned=lambda: {0, 1, 2, 3}, clocks=PartitionClocks(lambda: now, lateness))
    sup.assign(range(4))
    for p in range(4):
        sup.start_reading(p, 0)
    ends = {p: 1 + max(r.offset for r in recs if r.partition == p) for p in range(4)}
    found: list[Finding] = []
    dead = 0
    for i in range(0, len(recs), 97):
        eff = sup.apply(recs[i:i + 97])
        found += eff.findings
        dead += len(eff.dead)
        found += sup.advance(lambda p: ends[p] + 1).findings  # everything still "behind": watermark clocks
    found += sup.advance(lambda p: ends[p]).findings  # caught up: the clock is now - lateness
    until = datetime.fromtimestamp(now - lateness, UTC)
    expected = run_events(eng, valid, until=until).findings
    assert dead == len(items) - len(valid) > 0
    assert sorted(f.finding_id for f in found) == sorted(f.finding_id for f in expected)
    assert len({f.finding_id for f in found}) == len(found)  # each raised once
    # every state record says where it lives and when its next deadline is
    for value in table.values():
        p, due = record_header(value)
        assert p in range(4) and (due is None or due > now - lateness)


def test_new_owner_fires_moved_deadlines_once(tmp_path: Path) -> None:
    """A second Supervisor built from the first one's table (a rebalance) fires what is pending, not what fired."""
    case = CaseScript("M1").accepted_on("2026-03-02 09:00")
    lines = [msgspec.json.encode(ev) for ev in case.events]
    recs = [InRecord(b"M1", line, 2, i, 0) for i, line in enumerate(lines)]
    eng = engine()
    table: dict[bytes, bytes] = {}
    t_mid = datetime.fromisoformat("2026-03-09T12:00:00+08:00").timestamp()  # after the warning, before overdue
    a = Supervisor(eng, table, owned=lambda: {2}, clocks=PartitionClocks(lambda: t_mid))
    a.assign([2])
    a.start_reading(2, 0)
    a.apply(recs)
    first = a.advance(lambda p: len(recs)).findings
    assert [f.rule for f in first] == ["TIMEOUT.PROMISED_WARNING"]
    a.revoke([2])
    t_late = datetime.fromisoformat("2026-04-30T00:00:00+08:00").timestamp()
    b = Supervisor(eng, table, owned=lambda: {2}, clocks=PartitionClocks(lambda: t_late))
    b.assign([2])
    b.start_reading(2, len(recs))
    assert b.index.pending(2) == 1
    later = b.advance(lambda p: len(recs)).findings
    rules = sorted(f.rule for f in later)
    assert "TIMEOUT.PROMISED_WARNING" not in rules and "TIMEOUT.PROMISED_OVERDUE" in rules
    assert not {f.finding_id for f in later} & {f.finding_id for f in first}


def test_supervisor_skips_partitions_it_does_not_own_and_keeps_raw_events() -> None:
    eng = engine()
    sup = Supervisor(eng, {}, owned=lambda: {0}, clocks=PartitionClocks(lambda: 0.0))
    sup.assign([0])
    sup.start_reading(0, 0)
    line = msgspec.json.encode(CaseScript("K1").e("submitted", "2026-03-02 09:00").events[0])
    eff = sup.apply([InRecord(b"K1", line, 0, 0, 5), InRecord(b"K2", line, 1, 0, 5),
                     InRecord(None, b"garbage", 0, 1, 6)])
    assert eff.admission.passed == {"moved": 1} and eff.admission.held == {1} and eff.events == 1
    assert len(eff.dead) == 1
    assert [e.offset for e in eff.warehouse[0].events] == [0, 1] and 1 not in eff.warehouse
    assert len(eff.warehouse[0].facts) == 1 and list(eff.states) == [0]


def test_finding_json_on_the_topic_is_the_contract_encoding() -> None:
    f = _finding(1)
    doc = json.loads(encode_finding(f))
    assert doc["finding_id"] == "f1" and doc["fired_at"].startswith("2026-10-09")
    assert not math.isnan(len(doc))


# ---------------------------------------------------------------------------------------- consumer
def test_resumed_delivery_continues_and_cancels_like_its_own_task() -> None:
    """A delivery that had to wait is resumed where it stopped; a cancellation reaches it."""
    from streams.consumer import _continue

    async def scenario() -> tuple[object, list[str], list[str]]:
        log: list[str] = []

        async def deliver(gate: asyncio.Event) -> int:
            log.append("start")
            try:
                await gate.wait()
                await asyncio.sleep(0)
                log.append("delivered")
                return 42
            except asyncio.CancelledError:
                log.append("cancelled")
                raise

        gate = asyncio.Event()
        coro = deliver(gate)
        task = asyncio.ensure_future(_continue(coro, coro.send(None)))
        await asyncio.sleep(0.01)
        gate.set()
        result = await task
        first = list(log)
        log.clear()
        coro = deliver(asyncio.Event())
        task = asyncio.ensure_future(_continue(coro, coro.send(None)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return result, first, log

    result, first, second = asyncio.run(scenario())
    assert result == 42 and first == ["start", "delivered"] and second == ["start", "cancelled"]


def test_the_example_worker_configuration_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "streams" / "worker.example.yaml"
    s = load_settings(example, env={})
    assert s.partitions == 16 and s.replication == 3 and len(s.bootstrap_servers) == 3



def _approval_records(case_id: str = "G1") -> list[InRecord]:
    """A promised case (T-PROM5) that goes through its four steps, then is decided and completed."""
    case = CaseScript(case_id).accepted_on("2026-03-02 09:00")
    for n, step in enumerate(["受理", "审查", "审核", "批准"]):
        case.e("step_completed", f"2026-03-03 09:{10 * (n + 1)}", step=step, officer_id=f"A{n + 1}")
    case.e("decided", "2026-03-04 10:00", outcome="approved").e("completed", "2026-03-04 11:00")
    return [InRecord(case_id.encode(), msgspec.json.encode(ev), 0, i, 0) for i, ev in enumerate(case.events)]


def test_supervisor_applies_a_partition_in_offset_order_and_reads_a_gap_again() -> None:
    """Records Faust fetched and dropped leave a gap: what comes after it waits, and the gap is read again.

    Applied past the gap, the decision would move the partition's clock to its end: the ticker would
    report the missing review (审查) as a skipped step before it arrived."""
    recs = _approval_records()
    end = len(recs)
    later = datetime(2026, 4, 1, tzinfo=UTC).timestamp()
    sup = Supervisor(engine(), {}, owned=lambda: {0}, clocks=PartitionClocks(lambda: later))
    sup.assign([0])
    sup.start_reading(0, 0)
    first = sup.apply(recs[:3] + recs[4:])  # offset 3 (审查) never arrived
    adm = first.admission
    assert adm.rewind == {0: 3} and adm.passed == {"gap": end - 4} and adm.held == set(range(3, end - 1))
    assert [e.offset for e in first.warehouse[0].events] == [0, 1, 2] and first.events == 3
    assert not sup.advance(lambda p: end).findings  # behind: the clock stays at what was applied
    again = sup.apply(recs[2:])  # read again from the gap, with one record before it
    assert again.admission.held == {0} and again.admission.passed == {"reread": 1} and not again.admission.rewind
    assert [e.offset for e in again.warehouse[0].events] == list(range(3, end))
    fired = [f.rule for f in first.findings + again.findings + sup.advance(lambda p: end).findings]
    assert "PROCEDURE.SKIPPED_STEP" not in fired and "PROCEDURE.NOT_ACCEPTED" not in fired, fired


def test_supervisor_applies_nothing_of_a_partition_before_the_consumer_is_positioned() -> None:
    """Records delivered between an assignment and Faust's seek to the committed offsets come again
    after it; applied from an unknown position they could skip records or repeat out of order."""
    recs = _approval_records()
    sup = Supervisor(engine(), {}, owned=lambda: {0}, clocks=PartitionClocks(lambda: 0.0))
    sup.assign([0])
    early = sup.apply(recs[2:])
    assert early.events == 0 and early.admission.passed == {"unpositioned": len(recs) - 2}
    assert not early.warehouse and early.admission.held == set(range(len(recs) - 2)) and not early.admission.rewind
    sup.start_reading(0, 0)
    assert sup.apply(recs).events == len(recs)
