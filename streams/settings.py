"""Settings of the live driver: one typed record, from a YAML file, the environment and the command line.

Operators set three things on every deployment — the broker, the warehouse and the metrics port — so
those have the short environment names the compose file and the Dockerfile use (``ESUP_BROKER``,
``CLICKHOUSE_URL``, ``ESUP_METRICS_PORT``). Every other field can be set as ``ESUP_<FIELD>`` (e.g.
``ESUP_PARTITIONS=16``) or in the file named by ``--config`` / ``ESUP_WORKER_CONFIG``. Precedence:
command line, environment, file, defaults. An unknown key in the file is an error, because a
misspelt ``partitons: 16`` silently ignored would split the co-partitioned topics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

Role = Literal["all", "supervise", "sink"]

ENV_ALIASES = {
    "broker": "ESUP_BROKER",
    "warehouse": "CLICKHOUSE_URL",
    "metrics_port": "ESUP_METRICS_PORT",
}
CONFIG_ENV = "ESUP_WORKER_CONFIG"


class SettingsError(ValueError):
    """A setting that cannot work; the message names it."""


class TopicNames(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    events: str = "case-events"  # input, key = case number, value = one JSON event as sent
    dlq: str = "case-events-dlq"  # rejected input: original key and bytes, reason in headers
    findings: str = "findings"  # key = case number, value = the finding as JSON (rules/findings.py)
    warehouse: str = "warehouse-batches"  # rows on their way to ClickHouse, one message per batch


class Retention(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hours each topic keeps its records; -1 keeps them forever. The state changelog is compacted instead."""

    events: float = 7 * 24
    dlq: float = 30 * 24
    findings: float = 30 * 24
    warehouse: float = 3 * 24


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # -- where things are
    broker: str = "kafka://localhost:9092"
    warehouse: str | None = None  # clickhouse://… or chdb:///dir; None: CLICKHOUSE_URL, else chDB ./data
    metrics_port: int = 9737  # Prometheus /metrics (esup.metrics.DEFAULT_PORT); 0 turns it off
    data_dir: str = "./data/streams"  # Faust's local files (table stores other than memory://)
    web_port: int | None = None  # Faust's own web server; off unless set (two workers need two ports)

    # -- what runs
    app_id: str = "esup"  # the Kafka consumer group and the prefix of the state changelog topic
    role: Role = "all"  # all: supervise + warehouse sink + alerts; supervise; sink (a separate group)
    engine: str = "rules.engine:Engine.default"  # factory of the rules engine (tests plug their own)
    catalog: str | None = None  # item catalog file for Engine.default (None: the shipped one)
    rules_config: str | None = None  # thresholds file for Engine.default (None: config/rules.yaml)
    alerting: bool = True  # deliver findings with alerting/ (routing.yaml) from the `findings` topic
    routing: str | None = None  # routing file (None: config/routing.yaml)
    alert_log: str = "warehouse"  # "warehouse", or a directory for the JSON Lines delivery log
    alert_outbox: str | None = None  # outbox directory when routing uses the outbox transports
    alert_smtp: str | None = None  # host:port: send e-mail there (plain SMTP, e.g. a mail catcher), not per routing
    alert_tick_seconds: float = 30.0  # escalations and digests (on the leader worker only)

    # -- topics
    topics: TopicNames = TopicNames()
    partitions: int = 8  # of every co-partitioned topic: events, state changelog, findings, warehouse, DLQ
    replication: int = 1  # replication factor of every topic (3 on a production cluster)
    retention: Retention = Retention()

    # -- processing
    batch_max: int = 2000  # events per supervise batch
    batch_within: float = 0.05  # seconds a batch waits to fill
    max_inflight: int = 3  # batches whose effects are still being made durable (back-pressure)
    sink_batch_max: int = 2000  # warehouse messages per ClickHouse write
    sink_within: float = 2.0  # seconds the sink waits to fill a write (fewer, larger parts: less merging)
    state_cache: int = 100_000  # decoded case states kept in memory (the table keeps the bytes)
    warehouse_message_bytes: int = 512 * 1024  # a warehouse-batches message stays below this

    # -- time
    tick_seconds: float = 1.0  # how often the ticker fires deadlines with no event
    clock: str = "wall"  # wall | wall+SECONDS | wall-SECONDS | an ISO 8601 instant (frozen clock)
    lateness_seconds: float = 0.0  # the clock stays this far behind input, for events that arrive late

    # -- Kafka client tuning
    session_timeout: float = 30.0
    heartbeat_interval: float = 3.0
    commit_interval: float = 1.0  # how often Faust commits offsets of acknowledged events
    standby_replicas: int = 1  # hot copies of other workers' state (faster take-over)
    producer_max_batch_bytes: int = 1024 * 1024
    consumer_fetch_wait_ms: int = 100  # longest a fetch waits for data (see streams/consumer.py)
    consumer_fast_delivery: bool = True  # hand records to agents without four tasks each (streams/consumer.py)
    stall_seconds: float = 20.0  # an owned partition behind its end this long without progress is reported
    table_store: str = "memory://"  # Faust table store; state is rebuilt from the changelog at start

    # -- Python's cyclic garbage collector (see streams.app.tune_gc)
    gc_threshold: int = 50_000  # allocations between young-generation collections (Python's default: 700)
    gc_freeze_seconds: float = 2.0  # move survivors out of the collector's sight this often; 0: never
    gc_full_seconds: float = 900.0  # a full collection of everything, frozen included, this often; 0: never

    def __post_init__(self) -> None:
        problems = []
        if self.partitions < 1:
            problems.append("partitions must be at least 1")
        if self.replication < 1:
            problems.append("replication must be at least 1")
        if self.batch_max < 1 or self.sink_batch_max < 1:
            problems.append("batch_max and sink_batch_max must be at least 1")
        if self.tick_seconds <= 0:
            problems.append("tick_seconds must be positive")
        if self.lateness_seconds < 0:
            problems.append("lateness_seconds must not be negative")
        if self.max_inflight < 1:
            problems.append("max_inflight must be at least 1")
        if not 0 <= self.metrics_port <= 65535:
            problems.append("metrics_port must be 0 (off) or a TCP port")
        if self.producer_max_batch_bytes < 1:
            problems.append("producer_max_batch_bytes must be at least 1")
        try:
            from streams.clock import parse_clock

            parse_clock(self.clock)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise SettingsError("; ".join(problems))

    # -- derived ---------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> list[str]:
        """``kafka://a:9092;b:9092`` or ``a:9092,b:9092`` -> ``["a:9092", "b:9092"]`` for the Kafka clients."""
        return bootstrap_list(self.broker)

    @property
    def faust_broker(self) -> str:
        return ";".join(f"kafka://{s}" for s in self.bootstrap_servers)

    @property
    def table_name(self) -> str:
        return "case_state"

    @property
    def changelog_topic(self) -> str:
        """Faust's name for the table's changelog (``{app_id}-{table}-changelog``)."""
        return f"{self.app_id}-{self.table_name}-changelog"

    @property
    def leader_topic(self) -> str:
        """Faust's leader-election topic (one partition), used by the alert lifecycle timer."""
        return f"{self.app_id}-__assignor-__leader"

    @property
    def sink_app_id(self) -> str:
        """The consumer group of a dedicated sink process (role ``sink``)."""
        return f"{self.app_id}-sink"


def bootstrap_list(broker: str) -> list[str]:
    out = []
    for part in broker.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            part = part.split("://", 1)[1]
        out.append(part.rstrip("/"))
    if not out:
        raise SettingsError(f"broker {broker!r} names no host:port")
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in StreamSettings.__struct_fields__:
        if name in ("topics", "retention"):
            continue
        key = ENV_ALIASES.get(name, f"ESUP_{name.upper()}")
        value = env.get(key)
        if value is None and name not in ENV_ALIASES:
            continue
        if value is None:
            continue
        data[name] = None if value == "" and name in ("warehouse", "web_port") else value
    return data


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> StreamSettings:
    """Defaults <- file (``path`` or ``$ESUP_WORKER_CONFIG``) <- environment <- ``overrides`` (None skipped)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get(CONFIG_ENV) or None
    if path:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise SettingsError(f"{p}: worker configuration file not found") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{p}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{p}: expected a mapping of settings")
        data.update(loaded)
    data.update(_from_env(env))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(data, StreamSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"worker settings: {exc}") from None
