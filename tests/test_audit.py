"""Tamper evidence (防篡改): every stored line is chained per case, and ``esup audit verify`` names any
line altered, removed or inserted after it was stored — on chDB and on the ClickHouse 18.16 server.

The tampering is what someone with write access to the warehouse could do: ``raw`` cannot be updated
in place (it feeds a key column), so a line is altered by deleting it and inserting other bytes under
the same event id; a line is removed with ``ALTER TABLE … DELETE``; a derived column is changed with
``ALTER TABLE … UPDATE``; a line is added with a plain INSERT; a chain record is edited.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from esup.cli import app
from esup.commands.run import execute
from schemas.events import InvalidEvent, decode_event
from simulator import write
from tests.warehouse_servers import clickhouse_server  # noqa: F401 - session fixture
from warehouse import Sink, open_warehouse
from warehouse.chain import GENESIS, ChainWriter, link, verify

_db = itertools.count()


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "events.jsonl"
    write(path, None, cases=120, days=10, seed=5)
    return path


def _mutate(wh: Any, sql: str) -> None:
    """An ALTER applied before the next read (chDB and new servers wait; 18.16 is polled)."""
    if wh.kind == "chdb":
        wh.execute(sql + " SETTINGS mutations_sync = 2")
        return
    wh.execute(sql)
    import time

    deadline = time.monotonic() + 30
    while wh.query("SELECT count() AS n FROM system.mutations WHERE is_done = 0 AND database = {db:String}",
                   {"db": wh.database})[0]["n"]:
        assert time.monotonic() < deadline, "mutation did not finish"
        time.sleep(0.1)


def _pick(wh: Any, n: int) -> list[dict[str, Any]]:
    """``n`` valid stored lines of ``n`` different cases."""
    rows = wh.query("SELECT case_id, event_id, hex(raw) AS raw_hex, received_at FROM events FINAL "
                    "WHERE valid = 1 ORDER BY case_id, event_id")
    out, seen = [], set()
    for r in rows:
        if r["case_id"] not in seen:
            seen.add(r["case_id"])
            r["raw"] = bytes.fromhex(r.pop("raw_hex"))
            out.append(r)
        if len(out) == n:
            return out
    raise AssertionError("not enough cases")


def _tamper(wh: Any) -> dict[str, dict[str, Any]]:
    """Alter one line, remove one, change a column of one, add one, edit one chain record."""
    altered, removed, column, chain_edit = _pick(wh, 4)
    _mutate(wh, f"ALTER TABLE events DELETE WHERE event_id = '{removed['event_id']}'")
    _mutate(wh, f"ALTER TABLE events DELETE WHERE event_id = '{altered['event_id']}'")
    new_raw = altered["raw"].replace(b'"source":', b'"source":"x",  "was":', 1)
    ev = decode_event(new_raw)
    assert not isinstance(ev, InvalidEvent), ev
    inserted_raw = altered["raw"].replace(altered["event_id"].encode(), b"FORGED-1")
    forged = decode_event(inserted_raw)
    rows = []
    for e, raw in ((ev, new_raw), (forged, inserted_raw)):
        rows.append({"case_id": e.case_id, "occurred_at": e.occurred_at, "event_id": e.event_id,
                     "event_type": e.event_type, "source": e.source, "recorded_at": e.recorded_at,
                     "received_at": altered["received_at"], "officer_id": e.officer_id or "", "valid": 1,
                     "raw": raw})
    wh.insert("events", rows)
    _mutate(wh, f"ALTER TABLE events UPDATE officer_id = 'X999' WHERE event_id = '{column['event_id']}'")
    _mutate(wh, f"ALTER TABLE event_chain UPDATE prev_hash = '{GENESIS}' "
                f"WHERE case_id = '{chain_edit['case_id']}' AND position = 2")
    return {"altered": altered, "removed": removed, "column": column, "broken": chain_edit,
            "inserted": {"case_id": altered["case_id"], "event_id": "FORGED-1"}}


def _check_named(report: Any, tampered: dict[str, dict[str, Any]]) -> None:
    found = {(p.kind, p.case_id, p.event_id) for p in report.problems}
    for kind, row in tampered.items():
        if kind == "broken":
            assert any(p.kind == "broken" and p.case_id == row["case_id"] and p.position == 2
                       for p in report.problems), report.problems
            continue
        assert (kind, row["case_id"], row["event_id"]) in found, (kind, row, report.problems)
    # nothing else is reported: every other case verifies
    assert len({p.case_id for p in report.problems}) == 4, report.problems


def test_link_is_sha256_of_previous_hash_and_raw_bytes() -> None:
    import hashlib

    raw = '{"event_id":"e1","x":"中文"}'.encode()
    assert link(GENESIS, raw) == hashlib.sha256(bytes(32) + raw).hexdigest()
    h1 = link(GENESIS, raw)
    assert link(h1, b"next") == hashlib.sha256(bytes.fromhex(h1) + b"next").hexdigest()


def test_an_intact_warehouse_verifies_and_every_stored_line_is_chained_once(feed: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    execute(str(feed), store=str(data), report_invalid=False)
    execute(str(feed), store=str(data), report_invalid=False)  # the same file again: no new links
    with open_warehouse(str(data)) as wh:
        report = verify(wh)
        n_events = wh.query("SELECT count() AS n FROM events FINAL")[0]["n"]
        n_links = wh.query("SELECT count() AS n FROM event_chain FINAL")[0]["n"]
    assert report.ok, report.problems[:5]
    assert report.events == n_events == n_links == report.links
    assert report.cases >= 120


def test_verify_names_every_altered_removed_and_inserted_line_on_chdb(feed: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    execute(str(feed), store=str(data), report_invalid=False)
    with open_warehouse(str(data)) as wh:
        tampered = _tamper(wh)
    runner = CliRunner()
    res = runner.invoke(app, ["audit", "verify", "--data-dir", str(data), "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert not doc["ok"]
    kinds = {(p["kind"], p["case_id"], p["event_id"]) for p in doc["problems"]}
    for kind in ("altered", "removed", "inserted", "column"):
        assert (kind, tampered[kind]["case_id"], tampered[kind]["event_id"]) in kinds, (kind, kinds)
    res = runner.invoke(app, ["audit", "verify", "--data-dir", str(data)])
    assert res.exit_code == 1
    text = res.stdout.replace("\n", "")
    for kind, word in (("altered", "入库后被修改"), ("removed", "入库后被删除"), ("inserted", "不在哈希链中")):
        assert tampered[kind]["event_id"] in text and word in text, (kind, res.stdout)
    # one case alone: only its problem
    res = runner.invoke(app, ["audit", "verify", "--data-dir", str(data), "--case",
                              tampered["removed"]["case_id"], "--json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 1 and {p["kind"] for p in doc["problems"]} == {"removed"}
    with open_warehouse(str(data)) as wh:
        _check_named(verify(wh), tampered)


def test_an_untouched_case_verifies_with_exit_zero(feed: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    execute(str(feed), store=str(data), report_invalid=False)
    with open_warehouse(str(data)) as wh:
        case_id = _pick(wh, 1)[0]["case_id"]
    res = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(data), "--case", case_id])
    assert res.exit_code == 0, res.output
    assert "全部完好" in res.stdout


@pytest.mark.server
def test_verify_names_every_altered_removed_and_inserted_line_on_clickhouse_18(
        feed: Path, clickhouse_server: str) -> None:  # noqa: F811 - fixture
    url = f"{clickhouse_server}/esup_audit{os.getpid()}_{next(_db)}"
    with open_warehouse(url) as wh:
        wh.migrate()
        execute(str(feed), store=wh, report_invalid=False)
        assert verify(wh).ok
        tampered = _tamper(wh)
        _check_named(verify(wh), tampered)


def test_a_retried_batch_and_a_late_line_keep_the_chain_append_only(tmp_path: Path) -> None:
    """Links are in storage order: a late event is appended, nothing already chained is rewritten."""
    with open_warehouse(str(tmp_path / "data")) as wh:
        wh.migrate()
        writer = ChainWriter(wh)
        lines = [("C1", f"e{i}", f'{{"n":{i}}}'.encode()) for i in range(3)]
        assert writer.append(lines) == 3
        assert writer.append(lines) == 0  # a retried batch
        assert writer.append([("C1", "e-late", b'{"late":1}')] + lines[:1]) == 1
        rows = wh.query("SELECT position, event_id, prev_hash, hash FROM event_chain FINAL "
                        "WHERE case_id = 'C1' ORDER BY position")
    assert [r["event_id"] for r in rows] == ["e0", "e1", "e2", "e-late"]
    prev = GENESIS
    for r, raw in zip(rows, [ln[2] for ln in lines] + [b'{"late":1}'], strict=True):
        assert r["prev_hash"] == prev and r["hash"] == link(prev, raw)
        prev = r["hash"]


def test_the_sink_chains_what_it_stores(tmp_path: Path, feed: Path) -> None:
    from streams.embedded import load

    raws: list[bytes] = []
    with open(feed, "rb") as fh:
        valid, invalid, _ = load(fh, None, raws)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with open_warehouse(str(tmp_path / "data")) as wh:
        wh.migrate()
        with Sink(wh, max_rows=97, max_seconds=0) as sink:  # many small batches
            sink.add_events((ev, raw, now) for ev, raw in zip(valid, raws, strict=True))
            sink.add_events((bad, bad.raw, now) for bad in invalid)
        report = verify(wh)
    assert report.ok and report.links == report.events


def test_lines_stored_without_a_chain_are_sealed_once(feed: Path, tmp_path: Path) -> None:
    """A bulk load with Sink(chain=False), or data stored before migration 0003: verify calls the lines
    not in the chain until `esup audit seal` links them (in received order), once."""
    from datetime import UTC, datetime

    from streams.embedded import load

    raws: list[bytes] = []
    with open(feed, "rb") as fh:
        valid, invalid, _ = load(fh, None, raws)
    data = tmp_path / "data"
    with open_warehouse(str(data)) as wh:
        wh.migrate()
        with Sink(wh, chain=False) as sink:
            sink.add_events((ev, raw, datetime.now(UTC)) for ev, raw in zip(valid, raws, strict=True))
        before = verify(wh)
    assert before.links == 0 and {p.kind for p in before.problems} == {"inserted"}
    runner = CliRunner()
    res = runner.invoke(app, ["audit", "seal", "--data-dir", str(data)])
    assert res.exit_code == 0 and f"补入哈希链 {before.events} 条" in res.stdout, res.output
    res = runner.invoke(app, ["audit", "seal", "--data-dir", str(data)])
    assert "补入哈希链 0 条" in res.stdout
    assert runner.invoke(app, ["audit", "verify", "--data-dir", str(data)]).exit_code == 0
