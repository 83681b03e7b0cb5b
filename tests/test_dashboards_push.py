"""``esup dashboards push`` against a stand-in Grafana: ``http.server`` on loopback, in a thread.

No Grafana server can be installed on this machine, so the fake implements the few endpoints the
push uses — ``/api/health``, ``/api/folders``, ``/api/datasources`` (by uid), ``/api/dashboards/db``
— and checks what a real Grafana would refuse: the ``Authorization: Bearer`` header on every call,
the paths and methods, and JSON bodies with the fields Grafana requires. It runs the real CLI
(``esup.cli.app``) and the real client (``grafana-client``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from dashboards import build

TOKEN = "glsa_test_0123456789abcdef"  # looks like a Grafana service-account token


@dataclass
class FakeGrafana:
    url: str
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    token: str = TOKEN


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append((method, self.path, dict(self.headers), body))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._reply(401, {"message": "Unauthorized"})
            path = self.path.split("?")[0]
            if method == "GET" and path == "/api/health":
                return self._reply(200, {"database": "ok", "version": "11.3.0"})
            if path.startswith("/api/folders"):
                uid = path.removeprefix("/api/folders").strip("/")
                if method == "GET":
                    return self._reply(200, state.folders[uid]) if uid in state.folders else \
                        self._reply(404, {"message": "folder not found"})
                if method == "POST" and not uid:
                    if not body.get("title") or not body.get("uid"):
                        state.problems.append(f"folder body {body}")
                    state.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 7}
                    return self._reply(200, state.folders[body["uid"]])
            if path.startswith("/api/datasources/uid/"):
                uid = path.removeprefix("/api/datasources/uid/")
                if method == "GET":
                    return self._reply(200, state.datasources[uid]) if uid in state.datasources else \
                        self._reply(404, {"message": "Data source not found"})
                if method == "PUT":
                    if uid not in state.datasources or body.get("uid") != uid:
                        state.problems.append(f"PUT datasource {uid}")
                    state.datasources[uid] = body
                    return self._reply(200, {"message": "Datasource updated", "datasource": body})
            if method == "POST" and path == "/api/datasources":
                for key in ("name", "type", "access", "uid"):
                    if not body.get(key):
                        state.problems.append(f"datasource without {key}: {body}")
                if body["uid"] in state.datasources:
                    return self._reply(409, {"message": "data source with the same uid already exists"})
                state.datasources[body["uid"]] = body
                return self._reply(200, {"message": "Datasource added", "id": len(state.datasources),
                                         "datasource": body})
            if method == "POST" and path == "/api/dashboards/db":
                board = body.get("dashboard", {})
                if not board.get("uid") or not board.get("title") or "panels" not in board:
                    state.problems.append(f"dashboard body without uid/title/panels: {list(board)}")
                if board.get("id") is not None or body.get("overwrite") is not True:
                    state.problems.append(f"dashboard {board.get('uid')} would not overwrite cleanly")
                if body.get("folderUid") not in state.folders:
                    state.problems.append(f"dashboard {board.get('uid')} into unknown folder {body.get('folderUid')}")
                version = state.dashboards.get(board["uid"], {}).get("version", 0) + 1
                state.dashboards[board["uid"]] = {**board, "version": version}
                return self._reply(200, {"status": "success", "uid": board["uid"], "version": version,
                                         "url": f"/d/{board['uid']}/x", "id": 1})
            state.problems.append(f"unexpected {method} {path}")
            return self._reply(404, {"message": "Not found"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

    return Handler


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _esup(*args: str, env: dict[str, str] | None = None) -> Any:
    from esup.cli import app

    return CliRunner().invoke(app, list(args), env=env or {}, catch_exceptions=False)


def test_push_creates_folder_datasources_and_dashboards_with_the_token(grafana: FakeGrafana) -> None:
    result = _esup("dashboards", "push", "--url", grafana.url, "--token", TOKEN,
                   env={"ESUP_CLICKHOUSE_PASSWORD": "s3cret", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not grafana.problems, grafana.problems
    assert all(h.get("Authorization") == f"Bearer {TOKEN}" for _m, _p, h, _b in grafana.requests)
    assert TOKEN not in result.output and "s3cret" not in result.output
    paths = [(m, p) for m, p, _h, _b in grafana.requests]
    assert paths[0] == ("GET", "/api/health")
    assert ("POST", "/api/folders") in paths
    assert ("POST", "/api/datasources") in paths
    assert [p for m, p in paths if m == "POST" and p == "/api/dashboards/db"] == ["/api/dashboards/db"] * 6
    assert set(grafana.folders) == {build.FOLDER_UID}
    ch = grafana.datasources[build.CLICKHOUSE_UID]
    assert ch["type"] == "grafana-clickhouse-datasource" and ch["jsonData"]["protocol"] == "native"
    assert ch["secureJsonData"] == {"password": "s3cret"}
    assert grafana.datasources[build.PROMETHEUS_UID]["url"] == "http://prometheus:9090"
    pushed = grafana.dashboards
    assert set(pushed) == {b["uid"] for b in build.build_all().values()}
    for board in build.build_all().values():
        assert pushed[board["uid"]]["panels"] == json.loads(json.dumps(board["panels"]))
    assert "电子监察总览" in result.output and "新建" in result.output


def test_a_second_push_updates_in_place_and_keeps_the_stored_password(grafana: FakeGrafana) -> None:
    first = _esup("dashboards", "push", "--url", grafana.url, env={"GRAFANA_TOKEN": TOKEN,
                                                                    "ESUP_CLICKHOUSE_PASSWORD": "s3cret"})
    assert first.exit_code == 0, first.output
    grafana.requests.clear()
    again = _esup("dashboards", "push", "--url", grafana.url, "--json", "--clickhouse-host", "ch.internal",
                  env={"GRAFANA_TOKEN": TOKEN})
    assert again.exit_code == 0, again.output
    assert not grafana.problems, grafana.problems
    methods = {(m, p) for m, p, _h, _b in grafana.requests}
    assert ("PUT", f"/api/datasources/uid/{build.CLICKHOUSE_UID}") in methods
    assert ("POST", "/api/datasources") not in methods and ("POST", "/api/folders") not in methods
    put = next(b for m, p, _h, b in grafana.requests if m == "PUT" and build.CLICKHOUSE_UID in p)
    assert put["jsonData"]["host"] == "ch.internal" and "secureJsonData" not in put  # Grafana keeps the secret
    done = json.loads(again.output)
    assert {d["action"] for d in done if d["kind"] == "dashboard"} == {"updated"}
    assert all(v["version"] == 2 for v in grafana.dashboards.values())


def test_dashboards_only(grafana: FakeGrafana) -> None:
    result = _esup("dashboards", "push", "--url", grafana.url, "--token", TOKEN, "--no-datasources")
    assert result.exit_code == 0, result.output
    assert not grafana.datasources and len(grafana.dashboards) == 6


def test_a_wrong_token_fails_clearly_without_echoing_it(grafana: FakeGrafana) -> None:
    result = _esup("dashboards", "push", "--url", grafana.url, "--token", "wrong-token-value")
    assert result.exit_code == 1
    assert "401" in result.output and "令牌" in result.output
    assert "wrong-token-value" not in result.output
    assert not grafana.dashboards


def test_no_token_at_all_is_refused_before_any_request(grafana: FakeGrafana) -> None:
    result = _esup("dashboards", "push", "--url", grafana.url)
    assert result.exit_code == 1 and "GRAFANA_TOKEN" in result.output
    assert grafana.requests == []


def test_an_unreachable_grafana_names_the_step_and_hides_credentials() -> None:
    result = _esup("dashboards", "push", "--url", "http://admin:pw@127.0.0.1:9/", "--timeout", "2")
    assert result.exit_code == 1
    assert "步骤：连接 Grafana" in result.output.replace("\n", "") and "无法连接" in result.output
    assert "pw" not in result.output.replace("push", "")
