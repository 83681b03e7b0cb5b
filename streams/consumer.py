"""Faust's Kafka consumer, with two changes that matter for a worker's latency and throughput.

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
  table changelog partitions are left to Faust's recovery, which positions them itself.

The subclasses are installed on this app's transport only (``install``), never globally.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults


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

    async def seek_to_committed(self) -> Mapping[Any, int]:
        return await self.call_thread(seek_to_committed_or_beginning, self._ensure_consumer(),
                                      self.consumer._is_changelog_tp)


async def seek_to_committed_or_beginning(consumer: Any, keep: Callable[[Any], bool] = lambda tp: False
                                         ) -> Mapping[Any, int | None]:
    """aiokafka's ``seek_to_committed``, and partitions without a committed offset to their beginning.

    ``consumer`` is an ``AIOKafkaConsumer`` in a group; partitions for which ``keep(tp)`` is true (table
    changelogs, positioned by Faust's recovery) are not rewound. Returns the committed offsets.
    """
    committed = await consumer.seek_to_committed()
    # aiokafka seeks only where the committed offset is > 0: None (never committed) and 0 stay put.
    uncommitted = [tp for tp, offset in committed.items() if not (offset and offset > 0) and not keep(tp)]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class _Consumer(driver.Consumer):
    fast_delivery: bool = True
    thread_class: type = _ConsumerThread

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


def install(app: Any, fetch_wait_ms: int, fast_delivery: bool = True) -> None:
    """Use the consumer above for ``app`` (call before the app starts)."""
    thread_cls = type("EsupConsumerThread", (_ConsumerThread,), {"fetch_wait_ms": int(fetch_wait_ms)})
    app.transport.Consumer = type("EsupConsumer", (_Consumer,),
                                  {"thread_class": thread_cls, "fast_delivery": fast_delivery})
