"""Real public recentchange extracts, when present (HARNESS_REALDATA): flow == reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams
from harness.recording.importer import import_dumps
from tests.conftest import REALDATA, flow_outcome, reference_outcome, run_flow

FILES = ["editgroups_one_qs_batch.jsonl", "editgroups_qs_batch_with_reverts.jsonl",
         "polars_book_wikimedia.ndjson"]

pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(), reason="optional real recentchange extracts not present (set"
                                  " HARNESS_REALDATA to their directory to run these)")


@pytest.mark.parametrize("name", FILES)
def test_real_extract_replays_like_the_reference(tmp_path: Path, name: str) -> None:
    rec = tmp_path / "rec"
    import_dumps([REALDATA / name], rec, progress=False)
    expected = reference_outcome(replay_reference(rec, DetectionParams()))
    for workers, processes in [(1, 1), (2, 1), (1, 2)]:
        assert flow_outcome(run_flow(rec, workers=workers, processes=processes)) == expected
    lines = sum(1 for line in (REALDATA / name).read_bytes().splitlines() if line.strip())
    assert expected[1]["events"] == lines


def test_real_bot_burst_is_flagged(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    import_dumps([REALDATA / "editgroups_qs_batch_with_reverts.jsonl"], rec, progress=False)
    result = run_flow(rec, workers=2)
    flagged = {s["user"] for s in result.output.summaries if s["malicious"]}
    assert flagged == {"Artix Kreiger 2"}  # a QuickStatements batch at ~10.5 edits/s
    assert result.tally.malicious >= 5
