"""Kill the sender mid-batch (SIGKILL), restart it, and every alert is delivered exactly once.

A real subprocess delivers a batch through the JSONL delivery log; the test kills it with SIGKILL
once some deliveries are recorded, then runs it again on the same log with the same findings (what
a stream does after a restart: it re-reads from its last committed offset). Outbox: every message
exists exactly once and the log has exactly one ``sent`` per delivery id. SMTP (aiosmtpd in this
process): every message arrives; the only possible repeat is the one message that was on the wire
when the process died (the log shows it ``pending`` without an outcome), and it carries the same
Message-ID so the copy is recognisable.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from alerting.model import delivery_id
from tests.test_alerting_support import finding, free_port

ROOT = Path(__file__).resolve().parent.parent
N_FINDINGS = 100  # red, one department in 510105: 4 messages each (纪检监察室 and 首席代表, e-mail and SMS)

SENDER = r"""
import json, sys, time
from alerting import JsonlDeliveryLog, deliver_findings
from alerting.channels.outbox import OutboxChannel
from alerting.channels.smtp import SmtpChannel
from alerting.config import SmtpTransport
from tests.test_alerting_support import NOW, finding, make_config

log_dir, out_dir, mode, port, n, delay = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])

class Slow:
    # a slow network: the kill must land in the middle of the batch
    def __init__(self, inner):
        self.inner, self.channel = inner, inner.channel
    def send(self, msg):
        time.sleep(delay)
        return self.inner.send(msg)
    def close(self):
        pass

cfg = make_config(digest={"threshold": 1_000_000})
email = (SmtpChannel(SmtpTransport(host="127.0.0.1", port=port, timeout=5, sender="esup@jc.example.gov.cn"))
         if mode == "smtp" else OutboxChannel(out_dir, "email"))
senders = {"email": Slow(email), "sms": Slow(OutboxChannel(out_dir, "sms"))}
report = deliver_findings([finding(i) for i in range(n)], cfg, JsonlDeliveryLog(log_dir), NOW, senders=senders)
print(json.dumps({"sent": report.messages_sent, "already": report.already_delivered, "failed": report.failed}))
"""


def _run(tmp: Path, mode: str, port: int, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SENDER,
            str(tmp / "log"),
            str(tmp / "out"),
            mode,
            str(port),
            str(N_FINDINGS),
            str(delay),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _records(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "log" / "deliveries.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line the kill cut short
    return out


def _kill_mid_batch(tmp: Path, mode: str, port: int) -> list[dict[str, Any]]:
    proc = _run(tmp, mode, port, delay=0.01)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(1 for r in _records(tmp) if r["result"] == "sent") >= 60:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.005)
    assert proc.poll() is None, "the sender finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return _records(tmp)


def _restart(tmp: Path, mode: str, port: int) -> dict[str, Any]:
    proc = _run(tmp, mode, port, delay=0.0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _expected() -> dict[str, str]:
    """delivery id -> channel, for every message the batch must produce."""
    ids = {}
    for i in range(N_FINDINGS):
        fid = finding(i).finding_id
        for rid in ("jjjc", "chief"):
            for ch in ("email", "sms"):
                ids[delivery_id(fid, rid, ch)] = ch
    return ids


def _in_flight(records: list[dict[str, Any]]) -> set[str]:
    last: dict[str, str] = {}
    for r in records:
        last[r["delivery_id"]] = r["result"]
    return {d for d, res in last.items() if res in ("pending", "error")}


@pytest.mark.slow
def test_killed_outbox_sender_restarts_and_delivers_every_alert_exactly_once(tmp_path: Path) -> None:
    before = _kill_mid_batch(tmp_path, "outbox", 0)
    sent_before = {r["delivery_id"] for r in before if r["result"] == "sent"}
    expected = _expected()
    assert 60 <= len(sent_before) < len(expected)
    report = _restart(tmp_path, "outbox", 0)
    assert report["failed"] == 0
    assert report["already"] == len(sent_before)
    assert report["sent"] == len(expected) - len(sent_before)
    # the outbox: exactly one file per delivery, no more, no less
    files = collections.Counter(
        p.name.split("__", 1)[1].split(".", 1)[0]
        for p in (tmp_path / "out").iterdir()
        if not p.name.startswith(".tmp-")
    )
    assert set(files) == set(expected) and set(files.values()) == {1}
    # the log: exactly one "sent" per delivery id
    sent = collections.Counter(r["delivery_id"] for r in _records(tmp_path) if r["result"] == "sent")
    assert set(sent) == set(expected) and set(sent.values()) == {1}


class _Box:
    def __init__(self) -> None:
        self.message_ids: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                self.message_ids.append(line.split(b"<", 1)[1].split(b"@", 1)[0].decode())
        return "250 OK"


@pytest.mark.slow
def test_killed_smtp_sender_restarts_and_every_alert_arrives_once(tmp_path: Path) -> None:
    box = _Box()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        before = _kill_mid_batch(tmp_path, "smtp", port)
        in_flight = _in_flight(before)
        report = _restart(tmp_path, "smtp", port)
    finally:
        controller.stop()
    expected = {d for d, ch in _expected().items() if ch == "email"}
    assert report["failed"] == 0
    received = collections.Counter(box.message_ids)
    assert set(received) == expected  # every e-mail alert arrived
    repeats = {d for d, n in received.items() if n > 1}
    # at most the single message that was on the wire at the kill, and only once more
    assert len(repeats) <= 1 and repeats <= in_flight and all(received[d] == 2 for d in repeats)
    sent = collections.Counter(r["delivery_id"] for r in _records(tmp_path) if r["result"] == "sent")
    assert set(sent.values()) == {1}
