"""Reading a partition offset after offset: what an agent admits of what Faust delivers.

Faust (0.15.3, with aiokafka 0.14) drops records it has fetched on several paths — a consumer
generation that changes under a fetched batch, flow control around a rebalance or a table recovery —
and counts on a seek back to the committed offset that does not always follow. It then records the
missing offsets as a "gap" (meant for a compacted topic's holes) and commits over them. The SIGKILL
reliability test showed the results: a restarted worker applied offset 895 of an input partition and
next received 1080, on two partitions at once; a partition whose client had fetched to the end while
the worker had applied a third of it; warehouse batches and findings fetched and never delivered.
Processed as delivered, such records are lost (the commit passes them), or processed out of order
when they come again — a closing event applied before the review that preceded it is a skipped step.

So every agent reads through a ``ReadOrder``: it knows where each partition is read from (``start``,
told by the consumer after every seek to the committed offsets) and admits a record only if it is
the next offset. A record before it is a copy of one already admitted (fetched before a seek); a
record after it means records in between never arrived: it and the rest of the partition's batch are
held back (neither processed nor acknowledged), and ``rewind`` names the offset to seek back to.
Records that arrive before the partition's position is known wait for the seek that follows every
assignment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Admission:
    """What a batch's reading order decided."""

    held: set[int] = field(default_factory=set)  # positions in the batch not admitted: read again, not acknowledged
    passed: Counter[str] = field(default_factory=Counter)  # why: gap, reread, unpositioned (and moved, for input)
    rewind: dict[int, int] = field(default_factory=dict)  # partition -> the offset to read it again from

    def hold(self, position: int, why: str) -> None:
        self.held.add(position)
        self.passed[why] += 1


class ReadOrder:
    """The next offset of each partition of one topic; ``next_offset`` may be shared (``PartitionClocks``)."""

    def __init__(self, next_offset: dict[int, int] | None = None) -> None:
        self.next_offset: dict[int, int] = {} if next_offset is None else next_offset

    def start(self, partition: int, offset: int) -> None:
        """The consumer now reads ``partition`` from ``offset`` (an assignment, a seek back)."""
        self.next_offset[partition] = offset

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.next_offset.pop(p, None)

    def position(self, partition: int) -> int | None:
        return self.next_offset.get(partition)

    def admit(self, position: int, partition: int, offset: int, adm: Admission) -> bool:
        """Admit the record at ``position`` of its batch if it is its partition's next offset."""
        at = self.next_offset.get(partition)
        if at is not None and offset == at and partition not in adm.rewind:
            self.next_offset[partition] = at + 1
            return True
        if at is None:
            adm.hold(position, "unpositioned")
        elif offset < at:
            adm.hold(position, "reread")
        else:
            adm.hold(position, "gap")
            adm.rewind.setdefault(partition, at)
        return False

    def admit_all(self, records: Iterable[tuple[int, int]]) -> Admission:
        """Decide a whole batch of (partition, offset), in delivery order."""
        adm = Admission()
        for i, (partition, offset) in enumerate(records):
            self.admit(i, partition, offset, adm)
        return adm
