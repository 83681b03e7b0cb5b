"""The live driver against a real Kafka-protocol broker (Tansu): topics, one worker end to end, the ticker
firing a deadline nobody sends an event for, and the HTTP ingest endpoint.

Workers run as ``esup worker`` processes with the test settings of ``tests/stream_servers.py``; findings
are compared with the embedded runner on the same lines and the same clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rules.engine import Engine
from rules.findings import decode_finding
from schemas.events import InvalidEvent, read_events
from streams.embedded import run_events
from streams.records import DLQ_REASON, DLQ_SOURCE
from streams.settings import load_settings
from streams.topics import TopicMismatch, declare_topics, topic_specs
from tests.stream_servers import (
    ESUP,
    WorkerProcess,
    free_port,
    kafka_broker,  # noqa: F401 - fixture
    publish,
    read_topic,
    stream_config,
    wait_for,
)

pytestmark = pytest.mark.server


def lateness_of(valid: list) -> float:
    """How far behind the latest event time seen so far any event of the file arrives (+1 s)."""
    high = float("-inf")
    late = 0.0
    for ev in valid:
        t = ev.occurred_at.timestamp()
        late = max(late, high - t)
        high = max(high, t)
    return late + 1.0


def simulate(path: Path, cases: int, days: int, seed: int, bad_rate: float = 0.0) -> list[bytes]:
    from simulator import write

    write(path, cases=cases, days=days, seed=seed, bad_rate=bad_rate)
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def test_topics_are_declared_co_partitioned_and_a_mismatch_is_refused(kafka_broker: str, tmp_path: Path) -> None:  # noqa: F811
    cfg = stream_config(tmp_path / "w.yaml", "tdecl", partitions=3)
    s = load_settings(cfg, env={"ESUP_BROKER": kafka_broker})
    created = declare_topics(s)
    assert set(created) == {sp.name for sp in topic_specs(s)}
    assert declare_topics(s) == []  # idempotent
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    try:
        got = {d.get("name") or d.get("topic"): len(d["partitions"]) for d in admin.describe_topics(created)}
    finally:
        admin.close()
    assert got[s.topics.events] == got[s.changelog_topic] == got[s.topics.findings] == 3
    assert got[s.leader_topic] == 1
    with pytest.raises(TopicMismatch, match="partition"):
        declare_topics(load_settings(cfg, env={"ESUP_BROKER": kafka_broker}, partitions=5))


def test_one_worker_supervises_dead_letters_stores_and_alerts(kafka_broker: str, tmp_path: Path) -> None:  # noqa: F811
    lines = simulate(tmp_path / "sim.jsonl", cases=150, days=12, seed=21, bad_rate=0.01)
    broken = [b'{"event_type": "accepted", "case_id": "X-1"}', b"{not json", b'{"event_id": "e-9", "case_id": 7}']
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"\n".join(lines + broken) + b"\n")
    items = list(read_events(lines + broken))
    valid = [e for e in items if not isinstance(e, InvalidEvent)]
    invalid_lines = [line for line, e in zip(lines + broken, items, strict=True) if isinstance(e, InvalidEvent)]
    late = lateness_of(valid)
    clock = max(e.occurred_at for e in valid) + timedelta(days=60)
    until = clock - timedelta(seconds=late)
    expected = run_events(Engine.default(), valid, until=until).findings

    cfg = stream_config(tmp_path / "w.yaml", "tone", partitions=4, standby_replicas=0)
    wh = tmp_path / "wh"
    worker = WorkerProcess("w1", tmp_path, cfg, {
        "ESUP_BROKER": kafka_broker, "CLICKHOUSE_URL": f"chdb://{wh}", "ESUP_CLOCK": clock.isoformat(),
        "ESUP_LATENESS_SECONDS": str(late), "ESUP_ALERTING": "true", "ESUP_ALERT_LOG": str(tmp_path / "alerts"),
        "ESUP_ALERT_OUTBOX": str(tmp_path / "outbox"), "ESUP_ALERT_TICK_SECONDS": "1"})
    sent = publish(feed, cfg, kafka_broker)
    assert sent["sent"] == len(lines) + len(broken)
    worker.start()
    try:
        def done() -> bool:
            return worker.applied() >= sent["sent"] and worker.stored("events") >= sent["sent"]

        wait_for(done, 120, "the worker to apply and store every record", on_timeout=worker.log_tail)
        findings = wait_for(
            lambda: (lambda fs: fs if {f.finding_id for f in fs} >= {f.finding_id for f in expected} else None)(
                [decode_finding(r.value) for r in read_topic(kafka_broker, "tone-findings")]),
            60, "every expected finding on the findings topic", on_timeout=worker.log_tail)
        assert {f.finding_id for f in findings} == {f.finding_id for f in expected}
        assert all(r.key == f.case_id.encode() for r, f in zip(read_topic(kafka_broker, "tone-findings"), findings,
                                                                 strict=True))
        dlq = read_topic(kafka_broker, "tone-case-events-dlq")
        assert sorted(r.value for r in dlq) == sorted(invalid_lines)  # original bytes, untouched
        for r in dlq:
            headers = dict(r.headers)
            assert headers[DLQ_REASON] and headers[DLQ_SOURCE].startswith(b"tone-case-events/")
        wait_for(lambda: list((tmp_path / "outbox").rglob("*.eml")), 60, "alert e-mails in the outbox",
                 on_timeout=worker.log_tail)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    from warehouse import open_warehouse

    store = open_warehouse(f"chdb://{wh}")
    try:
        n_events = store.query("SELECT count() AS n FROM events FINAL")[0]["n"]
        ids = {r["finding_id"] for r in store.query("SELECT finding_id FROM findings FINAL WHERE run_id = 'live'")}
        n_facts = store.query("SELECT count() AS n FROM case_facts FINAL")[0]["n"]
    finally:
        store.close()
    assert n_events == len(set(lines + broken))  # every distinct line once, valid or not
    assert ids == {f.finding_id for f in expected}
    assert n_facts == len({e.case_id for e in valid})


def test_records_dropped_between_fetch_and_delivery_are_read_again(kafka_broker: str, tmp_path: Path) -> None:  # noqa: F811
    """Faust can lose records it fetched (a rebalance, flow control, recovery) and not seek back: found by the
    SIGKILL test as a partition read to its end by the client and a third of the way by the worker, and as
    findings raised on cases whose earlier events never arrived. Injected here (``ESUP_FAILPOINT_DROP``):
    twenty records in the middle of input partition 1 (later records come: a gap), the tail of input
    partition 2 (nothing comes: a stall), and two warehouse batches (the sink agent reads in order too).
    Every record is applied exactly once, in order, every line stored, and the findings are the embedded
    runner's."""
    lines = simulate(tmp_path / "sim.jsonl", cases=80, days=12, seed=5)
    valid = [e for e in read_events(lines) if not isinstance(e, InvalidEvent)]
    late = lateness_of(valid)
    clock = max(e.occurred_at for e in valid) + timedelta(days=60)
    expected = run_events(Engine.default(), valid, until=clock - timedelta(seconds=late)).findings
    cfg = stream_config(tmp_path / "w.yaml", "tdrop", partitions=4, standby_replicas=0)
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"\n".join(lines) + b"\n")
    sent = publish(feed, cfg, kafka_broker)["sent"]
    worker = WorkerProcess("w1", tmp_path, cfg, {
        "ESUP_BROKER": kafka_broker, "CLICKHOUSE_URL": f"chdb://{tmp_path}/wh", "ESUP_CLOCK": clock.isoformat(),
        "ESUP_LATENESS_SECONDS": str(late), "ESUP_FAILPOINT_DROP": "1:20-39,2:30-,tdrop-warehouse-batches/0:1-2"})
    worker.start()
    try:
        wait_for(lambda: worker.applied() >= sent and worker.stored("events") >= sent, 120,
                 "the worker to apply and store every record", on_timeout=lambda: worker.log_tail() + worker.progress())
        findings = wait_for(
            lambda: (lambda fs: fs if {f.finding_id for f in fs} >= {f.finding_id for f in expected} else None)(
                [decode_finding(r.value) for r in read_topic(kafka_broker, "tdrop-findings")]),
            60, "every expected finding on the findings topic", on_timeout=worker.log_tail)
        time.sleep(2)  # anything applied twice would be counted by now
        m = worker.metrics()
        assert worker.applied() == sent  # each record once: nothing skipped, nothing applied again
        assert m.get('esup_stream_errors_total{kind="read_gap"}', 0) >= 1
        assert m.get('esup_stream_errors_total{kind="stalled_partition"}', 0) >= 1
        assert m.get('esup_stream_records_held_total{reason="gap",topic="tdrop-case-events"}', 0) >= 1
        assert {f.finding_id for f in findings} == {f.finding_id for f in expected}
    finally:
        assert worker.stop() == 0, worker.log_tail()
    log = worker.log_path.read_text()
    assert "fault injection" in log and "partition 1 of tdrop-case-events: reading again from offset 20 (read_gap)" in log
    assert "partition 2 of tdrop-case-events: reading again from offset 30 (stalled_partition)" in log
    # the sink's partition has a few batches only: a gap or a stall, depending on what follows the two
    assert "partition 0 of tdrop-warehouse-batches: reading again from offset 1 (" in log
    from warehouse import open_warehouse

    with open_warehouse(f"chdb://{tmp_path}/wh") as store:
        assert store.query("SELECT count() AS n FROM events FINAL")[0]["n"] == len(set(lines))


