"""Server-side micro-batching: concurrent requests share forward/backward passes.

Requests put their images in a queue. A collector task takes the first waiting request, then
keeps collecting until ``max_batch`` images are waiting or ``max_wait_ms`` has passed since it
took the first, and hands the concatenated batch to ONE worker thread that runs the torch
work (ODIN's input-gradient step included: no ``inference_mode`` anywhere). A request is never
split; one that would overflow the batch waits for the next. A batch that raises fails only the
requests in it; the collector keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

Outputs = dict[str, Tensor]


class MicroBatcher:
    """``await submit(x)`` -> ``fn(x)`` computed inside a shared batch (x: (k, C, H, W))."""

    def __init__(self, fn: Callable[[Tensor], Outputs], max_batch: int = 64, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._pending: deque[tuple[Tensor, asyncio.Future]] = deque()
        self._waiting_images = 0
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="odin-ood-torch")
        self._task: asyncio.Task | None = None
        self.batches = 0  # batches run and images scored, for monitoring
        self.images = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, x: Tensor) -> Outputs:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((x, future))
        self._waiting_images += len(x)
        self._arrived.set()
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_wait
            while self._waiting_images < self.max_batch and (left := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            live = [(x, f) for x, f in batch if not f.done()]  # clients that gave up are skipped
            if live:
                await self._run(loop, live)

    def _take(self) -> list[tuple[Tensor, asyncio.Future]]:
        batch: list[tuple[Tensor, asyncio.Future]] = []
        n = 0
        while self._pending and (not batch or n + len(self._pending[0][0]) <= self.max_batch):
            x, f = self._pending.popleft()
            self._waiting_images -= len(x)
            batch.append((x, f))
            n += len(x)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Tensor, asyncio.Future]]) -> None:
        try:
            out = await loop.run_in_executor(self._executor, self.fn, torch.cat([x for x, _ in batch]))
        except Exception as exc:
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        self.batches += 1
        self.images += sum(len(x) for x, _ in batch)
        start = 0
        for x, f in batch:
            if not f.done():
                f.set_result({k: v[start : start + len(x)] for k, v in out.items()})
            start += len(x)
