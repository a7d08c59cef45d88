"""How the report writes numbers, sizes, durations and times (always UTC).

Plain text out, nothing escaped: none of these take a user-controlled string.
"""

from __future__ import annotations

from datetime import datetime, timezone

from harness.report.scan import Series

__all__ = ["day", "duration", "iso", "num", "one_day", "per", "size", "span", "time_range",
           "utc", "when"]


def num(value: float) -> str:
    """A rate or count as a person writes it: 45, 12.2, 1.25, 0.667, 1,234."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def size(n: int) -> str:
    """A size in bytes: `512 B`, then `1.5 kB`, `2.0 MB`, `3.1 GB` (powers of 1000)."""
    if n < 1000:
        return f"{n:,} B"
    scaled = n / 1000
    for unit in ("kB", "MB"):
        if scaled < 1000:
            return f"{scaled:.1f} {unit}"
        scaled /= 1000
    return f"{scaled:.1f} GB"


def duration(seconds: float) -> str:
    """`4.5 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`."""
    if seconds < 59.95:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def utc(t: float, fmt: str) -> str:
    """Unix seconds `t` as UTC, `strftime`-formatted; a time no calendar date holds (an
    event's timestamp can be anything) as its number of seconds."""
    moment = _moment(t)
    return moment.strftime(fmt) if moment is not None else _unplaceable(t)


def iso(t: float) -> str:
    moment = _moment(t)
    return moment.isoformat() if moment is not None else _unplaceable(t)


def _moment(t: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(t, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _unplaceable(t: float) -> str:
    return f"{t:.0f} s (no date)"


def day(t: float) -> str:
    return utc(t, "%Y-%m-%d")


def when(t: float, time_only: bool = False) -> str:
    """A time to the nearest second."""
    return utc(round(t), "%H:%M:%S" if time_only else "%Y-%m-%d %H:%M:%S")


def time_range(lo: float | None, hi: float | None, time_only: bool = False,
               sep: str = " ") -> str:
    """`2023-11-14 22:13:21 .. 22:19:50`: the date once when both ends share it."""
    if lo is None or hi is None:
        return "—"
    if time_only or day(lo) != day(hi):
        return f"{when(lo, time_only)}{sep}.. {when(hi, time_only)}"
    return f"{when(lo)}{sep}.. {when(hi, True)}"


def span(start: float, seconds: float) -> str:
    """`22:13:30 UTC` for one second, `22:13:30-22:13:35 UTC` (en dash) for longer."""
    first = utc(start, "%Y-%m-%d %H:%M:%S")
    if seconds <= 1:
        return f"{first} UTC"
    return f"{first}\u2013{utc(start + seconds, '%H:%M:%S')} UTC"


def one_day(series: Series | None) -> bool:
    """Whether all of `series` lies in one UTC day."""
    return series is not None and day(series.start) == day(series.end - 1)


def per(series: Series | None) -> str:
    """The width of one bucket of `series`, in words."""
    if series is None:
        return "a bucket"
    return "1 second" if series.width == 1 else f"{duration(series.width)}"
