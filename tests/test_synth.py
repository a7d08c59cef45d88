"""Tests for the synthetic recentchange generator."""

from __future__ import annotations

import dataclasses
import inspect
import re
import statistics
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import islice, pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.recording.synth import INVALID_KINDS, SynthEvent, synthetic_events

ALIGN = 1_672_531_200  # 2023-01-01T00:00:00Z
START = 1_700_000_000
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TOP_FIELDS = {
    "$schema", "meta", "id", "type", "namespace", "title", "title_url", "comment", "timestamp",
    "user", "bot", "server_url", "server_name", "server_script_path", "wiki", "parsedcomment",
}
EDIT_FIELDS = TOP_FIELDS | {"notify_url", "minor", "length", "revision"}
META_FIELDS = {"uri", "request_id", "id", "dt", "domain", "stream", "topic", "partition", "offset"}


def kind_of(payload: bytes) -> str:
    """What a consumer would make of one payload."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "not-json"
    if not isinstance(data, dict):
        return "not-object"
    if data["meta"]["domain"] == "canary":
        return "canary"
    if "user" not in data:
        return "no-user"
    if not isinstance(data["user"], str):
        return "user-number"
    ts = data["timestamp"]
    if isinstance(ts, str):
        return "timestamp-str"
    if isinstance(ts, float):
        return "timestamp-float"
    assert type(ts) is int
    return "valid"


def valid(events: Iterable[SynthEvent]) -> list[tuple[SynthEvent, dict[str, Any]]]:
    return [(e, orjson.loads(e.payload)) for e in events if kind_of(e.payload) == "valid"]


def late_flags(events: list[SynthEvent]) -> list[bool]:
    """For each valid event in order: more than 10 s below its user's running max?"""
    top: dict[str, int] = {}
    flags = []
    for _, data in valid(events):
        user, ts = data["user"], data["timestamp"]
        flags.append(ts < top.get(user, ts) - 10)
        top[user] = max(top.get(user, ts), ts)
    return flags


