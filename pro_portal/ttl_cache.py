"""A small in-process cache whose entries live ``seconds``: for look-ups every request makes.

What it holds may be up to ``seconds`` old on each process, which is the bound the callers
promise (a revoked ticket stops working within a second, on every node). No invalidation
messages are needed for that, and a node that misses one cannot keep a stale entry longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class TTLCache(Generic[Value]):
    def __init__(self, seconds: float, max_entries: int = 10_000):
        self.seconds, self.max_entries = seconds, max_entries
        self.entries: dict[Hashable, tuple[float, Value]] = {}
        self.lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        now = time.monotonic()
        with self.lock:
            found = self.entries.get(key)
        if found is not None and now - found[0] < self.seconds:
            return found[1]
        value = compute()
        with self.lock:
            if len(self.entries) >= self.max_entries:
                self.entries = {k: v for k, v in self.entries.items() if now - v[0] < self.seconds}
                if len(self.entries) >= self.max_entries:
                    self.entries.clear()
            self.entries[key] = (now, value)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
