"""Values computed once for every caller that asks for the same key (the preprocessing threads).

Prompt variants (several requests on one video) want the same decoded frames and the same
normalised images: :class:`OnceEach` computes each once while it is kept, lets callers that ask
while it is being computed wait for it, and keeps at most a byte budget, the least recently used
going first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class OnceEach(Generic[K, V]):
    """Each key's value computed once while kept; thread-safe.

    A caller that asks for a key another is computing waits for that value (or its error: a
    failed computation reaches every waiter and is not kept, so a later caller tries again). At
    most ``max_bytes`` of values (``size(value)``) are kept; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._lock = threading.Lock()
        self._values: OrderedDict[K, Future[V]] = OrderedDict()
        self._bytes: dict[K, int] = {}
        #: how many calls got a value computed for another
        self.reused = 0

    def get(self, key: K, compute: Callable[[], V]) -> V:
        if self.max_bytes <= 0:
            return compute()
        with self._lock:
            future = self._values.get(key)
            owner = future is None
            if future is None:
                future = self._values[key] = Future()
            else:
                self._values.move_to_end(key)
                self.reused += 1
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                self._values.pop(key, None)
            future.set_exception(exc)
            raise
        future.set_result(value)
        self._keep(key, self._size(value))
        return value

    def _keep(self, key: K, size: int) -> None:
        """Count the value just computed; the least recently used finished ones go while over budget."""
        with self._lock:
            self._bytes[key] = size
            total = sum(self._bytes.values())
            for old in list(self._values):
                if total <= self.max_bytes:
                    break
                if old in self._bytes:
                    total -= self._bytes.pop(old)
                    del self._values[old]
