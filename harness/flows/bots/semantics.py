"""The detection semantics (docs/contract.md, section 1), defined once.

Everything that decides what an event *means* lives here: which events count,
how a window is identified, when an event is late, when a window closes and
what its summary says. The Bytewax flow, the reference model and the live
mode all call into this module; none of them re-states a rule.
"""

from __future__ import annotations

import functools
import itertools
import marshal
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from harness.errors import UsageError
from harness.recording.envelope import NOT_OBJECT

ALIGN_2023: Final = 1_672_531_200  # 2023-01-01T00:00:00Z

# Times a window summary can render as an ISO date (years 1..9999).
RENDERABLE_MIN: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
RENDERABLE_MAX: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_WINDOW: Final = 366 * 86_400  # parameters beyond a year only invite overflow
MAX_LATENESS: Final = 366 * 86_400
MAX_MIN_COUNT: Final = 1_000_000_000

CANARY: Final = "canary"
BAD_USER: Final = "bad-user"
BAD_TIMESTAMP: Final = "bad-timestamp"
TIMESTAMP_RANGE: Final = "timestamp-out-of-range"
LATE: Final = "late"


@dataclass(frozen=True, slots=True)
class DetectionParams:
    """Parameters of the bot detector; defaults are the contract's."""

    window: int = 5
    lateness: int = 10
    align: int = ALIGN_2023
    min_count: int = 2
    threshold: float = 10.0

    def __post_init__(self) -> None:
        checks = (
            ("--window", self.window, 1, MAX_WINDOW),
            ("--lateness", self.lateness, 0, MAX_LATENESS),
            ("--min-count", self.min_count, 1, MAX_MIN_COUNT),
            ("--align", self.align, RENDERABLE_MIN, RENDERABLE_MAX),
        )
        for name, value, low, high in checks:
            if type(value) is not int or not low <= value <= high:
                raise UsageError(f"{name} must be a whole number {low}..{high}, got {value!r}")
        if not (isinstance(self.threshold, int | float) and math.isfinite(self.threshold)
                and self.threshold >= 0):
            raise UsageError(f"--threshold must be a finite number >= 0, got {self.threshold!r}")

    def timestamp_range(self) -> tuple[int, int]:
        """The timestamps whose window starts and ends within years 1..9999 (inclusive)."""
        w, a = self.window, self.align
        first = a - ((a - RENDERABLE_MIN) // w) * w  # the first window start >= year 1
        last_end = a + ((RENDERABLE_MAX - a) // w) * w  # the last window end <= year 9999
        return first, last_end - 1

    def window_id(self, timestamp: int) -> int:
        return (timestamp - self.align) // self.window

    def window_start(self, window_id: int) -> int:
        return self.align + window_id * self.window


def classify(payload: Any, params: DetectionParams | None = None) -> tuple[str, int] | str:
    """Return `(user, timestamp)` for a countable event, else the reason it is not.

    The reason is `CANARY` for canaries (dropped silently, but counted) or one
    of the invalid reasons. Booleans are not integers here, and a timestamp
    whose window (under `params`) a summary could not render is invalid
    rather than a crash downstream.
    """
    if not isinstance(payload, dict):
        return NOT_OBJECT
    meta = payload.get("meta")
    if isinstance(meta, dict) and meta.get("domain") == CANARY:
        return CANARY
    user = payload.get("user")
    if not isinstance(user, str):
        return BAD_USER
    timestamp = payload.get("timestamp")
    if type(timestamp) is not int:
        return BAD_TIMESTAMP
    low, high = (params or _DEFAULT).timestamp_range()
    if not low <= timestamp <= high:
        return TIMESTAMP_RANGE
    return user, timestamp


_DEFAULT = DetectionParams()


@functools.lru_cache(maxsize=1 << 16)  # window starts and ends repeat across users
def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """One closed window of one user: the flow's main output."""

    user: str
    window_start: int
    window_end: int
    count: int
    first_timestamp: int
    last_timestamp: int
    rate: float
    malicious: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "count": self.count,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "rate": self.rate,
            "malicious": self.malicious,
        }


def summarize(
    params: DetectionParams, user: str, window_id: int, count: int, first: int, last: int
) -> WindowSummary | None:
    """The summary of a closed window, or None when it has too few events."""
    if count < params.min_count:
        return None
    rate = count / (last - first) if last != first else float(count)
    start = params.window_start(window_id)
    return WindowSummary(
        user=user,
        window_start=start,
        window_end=start + params.window,
        count=count,
        first_timestamp=first,
        last_timestamp=last,
        rate=rate,
        malicious=rate > params.threshold,
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input line that was not counted in a window, and why."""

    seq: int
    reason: str
    user: str | None = None
    timestamp: int | None = None
    where: str | None = None  # for damaged recording lines: the place

    def to_json(self) -> dict[str, Any]:
        row = {"seq": self.seq, "reason": self.reason, "user": self.user,
               "timestamp": self.timestamp}
        if self.where is not None:
            row["where"] = self.where
        return row


@dataclass(slots=True)
class Tally:
    """Conservation counts: events = canary + invalid + late + counted + outside.

    `outside` counts events outside a replayed slice (`--from/--until/--wiki`;
    0 for a whole recording). `skipped` counts lines of a damaged recording
    passed over under `--skip-damaged`; they are not events.
    """

    events: int = 0
    canary: int = 0
    invalid: int = 0
    late: int = 0
    counted: int = 0
    windows: int = 0
    malicious: int = 0
    skipped: int = 0
    outside: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def conserved(self) -> bool:
        return (self.events
                == self.canary + self.invalid + self.late + self.counted + self.outside)

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @property
    def damaged(self) -> int:
        """Lines of a damaged recording skipped (the flow contract's name for them)."""
        return self.skipped

    @damaged.setter
    def damaged(self, lines: int) -> None:
        self.skipped = lines


@dataclass(slots=True)
class _UserState:
    watermark_base: float  # largest timestamp seen minus lateness
    seen_at: float  # the clock's reading when watermark_base last rose (0: event time only)
    windows: dict[int, list[int]]  # id -> [count, first, last]
    oldest: int  # the smallest open window id (meaningless while windows is empty)


class Detector:
    """Per-user lateness and tumbling windows for one ordered stream of events.

    The watermark of a user is `max timestamp - lateness`, plus the time the
    clock has advanced since that maximum was seen: exactly Bytewax's
    `EventClock`. By default there is no clock (event time only: replay),
    so the watermark moves only with event time and the result is
    independent of speed and batching. With `recorded`, the clock is each
    event's receive time (`recvs`): live mode, and its exact replay. An
    event is late iff its timestamp is below its user's watermark; a window
    closes once its end is at or below the watermark (checked on every
    event of that user, and on `advance`), or at end of input.
    """

    __slots__ = ("params", "recorded", "users")

    def __init__(self, params: DetectionParams, recorded: bool = False) -> None:
        self.params = params
        self.recorded = recorded
        self.users: dict[str, _UserState] = {}

    def process(
        self,
        users: list[str],
        timestamps: list[int],
        seqs: list[int],
        tally: Tally,
        emit: list[WindowSummary | DeadLetter],
        recvs: list[float] | None = None,
    ) -> None:
        """Feed events in stream order; append what closes or is late to `emit`.

        `recvs` (the clock: each event's receive time) is required when
        `recorded`, ignored otherwise.
        """
        params = self.params
        lateness, window, align, min_count = (params.lateness, params.window, params.align,
                                              params.min_count)
        states = self.users
        nows: Iterable[float] = recvs if self.recorded and recvs is not None else _NO_CLOCK
        counted = late = 0
        # strict=False: `nows` is endless without a clock
        for user, ts, seq, now in zip(users, timestamps, seqs, nows, strict=False):  # hot
            wid = (ts - align) // window
            state = states.get(user)
            if state is None:
                states[user] = _UserState(ts - lateness, now, {wid: [1, ts, ts]}, wid)
                counted += 1
                continue
            watermark = state.watermark_base + (now - state.seen_at)
            if ts < watermark:
                late += 1
                emit.append(DeadLetter(seq, LATE, user, ts))
                continue
            if ts - lateness > watermark:
                state.watermark_base = watermark = ts - lateness
                state.seen_at = now
            counted += 1
            windows = state.windows
            acc = windows.get(wid)
            if acc is None:
                windows[wid] = [1, ts, ts]
                if wid < state.oldest or len(windows) == 1:
                    state.oldest = wid
            else:
                acc[0] += 1
                if ts < acc[1]:
                    acc[1] = ts
                elif ts > acc[2]:
                    acc[2] = ts
            # A window closes once its end, align + (id + 1) * window, is at or below
            # the watermark: id < (watermark - align) // window. The event's own
            # window cannot (its end > ts >= watermark).
            bound = (watermark - align) // window
            oldest = state.oldest
            while oldest < bound:  # oldest first; the event's own window stays open
                count, first, last = windows.pop(oldest)
                if count >= min_count:  # a smaller window yields nothing: no summary made
                    self._emit(user, oldest, count, first, last, tally, emit)
                state.oldest = oldest = wid if len(windows) == 1 else min(windows)
        tally.counted += counted
        tally.late += late

    def _close(self, user: str, state: _UserState, watermark: float, min_count: int,
               tally: Tally, emit: list[WindowSummary | DeadLetter]) -> None:
        """Close every window of `user` that `watermark` has passed, oldest first."""
        params = self.params
        bound = (watermark - params.align) // params.window
        windows = state.windows
        for wid in sorted(w for w in windows if w < bound):
            count, first, last = windows.pop(wid)
            if count >= min_count:
                self._emit(user, wid, count, first, last, tally, emit)
        state.oldest = min(windows) if windows else 0

    def _emit(self, user: str, wid: int, count: int, first: int, last: int, tally: Tally,
              emit: list[WindowSummary | DeadLetter]) -> None:
        summary = summarize(self.params, user, wid, count, first, last)
        if summary is not None:
            tally.windows += 1
            tally.malicious += summary.malicious
            emit.append(summary)

    def advance(self, now: float, tally: Tally, emit: list[WindowSummary | DeadLetter]) -> None:
        """Close the windows the clock at `now` has passed (live mode, while idle).

        This changes only *when* a summary is emitted, never what it says,
        provided `now` is at or below the receive time of every event not
        yet processed: such an event would be late against `now` anyway.
        """
        if not self.recorded:
            return
        min_count = self.params.min_count
        for user, state in self.users.items():
            if state.windows:
                watermark = state.watermark_base + (now - state.seen_at)
                if state.oldest < (watermark - self.params.align) // self.params.window:
                    self._close(user, state, watermark, min_count, tally, emit)

    def finish(self, tally: Tally, emit: list[WindowSummary | DeadLetter]) -> None:
        """End of input: every open window closes."""
        for user, state in self.users.items():
            for wid in sorted(state.windows):
                count, first, last = state.windows[wid]
                self._emit(user, wid, count, first, last, tally, emit)
            state.windows.clear()

    def snapshot(self) -> bytes:
        """The state as compact bytes (marshal of plain values): cheap to take and store."""
        return marshal.dumps({user: (s.watermark_base, s.seen_at, s.windows, s.oldest)
                              for user, s in self.users.items()})

    def restore(self, snapshot: bytes) -> None:
        self.users = {user: _UserState(base, seen, windows, oldest)
                      for user, (base, seen, windows, oldest) in marshal.loads(snapshot).items()}


_NO_CLOCK = itertools.repeat(0.0)
