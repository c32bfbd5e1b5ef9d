"""Request batching: concurrent requests share one forward pass, run off the event loop.

Each request puts its decoded image on a bounded queue and waits. One task takes the first
image waiting, then more until it has ``max_batch`` or ``max_wait_ms`` has passed, and runs
the batch on the one inference thread. Images that arrive while a batch runs wait for the
next one, so under load batches grow by themselves even with ``max_wait_ms=0``. A full
queue refuses at once (``QueueFull``, answered 503) rather than growing without limit; one-off
work for the inference thread (``run``: class activation maps) counts against the same limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

log = logging.getLogger("resnetlab.serve")
T = TypeVar("T")


NOT_RUNNING = (
    "request batching is not running: the app's lifespan events start it; run the app under "
    "an ASGI server that sends them (uvicorn does; in tests, `with TestClient(app) as client:`)"
)


class QueueFull(Exception):
    """More images are waiting than the queue holds."""


class Stopped(Exception):
    """The batching stopped before the image's batch was answered."""


class Batcher:
    """Groups single images into batches for ``run_batch``.

    Args:
        run_batch: uint8 (N, H, W, 3) images -> (N, K) results; called on the inference
            thread, one batch at a time.
        max_batch: most images in one batch (1: no batching).
        max_wait_ms: how long the first image of a batch waits for others.
        max_queue: most images and one-off jobs (``run``) waiting; one more is refused with
            ``QueueFull``.
    """

    def __init__(
        self,
        run_batch: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch: int = 16,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be positive, max_wait_ms not negative")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.batch_sizes: Counter[int] = Counter()
        self.rejected = 0
        self._queue: asyncio.Queue | None = None
        self._waiting: set[asyncio.Future] = set()  # futures of images not yet answered
        self._jobs = 0  # one-off jobs (``run``) waiting or running
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the batching task and the inference thread (on the server's event loop)."""
        self._queue = asyncio.Queue(self.max_queue)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="resnetlab-inference")
        self._task = asyncio.create_task(self._serve_batches())

    @property
    def running(self) -> bool:
        """Whether images are taken and answered: between ``start`` and ``stop``, while the
        batching task lives (one ended by an error it did not catch answers nothing)."""
        return self._queue is not None and self._task is not None and not self._task.done()

    @property
    def why_not_running(self) -> str:
        """Why no image is taken, for the answer that says so."""
        if self._task is not None and self._task.done():
            return "request batching ended on an error (in the server's log): restart the server"
        return NOT_RUNNING

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        # Images queued, or in a batch not answered, would wait for ever: they are refused,
        # and so is one submitted from now on, until the next start.
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(Stopped())
        self._queue = self._task = self._executor = None

    async def submit(self, image: torch.Tensor) -> torch.Tensor:
        """The result row for one uint8 (H, W, 3) image, computed in some batch.

        Raises:
            QueueFull: ``max_queue`` images are already waiting.
        """
        if not self.running:
            raise RuntimeError(self.why_not_running)
        self.refuse_if_full()
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((image, future))  # no await since the check: there is room
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        return await future

    def refuse_if_full(self) -> None:
        """Raise ``QueueFull`` if ``max_queue`` images and jobs are waiting: ``submit`` and
        ``run`` do, and a caller may ask first, before it spends work on an image that would
        be refused."""
        if self._queue is not None and self._queue.qsize() + self._jobs >= self.max_queue:
            self.rejected += 1
            raise QueueFull

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the inference thread, between batches (for one-off model work),
        counted against ``max_queue`` until it returns.

        Raises:
            QueueFull: ``max_queue`` images and jobs are already waiting.
        """
        self.refuse_if_full()
        self._jobs += 1
        try:
            return await self._on_thread(fn, *args)
        finally:
            self._jobs -= 1

    async def _on_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def stats(self) -> dict:
        """Counters for ``/metadata``: batches run by size, images, refusals, queue length
        (images and one-off jobs waiting)."""
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait * 1000,
            "max_queue": self.max_queue,
            "images": sum(n * count for n, count in self.batch_sizes.items()),
            "batches": sum(self.batch_sizes.values()),
            "largest_batch": max(self.batch_sizes, default=0),
            "batch_sizes": {str(n): self.batch_sizes[n] for n in sorted(self.batch_sizes)},
            "rejected": self.rejected,
            "queued": self._queue.qsize() + self._jobs if self._queue is not None else 0,
        }

    async def _collect(self) -> list[tuple[torch.Tensor, asyncio.Future]]:
        """The next batch: the first image waiting, then others until full or out of time."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _serve_batches(self) -> None:
        while True:
            batch = [(image, f) for image, f in await self._collect() if not f.done()]
            if not batch:
                continue  # every request in it was cancelled
            try:
                images = torch.stack([image for image, _ in batch])  # (N, H, W, 3)
                results = await self._on_thread(self.run_batch, images)
                if len(results) != len(batch):  # rows to the wrong requests, or none
                    raise RuntimeError(
                        f"the model returned {len(results)} rows for a batch of {len(batch)} "
                        f"image{'s' if len(batch) > 1 else ''}"
                    )
            except Exception as e:  # the requests fail, the server goes on
                log.exception("batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batch_sizes[len(batch)] += 1
            for (_, future), row in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(row)
