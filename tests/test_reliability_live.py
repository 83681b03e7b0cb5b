"""Faults injected into the live pipeline, against the real components: the Tansu broker, ``esup worker``
processes (Faust), ClickHouse 18.16, an SMTP server and an SMS webhook.

What every test checks at the end is the same, against the embedded driver run on the same lines with
the same clock: every distinct input line is stored once (valid, or invalid with its reason), every
finding exists once with its instant, every notice (finding × recipient × channel) reached the SMTP
server or the SMS gateway, and the events' hash chains verify. A message that was on the wire when a
worker was killed may arrive a second time, with the same Message-ID / Idempotency-Key (the receiver
drops it); the tests count those and bound them by the number of kills.

``make test`` runs the bounded versions (marked ``slow``); ``make soak`` the full ones (``soak``).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import CHINA_TZ
from tests.test_reliability_support import (
    Broker,
    Mailbox,
    OwnClickHouse,
    Publisher,
    SmsGateway,
    Worker,
    declare,
    event_times,
    expected,
    metric_value,
    publish,
    receivers,  # noqa: F401 - fixture
    routing_file,
    sorted_feed,
    wait_for,
    worker_config,
    worker_env,
)
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - fixture
from warehouse import open_warehouse
from warehouse.chain import verify

pytestmark = pytest.mark.server
_db = itertools.count()


def _next_midnight(t: datetime, days: int = 1) -> datetime:
    local = t.astimezone(CHINA_TZ)
    return datetime(local.year, local.month, local.day, tzinfo=CHINA_TZ) + timedelta(days=days)


class Stored:
    """What the warehouse holds, read as an auditor would (FINAL: one row per identity)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def read(self) -> dict[str, Any]:
        with open_warehouse(self.url) as wh:
            lines = {bytes.fromhex(r["h"]) for r in wh.query("SELECT hex(raw) AS h FROM events FINAL")}
            n_events = wh.query("SELECT count() AS n FROM events FINAL")[0]["n"]
            physical = wh.query("SELECT count() AS n FROM events")[0]["n"]
            rows = wh.query("SELECT finding_id, fired_at FROM findings FINAL WHERE run_id = 'live'")
            f_physical = wh.query("SELECT count() AS n FROM findings WHERE run_id = 'live'")[0]["n"]
        return {"lines": lines, "events": n_events, "events_physical": physical,
                "findings": {r["finding_id"]: r["fired_at"] for r in rows}, "finding_rows": len(rows),
                "findings_physical": f_physical}

    def events(self) -> int:
        with open_warehouse(self.url) as wh:
            return int(wh.query("SELECT count() AS n FROM events FINAL")[0]["n"])

    def finding_ids(self) -> set[str]:
        with open_warehouse(self.url) as wh:
            return {r["finding_id"] for r in wh.query("SELECT finding_id FROM findings FINAL WHERE run_id = 'live'")}

    def describe(self, finding_ids: list[str]) -> list[dict[str, Any]]:
        with open_warehouse(self.url) as wh:
            return wh.query("SELECT case_id, rule, fired_at, deadline FROM findings FINAL "
                            "WHERE has({ids:Array(String)}, finding_id)", {"ids": finding_ids})

    def verify(self) -> Any:
        with open_warehouse(self.url) as wh:
            return verify(wh)


def _complete(exp: dict[str, Any], stored: Stored, mailbox: Mailbox, sms: SmsGateway) -> bool:
    sent = set(mailbox.received) | set(sms.received)
    return (stored.events() >= len(exp["lines"]) and set(exp["findings"]) <= stored.finding_ids()
            and set(exp["deliveries"]) <= sent)


