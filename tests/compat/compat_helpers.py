"""Small helpers shared by the compatibility test modules."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from typing import Callable, Hashable, Optional, TypeVar

T = TypeVar("T")

# Per-call gRPC wait used by the tests (seconds). Generous: CI machines are small.
WAIT_S = 60


def new_id(prefix: str) -> str:
    """A unique workflow instance ID (letters, digits, '-' only)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class SideEffects:
    """Thread-safe record of side effects performed by activities (they run in this
    process, on the worker's thread pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter = collections.Counter()
        self._log: list = []

    def record(self, key: Hashable, value=None) -> int:
        """Count one execution of `key`; returns the new count (1 on the first run)."""
        with self._lock:
            self._counts[key] += 1
            self._log.append((key, value))
            return self._counts[key]

    def count(self, key: Hashable) -> int:
        with self._lock:
            return self._counts[key]

    def total(self, pred: Callable[[Hashable], bool] = lambda k: True) -> int:
        with self._lock:
            return sum(c for k, c in self._counts.items() if pred(k))

    def keys(self, pred: Callable[[Hashable], bool] = lambda k: True) -> list:
        with self._lock:
            return [k for k in self._counts if pred(k)]

    def values(self, key: Hashable) -> list:
        with self._lock:
            return [v for k, v in self._log if k == key]


def wait_until(
    predicate: Callable[[], Optional[T]],
    *,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll `predicate` until it returns a truthy value; return that value or fail."""
    deadline = time.monotonic() + timeout_s
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # keep polling through transient errors, report the last
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{extra}")
        time.sleep(interval_s)