def test_ticker_fires_a_deadline_with_no_event_within_seconds(kafka_broker: str, tmp_path: Path) -> None:  # noqa: F811
    """A case accepted and then silent: its overdue finding comes from the ticker, seconds after the deadline."""
    engine = Engine.default()
    item = next(i for i in engine.catalogs.in_force(datetime(2026, 10, 12).date()).items if i.kind == "promised")
    docs = [{"event_id": f"T1-{n}", "event_type": typ, "case_id": "T1", "occurred_at": "2026-10-12T09:00:00+08:00",
             "source": "test", "item_code": item.code, "region_code": "610113"}
            for n, typ in enumerate(("submitted", "accepted"))]
    lines = [json.dumps(d, ensure_ascii=False).encode() for d in docs]
    events = [e for e in read_events(lines)]
    state = None
    for ev in events:
        state = engine.apply(state, ev).state
    fired = engine.advance(state, datetime(2027, 6, 1, tzinfo=UTC)).findings
    overdue = next(f for f in fired if f.rule == "TIMEOUT.PROMISED_OVERDUE")
    deadline = overdue.fired_at.timestamp()
    start_wall = time.time() + 25  # the worker needs ~15 s to join its group and restore
    offset = deadline - start_wall  # the worker's clock reaches the deadline 25 s from now
    cfg = stream_config(tmp_path / "w.yaml", "ttick", partitions=2, standby_replicas=0)
    worker = WorkerProcess("w1", tmp_path, cfg, {"ESUP_BROKER": kafka_broker, "CLICKHOUSE_URL": f"chdb://{tmp_path}/wh",
                                                 "ESUP_CLOCK": f"wall{offset:+.3f}", "ESUP_TICK_SECONDS": "0.5"})
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"\n".join(lines) + b"\n")
    publish(feed, cfg, kafka_broker)
    worker.start()
    try:
        def overdue_record():
            for r in read_topic(kafka_broker, "ttick-findings", timeout_ms=500):
                if decode_finding(r.value).rule == "TIMEOUT.PROMISED_OVERDUE":
                    return r
            return None

        rec = wait_for(overdue_record, 90, "the overdue finding", every=0.3, on_timeout=worker.log_tail)
        delay = rec.timestamp / 1000 - (deadline - offset)  # broker time of the finding - wall time of the deadline
        assert decode_finding(rec.value).finding_id == overdue.finding_id
        assert -0.5 < delay < 5.0, f"overdue finding {delay:.2f} s after its deadline"
    finally:
        worker.stop()


