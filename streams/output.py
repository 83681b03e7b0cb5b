"""The worker's Kafka producer for everything it writes: dead letters, findings, warehouse batches, state.

Faust's own ``topic.send`` / table ``__setitem__`` cost about 200 µs per record (measured here: one
table write per event cut a toy agent from 10,000 to 3,200 events/s). This producer writes state
records as whole per-partition record batches (``send_batch``: one future per batch, 340,000
records/s measured) and the few other outputs with plain ``send``; all with ``acks=all``, so an
awaited future means the record is in the broker's log.

Idempotent and transactional producers are not used: at-least-once with idempotent effects is the
design (deterministic ids everywhere; see ``streams.commit``), and some Kafka-protocol brokers do not
implement ``InitProducerId``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer

from rules.findings import encode_finding
from streams.records import dlq_headers, encode_batch, split_batch
from streams.settings import StreamSettings
from streams.supervise import Effects

log = logging.getLogger(__name__)

Futures = list[asyncio.Future]


class Output:
    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.changelog = settings.changelog_topic
        self._producer: AIOKafkaProducer | None = None
        self._started = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        async with self._started:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.bootstrap_servers,
                    client_id=f"{self.settings.app_id}-output",
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=0,
                    max_batch_size=self.settings.producer_max_batch_bytes,
                    max_request_size=max(4 * 1024 * 1024, self.settings.warehouse_message_bytes * 2),
                    request_timeout_ms=30_000,
                    retry_backoff_ms=200,
                )
                await producer.start()
                # send_batch does not wait for metadata the way send does: load it for our topics now.
                for topic in (self.changelog, self.topics.findings, self.topics.warehouse, self.topics.dlq):
                    await producer.partitions_for(topic)
                self._producer = producer
        return self._producer  # type: ignore[return-value]

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _p(self) -> AIOKafkaProducer:
        return self._producer or await self.start()

    async def send_outputs(self, eff: Effects) -> Futures:
        """Start writing dead letters, findings and warehouse batches; the futures resolve when stored."""
        p = await self._p()
        futs: Futures = []
        for rec, reason in eff.dead:
            futs.append(await p.send(
                self.topics.dlq, value=rec.value, key=rec.key, partition=None,
                headers=dlq_headers(reason, self.topics.events, rec.partition, rec.offset, rec.timestamp_ms)))
        for f in eff.findings:
            futs.append(await p.send(self.topics.findings, value=encode_finding(f), key=f.case_id.encode("utf-8")))
        limit = self.settings.warehouse_message_bytes
        n = await self._warehouse_partitions(p)
        for partition, batch in eff.warehouse.items():
            for piece in split_batch(batch, limit):
                futs.append(await p.send(self.topics.warehouse, value=encode_batch(piece),
                                         partition=partition % n if n else None))
        return futs

    async def send_states(self, states: Mapping[int, Mapping[bytes, bytes]]) -> Futures:
        """Write state records to the table's changelog, to the partition each case lives in."""
        p = await self._p()
        futs: Futures = []
        for partition, records in states.items():
            batch = p.create_batch()
            for key, value in records.items():
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futs.append(await p.send_batch(batch, self.changelog, partition=partition))
                    batch = p.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"state record of {len(value)} bytes exceeds the producer's batch size")
            if batch.record_count():
                futs.append(await p.send_batch(batch, self.changelog, partition=partition))
        return futs

    async def _warehouse_partitions(self, p: AIOKafkaProducer) -> int:
        return len(await p.partitions_for(self.topics.warehouse))
