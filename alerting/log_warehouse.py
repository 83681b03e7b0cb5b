"""The delivery log in the ClickHouse warehouse: tables ``alert_deliveries`` and ``alert_lifecycle``.

Written against the warehouse interface (``warehouse.open_warehouse(target)`` returning an object
with ``insert(table, rows)`` and ``query(sql, params)``, parameters written ``{name:Type}``), so it
runs on embedded chDB and on a server alike. Column mapping (``schemas/ddl/0001_base_tables.sql``):

``alert_deliveries`` — one row per attempt, identity (delivery_id, attempt, result):
  delivery_id, attempt, result (``ok`` = sent, ``retry`` = a failed try that will be retried,
  ``failed``, ``pending``, ``deferred``, ``cancelled``), alert_id, finding_ids ([alert id] for a
  notice), recipient (the recipient id, never an address), channel, kind (finding | upgrade |
  escalation | digest), attempted_at (the logical ``now``), error, digest (1 for a digest message and
  for each notice it carried), detail (the attempt as JSON without the address, plus ``wall_us`` to
  order attempts made in the same logical instant).

``alert_lifecycle`` — one row per alert version, identity (alert_id, version):
  alert_id, version, status, severity, changed_at, actor (who acknowledged or closed), reason,
  finding_ids, detail (the whole alert state as JSON, the finding's texts masked).

Rows are the same facts the JSONL log writes; everything is derived from them by queries, so a
second worker or ``esup alerts`` in another process sees the same state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from alerting.delivery_log import UNFINISHED_RESULTS, SentStats
from alerting.masking import mask_text
from alerting.model import AlertState, Channel, DeliveryAttempt

log = logging.getLogger(__name__)

DELIVERIES = "alert_deliveries"
LIFECYCLE = "alert_lifecycle"

_TO_DB = {"sent": "ok", "error": "retry"}
_FROM_DB = {v: k for k, v in _TO_DB.items()}
_UNFINISHED_DB = sorted(_TO_DB.get(r, r) for r in UNFINISHED_RESULTS)
_CHUNK = 2000


class Warehouse(Protocol):
    def insert(self, table: str, rows: list[dict[str, Any]]) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class _Detail(DeliveryAttempt, kw_only=True, omit_defaults=True):
    wall_us: int = 0


_enc = msgspec.json.Encoder()
_dec_detail = msgspec.json.Decoder(_Detail)
_dec_alert = msgspec.json.Decoder(AlertState)


def _wall_us(a: DeliveryAttempt) -> int:
    return round(a.wall_at.timestamp() * 1_000_000)


def delivery_row(a: DeliveryAttempt) -> dict[str, Any]:
    detail = _Detail(**{f: getattr(a, f) for f in DeliveryAttempt.__struct_fields__}, wall_us=_wall_us(a))
    detail.address = None
    return {
        "delivery_id": a.delivery_id,
        "attempt": a.attempt,
        "result": _TO_DB.get(a.result, a.result),
        "alert_id": a.alert_id or "",
        "finding_ids": [a.alert_id] if a.alert_id else [],
        "recipient": a.recipient_id,
        "channel": a.channel,
        "kind": a.kind,
        "attempted_at": a.at,
        "error": a.error or "",
        "digest": 1 if (a.kind == "digest" or a.digest_id) else 0,
        "detail": _enc.encode(detail).decode(),
    }


def _attempt(detail: str) -> DeliveryAttempt:
    d = _dec_detail.decode(detail)
    return DeliveryAttempt(**{f: getattr(d, f) for f in DeliveryAttempt.__struct_fields__})


def lifecycle_row(s: AlertState) -> dict[str, Any]:
    f = s.finding
    masked = msgspec.structs.replace(
        s, finding=msgspec.structs.replace(f, message=mask_text(f.message), basis=mask_text(f.basis))
    )
    actor = (
        s.closed_by
        if s.status in ("resolved", "dismissed")
        else s.acknowledged_by
        if s.status == "acknowledged"
        else None
    )
    return {
        "alert_id": s.alert_id,
        "version": s.version,
        "status": s.status,
        "severity": s.severity,
        "changed_at": s.updated_at,
        "actor": actor or "",
        "reason": s.reason or "",
        "finding_ids": [s.alert_id],
        "detail": _enc.encode(masked).decode(),
    }


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class WarehouseDeliveryLog:
    """``DeliveryLog`` on the warehouse. Delivered ids are cached: "delivered" never becomes false."""

    def __init__(self, wh: Warehouse, *, owns: bool = False) -> None:
        self.wh = wh
        self._owns = owns
        self._delivered: set[str] = set()

    @classmethod
    def open(cls, target: str | None) -> WarehouseDeliveryLog:
        from warehouse import open_warehouse  # type: ignore[attr-defined]

        wh = open_warehouse(target)
        wh.migrate()  # idempotent: a fresh directory gets its tables, an up-to-date one is untouched
        return cls(wh, owns=True)

    # --------------------------------------------------------------------------- deliveries

    def already_delivered(self, delivery_id: str) -> bool:
        return delivery_id in self.delivered_among([delivery_id])

    def delivered_among(self, delivery_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(delivery_ids))
        unknown = [d for d in ids if d not in self._delivered]
        for chunk in _chunks(unknown):
            rows = self.wh.query(
                f"SELECT DISTINCT delivery_id FROM {DELIVERIES} WHERE result = 'ok' AND has({{ids:Array(String)}}, delivery_id)",
                {"ids": chunk},
            )
            self._delivered.update(r["delivery_id"] for r in rows)
        return {d for d in ids if d in self._delivered}

    def record(self, attempt: DeliveryAttempt) -> None:
        self.record_many([attempt])

    def record_many(self, attempts: Sequence[DeliveryAttempt]) -> None:
        if not attempts:
            return
        self.wh.insert(DELIVERIES, [delivery_row(a) for a in attempts])
        self._delivered.update(a.delivery_id for a in attempts if a.result == "sent")

    def attempts(
        self, *, alert_id: str | None = None, delivery_id: str | None = None
    ) -> list[DeliveryAttempt]:
        if delivery_id is not None:
            rows = self.wh.query(
                f"SELECT DISTINCT detail FROM {DELIVERIES} WHERE delivery_id = {{d:String}}",
                {"d": delivery_id},
            )
        elif alert_id is not None:
            rows = self.wh.query(
                f"SELECT DISTINCT detail FROM {DELIVERIES} WHERE alert_id = {{a:String}} "
                f"OR (kind = 'digest' AND delivery_id IN (SELECT visitParamExtractString(detail, 'digest_id') "
                f"FROM {DELIVERIES} WHERE alert_id = {{a:String}} AND digest = 1))",
                {"a": alert_id},
            )
        else:
            rows = self.wh.query(f"SELECT DISTINCT detail FROM {DELIVERIES}")
        out = [_attempt(r["detail"]) for r in rows]
        return sorted(out, key=lambda a: (a.wall_at, a.delivery_id))

    def sent_stats(self, recipient_id: str, channel: Channel, since: datetime) -> SentStats:
        rows = self.wh.query(
            f"SELECT uniqExactIf(delivery_id, kind != 'digest') AS notices, "
            f"uniqExactIf(delivery_id, kind = 'digest' OR digest = 0) AS messages, "
            f"countIf(kind = 'digest') AS digests, "
            f"argMaxIf(detail, attempted_at, kind = 'digest') AS last_digest "
            f"FROM {DELIVERIES} WHERE recipient = {{r:String}} AND channel = {{c:String}} "
            f"AND result = 'ok' AND attempted_at >= {{since:DateTime}}",
            {"r": recipient_id, "c": channel, "since": since},
        )
        if not rows:
            return SentStats()
        r = rows[0]
        last = None
        if int(r["digests"] or 0) > 0 and r["last_digest"]:
            last = _attempt(r["last_digest"]).at
        return SentStats(
            notices=int(r["notices"] or 0), messages=int(r["messages"] or 0), last_digest_at=last
        )

    def unfinished(self) -> list[DeliveryAttempt]:
        rows = self.wh.query(
            f"SELECT delivery_id, argMax(detail, (attempted_at, visitParamExtractUInt(detail, 'wall_us'))) AS last, "
            f"argMax(result, (attempted_at, visitParamExtractUInt(detail, 'wall_us'))) AS last_result "
            f"FROM {DELIVERIES} WHERE kind != 'digest' GROUP BY delivery_id "
            f"HAVING countIf(result = 'ok') = 0 AND has({{states:Array(String)}}, last_result)",
            {"states": _UNFINISHED_DB},
        )
        return [_attempt(r["last"]) for r in rows]

    # --------------------------------------------------------------------------- alerts

    def get_alert(self, alert_id: str) -> AlertState | None:
        return self.get_alerts([alert_id]).get(alert_id)

    def get_alerts(self, alert_ids: Iterable[str]) -> dict[str, AlertState]:
        out: dict[str, AlertState] = {}
        for chunk in _chunks(list(dict.fromkeys(alert_ids))):
            rows = self.wh.query(
                f"SELECT alert_id, argMax(detail, version) AS d FROM {LIFECYCLE} "
                f"WHERE has({{ids:Array(String)}}, alert_id) GROUP BY alert_id",
                {"ids": chunk},
            )
            for r in rows:
                out[r["alert_id"]] = _dec_alert.decode(r["d"])
        return out

    def put_alerts(self, states: Sequence[AlertState]) -> None:
        if states:
            self.wh.insert(LIFECYCLE, [lifecycle_row(s) for s in states])

    def list_alerts(self, *, statuses: Iterable[str] | None = None) -> list[AlertState]:
        sql = f"SELECT alert_id, argMax(detail, version) AS d, argMax(status, version) AS s FROM {LIFECYCLE} GROUP BY alert_id"
        params: dict[str, Any] = {}
        if statuses is not None:
            sql += " HAVING has({st:Array(String)}, s)"
            params["st"] = sorted(set(statuses))
        out = [_dec_alert.decode(r["d"]) for r in self.wh.query(sql, params)]
        return sorted(out, key=lambda s: (s.opened_at, s.alert_id), reverse=True)

    def close(self) -> None:
        if self._owns:
            self.wh.close()
