"""The flow against the reference model, and against Bytewax's own windowing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given
from hypothesis import strategies as st

from harness.flows.bots.reference import detect
from harness.flows.bots.semantics import ALIGN_2023, DetectionParams, classify, summarize
from harness.recording.envelope import Envelope
from tests.conftest import (
    flow_outcome,
    reference_outcome,
    run_flow,
    summary_key,
    write_recording,
)

BASE = ALIGN_2023 + 5 * 60_000_000  # a window boundary for every window size drawn below

users = st.sampled_from(["alice", "FastBot", "Ærøskøbing", "192.0.2.7", "2001:db8::7", "寿司",
                         "x" * 300, ""])
offsets = st.one_of(
    st.integers(-40, 80),                                     # in and out of order, > and < L
    st.integers(-8, 16).map(lambda k: k * 5),                 # exactly on 5 s boundaries
    st.integers(-8, 16).map(lambda k: k * 7 - 1),             # just before 7 s boundaries
)


def edit(user: str, offset: int) -> dict[str, Any]:
    return {"user": user, "timestamp": BASE + offset, "meta": {"domain": "en.wikipedia.org"},
            "bot": user.endswith("Bot"), "title": "T"}


valid = st.builds(lambda u, o: [edit(u, o)], users, offsets)
burst = st.builds(lambda u, o, n, spread: [edit(u, o + i % (spread + 1)) for i in range(n)],
                  users, offsets, st.integers(2, 40), st.integers(0, 2))
canary = st.builds(lambda o: [{"meta": {"domain": "canary"}, "timestamp": BASE + o}], offsets)
invalid = st.sampled_from([
    [{"timestamp": BASE}],                                    # no user
    [{"user": 42, "timestamp": BASE}],
    [{"user": "alice", "timestamp": str(BASE)}],
    [{"user": "alice", "timestamp": BASE + 0.5}],
    [{"user": "alice", "timestamp": True}],
    [{"user": "alice", "timestamp": 10**15}],                 # beyond year 9999
    [{"user": "alice", "timestamp": -10**12}],
    [{"user": "alice", "meta": "canary", "timestamp": BASE}],  # meta not an object: counted
    [b"{not json"],
    [b"[1, 2, 3]"],
    [b'"just a string"'],
])
streams = st.lists(st.one_of(valid, valid, burst, canary, invalid), max_size=40).map(
    lambda groups: [event for group in groups for event in group])
params = st.builds(DetectionParams, window=st.sampled_from([1, 5, 7]),
                   lateness=st.sampled_from([0, 3, 10]), min_count=st.sampled_from([1, 2, 3]),
                   threshold=st.sampled_from([0.5, 2.0, 10.0]))


def _reference(path: Path, p: DetectionParams):
    from harness.recording import Recording

    return reference_outcome(detect(Recording(path).envelopes(), p))


@given(events=streams, p=params, lanes=st.integers(1, 5), block=st.integers(1, 20),
       batch=st.one_of(st.none(), st.integers(1, 7)))
def test_flow_equals_reference_model(tmp_path_factory, events, p, lanes, block, batch) -> None:
    path = write_recording(tmp_path_factory.mktemp("rec") / "r", events, lanes=lanes,
                           block_events=block)
    flow = flow_outcome(run_flow(path, params=p, batch_size=batch))
    assert flow == _reference(path, p)
    tally = flow[1]
    assert tally["events"] == len(events)
    assert tally["events"] == tally["canary"] + tally["invalid"] + tally["late"] + tally["counted"]


def _bytewax_windows(events: list[Any], p: DetectionParams) -> tuple[list[tuple], int]:
    """Bytewax's own EventClock + TumblingWindower over the countable events."""
    valid_events = [v for v in map(classify, events) if isinstance(v, tuple)]
    align = datetime.fromtimestamp(p.align, tz=timezone.utc)
    frozen = datetime(2000, 1, 1, tzinfo=timezone.utc)
    clock = win.EventClock(lambda v: datetime.fromtimestamp(v[1], tz=timezone.utc),
                           wait_for_system_duration=timedelta(seconds=p.lateness),
                           now_getter=lambda: frozen, to_system_utc=lambda _: None)
    windower = win.TumblingWindower(length=timedelta(seconds=p.window), align_to=align)
    flow = Dataflow("bytewax_reference")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(valid_events)), lambda v: v[0])

    def fold(acc: list[int], v: tuple[str, int]) -> list[int]:
        return [acc[0] + 1, min(acc[1], v[1]), max(acc[2], v[1])]

    out = win.fold_window("w", keyed, clock, windower, lambda: [0, 2**62, -(2**62)], fold,
                          lambda a, b: a)
    down, late = [], []
    op.output("down", out.down, TestingSink(down))
    op.output("late", out.late, TestingSink(late))
    run_main(flow)
    summaries = [summarize(p, user, wid, *acc) for user, (wid, acc) in down]
    return [summary_key(s.to_json()) for s in summaries if s is not None], len(late)


@given(events=streams, p=params)
def test_detector_equals_bytewax_event_clock_windows(tmp_path_factory, events, p) -> None:
    """Our stateful operator decides lateness and windows exactly as Bytewax's EventClock."""
    ours = detect([Envelope(i, None, 0.0, e) for i, e in enumerate(events)
                   if isinstance(e, dict)], p)
    theirs, late = _bytewax_windows([e for e in events if isinstance(e, dict)], p)
    assert sorted(summary_key(s.to_json()) for s in ours.summaries) == sorted(theirs)
    assert ours.tally.late == late
    path = write_recording(tmp_path_factory.mktemp("rec") / "r", events, lanes=3)
    flow = flow_outcome(run_flow(path, params=p))
    assert sorted(flow[0].elements()) == sorted(theirs)
