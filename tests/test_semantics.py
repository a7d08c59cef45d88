"""The detection rules of docs/contract.md section 1, stated directly, independent of any
implementation detail."""

from __future__ import annotations

import pytest

from harness.flows.bots.semantics import (
    BAD_TIMESTAMP,
    BAD_USER,
    CANARY,
    NOT_OBJECT,
    TIMESTAMP_RANGE,
    DetectionParams,
    Detector,
    Tally,
    classify,
    summarize,
)

P = DetectionParams()


def test_the_contracts_example_summary() -> None:
    s = summarize(P, "ExampleBot", P.window_id(1_700_000_000), 42, 1_700_000_000, 1_700_000_003)
    assert s is not None
    assert s.to_json() == {
        "user": "ExampleBot", "window_start": "2023-11-14T22:13:20+00:00",
        "window_end": "2023-11-14T22:13:25+00:00", "count": 42,
        "first_timestamp": 1_700_000_000, "last_timestamp": 1_700_000_003,
        "rate": 14.0, "malicious": True}


def test_min_count_and_single_instant_rate() -> None:
    wid = P.window_id(1_700_000_000)
    assert summarize(P, "u", wid, 1, 1_700_000_000, 1_700_000_000) is None
    two = summarize(P, "u", wid, 2, 1_700_000_000, 1_700_000_000)
    assert two is not None and two.rate == 2.0 and not two.malicious
    eleven = summarize(P, "u", wid, 11, 1_700_000_001, 1_700_000_001)
    assert eleven is not None and eleven.rate == 11.0 and eleven.malicious
    # exactly at the threshold is not malicious: rate must be strictly greater
    ten = summarize(P, "u", wid, 10, 1_700_000_001, 1_700_000_001)
    assert ten is not None and not ten.malicious


@pytest.mark.parametrize(("payload", "verdict"), [
    ({"user": "a", "timestamp": 5}, ("a", 5)),
    ({"user": "a", "timestamp": 5, "meta": {"domain": "canary"}}, CANARY),
    ({"meta": {"domain": "canary"}}, CANARY),
    ({"timestamp": 5}, BAD_USER),
    ({"user": None, "timestamp": 5}, BAD_USER),
    ({"user": "a", "timestamp": True}, BAD_TIMESTAMP),
    ({"user": "a", "timestamp": 5.0}, BAD_TIMESTAMP),
    ({"user": "a", "timestamp": "5"}, BAD_TIMESTAMP),
    ({"user": "a", "timestamp": 10**13}, TIMESTAMP_RANGE),
    ([1, 2], NOT_OBJECT),
    ("text", NOT_OBJECT),
])
def test_classify(payload: object, verdict: object) -> None:
    assert classify(payload) == verdict


def test_window_ids_follow_the_2023_alignment() -> None:
    assert P.window_id(P.align) == 0
    assert P.window_id(P.align + 4) == 0
    assert P.window_id(P.align + 5) == 1
    assert P.window_id(P.align - 1) == -1


def test_detector_late_and_closing_in_event_time() -> None:
    d, tally, out = Detector(P), Tally(), []
    t = P.align + 1000
    d.process(["u", "u", "u", "u"], [t, t + 1, t + 30, t + 19], [1, 2, 3, 4], tally, out)
    # t+30 raises the watermark to t+20: window [t, t+5) closes; t+19 < t+20 is late
    assert [getattr(o, "reason", None) for o in out] == [None, "late"]
    assert out[0].count == 2 and tally.late == 1 and tally.counted == 3
    d.finish(tally, out)
    assert tally.windows == 1  # the t+30 window has 1 event < min_count
    assert tally.counted == 3


def test_the_recorded_clock_moves_watermarks_and_ticks_close_windows() -> None:
    d, tally, out = Detector(P, recorded=True), Tally(), []
    t = P.align + 1000
    d.process(["u"] * 3, [t, t, t + 1], [1, 2, 3], tally, out, recvs=[100.0, 100.5, 101.0])
    d.advance(105.0, tally, out)  # watermark t+1-10 + (105-101) = t-5: nothing closes
    assert out == []
    d.advance(115.0, tally, out)  # t+1-10 + 14 = t+5 = the window's end: it closes
    assert len(out) == 1 and out[0].count == 3
    # received after that time, with a timestamp in the closed window: late, as it
    # would have been without the tick (the watermark at 116 is t+6)
    d.process(["u"], [t + 2], [4], tally, out, recvs=[116.0])
    assert out[-1].reason == "late" and tally.late == 1


def test_event_time_ignores_receive_times_and_ticks() -> None:
    d, tally, out = Detector(P), Tally(), []
    t = P.align + 1000
    d.process(["u"] * 3, [t, t, t + 1], [1, 2, 3], tally, out, recvs=[1.0, 500.0, 900.0])
    d.advance(10_000.0, tally, out)
    assert out == [] and tally.counted == 3
