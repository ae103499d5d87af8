"""Metric points written in batches: a training loop logging one value a step pays for one store
transaction every ``max_points`` points instead of one a call.

A run's buffered points are written when ``max_points`` wait, ``flush_s`` after the first of them
(one flusher thread per process), when any task attempt of the process ends or a run closes, when the process
reads a run, and at interpreter exit. A process killed outright (SIGKILL, the OOM killer) loses at
most the last ``flush_s`` of points; ``metric_flush_s = 0`` writes every call at once (and strict
mode always does).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections.abc import Callable

from orchestrack.record import MetricPoint

#: The buffers of this process holding points, so that a task's end, a read or the exit writes them
#: all; held strongly until written (a run handle dropped with points waiting still writes them).
_pending: set[MetricBuffer] = set()
#: Every live buffer, only to give each new locks in a forked child.
_buffers: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()
_buffers_lock = threading.Lock()


class MetricBuffer:
    """Metric points waiting to be written by ``write`` (one call per batch)."""

    def __init__(self, write: Callable[[list[MetricPoint]], object], *, flush_s: float,
                 max_points: int = 1000) -> None:
        self._write = write
        self.flush_s = flush_s
        self.max_points = max_points
        self._points: list[MetricPoint] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # batches leave in the order they were logged
        with _buffers_lock:
            _buffers.add(self)

    def add(self, points: list[MetricPoint]) -> None:
        """Queue ``points``; write at once when batching is off or the batch is full."""
        if self.flush_s <= 0:
            self._write(points)
            return
        with self._lock:
            first = not self._points
            if first:
                with _buffers_lock:
                    _pending.add(self)
            self._points.extend(points)
            full = len(self._points) >= self.max_points
        if full:
            self.flush()
        elif first:
            _flusher.flush_at(self, time.monotonic() + self.flush_s)

    def flush(self) -> None:
        """Write every waiting point now (one store write)."""
        with self._flushing:
            with self._lock:
                points, self._points = self._points, []
            _flusher.forget(self)
            if points:
                self._write(points)
            # Pending until written: a flush_all meanwhile (a task's end) waits for this write.
            with self._lock:
                if not self._points:
                    with _buffers_lock:
                        _pending.discard(self)

    def _start_over_in_child(self) -> None:
        # A forked child inherits its parent's waiting points (the parent writes them, not the child)
        # and locks another thread may have held at the fork.
        self._points = []
        self._lock, self._flushing = threading.Lock(), threading.Lock()


class _Flusher:
    """One thread of this process that writes each buffer's points when they have waited ``flush_s``
    (a thread per batch cost a training loop a thread start a batch)."""

    def __init__(self) -> None:
        self._due: dict[MetricBuffer, float] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def flush_at(self, buffer: MetricBuffer, moment: float) -> None:
        """Flush ``buffer`` at ``moment`` (``time.monotonic()``), unless it is flushed before."""
        with self._changed:
            self._due.setdefault(buffer, moment)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="orchestrack-metric-flusher", daemon=True)
                self._thread.start()
            self._changed.notify()

    def forget(self, buffer: MetricBuffer) -> None:
        """``buffer`` was flushed: nothing of it is due."""
        with self._changed:
            self._due.pop(buffer, None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [buffer for buffer, moment in self._due.items() if moment <= now]
                if not due:
                    self._changed.wait(min(self._due.values(), default=now + 60.0) - now)
                    continue
            for buffer in due:
                buffer.flush()


_flusher = _Flusher()


def flush_all() -> None:
    """Write the waiting points of every run in this process."""
    with _buffers_lock:
        buffers = list(_pending)
    for buffer in buffers:
        buffer.flush()


def _start_over_in_child() -> None:
    global _buffers_lock, _flusher
    _buffers_lock = threading.Lock()
    _flusher = _Flusher()
    _pending.clear()
    for buffer in list(_buffers):
        buffer._start_over_in_child()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_start_over_in_child)
