"""Deterministic synthetic Wikimedia EventStreams `recentchange` events.

Events follow the 2023 recentchange schema and arrive the way a live client
sees them: a Poisson background of 25-50 events per second over a mix of
wikis, heavy-tailed users (registered, anonymous IPv4/IPv6, bots), fast-bot
bursts, hourly canaries, a few late and a few invalid lines. Everything is
drawn from one `random.Random(seed)`; the output for a seed is a prefix of
the output for any larger `count`.

Guarantees relied on by tests and benchmarks: with `count >= 1000` at least
one canary and one invalid line of each kind (see `INVALID_KINDS`); with
`count >= 2000` at least one burst of a bot above 10 edits per second and at
least one late event (more than 10 s older than its user's newest event).

Each event is made in four steps, each drawing from the one generator in this
order: when it arrives (`_Arrivals`), whether it is special (`_Specials`), its
line (`_Lines`), its SSE id (`_SseIds`).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import orjson

from harness.eventstreams.ids import OFFSET_ID_PREFIX, TIMESTAMP_ID_PREFIX
from harness.recording.synth.entities import User, Wiki
from harness.recording.synth.events import Builder
from harness.recording.synth.vocabulary import NOT_JSON, TYPE_TABLE
from harness.recording.synth.world import World

__all__ = ["INVALID_KINDS", "SynthEvent", "synthetic_events"]

INVALID_KINDS: Final = ("not-json", "no-user", "timestamp-str", "timestamp-float", "user-number")
_CANARY: Final = "canary"
_LATE: Final = "late"
_INF: Final = float("inf")
_Burst = tuple[User, Wiki]  # the bot and the wiki of a burst


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """One server-sent event as the recorder would receive it."""

    payload: bytes  # the SSE `data:` line content, normally compact JSON, no newline
    sse_id: str  # the SSE `id:` field, raw string
    received: float  # unix seconds when the client received it


class _Arrivals:
    """When events arrive: a Poisson background of 25-50 per second from `start + 1.5`
    and, from event 400-700 on and again 5,000-15,000 events after each one ends, a bot's
    burst of 18-60 edits per second (jittered +-30%) on Wikidata (80%) or Commons for
    3-10 s. An event happened 0.05-1.5 s before it arrives (0.05-0.3 s in a burst)."""

    __slots__ = ("_bots", "_commons", "_first", "_first_burst", "_rate", "_rng", "_wikidata")

    def __init__(self, rng: random.Random, world: World, start: int) -> None:
        self._rng = rng
        self._bots = world.bots
        self._wikidata = next(w for w in world.wikis if w.kind == "wikidata")
        self._commons = next(w for w in world.wikis if w.kind == "commons")
        self._rate = rng.uniform(25.0, 50.0)
        self._first = start + 1.5 + rng.expovariate(self._rate)
        self._first_burst = rng.randrange(400, 700)

    def __iter__(self) -> Iterator[tuple[float, float, _Burst | None]]:
        """Each event's arrival and event times (unix seconds), and the bot and wiki of the
        burst it is part of (None outside bursts). Drawn as each is asked for."""
        rng, rate, bots = self._rng, self._rate, self._bots
        rand, expovariate = rng.random, rng.expovariate
        t_background, next_burst = self._first, float(self._first_burst)
        t_burst = burst_end = burst_gap = _INF
        burst: _Burst | None = None
        for i in itertools.count():
            if i >= next_burst and t_burst == _INF:
                burst = (bots[int(rand() * len(bots))],
                         self._wikidata if rand() < 0.8 else self._commons)
                burst_gap = 1.0 / rng.uniform(18.0, 60.0)
                t_burst = t_background + burst_gap
                burst_end = t_background + rng.uniform(3.0, 10.0)
                next_burst = _INF
            if t_burst < t_background:
                t = t_burst
                t_burst += burst_gap * (0.7 + 0.6 * rand())
                if t_burst > burst_end:
                    t_burst = _INF
                    next_burst = i + rng.randrange(5000, 15000)
                yield t, t - 0.05 - 0.25 * rand(), burst
            else:
                t = t_background
                t_background += expovariate(rate)
                yield t, t - 0.05 - 1.45 * rand(), None


class _Specials:
    """Which events are not ordinary changes: a canary about hourly (3600 +- 30 s); outside
    bursts 0.1% invalid lines (`INVALID_KINDS`) and 0.2% late changes, one late change due
    by event 900-1100; and a canary and one invalid line of each kind forced at six of
    events 20-999, so that short streams hold them all."""

    __slots__ = ("_forced", "_late_due", "_next_canary", "_rng")

    def __init__(self, rng: random.Random, start: int) -> None:
        self._rng = rng
        self._next_canary = start + rng.uniform(0.0, 3600.0)
        self._forced = dict(zip(rng.sample(range(20, 1000), 6), (_CANARY, *INVALID_KINDS),
                                strict=True))
        self._late_due: float = rng.randrange(900, 1100)

    def pick(self, i: int, t: float, in_burst: bool, can_be_late: bool) -> str | None:
        """Event `i`'s special kind (`canary`, `late` or one of `INVALID_KINDS`), or None."""
        forced = self._forced.get(i)
        if forced is not None:
            return forced
        rng = self._rng
        if t >= self._next_canary:
            self._next_canary += 3600.0 + rng.uniform(-30.0, 30.0)
            return _CANARY
        if in_burst:
            return None
        r = rng.random()
        if r < 0.001:
            return INVALID_KINDS[int(rng.random() * len(INVALID_KINDS))]
        if (r < 0.003 or i >= self._late_due) and can_be_late:
            self._late_due = _INF
            return _LATE
        return None


