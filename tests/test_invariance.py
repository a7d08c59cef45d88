"""Replay is deterministic: same windows and counts for any workers/processes/batch/speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams
from tests.conftest import flow_outcome, reference_outcome, run_flow


@pytest.fixture(scope="module")
def expected(synthetic: Path):
    return reference_outcome(replay_reference(synthetic, DetectionParams()))


@pytest.mark.parametrize(("workers", "processes", "batch_size"), [
    (1, 1, None), (2, 1, None), (4, 1, 7), (1, 1, 1000), (1, 2, None), (2, 2, 50),
])
def test_same_output_for_every_cluster_shape(synthetic: Path, expected, workers: int,
                                             processes: int, batch_size: int | None) -> None:
    result = run_flow(synthetic, workers=workers, processes=processes, batch_size=batch_size)
    assert flow_outcome(result) == expected
    assert expected[1]["malicious"] > 0 and expected[1]["late"] > 0  # the data exercises both


def test_paced_replay_gives_the_same_output(tmp_path: Path, expected) -> None:
    from harness.recording import Recording
    from harness.recording.synth import synthetic_events
    from tests.conftest import write_recording

    # 400 events spanning ~10 s of receive time, replayed at 100x: ~0.1 s of pacing
    path = write_recording(tmp_path / "r", (e.payload for e in synthetic_events(400, seed=3)))
    span = Recording(path).manifest.segments[-1].last_received - 1_700_000_000.0
    fast = run_flow(path)
    paced = run_flow(path, speed=100.0, workers=2)
    assert flow_outcome(paced) == flow_outcome(fast)
    assert paced.wall_seconds >= span / 100.0 * 0.9


def test_live_sized_frames_are_joined_without_changing_the_output(tmp_path: Path) -> None:
    """A recorder flushes every second: frames of a few events, joined into chunks on replay."""
    from harness.recording import Recording
    from harness.recording.synth import synthetic_events
    from harness.source.lanes import COALESCE_BYTES
    from tests.conftest import write_recording

    path = write_recording(tmp_path / "r", (e.payload for e in synthetic_events(3000, seed=4)),
                           lanes=4, block_events=40)
    frames = sum(len(b.header.lanes) for b in Recording(path).blocks())
    assert frames > 250 and 3000 * 1300 / frames < COALESCE_BYTES  # many small frames
    expected = reference_outcome(replay_reference(path, DetectionParams()))
    for shape in [{}, {"workers": 2}, {"processes": 2}, {"batch_size": 7}]:
        assert flow_outcome(run_flow(path, **shape)) == expected
