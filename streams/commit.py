"""When an input offset may be committed: the one place that decides, and the order it enforces.

Delivery is at-least-once: after a crash the worker re-reads input from the last committed offset.
That is harmless only if everything an event caused is durable before its offset is committed,
and — the subtle part — if the new *state* is durable only after the *effects*. The engine treats an
event it has already applied as a duplicate and produces nothing for it; so if the state changelog
recorded the event but the finding was lost in the crash, the replay would never raise that finding
again. Hence, for every batch of input and every tick:

1. **effects**: dead letters, findings and warehouse batches are written and acknowledged by the
   broker (``acks=all``);
2. **state**: then the changed state records are written to the table's changelog, after those of
   the batch before (so the last record of a case in the changelog is its newest state), and only
   for partitions this worker still owns (after a rebalance the new owner re-applies the batch);
3. **offsets**: then the batch's applied input events are acknowledged to Faust (records the
   supervisor held back, ``Effects.not_applied``, are read again), which commits acknowledged
   offsets every ``commit_interval`` (flushing its own producer first) — except the events of a
   partition whose states were dropped in step 2: ``release`` is told those partitions, and their
   events stay unacknowledged, so they are read again (Faust would count a late acknowledgement
   towards the next commit and move the committed offset past events whose state was never written;
   a crash then lost them — found by the SIGKILL reliability test).

A crash between 1 and 2 replays the batch: the same finding ids and rows are written again and
collapse (ids are deterministic; the warehouse keeps one row per id; alerting skips delivered ids).
A crash between 2 and 3 replays it too: the engine sees duplicates, and the facts of the touched
cases are written again. Nothing is lost and nothing is counted twice.

Batches overlap: the next batch is computed while the previous one's writes are in flight, up to
``max_inflight`` batches. Any write that fails after the client's retries stops the worker (its
offsets stay uncommitted, so the restart re-does the work).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from streams.output import Output
from streams.supervise import Effects

log = logging.getLogger(__name__)

Release = Callable[[set[int]], Awaitable[None]]  # called with the partitions whose states were dropped


class CommitPipeline:
    def __init__(self, output: Output, owned: Callable[[], set[int]], *, max_inflight: int = 3,
                 on_error: Callable[[BaseException], Awaitable[None]] | None = None,
                 on_settled: Callable[[Effects, float], None] | None = None) -> None:
        self.output = output
        self.owned = owned
        self._slots = asyncio.Semaphore(max_inflight)
        self._on_error = on_error
        self._on_settled = on_settled
        self._sent: asyncio.Event | None = None  # the previous batch has started its effect writes
        self._tail: asyncio.Task | None = None  # the previous batch, done when its offsets are released
        self._failed: BaseException | None = None
        self.dropped_states = 0  # state records not written because their partition moved away

    async def reserve(self) -> None:
        """Wait for room in the pipeline. Call *before* computing a batch, then ``submit`` without awaiting
        in between, so batches enter the pipeline in the order their states were computed."""
        if self._failed is not None:
            raise RuntimeError("commit pipeline stopped after a failed write") from self._failed
        await self._slots.acquire()

    def unreserve(self) -> None:
        """Give back a reservation that produced nothing to write."""
        self._slots.release()

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def submit(self, eff: Effects, release: Release | None = None) -> asyncio.Task:
        """Make ``eff`` durable in order, then ``release`` (acknowledge) its input. Needs a ``reserve``."""
        sent = asyncio.Event()
        task = asyncio.ensure_future(self._settle(eff, release, self._sent, self._tail, sent))
        self._sent, self._tail = sent, task
        return task

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted batch is settled (before a rebalance hands partitions over)."""
        tail = self._tail
        if tail is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(tail), timeout)
            return True
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001 - reported by the batch itself
            return False

    async def _settle(self, eff: Effects, release: Release | None, prev_sent: asyncio.Event | None,
                      prev: asyncio.Task | None, sent: asyncio.Event) -> None:
        started = time.monotonic()
        try:
            if prev_sent is not None:
                await prev_sent.wait()
            futs = await self.output.send_outputs(eff)  # 1. effects
            sent.set()
            if futs:
                await asyncio.gather(*futs)
            if prev is not None:
                await prev  # re-raises if the previous batch failed: nothing after it may be released
            owned = self.owned()
            states = {p: s for p, s in eff.states.items() if p in owned}
            dropped = set(eff.states) - set(states)
            if dropped:
                self.dropped_states += sum(len(eff.states[p]) for p in dropped)
            futs = await self.output.send_states(states)  # 2. state
            if futs:
                await asyncio.gather(*futs)
            if release is not None:
                await release(dropped)  # 3. offsets (not those of the dropped partitions)
            if self._on_settled is not None:
                self._on_settled(eff, time.monotonic() - started)
        except BaseException as exc:
            sent.set()
            if self._failed is None:
                self._failed = exc
                if not isinstance(exc, asyncio.CancelledError):
                    log.error("a batch could not be made durable; its offsets stay uncommitted: %r", exc)
                    if self._on_error is not None:
                        await self._on_error(exc)
            raise
        finally:
            self._slots.release()
