"""The flow against the reference model, and against Bytewax's own windowing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
import orjson
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


# ------------------------------------------------ the recorded clock: live == replay

# Gaps between receive times: bursts, a steady stream, and stalls well over the lateness.
gaps = st.one_of(st.floats(0, 0.02), st.floats(0.02, 2.0), st.floats(5.0, 60.0))
arrivals = st.lists(st.tuples(st.sampled_from(["alice", "FastBot", "bob"]), offsets, gaps),
                    max_size=60)


@st.composite
def live_schedules(draw: st.DrawFn) -> tuple[list[tuple[str, int, float]], list[int],
                                               list[float | None]]:
    """Events with receive times; where the live run cut them into batches; and the
    tick (if any) it sent before each batch, at or below the receive time of every
    event not yet handed on. A batch that starts long after its first event arrived
    is a late backlog."""
    drawn = draw(arrivals)
    recv, events = 1_000.0, []
    for user, offset, gap in drawn:
        recv += gap
        events.append((user, offset, recv))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(events)), max_size=12))))
    ticks: list[float | None] = []
    floor = 1_000.0  # where receive times start
    for start in [0, *cuts]:  # the tick before the batch that starts here
        ceiling = events[start][2] if start < len(events) else recv + 100.0
        share = draw(st.one_of(st.none(), st.floats(0, 1)))
        if share is None:
            ticks.append(None)
            continue
        floor = floor + share * max(ceiling - floor, 0.0)
        ticks.append(floor)
    return events, cuts, ticks


def _run_detector(p: DetectionParams, events: list[tuple[str, int, float]], cuts: list[int],
                  ticks: list[float | None]) -> tuple[list[Any], dict[str, int]]:
    from harness.flows.bots.semantics import Detector, Tally

    detector, tally, emitted = Detector(p, recorded=True), Tally(), []
    start = 0
    for cut, tick in zip([*cuts, len(events)], ticks, strict=True):
        if tick is not None:
            detector.advance(tick, tally, emitted)
        batch = events[start:cut]
        detector.process([u for u, _, _ in batch], [BASE + o for _, o, _ in batch],
                         list(range(start, cut)), tally, emitted, [r for _, _, r in batch])
        start = cut
    detector.finish(tally, emitted)
    return sorted(orjson.dumps(item.to_json()) for item in emitted), tally.to_json()


@given(schedule=live_schedules(), p=params)
def test_live_ticks_and_batches_never_change_what_the_recorded_clock_decides(
        schedule: tuple[list[tuple[str, int, float]], list[int], list[float | None]],
        p: DetectionParams) -> None:
    """Live (batches as they arrived, idle ticks between) decides exactly what a replay
    with --clock recorded (one pass, no ticks) decides."""
    events, cuts, ticks = schedule
    replayed = _run_detector(p, events, [], [None])
    assert _run_detector(p, events, cuts, ticks) == replayed
    assert replayed[1]["counted"] + replayed[1]["late"] == len(events)
