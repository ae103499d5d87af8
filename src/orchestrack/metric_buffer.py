"""Metric points written in batches: a training loop logging one value a step pays for one store
transaction every ``max_points`` points instead of one a call.

A run's buffered points are written when ``max_points`` wait, ``flush_s`` after the first of them
(a timer thread), when any task attempt of the process ends or a run closes, when the process
reads a run, and at interpreter exit. A process killed outright (SIGKILL, the OOM killer) loses at
most the last ``flush_s`` of points; ``metric_flush_s = 0`` writes every call at once (and strict
mode always does).
"""

from __future__ import annotations

import atexit
import os
import threading
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
        self._timer: threading.Timer | None = None
        with _buffers_lock:
            _buffers.add(self)

    def add(self, points: list[MetricPoint]) -> None:
        """Queue ``points``; write at once when batching is off or the batch is full."""
        if self.flush_s <= 0:
            self._write(points)
            return
        with self._lock:
            if not self._points:
                with _buffers_lock:
                    _pending.add(self)
            self._points.extend(points)
            full = len(self._points) >= self.max_points
            if not full and self._timer is None:
                self._timer = threading.Timer(self.flush_s, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def flush(self) -> None:
        """Write every waiting point now (one store write)."""
        with self._flushing:
            with self._lock:
                points, self._points = self._points, []
                timer, self._timer = self._timer, None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
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
        self._points, self._timer = [], None
        self._lock, self._flushing = threading.Lock(), threading.Lock()


def flush_all() -> None:
    """Write the waiting points of every run in this process."""
    with _buffers_lock:
        buffers = list(_pending)
    for buffer in buffers:
        buffer.flush()


def _start_over_in_child() -> None:
    global _buffers_lock
    _buffers_lock = threading.Lock()
    _pending.clear()
    for buffer in list(_buffers):
        buffer._start_over_in_child()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_start_over_in_child)
