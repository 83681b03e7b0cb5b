"""HTTP ingest: ``POST /events`` for approval systems that cannot speak Kafka.

The body is one JSON event, a JSON array of events, or JSON Lines (``application/x-ndjson``,
``application/jsonl`` or ``text/plain``; also recognised when a JSON body does not parse as one
value). Every event is checked against the contract (``schemas.events.decode_event``); the valid
ones are written to ``case-events`` — key the case number, value the event's own bytes as sent — and
acknowledged by the broker before the response is sent. The response lists every rejected event with
its position and reason, so a vendor fixes exactly the lines that failed:

* ``200`` every event accepted;
* ``207`` some accepted, some rejected (the accepted ones are stored: do not send them again);
* ``422`` none accepted; ``413`` body too large; ``503`` the broker did not take the events.

Run with ``esup publish --serve HOST:PORT`` (or ``python -m streams.ingest_http``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import web

from schemas.events import InvalidEvent, decode_event
from streams.settings import StreamSettings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024
_JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "text/plain")
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_loose = msgspec.json.Decoder()


def split_body(body: bytes, content_type: str) -> list[tuple[int, bytes]]:
    """(position, raw event) pairs: 1-based line numbers for JSON Lines, 0-based indexes for a JSON array."""
    stripped = body.strip()
    if not stripped:
        return []
    if content_type not in _JSONL_TYPES:
        if stripped[:1] == b"[":
            try:
                return [(i, bytes(r)) for i, r in enumerate(_raw_list.decode(stripped))]
            except msgspec.DecodeError:
                pass  # not one array: read it as lines, each line gets its own error
        elif stripped.count(b"\n") == 0:
            return [(1, stripped)]
        else:
            try:
                _loose.decode(stripped)
                return [(1, stripped)]  # one (pretty-printed) JSON value
            except msgspec.DecodeError:
                pass  # JSON Lines sent as application/json
    out = []
    for n, line in enumerate(body.split(b"\n"), start=1):
        line = line.strip()
        if line:
            out.append((n, line))
    return out


class Ingest:
    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.topic = settings.topics.events
        self._producer: Any = None

    async def start(self, app: web.Application | None = None) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, acks="all",
                                          enable_idempotence=False, linger_ms=2, client_id="esup-ingest")
        await self._producer.start()

    async def stop(self, app: web.Application | None = None) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _json({"error": f"body over {MAX_BODY_BYTES} bytes; send smaller batches"}, 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": f"body over {MAX_BODY_BYTES} bytes; send smaller batches"}, 413)
        ctype = (request.content_type or "").lower()
        items = split_body(body, ctype)
        if not items:
            return _json({"accepted": 0, "rejected": 0, "errors": [{"error": "empty body: no events"}]}, 422)
        is_array = ctype not in _JSONL_TYPES and body.lstrip()[:1] == b"["
        where = "index" if is_array else "line"
        errors: list[dict[str, Any]] = []
        good: list[tuple[bytes, bytes]] = []
        for pos, raw in items:
            ev = decode_event(raw)
            if isinstance(ev, InvalidEvent):
                err: dict[str, Any] = {where: pos, "error": ev.error}
                if ev.event_id:
                    err["event_id"] = ev.event_id
                errors.append(err)
            else:
                good.append((ev.case_id.encode("utf-8"), raw))
        if good:
            try:
                futs = [await self._producer.send(self.topic, value=raw, key=key) for key, raw in good]
                await asyncio.gather(*futs)
            except Exception as exc:  # noqa: BLE001 - the caller must retry the whole request
                log.error("ingest: broker did not take %d events: %r", len(good), exc)
                return _json({"error": f"events not stored, retry later: {exc}", "accepted": 0,
                              "rejected": len(errors), "errors": errors}, 503)
        status = 200 if not errors else (207 if good else 422)
        return _json({"accepted": len(good), "rejected": len(errors), "errors": errors}, status)

    async def health(self, request: web.Request) -> web.Response:
        return _json({"ok": self._producer is not None, "topic": self.topic}, 200)


def _json(doc: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=msgspec.json.encode(doc), status=status, content_type="application/json",
                        charset="utf-8")


def make_app(settings: StreamSettings) -> web.Application:
    ingest = Ingest(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app.router.add_post("/events", ingest.handle)
    app.router.add_get("/health", ingest.health)
    app.on_startup.append(ingest.start)
    app.on_cleanup.append(ingest.stop)
    app["ingest"] = ingest
    return app


def serve(settings: StreamSettings, host: str = "0.0.0.0", port: int = 8088) -> None:
    """Run the ingest server until interrupted."""
    web.run_app(make_app(settings), host=host, port=port, print=None)


if __name__ == "__main__":  # pragma: no cover - `esup publish --serve` is the documented way
    import sys

    from streams.settings import load_settings

    logging.basicConfig(level="INFO")
    hostport = sys.argv[1] if len(sys.argv) > 1 else "0.0.0.0:8088"
    h, _, p = hostport.rpartition(":")
    serve(load_settings(), h or "0.0.0.0", int(p))