def _post(url: str, body: bytes, ctype: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_ingest_validates_each_event_and_publishes_the_valid_ones(kafka_broker: str, tmp_path: Path) -> None:  # noqa: F811
    cfg = stream_config(tmp_path / "w.yaml", "tingest", partitions=2)
    port = free_port()
    proc = subprocess.Popen([ESUP, "publish", "--serve", f"127.0.0.1:{port}", "--config", str(cfg)],
                            env={**os.environ, "ESUP_BROKER": kafka_broker}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/events"
    good = {"event_id": "H-1", "event_type": "submitted", "case_id": "H1", "occurred_at": "2026-10-12T09:00:00+08:00",
            "source": "vendor-x"}
    try:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(up, 30, "the ingest server")
        status, doc = _post(url, json.dumps(good).encode(), "application/json")
        assert (status, doc["accepted"], doc["rejected"]) == (200, 1, 0)
        second = {**good, "event_id": "H-2", "event_type": "accepted"}
        naive = {**good, "event_id": "H-3", "occurred_at": "2026-10-12T09:00:00"}
        status, doc = _post(url, json.dumps([second, {"case_id": "H1"}, naive]).encode(), "application/json")
        assert status == 207 and doc["accepted"] == 1 and [e["index"] for e in doc["errors"]] == [1, 2]
        assert "offset" in doc["errors"][1]["error"] and doc["errors"][1]["event_id"] == "H-3"
        status, doc = _post(url, b'{"event_type": "x"}\nnot json\n', "application/x-ndjson")
        assert status == 422 and [e["line"] for e in doc["errors"]] == [1, 2]
        records = read_topic(kafka_broker, "tingest-case-events")
        assert sorted(json.loads(r.value)["event_id"] for r in records) == ["H-1", "H-2"]
        assert {r.key for r in records} == {b"H1"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_partition_nobody_committed_is_read_again_from_its_beginning(kafka_broker: str) -> None:  # noqa: F811
    """The worker's seek after a rebalance: where nothing was committed, back to the first record.

    aiokafka's own ``seek_to_committed`` leaves such a partition where the fetcher got to, so records
    Faust fetched and dropped during a rebalance were never processed (a stalled end-to-end test).
    """
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from streams.consumer import seek_to_committed_or_beginning

    topic, changelog = "rewind-input", "rewind-changelog"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker)
    admin.create_topics([NewTopic(t, 2, 1) for t in (topic, changelog)])
    admin.close()

    async def scenario() -> dict[str, int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
        await producer.start()
        for t in (topic, changelog):
            for p in (0, 1):
                for i in range(5):
                    await producer.send_and_wait(t, f"{p}-{i}".encode(), partition=p)
        await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker, group_id="rewind", enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        tps = [TopicPartition(t, p) for t in (topic, changelog) for p in (0, 1)]
        consumer.assign(tps)
        try:
            read = 0
            while read < 20:  # read everything, as a fetch that was then dropped would have
                read += sum(len(v) for v in (await consumer.getmany(timeout_ms=1000)).values())
            await consumer.commit({TopicPartition(topic, 1): 3})  # partition 1 was committed up to 3
            _, reported = await seek_to_committed_or_beginning(consumer, keep=lambda tp: tp.topic == changelog)
            positions = {f"{tp.topic}/{tp.partition}": await consumer.position(tp) for tp in tps}
            # what the supervise agent is told: the input partitions only, where they now read from
            assert {f"{tp.topic}/{tp.partition}": o for tp, o in reported.items()} == {
                k: v for k, v in positions.items() if k.startswith(topic)}
            return positions
        finally:
            await consumer.stop()

    positions = asyncio.run(scenario())
    assert positions == {f"{topic}/0": 0, f"{topic}/1": 3, f"{changelog}/0": 5, f"{changelog}/1": 5}
