"""Faults the local server injects, declared once: the server, its query
parameters and the `harness serve` options are all made from this class.

To add a fault: add a field here (its help text is the CLI's), count it in
`ServerStats`, and act on it where it happens: one connection's stream
(`stream.EventWriter`), or, for a server-wide one-shot fault, list it in
`_GLOBAL_FAULTS` and give `OneShots` (below) a claim for where it acts.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

__all__ = ["Faults", "OneShots", "fault_help"]

_GLOBAL_FAULTS: Final = frozenset({"fail_first", "stall_at"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def _fault(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def fault_help(name: str) -> str:
    """The one-line description of a fault (the CLI option's help)."""
    return str(next(f.metadata["help"] for f in fields(Faults) if f.name == name))


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to inject, like the real service's. All off by default.

    `*_every` positions count the recording events sent on one connection
    (1-based; injected extras and duplicate copies do not count). Extra
    frames (error, malformed, canary) go out just before the event that
    triggers them and carry no `id:` line, so a client's resume position is
    unaffected. `stall_at` is a global stream position: the stall happens
    where event N would be sent (events 1..N-1 arrive). `stall_seconds` 0
    stalls until the client leaves or the server stops.
    """

    close_every: int = _fault(0, "close each connection after N events")
    close_after: float = _fault(0.0, "close each connection after T seconds")
    stall_at: int = _fault(0, "stall once (connection open, no bytes) at stream event N")
    stall_seconds: float = _fault(0.0, "how long the stall lasts (0: until the client leaves)")
    fail_first: int = _fault(0, "answer the first K requests with --fail-status")
    fail_status: int = _fault(429, "status for --fail-first (429, 503, 500)")
    retry_after: float = _fault(1.0, "Retry-After seconds sent with --fail-first answers")
    retry_after_text: str = _fault(
        "", "send this Retry-After value as it is instead (e.g. an invalid one: inf, -5)")
    require_user_agent: bool = _fault(
        False, "answer 403 to requests without a User-Agent, like Wikimedia")
    duplicate_every: int = _fault(0, "send every Nth event twice")
    malformed_every: int = _fault(0, "every Nth event, first send a data line that is not JSON")
    canary_every: int = _fault(0, "every Nth event, first send a canary event")
    error_every: int = _fault(0, "every Nth event, first send an `event: error` frame")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, bool):
                continue
            if isinstance(f.default, str):
                if not (isinstance(value, str) and value.isascii() and value.isprintable()):
                    raise ValueError(f"{f.name} must be printable ASCII text (a header value),"
                                     f" got {value!r}")
                continue
            kind = int if isinstance(f.default, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"{f.name} must be {'an integer' if kind is int else 'a number'},"
                                 f" got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be finite and >= 0, got {value!r}")
        if not 400 <= self.fail_status <= 599:
            raise ValueError(f"fail_status must be an HTTP error status, got {self.fail_status}")

    def overridden(self, params: Mapping[str, str]) -> Faults:
        """These faults with per-connection overrides from query parameters.

        Raises `ValueError` for bad values and for the server-wide one-shot
        faults (`fail_first`, `stall_at`), which a request cannot set.
        """
        changes: dict[str, Any] = {}
        for f in fields(self):
            if f.name not in params:
                continue
            text = params[f.name].strip()
            if f.name in _GLOBAL_FAULTS:
                raise ValueError(f"{f.name} is a server-wide fault; set it on the server")
            current = getattr(self, f.name)
            try:
                if isinstance(current, bool):
                    if text.lower() not in _TRUE | _FALSE:
                        raise ValueError
                    changes[f.name] = text.lower() in _TRUE
                elif isinstance(current, str):
                    changes[f.name] = text
                elif isinstance(current, int):
                    changes[f.name] = int(text)
                else:
                    changes[f.name] = float(text)
            except ValueError:
                raise ValueError(f"{f.name}={text!r} is not a valid value") from None
        return replace(self, **changes) if changes else self


class OneShots:
    """What is left of a server's one-shot faults (`fail_first`, `stall_at`): each
    request or connection claims its share here, whichever thread it runs on."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._failed = 0
        self._stall_claimed = False

    def claim_failure(self) -> bool:
        """Whether this request is one of the first `fail_first`, to be answered with an error."""
        with self._lock:
            fail = self._failed < self.faults.fail_first
            self._failed += fail
        return fail

    def claim_stall(self, position: int) -> bool:
        """Whether to stall at `position`: it is `stall_at`, and no connection stalled yet."""
        if position != self.faults.stall_at:
            return False
        with self._lock:
            claimed, self._stall_claimed = self._stall_claimed, True
        return not claimed
