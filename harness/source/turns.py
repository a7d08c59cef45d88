"""The partitions one worker thread reads take turns: one batch per pass.

Bytewax asks every partition of a worker for a batch on each pass of its
input step and lets the batches run ahead of the flow within an epoch (ten
seconds by default: a whole replay, often). Eight partitions handing over a
batch each per pass outran a flow that writes 100 items per event by 1.1 GB
on a 20k-event recording; one batch per pass keeps what is in flight to
about one batch's worth (measured: 146 MB).
"""

from __future__ import annotations

import threading
from typing import ClassVar

__all__ = ["Turns"]


class Turns:
    """The turns of the partitions of one source (by `token`) on one worker thread."""

    _lock = threading.Lock()
    _by_thread: ClassVar[dict[tuple[str, int], Turns]] = {}

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.order: list[str] = []  # the partitions, in the order Bytewax asks them
        self.current = 0  # whose turn it is
        self.last = -1  # the index of the partition asked last
        self.spent = False  # a batch has been handed over in this pass

    @classmethod
    def of_this_thread(cls, token: str) -> Turns:
        key = (token, threading.get_ident())
        with cls._lock:
            turns = cls._by_thread.get(key)
            if turns is None:
                turns = cls._by_thread[key] = cls(key)
            return turns

    def join(self, part: str) -> None:
        self.order.append(part)
        self.order.sort()  # Bytewax asks in the order of the partitions' names

    def mine(self, part: str) -> bool:
        """Whether `part` may hand over a batch now (and so it is its turn no more)."""
        index = self.order.index(part)
        if index <= self.last:  # a new pass
            self.spent = False
        self.last = index
        if self.spent or index != self.current % len(self.order):
            return False
        self.spent = True
        self.current = index + 1
        return True

    def leave(self, part: str) -> None:
        index = self.order.index(part)
        del self.order[index]
        if index < self.current:
            self.current -= 1
        self.last = -1
        if not self.order:
            with self._lock:
                self._by_thread.pop(self.key, None)
