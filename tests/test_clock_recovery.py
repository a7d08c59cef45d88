"""A key's recorded clock lives in Bytewax's state: kept across idle closes and recovery."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import TumblingWindower, count_window
from bytewax.testing import TestingSink, TestingSource, run_main

from harness.source.clock import IdleTime, RecordedClock, closing_when_idle
from harness.source.replay import Received
from tests.conftest import assert_same_output, kill_and_resume, replay_output

ZERO = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _windows(items: list[Received]) -> tuple[list[Any], list[Any]]:
    flow = Dataflow("kept_clock")
    edits = op.input("in", flow, TestingSource(items))
    clock = RecordedClock(lambda e: ZERO + timedelta(seconds=e["t"]))
    counts = count_window("count", edits, clock, TumblingWindower(timedelta(seconds=5), ZERO),
                          key=lambda e: "k")
    down: list[Any] = []
    late: list[Any] = []
    op.output("down", counts.down, TestingSink(down))
    op.output("late", op.map("late_t", counts.late, lambda kv: kv[1][1]["t"]),
              TestingSink(late))
    run_main(flow)
    return down, late


def test_a_key_whose_windows_all_closed_keeps_its_clock() -> None:
    # The second event is late (now = 20 s after the first) and closes window 0, which
    # leaves the key with no window: Bytewax alone would drop it and judge the third
    # event by a fresh clock (on time, window 0 again). The kept clock says late.
    down, late = _windows([Received({"t": 0}, recv=0.0, seq=0),
                           Received({"t": 0}, recv=20.0, seq=1),
                           Received({"t": 1}, recv=21.0, seq=2)])
    assert down == [("k", (0, 1))]
    assert late == [0, 1]


RECORDED = ["--flow", "live_flows:user_windows", "--clock", "recorded", "--quiet"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return replay_output(tmp_path_factory.mktemp("whole"), *RECORDED)


@pytest.mark.parametrize(("first", "resumed"), [(("1", "1"), ("2", "1")),
                                                (("1", "2"), ("1", "1"))])
def test_a_killed_recorded_clock_flow_resumes_byte_identical(
        tmp_path: Path, whole: bytes, first: tuple[str, str], resumed: tuple[str, str]) -> None:
    out, state = tmp_path / "out.jsonl", tmp_path / "state"
    kill_and_resume(["replay", *RECORDED, "--recovery-dir", str(state), "--out", str(out),
                     "--snapshot-interval", "0.1"], out, first, resumed, after=1.2)
    assert_same_output(out, whole)


def test_a_live_runs_idle_time_reaches_the_windows_of_its_copy_only() -> None:
    """`closing_when_idle` gives each window's clock the run's `IdleTime` as the key's
    window logic is built; the flow it was given (a module's Dataflow, say) keeps none,
    and an ended stream closes no more windows."""
    flow = Dataflow("idle_copy")
    edits = op.input("in", flow, TestingSource([]))
    clock = RecordedClock(lambda e: ZERO + timedelta(seconds=e["t"]))
    count_window("count", edits, clock, TumblingWindower(timedelta(seconds=5), ZERO),
                 key=lambda e: "k")
    idle = IdleTime(grace=0.0)

    def window_clock(dataflow: Dataflow) -> Any:
        found: list[Any] = []

        def walk(steps: list[Any]) -> None:
            for step in steps:
                if type(step).__name__ == "stateful_batch":
                    found.append(step.builder(None).clock)
                walk(step.substeps)

        walk(dataflow.substeps)
        [logic] = found
        return logic

    live = window_clock(closing_when_idle(flow, idle))
    assert live.idle is idle and window_clock(flow).idle is None
    live.on_item(Received({"t": 0}, recv=10.0, seq=0))
    idle.observe(20.0)
    assert live.on_notify() == ZERO + timedelta(seconds=10)  # now = 20 s, 0 s wait
    assert live.to_system_utc(ZERO + timedelta(seconds=15)) is not None
    idle.end()
    idle.observe(30.0)
    assert live.on_notify() == ZERO + timedelta(seconds=10)  # ended: now stays at 20 s
    assert live.to_system_utc(ZERO + timedelta(seconds=15)) is None
