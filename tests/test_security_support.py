"""Shared by the security tests: every log record of every logger, at DEBUG, as the text a reader of the
logs would see (message and traceback). Kept in a ``test_security*`` module: nothing from conftest."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

_FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(_FORMAT.format(record))  # format() appends the traceback of exc_info


@contextmanager
def debug_logs() -> Iterator[CapturedLogs]:
    """The root logger at DEBUG for the duration, every record kept."""
    handler = CapturedLogs()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