def flagged_users(events: list[SynthEvent]) -> set[str]:
    """Users with a 5 s tumbling window (aligned to 2023) above 10 events per second."""
    windows: dict[tuple[str, int], list[int]] = defaultdict(list)
    for _, data in valid(events):
        ts = data["timestamp"]
        windows[data["user"], (ts - ALIGN) // 5].append(ts)
    flagged = set()
    for (user, _), stamps in windows.items():
        span = max(stamps) - min(stamps)
        if len(stamps) >= 2 and len(stamps) / (span or 1) > 10:
            flagged.add(user)
    return flagged


@pytest.fixture(scope="module")
def events() -> list[SynthEvent]:
    return list(synthetic_events(20_000, seed=1))


@pytest.fixture(scope="module")
def parsed(events: list[SynthEvent]) -> list[tuple[SynthEvent, dict[str, Any]]]:
    return valid(events)


def test_api_shape() -> None:
    assert inspect.isgeneratorfunction(synthetic_events)
    event = next(synthetic_events(1, seed=0))
    assert isinstance(event.payload, bytes) and isinstance(event.sse_id, str)
    assert isinstance(event.received, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.received = 0.0  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_deterministic_and_seed_sensitive() -> None:
    first = list(synthetic_events(3000, seed=42))
    assert first == list(synthetic_events(3000, seed=42))
    other = list(synthetic_events(3000, seed=43))
    assert [e.payload for e in first] != [e.payload for e in other]
    shifted = list(synthetic_events(50, seed=42, start=START + 86_400))
    assert shifted[0].received == pytest.approx(first[0].received + 86_400, abs=1e-5)


def test_shorter_run_is_a_prefix() -> None:
    assert list(synthetic_events(1200, seed=5)) == list(synthetic_events(3000, seed=5))[:1200]


@settings(max_examples=15, deadline=None)
@given(count=st.integers(0, 300), seed=st.integers(-(2**63), 2**63))
def test_count_honoured(count: int, seed: int) -> None:
    assert sum(1 for _ in synthetic_events(count, seed)) == count


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError):
        list(synthetic_events(-1, seed=0))


def test_lazy_and_bounded_memory() -> None:
    tracemalloc.start()
    try:
        for _ in islice(synthetic_events(10_000_000, seed=3), 1500):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20


def test_valid_payloads_have_the_2023_shape(parsed: list[tuple[SynthEvent, dict]]) -> None:
    types = Counter(data["type"] for _, data in parsed)
    assert set(types) == {"edit", "new", "log", "categorize"}
    assert types["edit"] > 0.6 * len(parsed)
    for event, data in parsed:
        assert b"\n" not in event.payload
        assert data.keys() >= TOP_FIELDS, data.keys()
        meta = data["meta"]
        assert meta.keys() == META_FIELDS
        assert data["$schema"] == "/mediawiki/recentchange/1.0.0"
        assert (meta["stream"], meta["topic"], meta["partition"]) == (
            "mediawiki.recentchange", "eqiad.mediawiki.recentchange", 0)
        assert UUID.match(meta["id"]) and UUID.match(meta["request_id"])
        assert meta["domain"] == data["server_name"]
        assert data["server_url"] == "https://" + meta["domain"]
        assert data["title_url"] == meta["uri"]
        assert data["title_url"].startswith(data["server_url"] + "/wiki/")
        assert isinstance(data["bot"], bool) and isinstance(data["id"], int)
        if data["type"] == "edit":
            assert data.keys() >= EDIT_FIELDS
            assert data["revision"]["new"] > data["revision"]["old"]
            assert data["notify_url"].endswith(
                f"diff={data['revision']['new']}&oldid={data['revision']['old']}")
        elif data["type"] == "new":
            assert data["length"].keys() == {"new"} and data["revision"].keys() == {"new"}
        elif data["type"] == "log":
            assert {"log_id", "log_type", "log_action", "log_params"} <= data.keys()


def test_domains_match_wikis(parsed: list[tuple[SynthEvent, dict]]) -> None:
    pairs = {(data["wiki"], data["meta"]["domain"]) for _, data in parsed}
    wikis = dict(pairs)
    assert len(wikis) == len(pairs) >= 8
    assert wikis["enwiki"] == "en.wikipedia.org"
    assert wikis["wikidatawiki"] == "www.wikidata.org"
    assert wikis["commonswiki"] == "commons.wikimedia.org"
    assert wikis["dewiki"] == "de.wikipedia.org"
    share = Counter(data["wiki"] for _, data in parsed)
    assert share.most_common(1)[0][1] < 0.5 * len(parsed)


def test_meta_dt_agrees_with_timestamp(events: list[SynthEvent]) -> None:
    checked = 0
    for event in events:
        if kind_of(event.payload) in ("valid", "canary", "no-user", "user-number"):
            data = orjson.loads(event.payload)
            expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(data["timestamp"]))
            assert data["meta"]["dt"] == expected
            checked += 1
    assert checked > 0.99 * len(events)


def test_offsets_increase_in_arrival_order(events: list[SynthEvent]) -> None:
    offsets = [orjson.loads(e.payload)["meta"]["offset"] for e in events
               if kind_of(e.payload) != "not-json"]
    assert all(a < b for a, b in pairwise(offsets))


def test_payload_sizes(events: list[SynthEvent]) -> None:
    sizes = [len(e.payload) for e in events]
    assert 700 <= statistics.median(sizes) <= 1400
    assert sum(600 <= s <= 1600 for s in sizes) > 0.8 * len(sizes)


