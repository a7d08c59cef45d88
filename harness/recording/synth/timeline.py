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
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import orjson

from harness.eventstreams.ids import TOPIC
from harness.recording.synth.events import Builder
from harness.recording.synth.vocabulary import NOT_JSON, TYPE_TABLE
from harness.recording.synth.world import World

__all__ = ["INVALID_KINDS", "SynthEvent", "synthetic_events"]


INVALID_KINDS: Final = ("not-json", "no-user", "timestamp-str", "timestamp-float", "user-number")





_ID_TS: Final = '[{"topic":"' + TOPIC + '","partition":0,"timestamp":'


_ID_OFFSET: Final = '[{"topic":"' + TOPIC + '","partition":0,"offset":'


_INF: Final = float("inf")


@dataclass(frozen=True, slots=True)
class SynthEvent:
    """One server-sent event as the recorder would receive it."""

    payload: bytes  # the SSE `data:` line content, normally compact JSON, no newline
    sse_id: str  # the SSE `id:` field, raw string
    received: float  # unix seconds when the client received it


def synthetic_events(count: int, seed: int, start: int = 1_700_000_000) -> Iterator[SynthEvent]:
    """Yield `count` events, deterministic for (count, seed, start)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return
    rng = random.Random(seed)
    rand, getrandbits, expovariate = rng.random, rng.getrandbits, rng.expovariate
    world = World(rng)
    build = Builder(rng, world)
    change, canary = build.change, build.canary
    wikis, bots, users = world.wikis, world.bots, world.users
    wiki_table, user_table = world.wiki_table, world.user_table
    n_wiki_table, n_user_table = len(wiki_table), len(user_table)
    wikidata = next(i for i, w in enumerate(wikis) if w.kind == "wikidata")
    commons = next(i for i, w in enumerate(wikis) if w.kind == "commons")
    dumps = orjson.dumps

    rate = rng.uniform(25.0, 50.0)
    t_bg = start + 1.5 + expovariate(rate)
    t_burst = burst_end = burst_gap = _INF
    burst_user = bots[0]
    burst_wiki = wikis[wikidata]
    next_burst: float = rng.randrange(400, 700)
    next_canary = start + rng.uniform(0.0, 3600.0)
    forced = dict(zip(rng.sample(range(20, 1000), 6), ("canary", *INVALID_KINDS), strict=True))
    late_due: float = rng.randrange(900, 1100)
    last_user, last_ts = users[0], start
    last_ms = 0
    for i in range(count):
        if i >= next_burst and t_burst == _INF:
            burst_user = bots[int(rand() * len(bots))]
            burst_wiki = wikis[wikidata if rand() < 0.8 else commons]
            burst_gap = 1.0 / rng.uniform(18.0, 60.0)
            t_burst = t_bg + burst_gap
            burst_end = t_bg + rng.uniform(3.0, 10.0)
            next_burst = _INF
        in_burst = t_burst < t_bg
        if in_burst:
            t = t_burst
            t_burst += burst_gap * (0.7 + 0.6 * rand())
            if t_burst > burst_end:
                t_burst = _INF
                next_burst = i + rng.randrange(5000, 15000)
            event_time = t - 0.05 - 0.25 * rand()
        else:
            t = t_bg
            t_bg += expovariate(rate)
            event_time = t - 0.05 - 1.45 * rand()
        ts = int(event_time)
        special = forced.get(i)
        if special is None and t >= next_canary:
            special = "canary"
            next_canary += 3600.0 + rng.uniform(-30.0, 30.0)
        if special is None and not in_burst:
            r = rand()
            if r < 0.001:
                special = INVALID_KINDS[int(rand() * len(INVALID_KINDS))]
            elif (r < 0.003 or i >= late_due) and last_ts - start >= 12:
                special = "late"
                late_due = _INF

        if special is None or special == "late":
            if in_burst:
                user, wiki, kind = burst_user, burst_wiki, "edit" if rand() < 0.95 else "new"
            else:
                user = users[user_table[int(rand() * n_user_table)]]
                if special == "late":
                    user, ts = last_user, max(start, last_ts - 11 - int(rand() * 80))
                home = user.home if rand() < 0.8 else wiki_table[int(rand() * n_wiki_table)]
                wiki, kind = wikis[home], TYPE_TABLE[int(rand() * 100)]
            payload = dumps(change(user, wiki, kind, ts))
            if special is None:
                last_user, last_ts = user, ts
        elif special == "canary":
            payload = dumps(canary(ts))
        else:
            user = users[user_table[int(rand() * n_user_table)]]
            event = change(user, wikis[user.home], "edit", ts)
            if special == "not-json":
                whole = dumps(event)
                cut = int(rand() * (len(NOT_JSON) + 2))
                payload = (NOT_JSON[cut] if cut < len(NOT_JSON)
                           else whole[: 1 + int(rand() * (len(whole) - 2))])
            else:
                if special == "no-user":
                    del event["user"]
                elif special == "timestamp-str":
                    event["timestamp"] = str(ts)
                elif special == "timestamp-float":
                    event["timestamp"] = round(event_time, 3)
                else:
                    event["user"] = getrandbits(24)
                payload = dumps(event)

        if rand() < 0.05:
            sse_id = f"{_ID_OFFSET}{build.offset}}}]"
        else:
            ms = int(t * 1000.0)
            if ms <= last_ms:
                ms = last_ms + 1
            last_ms = ms
            sse_id = f"{_ID_TS}{ms}}}]"
        # orjson's over-allocated result makes holding many of them ~8x slower; copy to fit.
        yield SynthEvent(bytes(memoryview(payload)), sse_id, round(t, 6))
