"""The index of upcoming deadlines: one heap per owned partition, so a tick touches only due cases.

Scanning every open case each second would cost O(cases) per tick; the heap costs O(log n) per
change and O(due) per tick. Entries are never removed in place: a case whose deadline moved gets a
new entry and the old one is recognised as stale when popped (its due time no longer matches
``due_of``). When stale entries outnumber live ones the heap is rebuilt, which bounds its size.

A partition's heap is built from the state table when the partition is assigned (after Faust has
restored the table from its changelog) and dropped when it is revoked, so after a rebalance the new
owner fires the moved deadlines.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DeadlineIndex:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        self._due: dict[int, dict[str, float]] = {}

    def partitions(self) -> list[int]:
        return sorted(self._heaps)

    def owns(self, partition: int) -> bool:
        return partition in self._heaps

    def pending(self, partition: int | None = None) -> int:
        """Cases with a pending deadline (in one partition, or all)."""
        if partition is not None:
            return len(self._due.get(partition, ()))
        return sum(len(d) for d in self._due.values())

    def rebuild(self, partition: int, entries: Iterable[tuple[str, float | None]]) -> None:
        due = {case: at for case, at in entries if at is not None}
        heap = [(at, case) for case, at in due.items()]
        heapq.heapify(heap)
        self._heaps[partition] = heap
        self._due[partition] = due

    def drop(self, partition: int) -> None:
        self._heaps.pop(partition, None)
        self._due.pop(partition, None)

    def set(self, partition: int, case: str, at: float | None) -> None:
        """Record the case's next deadline (None: nothing pending). Unowned partitions are ignored."""
        due = self._due.get(partition)
        if due is None:
            return
        if at is None:
            due.pop(case, None)
            return
        if due.get(case) == at:
            return
        due[case] = at
        heap = self._heaps[partition]
        heapq.heappush(heap, (at, case))
        if len(heap) > 2 * len(due) + 1024:
            self._compact(partition)

    def next_at(self, partition: int) -> float | None:
        heap, due = self._heaps.get(partition), self._due.get(partition)
        while heap:
            at, case = heap[0]
            if due.get(case) == at:  # type: ignore[union-attr]
                return at
            heapq.heappop(heap)
        return None

    def pop_due(self, partition: int, upto: float) -> list[str]:
        """Cases of ``partition`` whose deadline is at or before ``upto``; they leave the index.

        The caller advances each one and puts its next deadline back with ``set``.
        """
        heap, due = self._heaps.get(partition), self._due.get(partition)
        if not heap or due is None:
            return []
        out: list[str] = []
        while heap and heap[0][0] <= upto:
            at, case = heapq.heappop(heap)
            if due.get(case) == at:
                del due[case]
                out.append(case)
        return out

    def _compact(self, partition: int) -> None:
        heap = [(at, case) for case, at in self._due[partition].items()]
        heapq.heapify(heap)
        self._heaps[partition] = heap