def test_received_is_arrival_time(parsed: list[tuple[SynthEvent, dict]],
                                  events: list[SynthEvent]) -> None:
    received = [e.received for e in events]
    assert all(a <= b for a, b in pairwise(received))
    assert START <= received[0] < START + 5
    delays = [event.received - data["timestamp"] for event, data in parsed]
    assert all(d > 0.05 for d in delays)
    assert sum(d < 2.5 for d in delays) > 0.99 * len(delays)
    stamps = [data["timestamp"] for _, data in parsed]
    assert min(stamps) >= START
    assert 25 <= len(events) / (received[-1] - received[0]) <= 60
    backwards = sum(b < a for a, b in pairwise(stamps))
    assert 0.01 * len(stamps) < backwards < 0.3 * len(stamps)


def test_users_are_heavy_tailed_and_varied(parsed: list[tuple[SynthEvent, dict]]) -> None:
    users = Counter(data["user"] for _, data in parsed)
    assert 500 <= len(users) <= 5000
    top = sum(n for _, n in users.most_common(len(users) // 100))
    assert top > 0.15 * len(parsed)
    assert users.most_common(1)[0][1] < 0.1 * len(parsed)
    names = set(users)
    assert any(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", n) for n in names)
    assert any(re.fullmatch(r"[0-9A-F]{1,4}(:[0-9A-F]{1,4}){7}", n) for n in names)
    assert any(not n.isascii() for n in names)
    assert any(re.search(r"[\u0400-\u04ff]", n) for n in names)
    assert any(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", n) for n in names)
    bots = {data["user"] for _, data in parsed if data["bot"]}
    assert bots and all(n.endswith("Bot") for n in bots)
    assert not any(n.endswith("Bot") for n in names - bots)


def test_canaries_have_no_user_or_wiki(events: list[SynthEvent]) -> None:
    canaries = [orjson.loads(e.payload) for e in events if kind_of(e.payload) == "canary"]
    assert 1 <= len(canaries) <= 2 + (events[-1].received - events[0].received) / 3000
    for data in canaries:
        assert "user" not in data and "wiki" not in data
        assert type(data["timestamp"]) is int


def test_invalid_and_late_fractions(events: list[SynthEvent]) -> None:
    kinds = Counter(kind_of(e.payload) for e in events)
    assert kinds["not-object"] == 0
    invalid = sum(kinds[k] for k in INVALID_KINDS)
    assert 0.0003 * len(events) <= invalid <= 0.004 * len(events)
    late = sum(late_flags(events))
    assert 0.0005 * len(events) <= late <= 0.006 * len(events)


def test_bursts_come_from_bots(events: list[SynthEvent],
                               parsed: list[tuple[SynthEvent, dict]]) -> None:
    flagged = flagged_users(events)
    assert flagged
    bots = {data["user"] for _, data in parsed if data["bot"]}
    assert flagged <= bots
    per_second = Counter((data["user"], data["timestamp"]) for _, data in parsed)
    fast = {user for (user, _), n in per_second.items() if n > 10}
    assert fast <= bots
    seconds = Counter(user for (user, _), n in per_second.items() if n >= 15)
    assert max(seconds.values()) >= 3


def test_sse_ids(events: list[SynthEvent]) -> None:
    ids = [e.sse_id for e in events]
    assert len(set(ids)) == len(ids)
    forms = Counter()
    for event in events:
        (entry,) = orjson.loads(event.sse_id)
        assert entry["topic"] == "eqiad.mediawiki.recentchange" and entry["partition"] == 0
        (form,) = entry.keys() - {"topic", "partition"}
        forms[form] += 1
        assert type(entry[form]) is int
        if form == "timestamp":
            assert abs(entry["timestamp"] - event.received * 1000) < 1000
    assert forms["timestamp"] > 0.8 * len(events) and forms["offset"] > 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_guarantees_of_short_runs(seed: int) -> None:
    head = list(synthetic_events(2000, seed))
    kinds = Counter(kind_of(e.payload) for e in head[:1000])
    assert kinds["canary"] >= 1
    for kind in INVALID_KINDS:
        assert kinds[kind] >= 1, kind
    assert any(late_flags(head))
    assert flagged_users(head)
