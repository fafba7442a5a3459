"""Work in the order it finishes, so progress counts what is done, not what was asked first.

Collecting futures with `.result()` in submission order holds every later result behind the
slowest early one: counters then sit still and jump at the end. Here each future announces
itself when it is done (a done callback), and work that depends on it (a retouch after its hi-res
fix, a transition after the clips it takes frames from) can be started the moment it is.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from prefect.futures import PrefectFuture

T = TypeVar("T")


class Finishing(Generic[T]):
    """Futures, each with a tag, yielded as they finish; more may be added while iterating."""

    def __init__(self) -> None:
        self._done: queue.SimpleQueue[tuple[T, PrefectFuture[Any]]] = queue.SimpleQueue()
        self._pending = 0

    def add(self, tag: T, future: PrefectFuture[Any]) -> None:
        self._pending += 1
        future.add_done_callback(lambda done: self._done.put((tag, done)))

    def __len__(self) -> int:
        """Futures added and not yet yielded."""
        return self._pending

    def __iter__(self) -> Iterator[tuple[T, PrefectFuture[Any]]]:
        while self._pending:
            tag, future = self._done.get()
            self._pending -= 1
            yield tag, future
