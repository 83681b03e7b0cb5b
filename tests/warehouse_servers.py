"""A real ClickHouse server for the warehouse contract tests, started by pytest on loopback.

This machine's registries offer Debian's clickhouse-server 18.16 (``scripts/install-servers.sh``
installs it). The fixture copies the package's ``config.xml`` with its own data paths and free
loopback ports, starts ``clickhouse-server --config-file=…`` as a plain child process (no systemd)
and stops it at the end of the session. The server runs in the Asia/Kolkata time zone (UTC+05:30) on
purpose: any code that lets the server's zone leak into stored or returned times fails loudly.

Absent binary: the server tests are skipped with the reason, except under CI (``CI=true``), where a
missing server is a failure — CI must test what it claims to test.

Import the fixture from a test module: ``from tests.warehouse_servers import clickhouse_server``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_CONFIG = Path("/etc/clickhouse-server/config.xml")
PACKAGE_USERS = Path("/etc/clickhouse-server/users.xml")
SERVER_TZ = "Asia/Kolkata"

_MINIMAL_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""

_MINIMAL_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log></log><errorlog></errorlog></logger>
  <http_port>0</http_port><tcp_port>0</tcp_port><interserver_http_port>0</interserver_http_port>
  <path></path><tmp_path></tmp_path><user_files_path></user_files_path><format_schema_path></format_schema_path>
  <users_config></users_config><default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size><uncompressed_cache_size>536870912</uncompressed_cache_size>
</yandex>
"""


def server_binary() -> str | None:
    return shutil.which("clickhouse-server") or (
        "/usr/bin/clickhouse-server" if os.access("/usr/bin/clickhouse-server", os.X_OK) else None)


def absent_server_action() -> tuple[str, str]:
    """("fail" | "skip", reason) when no binary: CI must not pass by skipping what it should test."""
    reason = "clickhouse-server is not installed (scripts/install-servers.sh installs Debian's 18.16)"
    return ("fail" if os.environ.get("CI", "").lower() == "true" else "skip"), reason


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _set(xml: str, tag: str, value: str) -> str:
    new, n = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", xml, count=1)
    if n == 0:  # not in the file: add it before the closing root element
        new = xml.replace("</yandex>", f"    <{tag}>{value}</{tag}>\n</yandex>")
    return new


def write_config(root: Path) -> tuple[Path, int]:
    """A config in ``root`` (data, logs, ports of our own); returns (config path, native TCP port)."""
    tcp, http, inter = _free_ports(3)
    xml = PACKAGE_CONFIG.read_text() if PACKAGE_CONFIG.exists() else _MINIMAL_CONFIG
    users = root / "users.xml"
    users.write_text(PACKAGE_USERS.read_text() if PACKAGE_USERS.exists() else _MINIMAL_USERS)
    xml = re.sub(r"<!--.*?-->", "", xml, flags=re.S)
    xml = re.sub(r"<(https_port|tcp_port_secure)>[^<]*</\1>", "", xml)
    xml = re.sub(r"<listen_host>[^<]*</listen_host>", "", xml)
    xml = re.sub(r"<graphite>.*?</graphite>", "", xml, flags=re.S)
    for tag, value in {
        "log": root / "log" / "server.log", "errorlog": root / "log" / "server.err.log",
        "tcp_port": tcp, "http_port": http, "interserver_http_port": inter,
        "path": f"{root / 'data'}/", "tmp_path": f"{root / 'data' / 'tmp'}/",
        "user_files_path": f"{root / 'data' / 'user_files'}/",
        "format_schema_path": f"{root / 'data' / 'format_schemas'}/", "users_config": users,
        "timezone": SERVER_TZ,
    }.items():
        xml = _set(xml, tag, str(value))
    xml = xml.replace("</yandex>", "    <listen_host>127.0.0.1</listen_host>\n</yandex>")
    (root / "log").mkdir(parents=True, exist_ok=True)
    config = root / "config.xml"
    config.write_text(xml)
    return config, tcp


def _ready(port: int) -> bool:
    from clickhouse_driver import Client

    try:
        Client(host="127.0.0.1", port=port, connect_timeout=1, send_receive_timeout=5).execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def require_server_binary() -> str:
    """The clickhouse-server binary, or the test skipped (failed under CI) with the reason."""
    binary = server_binary()
    if binary is None:
        action, reason = absent_server_action()
        if action == "fail":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a ClickHouse server for the session; yields ``clickhouse://default@127.0.0.1:PORT``."""
    binary = require_server_binary()
    root = tmp_path_factory.mktemp("clickhouse-server")
    config, port = write_config(root)
    log = open(root / "log" / "stdout.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([binary, f"--config-file={config}"], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = ""
                for name in ("stdout.log", "server.err.log"):
                    p = root / "log" / name
                    if p.exists():
                        tail += p.read_text(errors="replace")[-2000:]
                pytest.fail(f"clickhouse-server did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.1)
        yield f"clickhouse://default@127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
