"""Input size limits: a line over the per-event limit (64 KiB, ``schemas.events.MAX_EVENT_BYTES``) is refused
with a clear reason on every way in — ``esup run``, the HTTP ingest and ``esup publish`` — and the lines
around it go through. (Malformed and wrongly typed input is covered by the property tests in test_fuzz.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.events import MAX_EVENT_BYTES
from streams.settings import bootstrap_list
from tests.stream_servers import ESUP, read_topic
from tests.test_alerting_support import free_port
from tests.test_reliability_support import Broker, wait_for


def _event(n: int, **extra: Any) -> bytes:
    doc = {"event_id": f"E-{n}", "event_type": "submitted", "case_id": f"C-{n}",
           "occurred_at": "2026-10-09T09:00:00+08:00", "source": "test", **extra}
    return json.dumps(doc, ensure_ascii=False).encode()


BIG = _event(2, comment="附" * 30_000)  # 90,000 bytes of UTF-8: over the limit, still one JSON event
HUGE = _event(3, comment="x" * 5_000_000)  # past the broker's message size as well
assert MAX_EVENT_BYTES < len(BIG) < 2 * MAX_EVENT_BYTES and len(HUGE) > 4 * 1024 * 1024


def _feed(tmp_path: Path) -> Path:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"\n".join([_event(1), BIG, HUGE, _event(4)]) + b"\n")
    return path


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([ESUP, *args], capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_esup_run_refuses_oversized_lines_with_their_line_number_and_keeps_the_rest(tmp_path: Path) -> None:
    out = _run("run", "--events", str(_feed(tmp_path)), "--data-dir", str(tmp_path / "data"), "--json")
    assert out.returncode == 0, out.stderr.decode()
    summary = json.loads(out.stdout)
    assert (summary["lines"], summary["valid"], summary["invalid"]) == (4, 2, 2)
    err = out.stderr.decode()
    for n, line in ((2, BIG), (3, HUGE)):
        assert f"line {n}: event is {len(line)} bytes, over the {MAX_EVENT_BYTES}-byte limit" in err.replace("\n", "")
    from warehouse import open_warehouse

    with open_warehouse(str(tmp_path / "data")) as wh:
        rows = wh.query("SELECT valid, error, length(raw) AS n FROM events FINAL ORDER BY valid, n")
    assert [r["valid"] for r in rows] == [0, 0, 1, 1]
    assert all("over the 65536-byte limit" in r["error"] and r["n"] <= 1024 for r in rows[:2])  # kept, cut short


@pytest.mark.server
def test_esup_publish_refuses_oversized_lines_and_sends_the_rest(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    try:
        out = _run("publish", str(_feed(tmp_path)), "--json", env={"ESUP_BROKER": broker.url, "ESUP_PARTITIONS": "2"})
        assert out.returncode == 1, out.stderr.decode()
        result = json.loads(out.stdout)
        assert (result["sent"], result["oversized"]) == (2, 2)
        err = out.stderr.decode().replace("\n", "")
        for n, line in ((2, BIG), (3, HUGE)):
            assert f"第 {n} 行 {len(line)} 字节，超过单个事件 {MAX_EVENT_BYTES} 字节的上限，未发送" in err
        records = read_topic(bootstrap_list(broker.url)[0], "case-events")
        assert sorted(r.value for r in records) == [_event(1), _event(4)]
    finally:
        broker.stop()


@pytest.mark.server
def test_http_ingest_refuses_an_oversized_event_by_line_and_an_oversized_body(tmp_path: Path) -> None:
    from streams.ingest_http import MAX_BODY_BYTES

    broker = Broker(tmp_path)
    port = free_port()
    log = open(tmp_path / "ingest.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([ESUP, "publish", "--serve", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ESUP_BROKER": broker.url, "ESUP_PARTITIONS": "2"},
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, 30, "the ingest server",
                 step=0.2, on_timeout=lambda: (tmp_path / "ingest.log").read_text(errors="replace"))
        body = b"\n".join([_event(1), BIG, _event(4)]) + b"\n"
        r = httpx.post(f"{url}/events", content=body, headers={"Content-Type": "application/x-ndjson"}, timeout=30)
        assert r.status_code == 207, r.text
        doc = r.json()
        assert (doc["accepted"], doc["rejected"]) == (2, 1)
        assert doc["errors"] == [{"line": 2, "error": f"event is {len(BIG)} bytes, over the {MAX_EVENT_BYTES}-byte limit"}]
        r = httpx.post(f"{url}/events", content=b"x" * (MAX_BODY_BYTES + 1), timeout=60,
                       headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 413 and "send smaller batches" in r.json()["error"]
        time.sleep(0.5)
        records = read_topic(bootstrap_list(broker.url)[0], "case-events")
        assert sorted(rec.value for rec in records) == [_event(1), _event(4)]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)
        log.close()
        broker.stop()
