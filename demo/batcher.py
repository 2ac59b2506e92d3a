"""Batching across callers: `mt serve` merges the texts of concurrent requests into one translation call.

Requests wait in a queue; one worker takes the oldest and everything queued behind it with the same decoding
options, then, while the batch is under its token budget, goes on taking requests as they arrive until none has
come for ``max_wait_s`` (or ``GATHER_FOR`` times that has passed); then it translates them together on its own
thread (the event loop keeps answering HTTP meanwhile). Under load the queue fills while a batch is translated,
and the callers answered by one batch send their next requests within milliseconds, so the batches grow to the
number of callers; a lone caller waits ``max_wait_s``. With
``batching`` off every request is its own call (the comparison `make serve-bench` measures).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "Options", "QueueFull"]

GATHER_FOR = 10  # a batch waits for more requests at most this many times max_wait_s in all


class QueueFull(Exception):
    """The queue holds its maximum number of requests: the caller should retry later."""


@dataclass(frozen=True)
class Options:
    """What a request asks of the search; only requests with equal options share a translation call."""
    beam: int | None = None  # None: the model's decode.beam
    nbest: int = 1
    markup: str = "none"  # none, html, markdown
    attention: bool = False  # alignments asked for


@dataclass
class _Job:
    texts: list[str]
    options: Options
    tokens: int
    done: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, translate: Callable[[list[str], Options], list[Any]], count_tokens: Callable[[list[str]], int],
                 batch_tokens: int = 6000, max_wait_s: float = 0.005, max_queue: int = 256, batching: bool = True):
        """``translate(texts, options)``: their results in order (called on the worker thread, one call at a time);
        ``count_tokens(texts)``: their size in source subwords (the batch budget); ``max_queue``: requests
        waiting at most (more: ``QueueFull``)."""
        self.translate, self.count_tokens = translate, count_tokens
        self.batch_tokens, self.max_wait_s, self.max_queue, self.batching = batch_tokens, max_wait_s, max_queue, batching
        self._queue: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="translate")
        self._worker: asyncio.Task | None = None
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "in_flight": 0}

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued and in flight, then stop (graceful shutdown)."""
        while self._queue or self.stats["in_flight"]:
            await asyncio.sleep(0.01)
        if self._worker:
            self._worker.cancel()
        self._thread.shutdown(wait=True)

    async def submit(self, texts: list[str], options: Options, timeout_s: float | None = None) -> list[Any]:
        """The translations of ``texts``; ``QueueFull`` at once when the queue is full, ``TimeoutError`` after
        ``timeout_s`` (a request not yet started is then dropped from the queue)."""
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} requests are waiting")
        job = _Job(texts, options, self.count_tokens(texts), asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.done), timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):  # timed out, or the client went away
            if job in self._queue:
                self._queue.remove(job)
            raise

    async def _next_batch(self) -> list[_Job]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        first = self._queue.popleft()
        batch, tokens = [first], first.tokens
        if not self.batching:
            return batch
        latest = time.monotonic() + GATHER_FOR * self.max_wait_s  # the batch leaves by then, whatever comes
        while True:
            for job in [j for j in self._queue if j.options == first.options]:
                if tokens + job.tokens <= self.batch_tokens:
                    self._queue.remove(job)
                    batch.append(job)
                    tokens += job.tokens
            full = any(j.options == first.options for j in self._queue)  # those left did not fit
            left = min(self.max_wait_s, latest - time.monotonic())
            if full or left <= 0:
                break
            self._arrived.clear()
            try:  # wait for the next request; none within max_wait_s: the callers there are have all come
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            texts = [t for job in batch for t in job.texts]
            self.stats["in_flight"] += len(batch)
            try:
                results = await loop.run_in_executor(self._thread, self.translate, texts, batch[0].options)
            except Exception as e:  # noqa: BLE001 - every caller of the batch gets the error
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(e)
            else:
                start = 0
                for job in batch:
                    if not job.done.done():
                        job.done.set_result(results[start:start + len(job.texts)])
                    start += len(job.texts)
            finally:
                self.stats["in_flight"] -= len(batch)
            self.stats["requests"] += len(batch)
            self.stats["texts"] += len(texts)
            self.stats["batches"] += 1
