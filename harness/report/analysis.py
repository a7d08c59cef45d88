"""The numbers the report derives from a run's results, before any of them is written.

Flagged accounts and flagged spans from the window summaries, the log-binned
histogram of window rates, and the dead letters by reason. Plain values
out; `harness.report.sections` writes them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from harness.errors import HarnessError
from harness.flows.bots.semantics import LATE

__all__ = ["BINS_PER_OCTAVE", "FlaggedAccount", "FlaggedSpan", "RateHistogram",
           "first_seqs", "flagged_accounts", "flagged_spans", "late_users", "rate_histogram",
           "reason_counts", "window_bounds"]

BINS_PER_OCTAVE: Final = 3


@dataclass(frozen=True, slots=True)
class FlaggedAccount:
    """An account with at least one malicious window, from the window summaries."""

    user: str
    windows: int  # malicious windows
    peak_rate: float  # max rate over them
    edits: int  # events in them
    first: float  # start of the earliest malicious window (unix s)
    last: float  # end of the latest malicious window (unix s)


def window_bounds(summary: dict[str, Any]) -> tuple[float, float]:
    """A summary's window start and end as unix seconds (they are ISO strings)."""
    try:
        return (datetime.fromisoformat(summary["window_start"]).timestamp(),
                datetime.fromisoformat(summary["window_end"]).timestamp())
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"window summary {summary!r:.200}: no ISO window_start/window_end"
                           f" ({exc})") from None


def flagged_accounts(summaries: Iterable[dict[str, Any]]) -> list[FlaggedAccount]:
    """Accounts with a malicious window: most flagged windows first, then highest peak."""
    seen: dict[str, list[float]] = {}  # user -> [windows, peak, edits, first, last]
    for s in summaries:
        if not s.get("malicious"):
            continue
        start, end = window_bounds(s)
        rate, count = float(s["rate"]), int(s["count"])
        row = seen.get(s["user"])
        if row is None:
            seen[s["user"]] = [1, rate, count, start, end]
        else:
            row[0] += 1
            row[1], row[2] = max(row[1], rate), row[2] + count
            row[3], row[4] = min(row[3], start), max(row[4], end)
    accounts = [FlaggedAccount(user, int(w), peak, int(edits), first, last)
                for user, (w, peak, edits, first, last) in seen.items()]
    accounts.sort(key=lambda a: (-a.windows, -a.peak_rate, a.user))
    return accounts


@dataclass(frozen=True, slots=True)
class FlaggedSpan:
    """Malicious windows close together, merged: `start`..`end` (unix s) and who.

    `users` is `(user, windows, peak rate)`, highest peak first.
    """

    start: float
    end: float
    users: list[tuple[str, int, float]]


def flagged_spans(malicious: Sequence[dict[str, Any]], join: int) -> list[FlaggedSpan]:
    """The malicious windows as spans; windows closer than `join` seconds share one span."""
    spans = sorted((*window_bounds(s), str(s["user"]), float(s["rate"])) for s in malicious)
    merged: list[tuple[float, float, dict[str, list[float]]]] = []
    for start, end, user, rate in spans:
        if merged and start <= merged[-1][1] + join:
            lo, hi, users = merged[-1]
            merged[-1] = (lo, max(hi, end), users)
        else:
            users = {}
            merged.append((start, end, users))
        entry = users.setdefault(user, [0, 0.0])  # [windows, peak]
        entry[0], entry[1] = entry[0] + 1, max(entry[1], rate)
    return [FlaggedSpan(lo, hi, [(u, int(n), p) for u, (n, p)
                                 in sorted(users.items(), key=lambda kv: (-kv[1][1], kv[0]))])
            for lo, hi, users in merged]


@dataclass(frozen=True, slots=True)
class RateHistogram:
    """Window rates in log bins, `BINS_PER_OCTAVE` per doubling, the threshold on an edge.

    Bin i holds rates in (anchor·2^(i/3), anchor·2^((i+1)/3)], anchor being the
    threshold (1 when it is 0), so bins right of the threshold hold exactly the
    malicious windows. `lo`..`hi` are the bins to show: all non-empty ones and
    at least the two around the anchor.
    """

    anchor: float
    rates: list[float]  # every window's, in summary order
    bins: Counter[int]  # bin -> windows (rates > 0 only)
    lo: int
    hi: int
    above: int  # windows with a rate above the threshold
    median: float  # 0 without windows

    def edge(self, i: int) -> float:
        """The lower edge of bin i (exclusive), the upper edge of bin i - 1."""
        return _edge(i, self.anchor)


def rate_histogram(summaries: Iterable[dict[str, Any]], threshold: float) -> RateHistogram:
    anchor = threshold if threshold > 0 else 1.0
    rates = [float(s["rate"]) for s in summaries]
    bins: Counter[int] = Counter(_rate_bin(r, anchor) for r in rates if r > 0)
    lo, hi = (min(min(bins), -1), max(max(bins), 0) + 1) if bins else (-3, 3)
    return RateHistogram(anchor, rates, bins, lo, hi, sum(1 for r in rates if r > threshold),
                         sorted(rates)[len(rates) // 2] if rates else 0.0)


def _edge(i: int, anchor: float) -> float:
    return anchor * 2 ** (i / BINS_PER_OCTAVE)


def _rate_bin(rate: float, anchor: float) -> int:
    """The bin i with anchor·2^(i/3) < rate <= anchor·2^((i+1)/3)."""
    i = math.ceil(BINS_PER_OCTAVE * math.log2(rate / anchor)) - 1
    while rate <= _edge(i, anchor):
        i -= 1
    while rate > _edge(i + 1, anchor):
        i += 1
    return i


def _reason(dead_letter: dict[str, Any]) -> str:
    return str(dead_letter.get("reason", "?"))


def reason_counts(dead_letters: Iterable[dict[str, Any]]) -> Counter[str]:
    """Dead letters by reason, in order of each reason's first dead letter."""
    return Counter(_reason(d) for d in dead_letters)


def first_seqs(dead_letters: Iterable[dict[str, Any]], n: int = 5) -> dict[str, list[int]]:
    """The first `n` recording seqs of each reason's dead letters (those that have one)."""
    examples: dict[str, list[int]] = {}
    for d in dead_letters:
        seqs = examples.setdefault(_reason(d), [])
        if len(seqs) < n and isinstance(d.get("seq"), int) and d["seq"] >= 0:
            seqs.append(d["seq"])
    return examples


def late_users(dead_letters: Iterable[dict[str, Any]]) -> Counter[str]:
    """Late events by account."""
    return Counter(d["user"] for d in dead_letters
                   if d.get("reason") == LATE and isinstance(d.get("user"), str))
