"""ClickHouse access: the dashboards' user can read and nothing else; the pipeline's password never shows.

A ClickHouse 18.16 server of this module's own gets the shipped ``schemas/access/users.d/esup-users.xml``
unchanged, with the users' password hashes in its environment (``from_env``), as an operator would deploy
it. The modern SQL form (``schemas/access/readonly_user.sql``) cannot run on chDB, which has no access
control; its statements are checked to parse with chDB's own parser.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client, errors

from tests.stream_servers import ESUP
from tests.test_reliability_support import OwnClickHouse
from tests.test_security_support import CapturedLogs, debug_logs
from warehouse import WarehouseError, open_warehouse
from warehouse.sql import split_statements

ACCESS = Path(__file__).resolve().parent.parent / "schemas" / "access"
GRAFANA_PW = "gr-" + secrets.token_urlsafe(18)  # made up at run time: nothing like it is in the repository
WRITER_PW = "wr-" + secrets.token_urlsafe(18)


def _sha(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()


def test_the_sql_form_for_modern_servers_parses(tmp_path: Path) -> None:
    statements = split_statements((ACCESS / "readonly_user.sql").read_text(encoding="utf-8"))
    with open_warehouse(str(tmp_path / "chdb")) as wh:  # chDB 26: the parser of the servers this file is for
        kinds = [next(iter(wh.query("EXPLAIN AST " + st)[0].values())).split(" ")[0] for st in statements]
    assert kinds == ["CreateSettingsProfileQuery", "CreateUserQuery", "GrantQuery", "CreateUserQuery", "GrantQuery"]
    text = (ACCESS / "readonly_user.sql").read_text(encoding="utf-8")
    assert "readonly = 1" in text and "GRANT SELECT ON esup.* TO grafana" in text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnClickHouse]:
    root = tmp_path_factory.mktemp("ch-access")
    ch = OwnClickHouse(root, env={"ESUP_GRAFANA_CH_SHA256": _sha(GRAFANA_PW), "ESUP_WRITER_CH_SHA256": _sha(WRITER_PW)})
    (root / "users.d").mkdir()
    shutil.copy(ACCESS / "users.d" / "esup-users.xml", root / "users.d" / "esup-users.xml")
    ch.start()
    try:
        yield ch
    finally:
        ch.stop()


def _writer_url(ch: OwnClickHouse, password: str = WRITER_PW) -> str:
    return f"clickhouse://esup_writer:{password}@127.0.0.1:{ch.port}/esup"


def _feed(tmp: Path) -> Path:
    from simulator import write

    path = tmp / "events.jsonl"
    write(path, None, cases=60, days=12, seed=3)
    return path


@pytest.mark.server
def test_the_dashboards_user_reads_and_can_do_nothing_else(server: OwnClickHouse, tmp_path: Path) -> None:
    from esup.commands.run import execute

    with open_warehouse(_writer_url(server)) as wh:
        wh.migrate()
        execute(str(_feed(tmp_path)), store=wh, report_invalid=False)
        before = {t: wh.query(f"SELECT count() AS n FROM {t}")[0]["n"] for t in ("events", "findings", "event_chain")}
    assert before["events"] > 0
    grafana = Client(host="127.0.0.1", port=server.port, user="grafana", password=GRAFANA_PW, database="esup")
    assert grafana.execute("SELECT count() FROM events")[0][0] == before["events"]
    # What the Grafana plugin sends with every query is allowed (readonly = 2) ...
    assert grafana.execute("SELECT 1", settings={"max_execution_time": 30}) == [(1,)]
    # ... and nothing that changes anything.
    refused = {}
    for sql in ("INSERT INTO events (case_id, occurred_at, received_at, raw) VALUES ('X', now(), now(), 'x')",
                "ALTER TABLE events DELETE WHERE 1 = 1", "ALTER TABLE findings UPDATE message = '' WHERE 1 = 1",
                "DROP TABLE events", "TRUNCATE TABLE findings", "CREATE TABLE x (a UInt8) ENGINE = Memory",
                "CREATE DATABASE other", "RENAME TABLE events TO gone", "OPTIMIZE TABLE events FINAL"):
        with pytest.raises(errors.ServerException) as exc:
            grafana.execute(sql)
        refused[sql.split(" (")[0][:30]] = exc.value.code
    assert set(refused.values()) <= {164, 497}, refused  # READONLY (18.16), ACCESS_DENIED (newer)
    with pytest.raises((errors.Error, EOFError)):  # another database is out of reach (18.16 hangs up)
        Client(host="127.0.0.1", port=server.port, user="grafana", password=GRAFANA_PW,
               database="default").execute("SELECT 1")
    with open_warehouse(_writer_url(server)) as wh:
        after = {t: wh.query(f"SELECT count() AS n FROM {t}")[0]["n"] for t in before}
    assert after == before


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    with debug_logs() as captured:
        yield captured


@pytest.mark.server
def test_the_clickhouse_password_never_shows(server: OwnClickHouse, tmp_path: Path, logs: CapturedLogs,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    # In this process, at DEBUG: connect, migrate, write, read, and a wrong password.
    with open_warehouse(_writer_url(server)) as wh:
        wh.migrate()
        seen += [repr(wh), wh.describe(), str(wh.__dict__)]
    with pytest.raises(WarehouseError) as wrong:
        open_warehouse(_writer_url(server, "not-" + WRITER_PW))
    seen += [str(wrong.value), repr(wrong.value), repr(wrong.value.__cause__)]
    # The command line, with the URL in the environment as docs/security.md says.
    env = {**os.environ, "CLICKHOUSE_URL": _writer_url(server)}
    feed = _feed(tmp_path)
    for args in (["run", "--events", str(feed)], ["run", "--events", str(feed), "--json"], ["db", "counts"],
                 ["audit", "verify"], ["replay", "--to", "2026-10-05"]):
        out = subprocess.run([ESUP, *args], env=env, capture_output=True, timeout=300)
        assert out.returncode in (0, 1), (args, out.stderr.decode()[-2000:])
        seen += [out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace")]
    stored_in = json.loads(subprocess.run([ESUP, "run", "--events", str(feed), "--json"], env=env,
                                          capture_output=True, timeout=300).stdout)["stored_in"]
    assert stored_in == f"clickhouse://esup_writer@127.0.0.1:{server.port}/esup"
    bad = subprocess.run([ESUP, "db", "counts"], env={**env, "CLICKHOUSE_URL": _writer_url(server, "bad-" + WRITER_PW)},
                         capture_output=True, timeout=120)
    assert bad.returncode != 0
    seen += [bad.stdout.decode(errors="replace"), bad.stderr.decode(errors="replace")]
    captured = capfd.readouterr()
    seen += [captured.out, captured.err, *logs.text]
    leaks = [s[:300] for s in seen if WRITER_PW in s]
    assert not leaks, leaks
    assert any("esup_writer" in s for s in logs.text + seen), "the checks saw the connection at all"
