"""Faust's Kafka consumer, with changes for a worker's latency and throughput, and for never losing a record.

* **Fetch wait.** Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. Apache Kafka
  answers a waiting fetch as soon as data arrives, so the value only matters when nothing comes; some
  Kafka-protocol brokers (Tansu, measured here: p50 377 ms at 1500, 27 ms at 100) hold the fetch for
  the whole wait instead, which puts most of that wait on every event's latency.
  ``consumer_fetch_wait_ms`` sets it; a short wait costs a few empty fetch requests a second when idle.
* **Delivery without four tasks per record.** Faust hands every fetched record to the agents with
  ``wait_first(deliver(record), suspend_flow.wait())``, which creates four asyncio tasks and an
  ``asyncio.wait`` per record — about a third of Faust's cost per record, measured here. Delivery
  almost never has to wait (it puts the record on an agent's queue), so ``wait_first`` first runs it
  directly; only if it does wait (a full queue, flow control) does the record take Faust's own path,
  with the coroutine resumed exactly where it stopped (``_resume``). Same outcome, same cancellation.

* **Seek back also where nothing was committed yet.** After a rebalance Faust seeks every partition
  to its committed offset, so records it fetched and then dropped (Faust discards a fetched batch when
  the consumer generation changes under it) are read again. aiokafka's ``seek_to_committed`` skips
  partitions with no committed offset, so there the position stays *after* the dropped records and
  they are never processed: a partition nobody had committed yet was silently skipped to its end
  (found by the SIGKILL end-to-end test: two of eight partitions never read, position = end offset).
  Here such input partitions go back to their beginning, as ``auto_offset_reset=earliest`` promises;
  table changelog partitions are left to Faust's recovery, which positions them itself. Where each
  partition now reads from is handed to ``on_seek``: every agent admits a partition strictly in offset
  order from there (``streams.order``) and seeks back when records are missing.
* **No commits over a gap.** When a record arrives more than one offset after the previous one, Faust
  records the offsets in between as a "gap" and later commits over it, as if they had been processed
  (right for a compacted topic, whose offsets have holes). The topics this worker acknowledges are
  not compacted, so a gap there is records Faust fetched and dropped: committing over them would lose
  them for good. Gaps are not recorded; the agent reads such records again (``streams.order``).

The subclasses are installed on this app's transport only (``install``), never globally.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults

log = logging.getLogger(__name__)


@types.coroutine
def _resume(coro: Coroutine, first: Any) -> Generator[Any, Any, Any]:
    """Drive ``coro`` — already started, and suspended on ``first`` — as if it had never left its task."""
    value = first
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - cancellation and errors go to the coroutine
            try:
                value = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                value = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _continue(coro: Coroutine, first: Any) -> Any:
    return await _resume(coro, first)


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    fetch_wait_ms: int = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_wait_ms  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer

    positions: Mapping[Any, int] = {}  # where the last seek_to_committed left the partitions (changelogs aside)

    async def seek_to_committed(self) -> Mapping[Any, int]:
        committed, self.positions = await self.call_thread(
            seek_to_committed_or_beginning, self._ensure_consumer(), self.consumer._is_changelog_tp)
        return committed


async def seek_to_committed_or_beginning(consumer: Any, keep: Callable[[Any], bool] = lambda tp: False
                                         ) -> tuple[Mapping[Any, int | None], dict[Any, int]]:
    """aiokafka's ``seek_to_committed``, and partitions without a committed offset to their beginning.

    ``consumer`` is an ``AIOKafkaConsumer`` in a group; partitions for which ``keep(tp)`` is true (table
    changelogs, positioned by Faust's recovery) are not rewound. Returns the committed offsets, and
    the offset each partition not kept now reads from.
    """
    committed = await consumer.seek_to_committed()
    # aiokafka seeks only where the committed offset is > 0: None (never committed) and 0 stay put.
    moved = [tp for tp in committed if not keep(tp)]
    uncommitted = [tp for tp in moved if not (committed[tp] and committed[tp] > 0)]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    positions = {tp: committed[tp] for tp in moved if tp not in uncommitted}
    for tp in uncommitted:
        positions[tp] = await consumer.position(tp)
    return committed, positions


class _Consumer(driver.Consumer):
    fast_delivery: bool = True
    thread_class: type = _ConsumerThread
    on_seek: Callable[[Mapping[Any, int]], None] | None = None  # set per app by ``install``

    async def seek_to_committed(self) -> Mapping[Any, int]:
        committed = await super().seek_to_committed()
        if self.on_seek is not None:
            self.on_seek(self._thread.positions)
        return committed

    def let_go(self, message: Any) -> None:
        """Give up a delivered message without acknowledging it: its offset is not committed, so it is read
        again, and a rebalance no longer waits for it.

        Faust's ``wait_empty`` (the first step of every rebalance) waits until each message a stream
        delivered is acknowledged or garbage. A message the worker holds back (``streams.order``) or
        leaves unacknowledged after a rebalance is neither while the agent still refers to its batch
        — and an agent waiting for its next batch refers to the last one: the rebalance then waited
        for ever (found by the SIGKILL test under load: ``wait_empty: Waiting for tasks`` every 10 s,
        no deadline fired).
        """
        message.acked = True  # Faust's own acknowledgement path now ignores it; its offset is not recorded
        self._unacked_messages.discard(message)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        log.warning("%s[%d]: offsets %d to %d were fetched but never delivered; not committed over them",
                    tp.topic, tp.partition, offset_from, offset_to - 1)

    def _new_consumer_thread(self) -> Any:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        first = coros[0] if coros else None
        if (not self.fast_delivery or len(coros) != 2 or not isinstance(first, types.CoroutineType)
                or self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            step = first.send(None)
        except StopIteration as done:  # delivered without waiting: the common case
            other = coros[1]
            if isinstance(other, types.CoroutineType):
                other.close()  # the suspend_flow waiter was never started
            return WaitResults([first], [done.value], False)
        return await super().wait_first(_continue(first, step), coros[1], timeout=timeout)


class _DroppingConsumer(_Consumer):
    """Fault injection for tests: input records dropped between fetch and delivery, once each.

    ``ESUP_FAILPOINT_DROP=[TOPIC/]PARTITION:FIRST-LAST[,...]`` (the input topic unless named; LAST may
    be left out: to the end) makes the worker lose those records the first time they are fetched, as
    Faust does on its own in rare interleavings — so a test can show the worker reads them again,
    without waiting for the race. Never set in production; ``install`` logs it when it is.
    """

    drop_ranges: tuple[tuple[str, int, int, float], ...] = ()

    _dropped: set[tuple[str, int, int]] | None = None  # (topic, partition, offset) dropped once already

    async def getmany(self, timeout: float) -> Any:
        if self._dropped is None:
            self._dropped = set()
        dropped = self._dropped
        async for tp, message in super().getmany(timeout):
            key = (tp.topic, tp.partition, message.offset)
            if key not in dropped and any(t == key[0] and p == key[1] and lo <= key[2] <= hi
                                          for t, p, lo, hi in self.drop_ranges):
                dropped.add(key)
                continue
            yield tp, message


def parse_failpoint(spec: str, topic: str) -> tuple[tuple[str, int, int, float], ...]:
    """``"1:20-39,sink/2:30-"`` -> ((topic, 1, 20, 39), ("sink", 2, 30, inf))."""
    out = []
    for part in filter(None, (x.strip() for x in spec.split(","))):
        named, _, where = part.rpartition("/")
        partition, _, span = where.partition(":")
        first, _, last = span.partition("-")
        out.append((named or topic, int(partition), int(first), float(last) if last else float("inf")))
    return tuple(out)


def install(app: Any, fetch_wait_ms: int, fast_delivery: bool = True,
            on_seek: Callable[[Mapping[Any, int]], None] | None = None, input_topic: str = "") -> None:
    """Use the consumer above for ``app`` (call before the app starts); ``on_seek`` gets every partition's
    position (changelogs aside) after each seek to the committed offsets."""
    thread_cls = type("EsupConsumerThread", (_ConsumerThread,), {"fetch_wait_ms": int(fetch_wait_ms)})
    attrs: dict[str, Any] = {"thread_class": thread_cls, "fast_delivery": fast_delivery,
                             "on_seek": staticmethod(on_seek) if on_seek else None}
    base: type = _Consumer
    failpoint = os.environ.get("ESUP_FAILPOINT_DROP")
    if failpoint:
        base = _DroppingConsumer
        attrs.update(drop_ranges=parse_failpoint(failpoint, input_topic))
        log.warning("fault injection: records %s (default topic %s) are dropped once after they are fetched "
                    "(a test setting)", failpoint, input_topic)
    app.transport.Consumer = type("EsupConsumer", (base,), attrs)
