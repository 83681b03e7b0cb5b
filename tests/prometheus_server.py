"""A real Prometheus on loopback for tests: Debian's ``prometheus`` binary, a temporary config and TSDB.

``scripts/install-servers.sh`` (run by ``make test``) installs it. ``start_prometheus`` returns once
the server answers ``/-/ready`` (well under a second); the first scrape of a target follows a few
seconds later, so tests poll :meth:`Prometheus.wait_for_target` before querying.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            doc = json.loads(resp.read())
        if doc.get("status") != "success":
            raise AssertionError(f"Prometheus {path}: {doc}")
        return doc["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; the result vector."""
        return self.get("/api/v1/query", query=promql)["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for_target(self, job: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``/api/v1/targets`` until the job's target has been scraped successfully."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            targets = self.get("/api/v1/targets")["activeTargets"]
            last = [t for t in targets if t["labels"].get("job") == job]
            if last and all(t["health"] == "up" for t in last):
                return last[0]
            time.sleep(0.25)
        raise AssertionError(f"target {job} not up after {timeout}s: {last}\n{self.log.read_text()[-2000:]}")

    def wait_for(self, promql: str, predicate: Any, timeout: float = 30.0) -> float:
        """Poll an instant query until its single value satisfies ``predicate``; that value."""
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.scalar(promql)
            if got is not None and predicate(got):
                return got
            time.sleep(0.25)
        raise AssertionError(f"{promql} = {got} after {timeout}s")


@contextmanager
def start_prometheus(workdir: Path, targets: Sequence[str], *, job: str = "esup", scrape_interval: str = "1s",
                     rule_files: Sequence[Path] = ()) -> Iterator[Prometheus]:
    """Run Prometheus scraping ``targets`` (host:port) as ``job``; stopped and reaped on exit."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("prometheus is not installed (scripts/install-servers.sh installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    rules = []
    for i, src in enumerate(rule_files):
        dst = workdir / f"rules-{i}.yml"
        shutil.copy(src, dst)
        rules.append(dst.name)
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": rules,
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after 20 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