def _check(exp: dict[str, Any], stored: Stored, mailbox: Mailbox, sms: SmsGateway, kills: int) -> dict[str, Any]:
    """The guarantees, asserted; returns the figures for the report."""
    got = stored.read()
    assert got["events"] == len(exp["lines"]), "every distinct line stored once"
    assert got["lines"] == exp["lines"], "the stored lines are exactly the input lines"
    missing, extra = set(exp["findings"]) - set(got["findings"]), set(got["findings"]) - set(exp["findings"])
    assert not missing and not extra, (
        f"{len(missing)} findings missing, e.g. {[exp['findings'][i] for i in sorted(missing)[:3]]}; "
        f"{len(extra)} extra, e.g. {stored.describe(sorted(extra)[:5])}")
    assert got["finding_rows"] == len(exp["findings"])
    for fid, f in exp["findings"].items():
        assert got["findings"][fid].timestamp() == pytest.approx(f.fired_at.timestamp(), abs=1), fid
    wire: dict[str, int] = {}
    for box in (mailbox.received, sms.received):
        wire.update(box)
    assert set(wire) == set(exp["deliveries"]), "every notice delivered, nothing else"
    duplicates = sum(n - 1 for n in wire.values())
    assert duplicates <= kills, f"{duplicates} messages arrived twice, more than the {kills} kills explain"
    report = stored.verify()
    assert report.ok, report.problems[:10]
    return {"lines": len(exp["lines"]), "events_rows_written": got["events_physical"],
            "findings": len(exp["findings"]), "finding_rows_written": got["findings_physical"],
            "notices": len(exp["deliveries"]), "wire_duplicates": duplicates, "chain_links": report.links}


