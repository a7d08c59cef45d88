"""The detection semantics (docs/contract.md, section 1), defined once.

Everything that decides what an event *means* lives here: which events count,
how a window is identified, when an event is late, when a window closes and
what its summary says. The Bytewax flow, the reference model and the live
mode all call into this module; none of them re-states a rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from harness.errors import UsageError

ALIGN_2023: Final = 1_672_531_200  # 2023-01-01T00:00:00Z

# Times a window summary can render as an ISO date (years 1..9999).
RENDERABLE_MIN: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
RENDERABLE_MAX: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_WINDOW: Final = 366 * 86_400  # parameters beyond a year only invite overflow
MAX_LATENESS: Final = 366 * 86_400
MAX_MIN_COUNT: Final = 1_000_000_000

CANARY: Final = "canary"
NOT_JSON: Final = "not-json"
NOT_OBJECT: Final = "not-object"
BAD_USER: Final = "bad-user"
BAD_TIMESTAMP: Final = "bad-timestamp"
TIMESTAMP_RANGE: Final = "timestamp-out-of-range"
LATE: Final = "late"
DAMAGED: Final = "damaged"


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


@dataclass(slots=True)
class _UserState:
    watermark_base: int  # largest timestamp seen minus lateness
    seen_at: float  # clock reading when watermark_base last rose
    windows: dict[int, list[int]] = field(default_factory=dict)  # id -> [count, first, last]


@dataclass
class Detector:
    """Per-user lateness and tumbling windows for one ordered stream of events.

    The watermark of a user is `max timestamp - lateness`, plus the time the
    `clock` has advanced since that maximum was seen: exactly Bytewax's
    `EventClock`. Replay passes no clock, so the watermark moves only with
    event time and the result is independent of speed and batching. An
    event is late iff its timestamp is below its user's watermark; a window
    closes once its end is at or below the watermark, or at end of input.
    """

    params: DetectionParams
    clock: Any = None  # Callable[[], float] | None; None means event time only
    users: dict[str, _UserState] = field(default_factory=dict)

    def _now(self) -> float:
        return self.clock() if self.clock is not None else 0

    def process(
        self,
        users: list[str],
        timestamps: list[int],
        seqs: list[int],
        tally: Tally,
        emit: list[WindowSummary | DeadLetter],
    ) -> None:
        """Feed events in stream order; append what closes or is late to `emit`."""
        params = self.params
        lateness, window, align = params.lateness, params.window, params.align
        states = self.users
        now = self._now()
        for user, ts, seq in zip(users, timestamps, seqs, strict=True):
            state = states.get(user)
            watermark: float
            if state is None:
                state = states[user] = _UserState(ts - lateness, now)
                watermark = state.watermark_base
            else:
                watermark = state.watermark_base + (now - state.seen_at)
                if ts < watermark:
                    tally.late += 1
                    emit.append(DeadLetter(seq, LATE, user, ts))
                    continue
                if ts - lateness > watermark:
                    state.watermark_base = watermark = ts - lateness
                    state.seen_at = now
            wid = (ts - align) // window
            acc = state.windows.get(wid)
            if acc is None:
                state.windows[wid] = [1, ts, ts]
            else:
                acc[0] += 1
                if ts < acc[1]:
                    acc[1] = ts
                elif ts > acc[2]:
                    acc[2] = ts
            tally.counted += 1
            # The event's own window cannot close (its end > ts >= watermark),
            # so only a user with an older open window may have one to close.
            if len(state.windows) > 1:
                self._close(user, state, watermark, tally, emit)

    def _close(
        self,
        user: str,
        state: _UserState,
        watermark: float,
        tally: Tally,
        emit: list[WindowSummary | DeadLetter],
    ) -> None:
        # end = align + (wid+1)*window <= watermark  <=>  wid < (watermark-align) // window
        bound = (watermark - self.params.align) // self.params.window
        closable = [wid for wid in state.windows if wid < bound]
        for wid in sorted(closable):
            count, first, last = state.windows.pop(wid)
            self._emit(user, wid, count, first, last, tally, emit)

    def _emit(
        self,
        user: str,
        wid: int,
        count: int,
        first: int,
        last: int,
        tally: Tally,
        emit: list[WindowSummary | DeadLetter],
    ) -> None:
        summary = summarize(self.params, user, wid, count, first, last)
        if summary is not None:
            tally.windows += 1
            tally.malicious += summary.malicious
            emit.append(summary)

    def advance(self, tally: Tally, emit: list[WindowSummary | DeadLetter]) -> None:
        """Close windows that wall-clock time has passed (live mode only)."""
        if self.clock is None:
            return
        now = self._now()
        for user, state in self.users.items():
            if state.windows:
                self._close(user, state, state.watermark_base + (now - state.seen_at),
                            tally, emit)

    def has_open_windows(self) -> bool:
        return any(state.windows for state in self.users.values())

    def finish(self, tally: Tally, emit: list[WindowSummary | DeadLetter]) -> None:
        """End of input: every open window closes."""
        for user, state in self.users.items():
            for wid in sorted(state.windows):
                count, first, last = state.windows[wid]
                self._emit(user, wid, count, first, last, tally, emit)
            state.windows.clear()
