"""One streaming pass over a recording: the per-event facts the report shows.

Nothing per event is kept: events are counted per second of event time and
of receive time (`SecondCounts`, which coarsens itself if a recording spans
very many distinct seconds), receive gaps are kept as the largest few, and
per-account facts (wikis, bot flag) are gathered only for the accounts asked
for (the flagged ones).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

from harness.flows.bots.semantics import CANARY, classify
from harness.recording import Recording
from harness.recording.envelope import NOT_JSON

__all__ = ["GAP_SECONDS", "MAX_POINTS", "Account", "Gap", "RecordingFacts", "SecondCounts",
           "Series", "scan"]

GAP_SECONDS: Final = 5.0  # a receive gap is a longer period with no event received
MAX_POINTS: Final = 600  # bars per time chart, at most
_MAX_KEYS: Final = 200_000  # distinct time keys kept before coarsening
_RESOLUTIONS: Final = (1, 10, 60, 600, 3600, 86400)
_WIDTHS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                  43200, 86400, 172800, 432000, 864000)
_TAIL: Final = 0.001  # share of events at either end that may be left off a far-stretched axis


@dataclass(frozen=True, slots=True)
class Series:
    """Event counts in equal buckets: bucket i covers `start + i*width` .. `+ width` s.

    `outside` events lay so far from the rest that plotting them would have
    squashed the chart; `earliest`/`latest` are the extreme seconds seen.
    """

    start: int
    width: int
    counts: tuple[int, ...]
    outside: int
    earliest: int
    latest: int

    @property
    def end(self) -> int:
        return self.start + self.width * len(self.counts)


class SecondCounts:
    """Events per second (per `resolution` seconds once there are too many distinct seconds)."""

    def __init__(self) -> None:
        self.resolution = 1
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, t: float) -> None:
        key = math.floor(t) // self.resolution
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.total += 1
        if len(counts) > _MAX_KEYS:
            self._coarsen()

    def _coarsen(self) -> None:
        old = self.resolution
        self.resolution = next((r for r in _RESOLUTIONS if r > old), old * 10)
        factor = self.resolution // old
        merged: dict[int, int] = {}
        for key, n in self.counts.items():
            merged[key // factor] = merged.get(key // factor, 0) + n
        self.counts = merged

    def series(self, max_points: int = MAX_POINTS) -> Series | None:
        """Counts in at most `max_points` buckets of a round width, or None if empty.

        The axis runs from the first to the last second seen, except that the
        earliest and latest 0.1% of events are left off (and counted in
        `outside`) when they lie further out than the whole rest spans.
        """
        if not self.counts:
            return None
        res = self.resolution
        keys = sorted(self.counts)
        lo_q, hi_q = _quantile_key(keys, self.counts, self.total * _TAIL), _quantile_key(
            reversed(keys), self.counts, self.total * _TAIL)
        core = hi_q - lo_q + 1
        lo = keys[0] if lo_q - keys[0] <= core else lo_q
        hi = keys[-1] if keys[-1] - hi_q <= core else hi_q
        span = (hi - lo + 1) * res
        width = next((w for w in _WIDTHS if w % res == 0 and math.ceil(span / w) <= max_points),
                     math.ceil(span / max_points / 86400) * 86400)
        start = (lo * res) // width * width
        buckets = [0] * ((hi * res) // width - start // width + 1)
        outside = 0
        for key, n in self.counts.items():
            if lo <= key <= hi:
                buckets[(key * res) // width - start // width] += n
            else:
                outside += n
        return Series(start, width, tuple(buckets), outside, keys[0] * res, keys[-1] * res)


def _quantile_key(keys: Any, counts: dict[int, int], below: float) -> int:
    """The first key (in the given order) by which more than `below` events were seen."""
    seen = 0
    for key in keys:
        seen += counts[key]
        if seen > below:
            return int(key)
    raise AssertionError("unreachable: counts are not empty")


@dataclass(frozen=True, slots=True, order=True)
class Gap:
    """A period of `seconds` with no event received, from `start`, between two events."""

    seconds: float
    start: float
    after_seq: int
    before_seq: int


@dataclass(slots=True)
class Account:
    """What the recording says about one account: its events, wikis and bot flag."""

    events: int = 0
    bot: int = 0  # events with `bot: true`
    wikis: Counter[str] = field(default_factory=Counter)

    def add(self, event: dict[str, Any]) -> None:
        self.events += 1
        if event.get("bot") is True:
            self.bot += 1
        wiki = event.get("wiki")
        if not isinstance(wiki, str):
            meta = event.get("meta")
            domain = meta.get("domain") if isinstance(meta, dict) else None
            wiki = domain if isinstance(domain, str) else "?"
        self.wikis[wiki] += 1


@dataclass(slots=True)
class RecordingFacts:
    """The result of `scan`."""

    events: int = 0
    canary: int = 0
    invalid: Counter[str] = field(default_factory=Counter)  # by `classify` reason
    event_time: Series | None = None  # countable events by their `timestamp`
    receive_time: Series | None = None  # all events by `recv`; None without receive times
    first_received: float | None = None
    last_received: float | None = None
    gaps: list[Gap] = field(default_factory=list)  # the largest, longest first
    gap_count: int = 0
    gap_seconds: float = 0.0
    accounts: dict[str, Account] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)  # cut-short tails, missing segments


def scan(recording: Recording, accounts: Collection[str], *, gap: float = GAP_SECONDS,
         keep_gaps: int = 5, max_points: int = MAX_POINTS) -> RecordingFacts:
    """Read every envelope once, in arrival order, and aggregate.

    Events are judged by the detector's own `classify`, so canary and invalid
    counts mean what they mean in the tally. Receive-time facts are gathered
    only when the manifest says receive times are real (not for imports).
    """
    facts = RecordingFacts(accounts={user: Account() for user in accounts})
    timed = recording.manifest.has_receive_times
    by_event, by_recv = SecondCounts(), SecondCounts()
    largest: list[Gap] = []
    last_recv, last_seq = -math.inf, 0
    wanted, invalid = facts.accounts, facts.invalid
    events = canary = 0
    for env in recording.envelopes():
        events += 1
        if timed:
            recv = env.recv
            if events == 1:
                facts.first_received = recv
            elif recv - last_recv > gap:
                facts.gap_count += 1
                facts.gap_seconds += recv - last_recv
                found = Gap(recv - last_recv, last_recv, last_seq, env.seq)
                (heapq.heappush if len(largest) < keep_gaps else heapq.heappushpop)(
                    largest, found)
            if recv >= last_recv:
                last_recv, last_seq = recv, env.seq
            by_recv.add(recv)
        verdict = classify(env.data) if env.is_json else NOT_JSON
        if isinstance(verdict, str):
            if verdict == CANARY:
                canary += 1
            else:
                invalid[verdict] += 1
            continue
        user, timestamp = verdict
        by_event.add(timestamp)
        account = wanted.get(user)
        if account is not None:
            account.add(env.data)
    facts.events, facts.canary = events, canary
    facts.event_time = by_event.series(max_points)
    if timed:
        facts.receive_time = by_recv.series(max_points)
        facts.last_received = last_recv if events else None
    facts.gaps = sorted(largest, reverse=True)
    facts.damage = [*recording.truncated, *(recording.manifest.segments[i].file + ": missing"
                                            for i in sorted(recording.missing))]
    return facts
