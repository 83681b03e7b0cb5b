"""The delivery log as two JSON Lines files: ``deliveries.jsonl`` and ``alerts.jsonl``.

Used by ``esup demo``, the tests and a single small center without ClickHouse. Both files are
append-only. Writes take an exclusive ``flock`` and are fsynced before the call returns (the
"attempt recorded before and after" promise survives a killed process and, with fsync, a power
cut). Reads go through an in-memory index that first picks up whatever was appended since the last
look — by this process or another one, such as ``esup alerts ack`` while a worker runs. A line cut
short by a crash is skipped with a warning, and the next write starts on a fresh line.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import msgspec

from alerting.delivery_log import UNFINISHED_RESULTS, SentStats
from alerting.model import AlertState, Channel, DeliveryAttempt

log = logging.getLogger(__name__)


def _insort(lst: list[datetime], value: datetime) -> None:
    """Keep ``lst`` sorted; records mostly arrive in time order, so this is usually an append."""
    if not lst or lst[-1] <= value:
        lst.append(value)
    else:
        bisect.insort(lst, value)


class _Tail:
    """Reads the complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.size_seen = -1

    def new_lines(self) -> list[bytes]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size == self.size_seen or size <= self.offset:
            self.size_seen = size
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        self.size_seen = size
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return data[: end + 1].splitlines()


class JsonlDeliveryLog:
    def __init__(self, directory: str | Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.deliveries_path = self.directory / "deliveries.jsonl"
        self.alerts_path = self.directory / "alerts.jsonl"
        self._dtail = _Tail(self.deliveries_path)
        self._atail = _Tail(self.alerts_path)
        self._dec_attempt = msgspec.json.Decoder(DeliveryAttempt)
        self._dec_alert = msgspec.json.Decoder(AlertState)
        self._enc = msgspec.json.Encoder()
        self._delivered: set[str] = set()
        self._latest: dict[str, DeliveryAttempt] = {}
        self._by_alert: dict[str, list[DeliveryAttempt]] = {}
        self._by_delivery: dict[str, list[DeliveryAttempt]] = {}
        # (recipient, channel) -> sorted ``at`` of sent notices, sent messages, sent digests
        self._sent: dict[tuple[str, str], tuple[list[datetime], list[datetime], list[datetime]]] = {}
        self._unfinished: dict[str, DeliveryAttempt] = {}
        self._alerts: dict[str, AlertState] = {}
        self._refresh()

    # ------------------------------------------------------------------------------ reading

    def _refresh(self) -> None:
        for raw in self._dtail.new_lines():
            if not raw.strip():
                continue
            try:
                a = self._dec_attempt.decode(raw)
            except msgspec.DecodeError as exc:
                log.warning(
                    "skipping unreadable line in %s near offset %d: %s",
                    self.deliveries_path,
                    self._dtail.offset,
                    exc,
                )
                continue
            self._index(a)
        for raw in self._atail.new_lines():
            if not raw.strip():
                continue
            try:
                s = self._dec_alert.decode(raw)
            except msgspec.DecodeError as exc:
                log.warning("skipping unreadable line in %s: %s", self.alerts_path, exc)
                continue
            cur = self._alerts.get(s.alert_id)
            if cur is None or s.version >= cur.version:
                self._alerts[s.alert_id] = s

    def _index(self, a: DeliveryAttempt) -> None:
        did = a.delivery_id
        self._latest[did] = a
        self._by_delivery.setdefault(did, []).append(a)
        if a.alert_id:
            self._by_alert.setdefault(a.alert_id, []).append(a)
        if a.result == "sent":
            self._delivered.add(did)
            notices, messages, digests = self._sent.setdefault((a.recipient_id, a.channel), ([], [], []))
            if a.kind != "digest":
                _insort(notices, a.at)
            if a.digest_id is None:
                _insort(messages, a.at)
            if a.kind == "digest":
                _insort(digests, a.at)
            self._unfinished.pop(did, None)
        elif a.kind != "digest" and did not in self._delivered:
            if a.result in UNFINISHED_RESULTS:
                self._unfinished[did] = a
            else:
                self._unfinished.pop(did, None)

    def already_delivered(self, delivery_id: str) -> bool:
        self._refresh()
        return delivery_id in self._delivered

    def delivered_among(self, delivery_ids: Iterable[str]) -> set[str]:
        self._refresh()
        return {d for d in delivery_ids if d in self._delivered}

    def attempts(
        self, *, alert_id: str | None = None, delivery_id: str | None = None
    ) -> list[DeliveryAttempt]:
        self._refresh()
        if delivery_id is not None:
            return list(self._by_delivery.get(delivery_id, ()))
        if alert_id is not None:
            out = list(self._by_alert.get(alert_id, ()))
            digests = {a.digest_id for a in out if a.digest_id}
            for d in sorted(digests):
                out.extend(x for x in self._by_delivery.get(d, ()) if x.kind == "digest")
            return sorted(out, key=lambda x: x.wall_at)
        return [a for lst in self._by_delivery.values() for a in lst]

    def sent_stats(self, recipient_id: str, channel: Channel, since: datetime) -> SentStats:
        self._refresh()
        lists = self._sent.get((recipient_id, channel))
        if lists is None:
            return SentStats()
        notices, messages, digests = lists
        return SentStats(
            notices=len(notices) - bisect.bisect_left(notices, since),
            messages=len(messages) - bisect.bisect_left(messages, since),
            last_digest_at=digests[-1] if digests and digests[-1] >= since else None,
        )

    def unfinished(self) -> list[DeliveryAttempt]:
        self._refresh()
        return list(self._unfinished.values())

    def get_alert(self, alert_id: str) -> AlertState | None:
        self._refresh()
        return self._alerts.get(alert_id)

    def get_alerts(self, alert_ids: Iterable[str]) -> dict[str, AlertState]:
        self._refresh()
        return {a: self._alerts[a] for a in alert_ids if a in self._alerts}

    def list_alerts(self, *, statuses: Iterable[str] | None = None) -> list[AlertState]:
        self._refresh()
        wanted = set(statuses) if statuses is not None else None
        out = [s for s in self._alerts.values() if wanted is None or s.status in wanted]
        return sorted(out, key=lambda s: (s.opened_at, s.alert_id), reverse=True)

    # ------------------------------------------------------------------------------ writing

    def _append(self, path: Path, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size:
                with path.open("rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        data = b"\n" + data  # a line cut short by a crash: start afresh
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def record(self, attempt: DeliveryAttempt) -> None:
        self.record_many([attempt])

    def record_many(self, attempts: Sequence[DeliveryAttempt]) -> None:
        self._append(self.deliveries_path, [self._enc.encode(a) for a in attempts])
        self._refresh()

    def put_alerts(self, states: Sequence[AlertState]) -> None:
        self._append(self.alerts_path, [self._enc.encode(s) for s in states])
        self._refresh()

    def close(self) -> None:
        pass
