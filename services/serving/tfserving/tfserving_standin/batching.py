"""Server-side batching like TF Serving's batching session: requests that arrive within
``batch_timeout_micros`` of each other run as one call of up to ``max_batch_size`` rows."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tfserving_standin.config import Batching

RunBatch = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass
class _Task:
    rows: np.ndarray
    future: Future[dict[str, np.ndarray]] = field(default_factory=Future)


class Batcher:
    """One per loaded servable. ``submit`` returns a future of that request's rows of every output."""

    def __init__(self, run: RunBatch, settings: Batching, on_batch: Callable[[int], None]) -> None:
        self._run = run
        self._settings = settings
        self._on_batch = on_batch
        self._queue: queue.Queue[_Task | None] = queue.Queue(maxsize=settings.max_enqueued_batches * 8)
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, name=f"batcher-{i}", daemon=True)
            for i in range(max(1, settings.num_batch_threads))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, rows: np.ndarray) -> Future[dict[str, np.ndarray]]:
        task = _Task(rows)
        with self._lock:
            if self._closed:
                # The servable was superseded while this request held it: run it alone, don't drop it.
                task.future.set_result(self._run(rows))
                return task.future
            try:
                self._queue.put_nowait(task)
            except queue.Full:
                task.future.set_exception(OverflowError("the batching queue is full; retry later"))
        return task.future

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _collect(self, first: _Task) -> tuple[list[_Task], _Task | None]:
        """Tasks for one batch, and a task that did not fit (it starts the next batch)."""
        tasks, rows = [first], len(first.rows)
        deadline = time.monotonic() + self._settings.batch_timeout_micros / 1e6
        while rows < self._settings.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                task = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if task is None:
                self._queue.put(None)  # keep the stop signal for the loop
                break
            # A request of another image size (a signature with None height/width) cannot join this
            # batch's concatenation: it starts the next batch.
            if (
                rows + len(task.rows) > self._settings.max_batch_size
                or task.rows.shape[1:] != first.rows.shape[1:]
            ):
                return tasks, task
            tasks.append(task)
            rows += len(task.rows)
        return tasks, None

    def _loop(self) -> None:
        pending: _Task | None = None
        while True:
            first = pending or self._queue.get()
            if first is None:
                return
            tasks, pending = self._collect(first)
            try:
                outputs = self._run(np.concatenate([t.rows for t in tasks]))
            except Exception as exc:  # the batch failed: every request in it gets the error
                for task in tasks:
                    task.future.set_exception(exc)
                continue
            self._on_batch(sum(len(t.rows) for t in tasks))
            start = 0
            for task in tasks:
                stop = start + len(task.rows)
                task.future.set_result({name: value[start:stop] for name, value in outputs.items()})
                start = stop
