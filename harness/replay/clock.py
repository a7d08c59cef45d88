"""The recorded clock for your own flow: Bytewax windows that decide by receive time.

Bytewax's `EventClock` measures how far "now" has moved since a key's
newest event was seen with the wall clock, so which events are late
depends on when the process got round to them. `RecordedClock` takes
"now" from the item itself: the time the event was *received*, which a
recording keeps. Then:

- in an ordinary replay (items are plain dicts, no receive time), "now"
  never moves: windows close by event time alone, deterministic on any
  cluster shape;
- in `harness replay --clock recorded` (items are `Received` dicts), "now"
  is the recorded receive time, and the flow decides exactly as it did
  live;
- in `harness live --flow`, "now" is the receive time as events arrive,
  and while the stream is idle windows still close (the harness moves the
  clock up to a time no later than any event still on its way), which
  changes only when a window's result is emitted, never what it says.

    clock = RecordedClock(lambda e: datetime.fromtimestamp(e["timestamp"], timezone.utc),
                          wait_for_system_duration=timedelta(seconds=10))
    counts = count_window("per_minute", edits, clock, windower, key=lambda e: e["wiki"])
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from bytewax.operators.windowing import UTC_MAX, UTC_MIN, Clock, ClockLogic

__all__ = ["Received", "RecordedClock", "received_time"]

V = TypeVar("V")


class Received(dict[str, Any]):
    """An event payload (a dict, as sent) that also knows when it was received.

    `recv` is unix seconds; `seq` its number in the recording. Everything
    that takes a dict takes it (and orjson writes it as the plain object).
    """

    __slots__ = ("recv", "seq")

    def __init__(self, payload: dict[str, Any], recv: float, seq: int) -> None:
        super().__init__(payload)
        self.recv = recv
        self.seq = seq

    def __reduce__(self) -> tuple[Any, ...]:
        return (Received, (dict(self), self.recv, self.seq))


def received_time(item: Any) -> float | None:
    """An item's receive time, or None for a plain payload (event time only)."""
    recv = getattr(item, "recv", None)
    return recv if isinstance(recv, float) else None


# The live run sets this: a time up to which every received event has reached the flow
# (see harness.eventstreams.client.Arrivals); None elsewhere.
_idle_time: Callable[[], float | None] | None = None
_idle_lock = threading.Lock()


def set_idle_time(source: Callable[[], float | None] | None) -> None:
    global _idle_time
    with _idle_lock:
        _idle_time = source


@dataclass
class _RecordedState:
    watermark_base: datetime = UTC_MIN  # newest event time seen minus the wait
    recv_at_max: float = 0.0  # the receive time of that newest event
    now: float = 0.0  # the latest receive time seen


@dataclass
class _RecordedLogic(ClockLogic[V, _RecordedState], Generic[V]):
    ts_getter: Callable[[V], datetime]
    wait: timedelta
    state: _RecordedState = field(default_factory=_RecordedState)

    def before_batch(self) -> None:
        pass

    def _watermark(self, now: float) -> datetime:
        if self.state.watermark_base == UTC_MIN:
            return UTC_MIN
        return self.state.watermark_base + timedelta(seconds=now - self.state.recv_at_max)

    def on_item(self, value: V) -> tuple[datetime, datetime]:
        ts = self.ts_getter(value)
        recv = received_time(value)
        state = self.state
        now = recv if recv is not None else 0.0
        state.now = max(state.now, now)
        watermark = self._watermark(now)
        base = ts - self.wait
        if base > watermark:
            state.watermark_base, state.recv_at_max = base, now
            watermark = base
        return ts, watermark

    def on_notify(self) -> datetime:
        idle = _idle_time() if _idle_time is not None else None
        now = max(self.state.now, idle) if idle is not None else self.state.now
        return self._watermark(now)

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        """Live only: when (wall time) the watermark reaches `timestamp` if nothing
        arrives, so that Bytewax wakes the window up to close it then."""
        if _idle_time is None or self.state.watermark_base == UTC_MIN:
            return None
        seconds = (timestamp - self.state.watermark_base).total_seconds()
        return datetime.fromtimestamp(self.state.recv_at_max + seconds, tz=timezone.utc)

    def snapshot(self) -> _RecordedState:
        return copy.copy(self.state)


@dataclass
class RecordedClock(Clock[V, _RecordedState]):
    """`EventClock` semantics with "now" = each item's receive time (see the module).

    An item is late iff its time is below `max time seen - wait` plus the
    receive time that has passed since that maximum was seen; windows close
    once their end is at or below that watermark.
    """

    ts_getter: Callable[[V], datetime]
    wait_for_system_duration: timedelta = timedelta(0)

    def build(self, resume_state: _RecordedState | None) -> _RecordedLogic[V]:
        return _RecordedLogic(self.ts_getter, self.wait_for_system_duration,
                              resume_state or _RecordedState())