class _Lines:
    """The `data:` line of each event. A change is by a user drawn by weight, on their
    home wiki (80%) or a wiki drawn by weight; a late one is by the last ordinary change's
    user, 11-90 s before it (not before `start`); an invalid line is an edit spoiled."""

    __slots__ = ("_build", "_rand", "_rng", "_start", "_users", "_world", "last_ts",
                 "last_user")

    def __init__(self, rng: random.Random, world: World, build: Builder, start: int) -> None:
        self._rng, self._rand, self._world, self._build = rng, rng.random, world, build
        self._users = [world.users[index] for index in world.user_table]  # one entry a weight
        self._start = start
        self.last_user, self.last_ts = world.users[0], start

    def change(self, ts: int, late: bool) -> bytes:
        """A change of a type drawn by weight (`TYPE_TABLE`); a late one if `late`."""
        rand, world = self._rand, self._world
        user = self._drawn_user()
        if late:
            user, ts = self.last_user, max(self._start, self.last_ts - 11 - int(rand() * 80))
        table = world.wiki_table
        home = user.home if rand() < 0.8 else table[int(rand() * len(table))]
        kind = TYPE_TABLE[int(rand() * 100)]
        line = orjson.dumps(self._build.change(user, world.wikis[home], kind, ts))
        if not late:
            self.last_user, self.last_ts = user, ts
        return line

    def burst_change(self, burst: _Burst, ts: int) -> bytes:
        """A burst bot's edit (95%) or new page."""
        user, wiki = burst
        kind = "edit" if self._rand() < 0.95 else "new"
        line = orjson.dumps(self._build.change(user, wiki, kind, ts))
        self.last_user, self.last_ts = user, ts
        return line

    def canary(self, ts: int) -> bytes:
        """A canary event."""
        return orjson.dumps(self._build.canary(ts))

    def invalid(self, kind: str, ts: int, event_time: float) -> bytes:
        """An edit spoiled as `kind` says: cut short or not JSON at all, without `user`, a
        `timestamp` that is a string or a float, a `user` that is a number."""
        rng = self._rng
        user = self._drawn_user()
        event = self._build.change(user, self._world.wikis[user.home], "edit", ts)
        if kind == "not-json":
            whole = orjson.dumps(event)
            cut = int(rng.random() * (len(NOT_JSON) + 2))
            if cut < len(NOT_JSON):
                return NOT_JSON[cut]
            return whole[: 1 + int(rng.random() * (len(whole) - 2))]
        if kind == "no-user":
            del event["user"]
        elif kind == "timestamp-str":
            event["timestamp"] = str(ts)
        elif kind == "timestamp-float":
            event["timestamp"] = round(event_time, 3)
        else:
            event["user"] = rng.getrandbits(24)
        return orjson.dumps(event)

    def _drawn_user(self) -> User:
        """A user drawn by weight (`World.user_table`)."""
        users = self._users
        return users[int(self._rand() * len(users))]


class _SseIds:
    """The SSE id of each event: its Kafka offset (5%) or its arrival time in ms, kept
    strictly increasing."""

    __slots__ = ("_build", "_last_ms", "_rng")

    def __init__(self, rng: random.Random, build: Builder) -> None:
        self._rng, self._build, self._last_ms = rng, build, 0

    def next(self, t: float) -> str:
        """The id of the event last built, arriving at `t`."""
        if self._rng.random() < 0.05:
            return f"{OFFSET_ID_PREFIX}{self._build.offset}}}]"
        ms = max(int(t * 1000.0), self._last_ms + 1)
        self._last_ms = ms
        return f"{TIMESTAMP_ID_PREFIX}{ms}}}]"


def synthetic_events(count: int, seed: int, start: int = 1_700_000_000) -> Iterator[SynthEvent]:
    """Yield `count` events, deterministic for (count, seed, start)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return
    rng = random.Random(seed)
    world = World(rng)
    build = Builder(rng, world)
    arrivals = _Arrivals(rng, world, start)
    specials = _Specials(rng, start)
    lines = _Lines(rng, world, build, start)
    pick, next_id = specials.pick, _SseIds(rng, build).next
    # `arrivals` never ends: zip asks `range` first, so nothing is drawn past the last event.
    for i, (t, event_time, burst) in zip(range(count), arrivals, strict=False):
        ts = int(event_time)
        special = pick(i, t, burst is not None, lines.last_ts - start >= 12)
        if special is None and burst is not None:
            line = lines.burst_change(burst, ts)
        elif special is None or special == _LATE:
            line = lines.change(ts, special == _LATE)
        elif special == _CANARY:
            line = lines.canary(ts)
        else:
            line = lines.invalid(special, ts, event_time)
        # orjson's over-allocated result makes holding many of them ~8x slower; copy to fit.
        yield SynthEvent(bytes(memoryview(line)), next_id(t), round(t, 6))
