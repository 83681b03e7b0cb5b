"""The Faust topology of the live driver: topics, the state table, agents and timers.

```
case-events ─► supervise agent: validate ─► case-events-dlq (reason in headers)
 (key: case)        │ events
                    ▼
               engine (rules/) on the case_state table (changelog: esup-case_state-changelog)
                    │ findings, notes, facts, raw events            ▲
                    ├──► findings ──► alerts agent ─► alerting/     │ ticker (every tick_seconds):
                    └──► warehouse-batches ──► warehouse sink agent  │ due cases of owned partitions,
                                                ─► ClickHouse        │ from a per-partition deadline heap
```

Agents are a few lines; the work is in plain code: ``streams.supervise`` (validation, engine,
deadlines), ``streams.commit`` (the durability order and offset release), ``streams.order`` (every
agent reads each partition offset after offset), ``streams.output`` (Kafka writes), ``streams.sink``
(ClickHouse), ``streams.alerts`` (alerting/). ``Runtime`` holds them.

Validation is the first stage of the supervise agent rather than an agent of its own: every Faust
agent on a topic costs about 60 µs per record here (one agent read 10,000 records/s, three agents
on the same topic 5,800/s), and a separate "valid events" topic would double the broker traffic.
The dead-letter path is unchanged: an invalid record goes to ``case-events-dlq`` with its reason.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import faust
from faust.types import TP

from esup import metrics as shared
from rules.findings import decode_finding
from streams import metrics
from streams.clock import PartitionClocks, parse_clock
from streams.commit import CommitPipeline
from streams.order import Admission, ReadOrder
from streams.output import Output
from streams.settings import StreamSettings
from streams.supervise import Effects, InRecord, Supervisor

log = logging.getLogger("esup.streams")


def load_engine(settings: StreamSettings) -> Any:
    """Build the engine from ``settings.engine`` (``module:attr``), e.g. ``rules.engine:Engine.default``."""
    module, _, attr = settings.engine.partition(":")
    obj: Any = importlib.import_module(module)
    for part in (attr or "").split("."):
        if part:
            obj = getattr(obj, part)
    kwargs = {}
    if settings.catalog:
        kwargs["catalog_path"] = settings.catalog
    if settings.rules_config:
        kwargs["config_path"] = settings.rules_config
    return obj(**kwargs)


def _naive_tz(engine: Any) -> timezone | None:
    spec = getattr(getattr(engine, "config", None), "naive_timezone", None)
    if not spec:
        return None
    sign = -1 if spec.startswith("-") else 1
    hh, _, mm = spec.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hh), minutes=int(mm or 0)))


class Runtime:
    """Everything the agents and timers of one worker share."""

    def __init__(self, app: faust.App, settings: StreamSettings, engine: Any = None) -> None:
        self.app = app
        self.settings = settings
        self.now: Callable[[], float] = parse_clock(settings.clock)
        self.engine = engine
        self.output = Output(settings)
        self.supervisor: Supervisor | None = None
        self.pipeline = CommitPipeline(self.output, self.owned, max_inflight=settings.max_inflight,
                                       on_error=self.crash, on_settled=self._settled)
        self.writer: Any = None
        self.alerts: Any = None
        self._sink_pool: Any = None
        self.events_topic = settings.topics.events
        # Every topic an agent of this worker reads, in offset order (streams.order); the input's is the
        # supervisor's, added with it.
        self.orders: dict[str, ReadOrder] = {}
        if settings.role in ("all", "sink"):
            self.orders[settings.topics.warehouse] = ReadOrder()
        if settings.role in ("all", "supervise") and settings.alerting:
            self.orders[settings.topics.findings] = ReadOrder()
        self._progress: dict[TP, tuple[tuple[int, int | None], float]] = {}  # -> (position, since)
        self._read_again: dict[TP, tuple[int, float]] = {}  # -> (offset, when) of the last seek back
        self._busy: set[str] = set()  # topics whose agent is working on a batch (not a stall when it is slow)
        self.epoch = 0  # rebalances seen: a batch acknowledges its input only within the epoch it was taken in

    # ------------------------------------------------------------------------------ wiring
    def attach_table(self, table: Any) -> None:
        if self.engine is None:
            self.engine = load_engine(self.settings)
        clocks = PartitionClocks(self.now, self.settings.lateness_seconds)
        self.supervisor = Supervisor(self.engine, table.data, owned=self.owned, clocks=clocks,
                                     cache_size=self.settings.state_cache, naive_tz=_naive_tz(self.engine))
        self.orders[self.events_topic] = self.supervisor.order

    def owned(self, topic: str | None = None) -> set[int]:
        """Partitions of ``topic`` (the input) this worker is the active owner of (standbys excluded)."""
        topic = topic or self.events_topic
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def highwater(self, partition: int, topic: str | None = None) -> int | None:
        try:
            return self.app.consumer.highwater(TP(topic or self.events_topic, partition))
        except Exception:  # noqa: BLE001 - consumer not ready or partition just moved
            return None

    async def crash(self, exc: BaseException) -> None:
        await self.app.crash(exc)

    # ------------------------------------------------------------------------------ rebalance
    async def on_recovered(self) -> None:
        """The table is restored for the new assignment: index the deadlines of the partitions now owned."""
        if self.supervisor is None:
            return
        self._reconcile()

    def _reconcile(self) -> None:
        sup = self.supervisor
        assert sup is not None
        owned = self.owned()
        indexed = set(sup.index.partitions())
        if indexed - owned:
            # logged: a worker that stops firing deadlines after a rebalance shows here why
            log.info("deadline index: partitions %s no longer owned (owned %s)", sorted(indexed - owned),
                     sorted(owned))
            sup.revoke(indexed - owned)
        if owned - indexed:
            sup.assign(owned - indexed)

    def on_seek(self, positions: Mapping[TP, int]) -> None:
        """The consumer sought its partitions to their committed offsets: each agent reads from there."""
        for tp, offset in positions.items():
            order = self.orders.get(tp.topic)
            if order is not None:
                order.start(tp.partition, offset)

    async def read_again(self, topic: str, partition: int, offset: int, kind: str) -> None:
        """Seek a partition back to ``offset``: records from there on never reached its agent.

        Not during a rebalance (Faust seeks every partition to its committed offset after it), and the
        same seek at most once per ``stall_seconds``: records fetched before it still arrive for a while
        and show the same gap. ``kind`` is counted in ``esup_stream_errors_total``.
        """
        if self.app.rebalancing or partition not in self.owned(topic):
            return
        tp, mono = TP(topic, partition), time.monotonic()
        last = self._read_again.get(tp)
        if last is not None and last[0] == offset and mono - last[1] < self.settings.stall_seconds:
            return
        self._read_again[tp] = (offset, mono)
        metrics.ERRORS.labels(kind).inc()
        log.warning("partition %d of %s: reading again from offset %d (%s)", partition, topic, offset, kind)
        await self.app.consumer.seek(tp, offset)

    async def process(self, topic: str, stream: Any, events: list[Any],
                      work: Callable[[list[bytes]], Awaitable[None]]) -> None:
        """``work`` on the values of a batch's admitted events (streams.order), then acknowledge those."""
        self._busy.add(topic)
        try:
            adm = self.orders[topic].admit_all((e.message.partition, e.message.offset) for e in events)
            if adm.held:
                self._let_go(events, adm.held)
                events = [e for i, e in enumerate(events) if i not in adm.held]
            if events:
                await work([e.message.value for e in events])
            for e in events:
                await stream.ack(e)
            await self._after(topic, adm)
        finally:
            self._busy.discard(topic)

    def _let_go(self, events: list[Any], held: set[int]) -> None:
        """Held-back events: not acknowledged, and no rebalance waits for them (``EsupConsumer.let_go``)."""
        for i in held:
            self.app.consumer.let_go(events[i].message)

    async def _after(self, topic: str, adm: Admission) -> None:
        for why, n in adm.passed.items():
            metrics.HELD.labels(topic, why).inc(n)
        for p, offset in adm.rewind.items():
            await self.read_again(topic, p, offset, "read_gap")

    async def on_revoked(self, revoked: set[TP]) -> None:
        for topic, order in self.orders.items():
            if topic != self.events_topic:  # the input's goes with the supervisor's state, below
                order.forget(tp.partition for tp in revoked if tp.topic == topic)
        if self.supervisor is None:
            return
        parts = {tp.partition for tp in revoked if tp.topic == self.events_topic}
        if parts:
            await self.pipeline.drain(timeout=self.settings.session_timeout / 2)
            self.epoch += 1  # batches still in flight now are not acknowledged (see supervise)
            self.supervisor.revoke(parts)

    # ------------------------------------------------------------------------------ supervise
    async def supervise(self, stream: Any, events: list[Any]) -> None:
        sup = self.supervisor
        assert sup is not None
        self._busy.add(self.events_topic)
        try:
            await self.pipeline.reserve()
        finally:
            self._busy.discard(self.events_topic)
        # From here to submit() nothing awaits: states are computed and queued in one step.
        records = [InRecord(m.key, m.value, m.partition, m.offset,
                            int(round((m.timestamp or 0) * 1000))) for m in (e.message for e in events)]
        eff = sup.apply(records)
        self._count(eff, "event")
        self._let_go(events, eff.admission.held)

        epoch = self.epoch

        async def release(dropped: set[int]) -> None:
            # Acknowledge an event only if it was applied, its partition's new states were written and
            # no rebalance came in between (streams.commit, step 3): otherwise it stays unacknowledged
            # and is read again from the committed offset, and re-applied (a duplicate for the engine
            # if its state did get through).
            stale = 0
            held = eff.admission.held
            for i, e in enumerate(events):
                if i in held:
                    continue
                if self.epoch == epoch and e.message.partition not in dropped:
                    await stream.ack(e)
                else:
                    stale += 1
                    self.app.consumer.let_go(e.message)
            if stale:
                metrics.STALE_ACKS.inc(stale)
                log.info("%d input records of a batch that outlived a rebalance left unacknowledged: "
                         "they are read again", stale)

        self.pipeline.submit(eff, release)
        await self._after(self.events_topic, eff.admission)

    async def tick(self) -> None:
        sup = self.supervisor
        if sup is None:
            return
        try:
            if not self.app.rebalancing and self.app.tables.recovery.completed.is_set():
                self._reconcile()
            now = self.now()
            await self.pipeline.reserve()
            eff = sup.advance(self.highwater, now)
            self._count(eff, "ticker")
            if eff.empty():
                self.pipeline.unreserve()
            else:
                self.pipeline.submit(eff)
            metrics.DEADLINES.set(sup.index.pending())
            shared.set_case_states(sup.status_counts())
        except Exception as exc:  # noqa: BLE001 - a dead timer would silently stop every deadline
            metrics.ERRORS.labels("ticker").inc()
            log.exception("ticker: %r", exc)
            if self.pipeline.failed:
                await self.crash(exc)

    async def watch(self) -> None:
        """Every owned partition an agent reads: the input's lag, and a partition that stopped moving."""
        try:
            mono, watch = time.monotonic(), not self.app.rebalancing
            for topic, order in self.orders.items():
                for p in self.owned(topic):
                    hw = self.highwater(p, topic)
                    at = order.position(p)
                    pos = 0 if at is None else at  # a partition never read counts as fully behind
                    if hw is not None and topic == self.events_topic:
                        shared.set_consumer_lag(topic, p, hw - pos)
                    if not (watch and self._stalled(TP(topic, p), pos, hw, mono)):
                        continue
                    if at is not None:
                        await self.read_again(topic, p, at, "stalled_partition")
                    else:  # never positioned: Faust's seek to the committed offsets did not reach it
                        await self.app.consumer.perform_seek()
        except Exception as exc:  # noqa: BLE001 - a dead timer would stop watching for good
            metrics.ERRORS.labels("watch").inc()
            log.exception("partition watch: %r", exc)

    def _stalled(self, tp: TP, pos: int, hw: int | None, mono: float) -> bool:
        """An owned partition that has records to read but has not moved for ``stall_seconds``.

        Faust can drop records it fetched with no seek back (``streams.order``), or stop fetching a
        partition after a rebalance; the worker then looks healthy while one partition's cases are no
        longer supervised (found by the end-to-end and SIGKILL tests: the Kafka client at the
        partition's end, the worker a third of the way). Reported with the consumer's view; the caller
        reads it again.
        """
        mark = (pos, hw)
        if (hw is None or pos >= hw or tp.topic in self._busy
                or self._progress.get(tp, (None, 0.0))[0] != mark):
            self._progress[tp] = (mark, mono)
            return False
        since = self._progress[tp][1]
        if mono - since < self.settings.stall_seconds:
            return False
        log.warning("partition %d of %s: at offset %d of %d, no progress for %.0f s; consumer: %s",
                    tp.partition, tp.topic, pos, hw, mono - since, self._consumer_view(tp))
        self._progress[tp] = (mark, mono)
        return True

    def _consumer_view(self, tp: TP) -> str:
        """Faust's and aiokafka's view of one partition (private attributes, for the stall report only)."""
        c = self.app.consumer
        view = {
            "active": tp in (getattr(c, "_active_partitions", None) or ()),
            "paused": tp in getattr(c, "_paused_partitions", ()),
            "buffered": tp in getattr(c, "_buffered_partitions", ()),
            "flow_active": getattr(c, "flow_active", None),
            "read_offset": getattr(c, "_read_offset", {}).get(tp),
        }
        try:
            from aiokafka.structs import TopicPartition

            inner = c._thread._ensure_consumer()
            state = inner._fetcher._subscriptions.subscription.assignment.state_value(
                TopicPartition(tp.topic, tp.partition))
            view.update(kafka_position=state.position, kafka_paused=state.paused,
                        kafka_highwater=state.highwater, kafka_has_position=state.has_valid_position)
        except Exception as exc:  # noqa: BLE001 - a report, never a failure
            view["kafka"] = repr(exc)
        return ", ".join(f"{k}={v}" for k, v in view.items())

    def _count(self, eff: Effects, source: str) -> None:
        metrics.count_effects(eff.decoded, eff.notes, eff.findings, eff.received, source=source)

    def _settled(self, eff: Effects, seconds: float) -> None:
        metrics.BATCH_SECONDS.observe(seconds)

    # ------------------------------------------------------------------------------ sink
    async def store(self, messages: list[bytes]) -> None:
        """Write warehouse batches to ClickHouse; retries with back-off until it works."""
        from concurrent.futures import ThreadPoolExecutor

        from streams.sink import WarehouseWriter

        loop = asyncio.get_running_loop()
        if self._sink_pool is None:
            self._sink_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="esup-sink")
        delay = 0.5
        while True:
            try:
                if self.writer is None:
                    self.writer = await loop.run_in_executor(
                        self._sink_pool, lambda: WarehouseWriter(self.settings.warehouse))
                await loop.run_in_executor(self._sink_pool, self.writer.write, messages)
                return
            except Exception as exc:  # noqa: BLE001 - ClickHouse down: wait, keep the offsets
                metrics.ERRORS.labels("warehouse").inc()
                log.warning("warehouse write failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # ------------------------------------------------------------------------------ alerts
    def clock_now(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    async def alert(self, raw: list[bytes]) -> None:
        findings = [decode_finding(v) for v in raw]
        delay = 0.5
        while True:
            try:
                if self.alerts is None:  # opens the delivery log: ClickHouse may be down at this moment too
                    from streams.alerts import AlertHook

                    self.alerts = await asyncio.get_running_loop().run_in_executor(None, AlertHook, self.settings)
                await self.alerts.deliver(findings, self.clock_now())
                return
            except Exception as exc:  # noqa: BLE001 - the delivery log is down: wait, keep the offsets
                metrics.ERRORS.labels("alerting").inc()
                log.warning("alert delivery failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def alert_tick(self) -> None:
        if self.alerts is None:
            return
        try:
            await self.alerts.tick(self.clock_now())
        except Exception as exc:  # noqa: BLE001
            metrics.ERRORS.labels("alerting").inc()
            log.warning("alert lifecycle tick failed: %r", exc)

    async def close(self) -> None:
        await self.pipeline.drain(timeout=10)
        await self.output.stop()
        if self.writer is not None:
            self.writer.close()
        if self.alerts is not None:
            self.alerts.close()


def tune_gc(settings: StreamSettings) -> None:
    """Make the cyclic garbage collector cheap for a worker holding many long-lived case states.

    With Python's defaults a worker spent about a third of its CPU in the collector (333 µs per event
    against 239 µs with it off, measured here): Faust allocates several objects per record, and every
    full collection walks every cached case state again. A higher young-generation threshold makes
    collections rarer, and ``gc.freeze()`` every ``gc_freeze_seconds`` (a timer of the app) moves the
    survivors — case states, mostly — to the permanent generation, which collections never walk. Case
    states hold no reference cycles; what else a freeze keeps from the collector (a cycle that becomes
    garbage later) is reclaimed by a full collection every ``gc_full_seconds``, whose pause is logged.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(700, settings.gc_threshold), 20, 100)


def create_app(settings: StreamSettings, *, engine: Any = None) -> faust.App:
    """The Faust app for ``settings.role``; ``engine`` overrides ``settings.engine`` (tests)."""
    s = settings
    supervise_role = s.role in ("all", "supervise")
    sink_role = s.role in ("all", "sink")
    alerting = supervise_role and s.alerting
    app = faust.App(
        s.app_id if supervise_role else s.sink_app_id,
        broker=s.faust_broker,
        store=s.table_store,
        datadir=s.data_dir,
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication,
        topic_allow_declare=False,  # streams.topics declares every topic before the worker starts
        topic_disable_leader=not alerting,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=s.web_port is not None,
        web_port=s.web_port or 6066,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=s.heartbeat_interval,
        broker_commit_interval=s.commit_interval,
        table_standby_replicas=s.standby_replicas,
        producer_max_batch_size=s.producer_max_batch_bytes,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=True,
    )
    from streams.consumer import install

    rt = Runtime(app, s, engine)
    install(app, s.consumer_fetch_wait_ms, s.consumer_fast_delivery, on_seek=rt.on_seek, input_topic=s.topics.events)
    app.esup_runtime = rt  # type: ignore[attr-defined]

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=s.partitions,
                         key_serializer="raw", value_serializer="raw")

    if supervise_role:
        table = app.Table(s.table_name, partitions=s.partitions, key_type=bytes, value_type=bytes)
        rt.attach_table(table)
        table.on_recover(rt.on_recovered)

        @app.agent(topic(s.topics.events), name="supervise")
        async def supervise(stream: Any) -> None:
            """validate → dead letters | events → engine and state → effects → commit pipeline."""
            async for events in stream.noack_take(s.batch_max, within=s.batch_within):
                await rt.supervise(stream, events)

        @app.timer(s.tick_seconds, name="ticker")
        async def ticker() -> None:
            """Fire deadlines of cases that get no event (per-partition heaps, partition clocks)."""
            await rt.tick()

    if alerting:
        @app.agent(topic(s.topics.findings), name="alerts")
        async def alerts(stream: Any) -> None:
            """Findings → alerting/ (route, dedup, mask, send, log); acknowledged once recorded."""
            async for events in stream.noack_take(500, within=1.0):
                await rt.process(s.topics.findings, stream, events, rt.alert)

        @app.timer(s.alert_tick_seconds, on_leader=True, name="alert-lifecycle")
        async def alert_lifecycle() -> None:
            """Escalations, yellow-to-red upgrades and held digests, on the leader only."""
            await rt.alert_tick()

    if sink_role:
        @app.agent(topic(s.topics.warehouse), name="warehouse-sink")
        async def warehouse_sink(stream: Any) -> None:
            """warehouse-batches → ClickHouse in large writes; acknowledged once stored."""
            async for events in stream.noack_take(s.sink_batch_max, within=s.sink_within):
                await rt.process(s.topics.warehouse, stream, events, rt.store)

    if s.gc_freeze_seconds > 0:
        @app.timer(s.gc_freeze_seconds, name="gc-freeze")
        async def gc_freeze() -> None:
            gc.freeze()

    if s.gc_full_seconds > 0:
        @app.timer(s.gc_full_seconds, name="gc-full")
        async def gc_full() -> None:
            started = time.monotonic()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            log.info("full garbage collection: %d objects freed in %.2f s", found, time.monotonic() - started)

    @app.timer(s.tick_seconds, name="partition-watch")
    async def partition_watch() -> None:
        """Input lag, and partitions that stopped moving: read again (streams.order)."""
        await rt.watch()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await rt.on_revoked(revoked)

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await rt.close()

    return app
