"""The recorded clock for your own flow: Bytewax windows that decide by receive time.
(`virtual_time` puts Bytewax's own `EventClock` and `SystemClock` on it too, so that an
unchanged flow replays as it ran.)

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
import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from bytewax.dataflow import Dataflow
from bytewax.operators import _get_system_utc
from bytewax.operators.windowing import (
    UTC_MAX,
    UTC_MIN,
    Clock,
    ClockLogic,
    EventClock,
    SystemClock,
    _WindowLogic,
)

from harness.dataflows import copied
from harness.source.replay import Received, received_time

__all__ = ["IdleTime", "Received", "RecordedClock", "closing_when_idle", "received_time",
           "virtual_time"]

V = TypeVar("V")


class IdleTime:
    """Live only: how far windows may close while the stream is idle.

    The live source calls `observe(quiet)` each time it has handed the flow
    every event received before `quiet` (unix seconds). Your flow's steps
    between the source and its windows are out of the harness's sight, so a
    quiet time is used only `grace` seconds after it was observed: by then
    those events have reached the windows. An event that took longer is
    counted (`overtaken`) and the live run warns that its window may differ
    from a replay's. Once the stream has ended (`end`), windows no longer
    close for idleness: what is still on its way is judged by its own times.

    A live run hands it to the windows of its flow with `closing_when_idle`.
    """

    def __init__(self, grace: float = 1.0) -> None:
        self.grace = grace
        self._lock = threading.Lock()
        self._seen: deque[tuple[float, float]] = deque()  # (observed at, quiet)
        self._usable: float | None = None
        self._overtaken = 0
        self._ended = False

    def observe(self, quiet: float) -> None:
        with self._lock:
            self._seen.append((time.monotonic(), quiet))

    def time(self) -> float | None:
        """The latest quiet time observed at least `grace` seconds ago."""
        with self._lock:
            ripe = time.monotonic() - self.grace
            while self._seen and self._seen[0][0] <= ripe:
                self._usable = self._seen.popleft()[1]
            return self._usable

    def overtook(self) -> None:
        with self._lock:
            self._overtaken += 1

    @property
    def overtaken(self) -> int:
        return self._overtaken

    def end(self) -> None:
        """The stream has ended (the live source is closed)."""
        self._ended = True

    @property
    def closing(self) -> bool:
        """Whether windows close while the stream is idle: until it has ended."""
        return not self._ended


def _closing(idle: IdleTime | None) -> IdleTime | None:
    """`idle` while it closes windows, else None (a replay's clock, or the stream ended)."""
    return idle if idle is not None and idle.closing else None


@dataclass
class _RecordedState:
    watermark_base: datetime = UTC_MIN  # newest event time seen minus the wait
    recv_at_max: float = 0.0  # the receive time of that newest event
    now: float = 0.0  # the latest receive time seen (or idle time used)
    idle: float = 0.0  # the latest idle time used (live only)


@dataclass
class _RecordedLogic(ClockLogic[V, _RecordedState], Generic[V]):
    clock: RecordedClock[V]
    state: _RecordedState
    idle: IdleTime | None = None  # live only (`closing_when_idle`); not in the snapshot

    def before_batch(self) -> None:
        pass

    def _watermark(self, now: float) -> datetime:
        if self.state.watermark_base == UTC_MIN:
            return UTC_MIN
        return self.state.watermark_base + timedelta(seconds=now - self.state.recv_at_max)

    def on_item(self, value: V) -> tuple[datetime, datetime]:
        ts = self.clock.ts_getter(value)
        recv = received_time(value)
        state = self.state
        if recv is not None:
            idle = _closing(self.idle)
            if recv < state.idle and idle is not None:
                idle.overtook()  # reached its window after an idle close passed it
            state.now = max(state.now, recv)
        watermark = self._watermark(state.now)
        base = ts - self.clock.wait_for_system_duration
        if base > watermark:
            state.watermark_base, state.recv_at_max = base, state.now
            watermark = base
        return ts, watermark

    def on_notify(self) -> datetime:
        live = _closing(self.idle)
        idle = live.time() if live is not None else None
        state = self.state
        if idle is not None and idle > state.now:
            state.now = state.idle = idle
        return self._watermark(state.now)

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        """Live only: when (wall time) the watermark reaches `timestamp` if nothing
        arrives, so that Bytewax wakes the window up to close it then."""
        idle = _closing(self.idle)
        if idle is None or self.state.watermark_base == UTC_MIN:
            return None
        seconds = (timestamp - self.state.watermark_base).total_seconds()
        return datetime.fromtimestamp(self.state.recv_at_max + seconds + idle.grace,
                                      tz=timezone.utc)

    def snapshot(self) -> _RecordedState:
        return copy.copy(self.state)


@dataclass
class RecordedClock(Clock[V, _RecordedState]):
    """`EventClock` semantics with "now" = each item's receive time (see the module).

    An item is late iff its time is below `max time seen - wait` plus the
    receive time that has passed since that maximum was seen; windows close
    once their end is at or below that watermark.

    A key's clock is kept for the whole run, in the window step's own state
    (so in its recovery snapshots): Bytewax drops a key whose windows have
    all closed and builds it afresh on its next item, and in a live run an
    idle close does that at a moment a replay cannot know. A window step
    timed by a `RecordedClock` keeps every key it has seen instead, so the
    key's next item is judged by the same clock either way, and a resumed
    run by the clock the key had when the snapshot was taken.
    """

    ts_getter: Callable[[V], datetime]
    wait_for_system_duration: timedelta = timedelta(0)

    def build(self, resume_state: _RecordedState | None) -> _RecordedLogic[V]:
        return _RecordedLogic(self, resume_state or _RecordedState())


_Window = _WindowLogic[Any, Any, Any, Any, Any]


def _keeps_recorded_clocks(is_empty: Callable[[_Window], bool]) -> Callable[[_Window], bool]:
    @functools.wraps(is_empty)
    def _is_empty(self: _Window) -> bool:
        return not isinstance(self.clock, _RecordedLogic) and is_empty(self)
    return _is_empty


# Bytewax discards a window step's key once it is empty, clock and all; a
# RecordedClock's key is never empty (see RecordedClock). Bytewax 0.21.1 is
# final, and tests/test_clock_recovery.py pins this hook.
if not hasattr(_WindowLogic._is_empty, "__wrapped__"):
    _WindowLogic._is_empty = _keeps_recorded_clocks(  # type: ignore[method-assign,assignment]
        _WindowLogic._is_empty)


@dataclass
class _VirtualSystemLogic(ClockLogic[Any, None]):
    """`SystemClock` on the recording's time: "now" is the newest receive time seen
    (`--clock recorded`, live), else it never moves."""

    now: float = 0.0
    idle: IdleTime | None = None  # live only (`closing_when_idle`)

    def before_batch(self) -> None:
        pass

    def on_item(self, value: Any) -> tuple[datetime, datetime]:
        recv = received_time(value)
        if recv is not None and recv > self.now:
            self.now = recv
        now = datetime.fromtimestamp(self.now, tz=timezone.utc)
        return now, now

    def on_notify(self) -> datetime:
        live = _closing(self.idle)
        idle = live.time() if live is not None else None
        if idle is not None and idle > self.now:
            self.now = idle
        return datetime.fromtimestamp(self.now, tz=timezone.utc)

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        return None

    def snapshot(self) -> None:
        return None


def closing_when_idle(flow: Dataflow, idle: IdleTime) -> Dataflow:
    """`flow` whose windows close while the live stream is idle, by `idle`: every
    window's `RecordedClock` (and Bytewax's own clocks, under `virtual_time`) takes its
    idle time. A copy: `flow` itself (a module's `Dataflow`, say) is left as it was."""

    def closing(step: Any) -> Any | None:
        if type(step).__name__ == "stateful_batch":  # a window's keys are built here
            return dataclasses.replace(step, builder=_idle_builder(step.builder, idle))
        return None

    return copied(flow, closing)


def _idle_builder(build: Callable[[Any], Any], idle: IdleTime) -> Callable[[Any], Any]:
    def built(resume_state: Any) -> Any:
        logic = build(resume_state)
        if isinstance(logic, _WindowLogic) and isinstance(
                logic.clock, _RecordedLogic | _VirtualSystemLogic):
            logic.clock.idle = idle
        return logic

    return built


_wall_event_build = EventClock.build


def _event_clock_build(self: EventClock[Any], resume_state: Any) -> ClockLogic[Any, Any]:
    if self.now_getter is _get_system_utc:  # the default: the wall clock
        recorded = RecordedClock(self.ts_getter, self.wait_for_system_duration)
        return recorded.build(resume_state if isinstance(resume_state, _RecordedState)
                              else None)
    return _wall_event_build(self, resume_state)


def virtual_time() -> None:
    """From now on in this process (a replay's, a live run's), Bytewax's own clocks read
    the recording's time instead of the wall clock.

    An `EventClock` left on its default `now_getter` decides as a `RecordedClock`
    with the same `ts_getter` and `wait_for_system_duration`: "now" is the receive
    time of the item at the window (`--clock recorded`, live) and otherwise never
    moves, so windows close by event time alone. A `SystemClock` stamps each item
    with the newest receive time seen (and otherwise with one fixed time). An
    `EventClock` given its own `now_getter` keeps it. The receive time travels with
    the event dict the source emits; a step that replaces the dict with another value
    before the window leaves that window on event time alone. A `time.time()` in your
    own step is not virtualised (`harness check` shows it).
    """
    EventClock.build = _event_clock_build  # type: ignore[method-assign,assignment]
    SystemClock.build = _system_clock_build  # type: ignore[method-assign,assignment]


def _system_clock_build(self: SystemClock, resume_state: None) -> ClockLogic[Any, None]:
    return _VirtualSystemLogic()
