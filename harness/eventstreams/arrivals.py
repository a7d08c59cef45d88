"""Receive times of a stream's events, and when all of them have been handed on.

The stream stamps and settles (`harness.eventstreams.stream`); live mode reads
`quiet_since()` to close windows while the stream is idle (`harness.live`).
"""

from __future__ import annotations

import threading
import time

__all__ = ["Arrivals"]


class Arrivals:
    """Receive times, and when every event received so far has been handed on.

    `stamp()` gives an event its receive time (`ReceivedEvent.received`, what a
    recording keeps as `recv`) and counts it; `settle()` counts one event
    done with (delivered to the consumer and handled, or dropped). Both take
    one lock, so `quiet_since()` can say, atomically: at this time, every
    event stamped before it has been settled, or None. Live mode closes
    windows while the stream is idle only up to such a time, never past the
    receive time of an event still on its way.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamped = 0
        self._settled = 0
        self._latest = 0.0  # times never go back, even when the system clock does

    def _now(self) -> float:
        self._latest = max(self._latest, time.time())
        return self._latest

    def stamp(self) -> float:
        with self._lock:
            self._stamped += 1
            return self._now()

    def settle(self, count: int = 1) -> None:
        if count:
            with self._lock:
                self._settled += count

    def quiet_since(self) -> float | None:
        with self._lock:
            return self._now() if self._settled == self._stamped else None
