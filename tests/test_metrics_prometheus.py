"""End to end: a real Prometheus scrapes a running esup process and sees the pipeline's metrics.

A child process serves ``/metrics`` with ``esup.metrics.serve_metrics`` and runs simulated traffic
through the real pieces — decoder, embedded driver and rules engine, a chDB batch write (and one
that fails), the alerting dispatcher with a gateway that refuses some SMS — recording metrics the way
the drivers do. Prometheus (Debian's 2.42, on loopback, scraping every second, with our alert rules
loaded) is then asked through its HTTP query API for the numbers the child knows to be true, and
every PromQL expression of the pipeline dashboard must evaluate on it without error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.prometheus_server import start_prometheus

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import itertools, json, logging, sys, time
from collections import Counter
from pathlib import Path

logging.disable(logging.CRITICAL)
from esup import metrics

out, data = Path(sys.argv[1]), Path(sys.argv[2])
server = metrics.serve_metrics(port=0, addr="127.0.0.1")
(out / "port.tmp").write_text(str(server.port))
(out / "port.tmp").rename(out / "port")

from alerting import JsonlDeliveryLog, load_alerting_config
from alerting.channels import PermanentError
from alerting.channels.outbox import OutboxChannel
from alerting.dispatcher import Dispatcher
from alerting.model import SendResult
from rules.engine import Engine
from schemas.events import CHINA_TZ, InvalidEvent, decode_event
from simulator import simulate
from streams.embedded import run_events
from warehouse import open_warehouse
from warehouse.rows import findings_columns

received = time.time()
items = [decode_event(line.strip(), position=n)
         for n, line in enumerate(simulate(300, 20, 3, violation_rate=0.2, bad_rate=0.02).lines(), 1)]
metrics.record_events(items)
valid = [e for e in items if not isinstance(e, InvalidEvent)]
engine = Engine.default()
result = run_events(engine, valid, on_findings=lambda fs: metrics.record_findings(fs, received_at=received),
                    on_notes=metrics.record_notes)
metrics.record_processed(valid)
metrics.set_case_states(Counter(engine.facts(s).status for s in result.states.values()))
metrics.set_consumer_lag("case-events", 0, 0)

wh = open_warehouse(f"chdb://{data / 'wh'}")
wh.migrate()
with metrics.clickhouse_write("findings", len(result.findings)):
    wh.insert_columns("findings", findings_columns([("live", f) for f in result.findings]))
try:
    with metrics.clickhouse_write("notes", 1):
        wh.insert_columns("no_such_table", {"x": [1]})
except ValueError:
    pass
wh.close()

class FlakySms:
    channel = "sms"
    n = itertools.count()
    def send(self, msg):
        if next(self.n) % 2 == 0:
            raise PermanentError("网关拒绝（测试）")
        return SendResult(provider_id="ok")
    def close(self):
        pass

log = JsonlDeliveryLog(data / "alerts", fsync=False)
senders = {"email": OutboxChannel(str(data / "outbox"), "email"), "sms": FlakySms()}
reds = [f for f in result.findings if f.severity == "red"][:20]
Dispatcher(load_alerting_config(), log, senders, sleep=lambda s: None).deliver(reds, max(f.fired_at for f in reds))
outcomes = Counter((a.channel, a.result) for a in log.attempts() if a.digest_id is None and a.result != "pending")

expected = {
    "lines": len(items), "invalid": len(items) - len(valid), "valid": len(valid),
    "findings": len(result.findings), "red": sum(f.severity == "red" for f in result.findings),
    "notes": len(result.notes), "cases": result.cases,
    "deliveries": sum(outcomes.values()), "failed": sum(n for (c, r), n in outcomes.items() if r == "failed"),
}
(out / "expected.tmp").write_text(json.dumps(expected))
(out / "expected.tmp").rename(out / "expected.json")
while True:
    time.sleep(1)
'''


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            errors = (path.parent / "child.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the metrics child exited with {proc.returncode}:\n{errors}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} not written after {timeout}s")
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.server
def test_prometheus_scrapes_the_pipeline_metrics(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (make servers / scripts/install-servers.sh installs it)")
    pytest.importorskip("chdb")
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ESUP_METRICS_PORT": ""}
    with open(out / "child.log", "wb") as child_log:  # a file, not a pipe: a full pipe would stall the child
        child = subprocess.Popen([sys.executable, str(script), str(out), str(tmp_path)], cwd=ROOT, env=env,
                                 stdout=child_log, stderr=subprocess.STDOUT)
    try:
        port = int(_wait_file(out / "port", child, 60))
        with start_prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"],
                              rule_files=[ROOT / "dashboards/prometheus/alerts.yml"]) as prom:
            expected = json.loads(_wait_file(out / "expected.json", child, 120))
            target = prom.wait_for_target("esup")
            assert target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics"

            def equals(promql: str, want: float) -> None:
                prom.wait_for(promql, lambda v: v == want)

            equals('sum(esup_events_consumed_total{job="esup"})', expected["lines"])
            equals('esup_events_consumed_total{job="esup", type="invalid"}', expected["invalid"])
            equals('sum(esup_events_rejected_total{job="esup"})', expected["invalid"])
            equals('sum(esup_events_processed_total{job="esup"})', expected["valid"])
            equals('sum(esup_findings_total{job="esup"})', expected["findings"])
            equals('sum(esup_findings_total{job="esup", severity="red"})', expected["red"])
            equals('sum(esup_engine_notes_total{job="esup"})', expected["notes"])
            equals('esup_processing_latency_seconds_count{job="esup", since="received"}', expected["findings"])
            equals('sum(esup_case_states{job="esup"})', expected["cases"])
            equals('esup_clickhouse_write_seconds_count{job="esup", table="findings"}', 1)
            equals('esup_clickhouse_batch_rows_sum{job="esup", table="findings"}', expected["findings"])
            equals('esup_clickhouse_write_errors_total{job="esup", table="notes"}', 1)
            equals('sum(esup_alert_deliveries_total{job="esup"})', expected["deliveries"])
            equals('sum(esup_alert_deliveries_total{job="esup", result="failed"})', expected["failed"])
            assert expected["failed"] > 0 and expected["invalid"] > 0 and expected["findings"] > 0
            equals('esup_consumer_lag{job="esup", topic="case-events", partition="0"}', 0)
            equals('up{job="esup"}', 1)

            groups = prom.get("/api/v1/rules")["groups"]
            pipeline = next(g for g in groups if g["name"] == "esup-pipeline")
            import yaml

            shipped = yaml.safe_load((Path(__file__).parents[1] / "dashboards" / "prometheus" / "alerts.yml")
                                     .read_text(encoding="utf-8"))
            names = {r["alert"] for g in shipped["groups"] if g["name"] == "esup-pipeline" for r in g["rules"]}
            assert len(names) >= 10  # every shipped rule loaded by the server, and healthy
            assert {r["name"] for r in pipeline["rules"]} == names
            assert all(r["health"] in ("ok", "unknown") for r in pipeline["rules"])

            # Every expression of the pipeline dashboard evaluates on a real server, with data once a
            # few scrapes give rate() two samples.
            prom.wait_for('count_over_time(up{job="esup"}[1m])', lambda v: v >= 3)
            from tests.test_dashboards import _as_promql, _promql

            for board, panel, expr in _promql():
                if expr.startswith("label_values("):
                    values = prom.get("/api/v1/label/job/values", **{"match[]": "esup_case_states"})
                    assert values == ["esup"], values
                    continue
                assert prom.query(_as_promql(expr)), f"{board} / {panel}: no data for {expr}"
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
