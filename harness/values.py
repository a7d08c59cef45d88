"""Option values as a user types them, bounded: whole numbers, numbers and points in
time. Each type says what was expected and what was given, in one line
(`expected a number >= 0, got 'abc'`); the command line and the flows' own options
(`Flow.add_options`) share them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from harness.times import parse_iso

__all__ = ["bound", "count", "count_list", "number", "timestamp"]


def count(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {_range(low, high)}, got {text!r}")
        return value
    parse.__name__ = "count"
    return parse


def count_list(low: int = 1, high: int | None = None) -> Callable[[str], list[int]]:
    """Comma-separated whole numbers, each in [low, high] (e.g. `1,2,4`)."""
    one = count(low, high)

    def parse(text: str) -> list[int]:
        try:
            values = [one(part) for part in text.split(",") if part.strip()]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers, each {_range(low, high)},"
                f" got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
        return values
    return parse


def number(low: float = 0.0, high: float | None = None, *,
           above: bool = False) -> Callable[[str], float]:
    """A finite number >= low (> low with `above`) and <= high."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if (not math.isfinite(value) or value < low or (above and value == low)
                or (high is not None and value > high)):
            bound = f"> {low:g}" if above else f">= {low:g}"
            if high is not None:
                bound += f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value
    return parse


# Years 1..9999: what a window summary can render as an ISO date.
_MIN = int(datetime(1, 1, 1, tzinfo=timezone.utc).timestamp())
_MAX = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp())
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp(text: str) -> int:
    """A point in time: unix seconds, or ISO-8601 (UTC if no zone is given; a fraction of
    a second is dropped)."""
    try:
        value = int(text)
    except ValueError:
        value = int(_iso(text).timestamp())
    return _in_years(value, text)


def bound(text: str) -> int:
    """A bound on whole-second event timestamps (`--from`, `--until`): unix seconds or
    ISO-8601, a fraction of a second rounded up. For every whole second `t`, `t >= x` iff
    `t >= ceil(x)` and `t < x` iff `t < ceil(x)`: both bounds keep their exact meaning."""
    try:
        value = Decimal(text)
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        seconds = _iso(text) - _EPOCH
        return _in_years(-(-seconds // timedelta(seconds=1)), text)
    if not _MIN <= value <= _MAX:  # before math.ceil, which would expand 1e999999999
        raise argparse.ArgumentTypeError(f"expected a time in years 1..9999, got {text!r}")
    return _in_years(math.ceil(value), text)


def _iso(text: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time or unix seconds, got {text!r}") from None


def _in_years(value: int, text: str) -> int:
    if not _MIN <= value <= _MAX:
        raise argparse.ArgumentTypeError(f"expected a time in years 1..9999, got {text!r}")
    return value


def _range(low: int, high: int | None) -> str:
    return f"a whole number >= {low}" if high is None else f"a whole number {low}..{high}"
