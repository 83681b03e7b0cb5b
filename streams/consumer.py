"""Faust's Kafka consumer, with the one setting Faust does not expose: how long a fetch may wait.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. Apache Kafka answers a waiting
fetch as soon as data arrives, so the value only matters when nothing comes; some Kafka-protocol
brokers (Tansu, measured here: p50 377 ms at 1500, 27 ms at 100) hold the fetch for the whole wait
instead, which puts most of that wait on every event's latency. ``consumer_fetch_wait_ms`` sets it;
the cost of a short wait is a few more empty fetch requests per second on an idle topic.

The subclasses are installed on this app's transport only (``install``), never globally.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    fetch_wait_ms: int = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_wait_ms  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer


def install(app: Any, fetch_wait_ms: int) -> None:
    """Make ``app``'s consumer fetch with ``fetch_wait_ms`` (call before the app starts)."""
    thread_cls = type("EsupConsumerThread", (_ConsumerThread,), {"fetch_wait_ms": int(fetch_wait_ms)})

    class EsupConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return thread_cls(self, loop=self.loop, beacon=self.beacon)

    app.transport.Consumer = EsupConsumer
