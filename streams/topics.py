"""Every Kafka topic the live driver uses, declared with the admin client before any worker starts.

A topic a client auto-creates gets the broker's default of one partition; the state changelog and
the input then disagree on partition count and a case's events and its state end up on different
workers. So ``esup worker`` declares all topics first (``esup worker --declare-only`` does only
that, for operators who create topics from a deployment job), and refuses to start when an existing
co-partitioned topic has another partition count. Faust is told not to declare topics itself.

The list below is the operator's reference (also printed by ``esup worker --show-topics``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from streams.settings import StreamSettings

log = logging.getLogger(__name__)

HOUR_MS = 3600 * 1000


class TopicMismatch(RuntimeError):
    """An existing topic whose layout breaks co-partitioning; the message says what to do."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    purpose: str = ""
    copartitioned: bool = True  # must have the same partition count as the input


def _retention(hours: float) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(-1 if hours < 0 else int(hours * HOUR_MS))}


def topic_specs(s: StreamSettings) -> list[TopicSpec]:
    t, r, n = s.topics, s.retention, s.partitions
    return [
        TopicSpec(t.events, n, _retention(r.events),
                  "input: one JSON event per record, key = case number (办件编号)"),
        TopicSpec(s.changelog_topic, n, {"cleanup.policy": "compact"},
                  "case state (Faust table changelog), key = case number; compacted, never deleted"),
        TopicSpec(t.findings, n, _retention(r.findings), "findings as JSON, key = case number"),
        TopicSpec(t.warehouse, n, _retention(r.warehouse),
                  "raw events, facts, findings and notes on their way to ClickHouse (msgpack batches)"),
        TopicSpec(t.dlq, n, _retention(r.dlq),
                  "rejected input: original key and bytes; headers esup-reason, esup-source, esup-received-ms",
                  copartitioned=False),
        TopicSpec(s.leader_topic, 1, {"cleanup.policy": "delete"},
                  "Faust leader election (alert escalations run on one worker)", copartitioned=False),
    ]


def declare_topics(s: StreamSettings, *, timeout: float = 30.0) -> list[str]:
    """Create missing topics; check the existing ones. Returns the names created by this call."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    specs = topic_specs(s)
    deadline = time.monotonic() + timeout
    admin = None
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers, client_id=f"{s.app_id}-admin",
                                     request_timeout_ms=int(min(timeout, 30) * 1000))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise TopicMismatch(f"cannot reach the broker at {s.broker}: {exc}") from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [sp for sp in specs if sp.name not in existing]
        created: list[str] = []
        if missing:
            new = [NewTopic(sp.name, sp.partitions, s.replication, topic_configs=sp.config) for sp in missing]
            try:
                admin.create_topics(new, timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                pass  # another worker was faster
            created = [sp.name for sp in missing]
            for name in created:
                log.info("topic %s created", name)
        _check(admin, specs, s)
        return created
    finally:
        admin.close()


def _partition_counts(admin, names: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in admin.describe_topics(names):
        out[d.get("name") or d.get("topic")] = len(d.get("partitions") or [])
    return out


def _check(admin, specs: list[TopicSpec], s: StreamSettings) -> None:
    deadline = time.monotonic() + 10
    while True:
        counts = _partition_counts(admin, [sp.name for sp in specs])
        if all(counts.get(sp.name) for sp in specs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # metadata of a topic just created may lag
    problems = []
    for sp in specs:
        have = counts.get(sp.name, 0)
        if not have:
            problems.append(f"{sp.name}: not found after creation")
        elif sp.copartitioned and have != s.partitions:
            problems.append(f"{sp.name}: {have} partitions, the worker is configured for {s.partitions}")
    if problems:
        raise TopicMismatch(
            "topics do not match the configuration (case events and case state must have the same partition "
            "count, or a case's state lives on another worker): " + "; ".join(problems)
            + ". Set ESUP_PARTITIONS to the existing count, or create the topics anew.")
