"""The live driver through one ``esup worker`` on a local Tansu broker: throughput, latency, deadline delay.

Three figures, each against its own bar:

* **throughput** — a backlog of simulated events (published before the worker starts) through one
  worker: events per second until every event is applied, and until every event is also stored in
  the warehouse (chDB) (bar: 5,000), and CPU time per event (steadier than a rate on a busy machine).
  Twice: the worker with its warehouse sink in the same process (``role: all``), and the layout of
  docker-compose.yml — the worker supervising, a sink process writing ClickHouse.
* **latency** — events published at 1,000 per second; for every finding an event raised, the time from
  the event's send to the finding's arrival at a consumer of ``findings``: p50 and p99 (bar: p99 < 1 s).
* **deadline delay** — a case accepted and then silent; the worker's clock is set (``wall+OFFSET``) so
  its promised deadline falls during the run: seconds from the deadline to the overdue finding's
  arrival (bar: 5 s).

Production settings throughout (no test-only broker workarounds: nothing here restarts a worker).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.devbroker import free_port, start_tansu
from streams.devbroker import stop as stop_broker

ESUP = str(Path(sys.executable).with_name("esup"))


class _Worker:
    def __init__(self, root: Path, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = open(root / f"{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [ESUP, "worker", "--loglevel", "warn"], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **env, "ESUP_METRICS_PORT": str(self.port), "ESUP_DATA_DIR": str(root / f"{name}-faust")})

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _simulate(path: Path, events: int, seed: int, start: date) -> list[bytes]:
    from simulator import write

    write(path, cases=max(1, events // 9), days=20, seed=seed, start=start)
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _lateness(lines: list[bytes]) -> float:
    from schemas.events import InvalidEvent, read_events

    high, late = float("-inf"), 0.0
    for ev in read_events(lines):
        if isinstance(ev, InvalidEvent):
            continue
        t = ev.occurred_at.timestamp()
        late, high = max(late, high - t), max(high, t)
    return late + 1.0


def _publish(broker: str, topic: str, lines: list[bytes], rate: float | None = None,
             sent_at: dict[str, float] | None = None) -> float:
    from kafka import KafkaProducer

    from esup.commands.publish import case_key

    p = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=2 if rate else 20, batch_size=256 * 1024)
    t0 = time.monotonic()
    for n, line in enumerate(lines, start=1):
        if sent_at is not None:
            sent_at[json.loads(line)["event_id"]] = time.time()
        p.send(topic, value=line, key=case_key(line))
        if rate:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    p.flush()
    p.close()
    return time.monotonic() - t0


def _applied(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("esup_events_consumed_total{"))


def _wait(pred, timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError("benchmark step timed out")


def _declare(broker: str, app_id: str, partitions: int) -> None:
    from streams.settings import load_settings
    from streams.topics import declare_topics

    declare_topics(load_settings(env={"ESUP_BROKER": broker, "ESUP_APP_ID": app_id,
                                      "ESUP_PARTITIONS": str(partitions)}))


def _throughput(root: Path, broker: str, events: int, partitions: int, split: bool) -> dict[str, Any]:
    """A backlog through one worker: with its sink in the same process, or (``split``) in a sink process."""
    name = "split" if split else "all"
    lines = _simulate(root / f"backlog-{name}.jsonl", events, seed=11, start=date(2026, 10, 1))
    late = _lateness(lines)
    app_id = f"bench-{name}"
    _declare(broker, app_id, partitions)
    _publish(broker, "case-events", lines)
    from schemas.events import InvalidEvent, read_events

    clock = max(e.occurred_at for e in read_events(lines) if not isinstance(e, InvalidEvent)) + timedelta(days=60)
    env = {"ESUP_BROKER": broker, "ESUP_APP_ID": app_id, "ESUP_PARTITIONS": str(partitions),
           "CLICKHOUSE_URL": f"chdb://{root / ('wh-' + name)}", "ESUP_ALERTING": "false",
           "ESUP_STANDBY_REPLICAS": "0", "ESUP_CLOCK": clock.isoformat(), "ESUP_LATENESS_SECONDS": f"{late:.3f}"}
    w = _Worker(root, f"worker-{name}", {**env, "ESUP_ROLE": "supervise" if split else "all"})
    sink = _Worker(root, f"sink-{name}", {**env, "ESUP_ROLE": "sink"}) if split else w
    n = len(lines)
    stored_key = 'esup_clickhouse_batch_rows_sum{table="events"}'
    try:
        _wait(lambda: _applied(w.metrics()) > 0, 120, every=0.05)
        t0 = time.monotonic()
        c0 = w.cpu_seconds() + (sink.cpu_seconds() if split else 0.0)
        m0 = _applied(w.metrics())
        t_applied = _wait(lambda: _applied(w.metrics()) >= n and time.monotonic(), 600, every=0.1)
        _wait(lambda: sink.metrics().get(stored_key, 0) >= n, 600, every=0.1)
        t_stored = time.monotonic()
        cpu = w.cpu_seconds() + (sink.cpu_seconds() if split else 0.0) - c0
        rss = w.rss_mib()
    finally:
        w.stop()
        if split:
            sink.stop()
    done = n - m0
    return {"events": n, "applied_per_second": round(done / (t_applied - t0)),
            "stored_per_second": round(done / (t_stored - t0)),
            "cpu_us_per_event": round(cpu / done * 1e6, 1), "worker_rss_mib": rss}


def _latency_and_deadline(root: Path, broker: str, rate: int, seconds: int, partitions: int) -> dict[str, Any]:
    from kafka import KafkaConsumer, TopicPartition

    from rules.engine import Engine
    from schemas.events import read_events

    # The silent case, and where its promised deadline falls.
    engine = Engine.default()
    item = next(i for i in engine.catalogs.in_force(date(2026, 10, 12)).items if i.kind == "promised")
    quiet = [json.dumps({"event_id": f"Q-{k}", "event_type": typ, "case_id": "BENCH-QUIET",
                         "occurred_at": "2026-10-12T09:00:00+08:00", "source": "bench", "item_code": item.code,
                         "region_code": "610113"}, ensure_ascii=False).encode()
             for k, typ in enumerate(("submitted", "accepted"))]
    state = None
    for ev in read_events(quiet):
        state = engine.apply(state, ev).state
    overdue = next(f for f in engine.advance(state, datetime(2027, 6, 1, tzinfo=UTC)).findings
                   if f.rule == "TIMEOUT.PROMISED_OVERDUE")
    deadline = overdue.fired_at.timestamp()
    # Live traffic in the worker's future: only event-raised findings (no deadline passes during the run).
    lines = _simulate(root / "live.jsonl", rate * seconds, seed=12, start=date(2027, 3, 1))[: rate * seconds]
    _declare(broker, "bench-live", partitions)
    fire_in = 30.0  # seconds after the worker is started: it has joined its group and restored by then
    offset = deadline - (time.time() + fire_in)
    # The production layout (docker-compose.yml): a supervise worker, and the warehouse sink in a process
    # of its own, so ClickHouse writes never hold the supervising interpreter.
    env = {"ESUP_BROKER": broker, "ESUP_APP_ID": "bench-live", "ESUP_PARTITIONS": str(partitions),
           "CLICKHOUSE_URL": f"chdb://{root / 'wh-live'}", "ESUP_ALERTING": "false", "ESUP_STANDBY_REPLICAS": "0",
           "ESUP_CLOCK": f"wall{offset:+.3f}"}
    w = _Worker(root, "live", {**env, "ESUP_ROLE": "supervise"})
    sink = _Worker(root, "live-sink", {**env, "ESUP_ROLE": "sink"})
    arrivals: dict[str, float] = {}
    overdue_at: list[float] = []
    stop = threading.Event()

    def consume() -> None:
        c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, fetch_max_wait_ms=20,
                          auto_offset_reset="earliest", group_id=None)
        tps = [TopicPartition("findings", p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        while not stop.is_set():
            for recs in c.poll(timeout_ms=50).values():
                now = time.time()
                for r in recs:
                    f = json.loads(r.value)
                    if f.get("event_id"):
                        arrivals.setdefault(f["event_id"], now)
                    if f["finding_id"] == overdue.finding_id:
                        overdue_at.append(now)
        c.close()

    reader = threading.Thread(target=consume, daemon=True)
    sent_at: dict[str, float] = {}
    try:
        _wait(lambda: w.metrics(), 60)
        _publish(broker, "case-events", quiet)
        reader.start()
        _wait(lambda: _applied(w.metrics()) >= 2, 120)
        _publish(broker, "case-events", lines, rate=rate, sent_at=sent_at)
        _wait(lambda: overdue_at and _applied(w.metrics()) >= len(lines) + 2, 120)
        time.sleep(2)
    finally:
        stop.set()
        w.stop()
        sink.stop()
    lat = sorted(arrivals[e] - sent_at[e] for e in arrivals if e in sent_at)
    wall_deadline = deadline - offset

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else float("nan")

    return {"layout": "supervise worker + sink process", "rate_per_second": rate, "events": len(lines),
            "findings_timed": len(lat),
            "latency_p50_ms": pct(0.50), "latency_p99_ms": pct(0.99), "latency_max_ms": pct(1.0),
            "overdue_seconds_after_deadline": round(overdue_at[0] - wall_deadline, 2) if overdue_at else None}


def bench_streams(events: int = 150_000, rate: int = 1000, seconds: int = 60, partitions: int = 8) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="esup-bench-streams-") as tmp:
        root = Path(tmp)
        out: dict[str, Any] = {}
        for phase in ("all", "split", "live"):  # a fresh broker each: phases must not see each other's input
            broker, address = start_tansu(root / f"broker-{phase}.log")
            try:
                if phase == "live":
                    out.update(_latency_and_deadline(root, address, rate, seconds, partitions))
                else:
                    out[f"throughput_{phase}"] = _throughput(root, address, events, partitions, phase == "split")
            finally:
                stop_broker(broker)
    out["bars"] = {
        "throughput_ok": max(out["throughput_all"]["stored_per_second"],
                             out["throughput_split"]["stored_per_second"]) >= 5000,
        "latency_ok": out["latency_p99_ms"] < 1000,
        "deadline_ok": out["overdue_seconds_after_deadline"] is not None and out["overdue_seconds_after_deadline"] < 5,
    }
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(bench_streams(*(int(a) for a in sys.argv[1:])), ensure_ascii=False, indent=2))
