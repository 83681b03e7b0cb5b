"""End to end: 20,000 simulated events through two ``esup worker`` processes on the Tansu broker into a
ClickHouse server, compared with ``esup run`` on the same file; then a worker killed with SIGKILL in the
middle of the stream and restarted.

The check is the same for both: the warehouse holds every distinct input line once (valid or not),
the findings are exactly those of ``esup run --until`` at the workers' final clock (same ids), every
case has its facts, and cases that went quiet before a deadline were reported by the ticker.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from schemas.events import InvalidEvent, read_events
from tests.stream_servers import (
    ESUP,
    WorkerProcess,
    group_offsets,
    kafka_broker,  # noqa: F401 - fixture
    publish,
    read_topic,
    stream_config,
    wait_for,
)
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.server]
_db = itertools.count()


class Feed:
    """A simulated file, and what ``esup run`` concludes from it at the live clock."""

    def __init__(self, root: Path, cases: int, seed: int) -> None:
        self.path = root / "feed.jsonl"
        subprocess.run([ESUP, "simulate", "--cases", str(cases), "--days", "10", "--seed", str(seed),
                        "--bad-rate", "0.002", "--out", str(self.path)], check=True, capture_output=True)
        self.lines = [line for line in self.path.read_bytes().splitlines() if line.strip()]
        self.lines += self._quiet_cases(self.lines)
        self.path.write_bytes(b"\n".join(self.lines) + b"\n")
        items = list(read_events(self.lines))
        self.valid = [e for e in items if not isinstance(e, InvalidEvent)]
        self.invalid = len(items) - len(self.valid)
        high, late = float("-inf"), 0.0
        for ev in self.valid:  # how far behind the newest event so far any event arrives
            t = ev.occurred_at.timestamp()
            late, high = max(late, high - t), max(high, t)
        self.lateness = late + 1.0
        self.clock = max(e.occurred_at for e in self.valid) + timedelta(days=90)
        self.until = self.clock - timedelta(seconds=self.lateness)
        out = root / "expected.jsonl"
        subprocess.run([ESUP, "run", "--events", str(self.path), "--until", self.until.isoformat(),
                        "--findings-out", str(out), "--no-store", "--quiet", "--json"], check=True,
                       capture_output=True)
        self.expected = [json.loads(line) for line in out.read_bytes().splitlines()]
        self.cases = {e.case_id for e in self.valid}

    @staticmethod
    def _quiet_cases(lines: list[bytes], n: int = 20) -> list[bytes]:
        """Cases accepted after everything else and never heard of again: only the ticker can report them."""
        from rules.catalog import load_catalog

        last = max(e.occurred_at for e in read_events(lines) if not isinstance(e, InvalidEvent))
        items = [i for i in load_catalog().items if i.kind == "promised"]
        out = []
        for k in range(n):
            t = (last + timedelta(minutes=k + 1)).isoformat()
            for m, typ in enumerate(("submitted", "accepted")):
                out.append(json.dumps({"event_id": f"QUIET-{k}-{m}", "event_type": typ, "case_id": f"QUIET-{k}",
                                       "occurred_at": t, "source": "test", "item_code": items[k % len(items)].code,
                                       "region_code": "610113"}, ensure_ascii=False).encode())
        return out

    def quiet_overdue(self) -> set[str]:
        """Finding ids of overdue timeouts for cases with no event after the deadline: only a ticker sees them."""
        last = {}
        for ev in self.valid:
            last[ev.case_id] = max(last.get(ev.case_id, ev.occurred_at), ev.occurred_at)
        return {f["finding_id"] for f in self.expected
                if f["rule"].startswith("TIMEOUT.") and f["rule"].endswith("OVERDUE")
                and last[f["case_id"]] < datetime.fromisoformat(f["fired_at"])}


class Warehouse:
    def __init__(self, url: str) -> None:
        from warehouse import open_warehouse

        self.wh = open_warehouse(url)
        self.wh.migrate()

    def counts(self) -> dict[str, int]:
        q = self.wh.query
        return {
            "events": q("SELECT count() AS n FROM events FINAL")[0]["n"],
            "events_raw_distinct": q("SELECT uniqExact(raw) AS n FROM events")[0]["n"],
            "findings": q("SELECT count() AS n FROM findings FINAL WHERE run_id = 'live'")[0]["n"],
            "facts": q("SELECT count() AS n FROM case_facts FINAL")[0]["n"],
        }

    def finding_ids(self) -> list[str]:
        return [r["finding_id"] for r in self.wh.query("SELECT finding_id FROM findings FINAL WHERE run_id = 'live'")]


def _workers(tmp: Path, prefix: str, broker: str, url: str, feed: Feed) -> tuple[Path, list[WorkerProcess]]:
    cfg = stream_config(tmp / "w.yaml", prefix, partitions=8, standby_replicas=1)
    env = {"ESUP_BROKER": broker, "CLICKHOUSE_URL": url, "ESUP_CLOCK": feed.clock.isoformat(),
           "ESUP_LATENESS_SECONDS": f"{feed.lateness:.3f}"}
    return cfg, [WorkerProcess(name, tmp, cfg, env) for name in ("a", "b")]


def _check(feed: Feed, store: Warehouse, broker: str, prefix: str, workers: list[WorkerProcess]) -> dict:
    want = {"events": len(set(feed.lines)), "findings": len(feed.expected), "facts": len(feed.cases)}

    def settled() -> dict | None:
        c = store.counts()
        return c if all(c[k] >= v for k, v in want.items()) else None

    def explain() -> str:
        topics = (f"{prefix}-case-events", f"{prefix}-warehouse-batches")
        return "\n".join([str(store.counts()), *(group_offsets(broker, prefix, t) for t in topics),
                          *(w.progress() for w in workers), *(w.log_tail(30) for w in workers)])

    counts = wait_for(settled, 240, f"the warehouse to hold {want}", every=1.0, on_timeout=explain)
    time.sleep(2)  # anything still in flight would show up as an extra row now
    counts = store.counts()
    assert {k: counts[k] for k in want} == want  # every distinct line once; each finding once; facts per case
    live = store.finding_ids()
    assert sorted(live) == sorted(f["finding_id"] for f in feed.expected)  # same ids as esup run
    quiet = feed.quiet_overdue()
    assert quiet and quiet <= set(live)  # reported with no event after the deadline: the ticker did it
    on_topic = [json.loads(r.value)["finding_id"] for r in read_topic(broker, f"{prefix}-findings")]
    assert set(on_topic) == set(live)
    dlq = read_topic(broker, f"{prefix}-case-events-dlq")
    assert len({r.value for r in dlq}) == len({line for line, e in zip(feed.lines, read_events(feed.lines),
                                                                          strict=True)
                                                if isinstance(e, InvalidEvent)})
    return {**counts, "findings_on_topic": len(on_topic), "dead_letters": len(dlq), "quiet_overdue": len(quiet)}


def test_two_workers_store_every_event_once_and_match_esup_run(
        kafka_broker: str, clickhouse_server: str, tmp_path: Path) -> None:  # noqa: F811
    feed = Feed(tmp_path, cases=2250, seed=41)
    assert 19_000 <= len(feed.lines) <= 23_000 and feed.invalid > 0
    url = f"{clickhouse_server}/esup_streams_{os.getpid()}_{next(_db)}"
    store = Warehouse(url)
    cfg, workers = _workers(tmp_path, "e2e", kafka_broker, url, feed)
    started = time.monotonic()
    publish(feed.path, cfg, kafka_broker)
    for w in workers:
        w.start()
    try:
        figures = _check(feed, store, kafka_broker, "e2e", workers)
    finally:
        for w in workers:
            w.stop()
    figures["seconds"] = round(time.monotonic() - started, 1)
    print("e2e two workers:", figures)


def test_worker_killed_mid_stream_loses_and_duplicates_nothing(
        kafka_broker: str, clickhouse_server: str, tmp_path: Path) -> None:  # noqa: F811
    feed = Feed(tmp_path, cases=2250, seed=43)
    url = f"{clickhouse_server}/esup_streams_{os.getpid()}_{next(_db)}"
    store = Warehouse(url)
    cfg, (a, b) = _workers(tmp_path, "e2ekill", kafka_broker, url, feed)
    # The stream is a backlog: the file is history (its clock is frozen 90 days after it), so the workers
    # must not be told "caught up" half-way by a publisher slower than they are (see streams/clock.py).
    publish(feed.path, cfg, kafka_broker)
    a.start()
    b.start()
    try:
        killed_at = wait_for(lambda: (lambda n: n if n > 1500 else 0)(b.applied()), 120,
                             "worker b to be mid-stream", every=0.05, on_timeout=b.log_tail)
        b.kill()  # SIGKILL: no flush, no commit, batches in flight lost
        total_then = a.applied() + killed_at
        assert total_then < len(feed.lines) * 0.9, "the stream was over before the kill"
        time.sleep(2)
        b.start()
        figures = _check(feed, store, kafka_broker, "e2ekill", [a, b])
    finally:
        a.stop()
        b.stop()
    figures["killed_after_events"] = killed_at
    print("e2e SIGKILL:", figures)