@pytest.mark.parametrize("n_events,kills", [
    pytest.param(20_000, 5, marks=pytest.mark.slow, id="5-kills-20k"),
    pytest.param(100_000, 20, marks=[pytest.mark.slow, pytest.mark.soak], id="20-kills-100k"),
])
def test_sigkill_at_random_points_stores_finds_and_alerts_everything_once(
        tmp_path: Path, clickhouse_server: str, receivers: Any, n_events: int, kills: int) -> None:  # noqa: F811
    """Two thirds of the kills while events keep arriving, the rest while the deadlines of a month fall
    due at once and their alerts go out.

    While events arrive the worker's clock stands before the first of them (a frozen instant), so what
    fires is what the events raise by themselves, whatever the timing: a clock running ahead of a
    replayed month would make every later event a late arrival. The last restart moves the clock past
    the month and the ticker fires every deadline; the result must be the embedded run's, exactly.
    """
    mailbox, sms = receivers
    lines = sorted_feed(n_events, seed=n_events + kills)
    first, last = event_times(lines)
    clock = _next_midnight(last, days=3)
    routing = routing_file(tmp_path / "routing.yaml", mailbox.port, sms.url)
    exp = expected(lines, clock, routing)
    broker = Broker(tmp_path)
    url = f"{clickhouse_server}/esup_kill{os.getpid()}_{next(_db)}"
    config = worker_config(tmp_path)
    worker = Worker("w1", tmp_path, config,
                    worker_env(broker, url, routing, (first - timedelta(days=1)).isoformat()))
    stored = Stored(url)
    rnd = random.Random(kills)
    kills_arriving = max(1, kills * 2 // 3)
    try:
        declare(broker, config)
        started = time.monotonic()
        publisher = Publisher(broker, lines, rate=n_events / (kills_arriving * 6.0))
        publisher.start()
        worker.start()
        for _ in range(kills_arriving):  # a random point: start-up, recovery, mid-batch, mid-delivery
            time.sleep(rnd.uniform(2.0, 9.0))
            worker.restart()
        publisher.join()
        assert publisher.error is None, publisher.error
        wait_for(lambda: stored.events() >= len(exp["lines"]), 60 + n_events / 500, "every line to be stored",
                 on_timeout=worker.log_tail)
        worker.kill()
        worker.env["ESUP_CLOCK"] = clock.isoformat()  # the month's deadlines fall due
        worker.start()
        for _ in range(kills - kills_arriving - 1):  # the clock change above was a SIGKILL too
            time.sleep(rnd.uniform(1.0, 6.0))
            worker.restart()
        catch_up = wait_for(lambda: _complete(exp, stored, mailbox, sms), 120 + n_events / 500,
                            "the restarted worker to store and deliver everything", on_timeout=worker.log_tail)
        time.sleep(3)  # anything sent twice arrives now
        worker.stop()
        figures = _check(exp, stored, mailbox, sms, worker.kills)
    finally:
        worker.stop(timeout=5)
        broker.stop()
    assert worker.kills == kills
    figures.update(kills=worker.kills, seconds=round(time.monotonic() - started), catch_up=round(catch_up))
    print(f"\nRELIABILITY kill: {figures}")


def _first_busy_midnight(lines: list[bytes], after: datetime) -> tuple[datetime, int]:
    """The first China midnight after ``after`` at which some open case has a deadline."""
    from collections import Counter

    from rules.engine import Engine
    from schemas.events import InvalidEvent, decode_event
    from streams.embedded import run_events

    events = [ev for ev in map(decode_event, lines) if not isinstance(ev, InvalidEvent)]
    result = run_events(Engine.default(), events, until=after)
    due = Counter(st.next_due for st in result.states.values() if st.next_due is not None)
    at = min(t for t, n in due.items() if t > after.timestamp() and n >= 5)
    return datetime.fromtimestamp(at, CHINA_TZ), due[at]


@pytest.mark.slow
def test_broker_outage_and_rebalance_between_two_workers_lose_and_double_nothing(
        tmp_path: Path, clickhouse_server: str, receivers: Any) -> None:  # noqa: F811
    """Worker B joins mid-stream (rebalance), the broker is unreachable for 8 s mid-stream, then A is
    killed so its partitions move to B; the deadlines of the moved partitions fall due after that and
    must fire on B, once."""
    mailbox, sms = receivers
    lines = sorted_feed(20_000, seed=7)[:12_000]  # cut mid-month: many cases still open
    midnight, due_cases = _first_busy_midnight(lines, event_times(lines)[1])
    routing = routing_file(tmp_path / "routing.yaml", mailbox.port, sms.url)
    exp = expected(lines, midnight, routing)
    broker = Broker(tmp_path)
    url = f"{clickhouse_server}/esup_rebal{os.getpid()}_{next(_db)}"
    lead = 75.0  # seconds of real time until the simulated clock reaches that midnight
    clock = f"wall{midnight.timestamp() - lead - time.time():+.3f}"
    env = worker_env(broker, url, routing, clock, ESUP_BATCH_MAX="50")  # small batches: a longer stream
    config = worker_config(tmp_path)
    a, b = Worker("a", tmp_path, config, env), Worker("b", tmp_path, config, env)
    stored = Stored(url)
    try:
        declare(broker, config)
        # The stream is in the broker before the workers start: while a partition is behind, its clock
        # is its own event-time watermark, which is exact; a clock ahead of the events still arriving
        # would turn them into late arrivals.
        publish(broker, lines)
        t0 = time.monotonic()
        a.start()
        wait_for(lambda: stored.events() > 0, 60, "A to start storing", step=0.3, on_timeout=a.log_tail)
        b.start()  # rebalance mid-stream
        wait_for(b.ready, 60, "B to join", step=0.3, on_timeout=b.log_tail)
        broker.outage(8.0)  # every client loses the broker mid-stream
        wait_for(lambda: a.supervise() and b.supervise() and stored.events() >= len(exp["lines"]), 60,
                 "both workers to store the stream", on_timeout=lambda: a.log_tail() + b.log_tail())
        assert time.monotonic() - t0 < lead - 15, "the stream took too long: deadlines would fire before A dies"
        b_metrics_before = metric_value(b.metrics(), "esup_stream_findings_total", source="ticker")
        a.kill()  # A's partitions move to B, with their pending deadlines
        wait_for(lambda: b.supervise() and _complete(exp, stored, mailbox, sms), lead + 60,
                 "the deadlines of the moved partitions to fire on B", on_timeout=b.log_tail)
        time.sleep(3)
        fired_on_b = metric_value(b.metrics(), "esup_stream_findings_total", source="ticker") - b_metrics_before
        b.stop()
        figures = _check(exp, stored, mailbox, sms, kills=1 + a.restarts + b.restarts)  # A was killed
    finally:
        a.stop(timeout=5)
        b.stop(timeout=5)
        broker.stop()
    at_midnight = [f for f in exp["findings"].values() if f.fired_at == midnight]
    assert len(at_midnight) >= 5 and fired_on_b >= len(at_midnight), (len(at_midnight), fired_on_b)
    # A started alone and owned every partition: whatever B indexes came from A.
    moved = re.findall(r"deadline index: partitions \[([0-9, ]+)\]", b.log_path.read_text())
    assert {int(p) for group in moved for p in group.split(",")} == {0, 1, 2, 3}, moved
    figures.update(deadlines_at_midnight=len(at_midnight), cases_due=due_cases, fired_on_b=int(fired_on_b),
                   broker_outages=broker.outages, partitions_indexed_by_b=moved,
                   restarted_after_outage=a.restarts + b.restarts)
    print(f"\nRELIABILITY rebalance: {figures}")


@pytest.mark.parametrize("outage", [
    pytest.param(20.0, marks=pytest.mark.slow, id="20s"),
    pytest.param(60.0, marks=[pytest.mark.slow, pytest.mark.soak], id="60s"),
])
def test_clickhouse_unavailable_while_events_arrive_then_everything_catches_up(
        tmp_path: Path, receivers: Any, outage: float) -> None:  # noqa: F811 - fixture
    mailbox, sms = receivers
    ch = OwnClickHouse(tmp_path / "clickhouse")
    ch.start()
    lines = sorted_feed(8_000, seed=11)
    before_all = event_times(lines)[0] - timedelta(days=1)  # events keep arriving: see the kill test
    routing = routing_file(tmp_path / "routing.yaml", mailbox.port, sms.url)
    exp = expected(lines, None, routing)
    broker = Broker(tmp_path)
    url = f"clickhouse://default@127.0.0.1:{ch.port}/esup_outage"
    config = worker_config(tmp_path)
    worker = Worker("w1", tmp_path, config, worker_env(broker, url, routing, before_all.isoformat()))
    stored = Stored(url)
    try:
        declare(broker, config)
        worker.start()
        publisher = Publisher(broker, lines, rate=len(lines) / (outage + 20))
        publisher.start()
        wait_for(lambda: stored.events() > 0, 60, "the first rows to be stored", on_timeout=worker.log_tail)
        applied_before = metric_value(worker.metrics(), "esup_stream_events_total", result="valid")
        ch.stop()  # events keep arriving
        down_at = time.monotonic()
        time.sleep(outage)
        during = worker.metrics()
        errors = metric_value(during, "esup_stream_errors_total", kind="warehouse")
        write_errors = metric_value(during, "esup_clickhouse_write_errors_total")  # EsupClickHouseWriteErrors
        applied_during = metric_value(during, "esup_stream_events_total", result="valid") - applied_before
        ch.start()
        publisher.join()
        assert publisher.error is None, publisher.error
        catch_up = wait_for(lambda: _complete(exp, stored, mailbox, sms), 120,
                            "the sink to catch up after ClickHouse came back", on_timeout=worker.log_tail)
        time.sleep(2)
        worker.stop()
        # The delivery log is in ClickHouse: a message sent just before it went away could not be
        # recorded as sent, so it goes out again (same Message-ID / Idempotency-Key) — at most one.
        figures = _check(exp, stored, mailbox, sms, kills=1)
    finally:
        worker.stop(timeout=5)
        broker.stop()
        ch.stop()
    assert errors >= 3, f"the failed writes are counted in esup_stream_errors_total{{kind='warehouse'}}: {errors}"
    assert write_errors >= 1, "the failed writes show where the dashboards and the alert rules look"
    assert applied_during > 0, "supervision went on while ClickHouse was down"
    retries = len(re.findall(r"warehouse write failed .*retrying in ([0-9.]+) s", worker.log_path.read_text()))
    figures.update(outage_seconds=outage, warehouse_errors_counted=int(errors), write_retries_logged=retries,
                   clickhouse_write_errors=int(write_errors),
                   events_applied_during_outage=int(applied_during), catch_up_seconds=round(catch_up),
                   total_seconds=round(time.monotonic() - down_at))
    print(f"\nRELIABILITY clickhouse: {figures}")
