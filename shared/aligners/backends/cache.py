"""A process-wide cache of loaded models, so the same weights are never loaded twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class ModelCache:
    """Maps a load key (model, adapter, device, dtype, ...) to a loaded object.

    Loading happens at most once per key even when several threads ask at the same time.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        #: How many real loads happened per key; tests and users read this to check reuse.
        self.load_counts: dict[Hashable, int] = {}

    def get_or_load(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """Return the cached object for ``key``, loading it with ``loader()`` the first time."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = loader()
            with self._lock:
                self._items[key] = value
                self.load_counts[key] = self.load_counts.get(key, 0) + 1
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        """Drop every cached model (frees memory once no one else holds them)."""
        with self._lock:
            self._items.clear()
            self._key_locks.clear()


MODEL_CACHE = ModelCache()
"""The cache every in-process backend and inspector shares."""
