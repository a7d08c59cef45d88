"""Real public recentchange extracts (tests/data/realdata): flow == reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams
from harness.recording.importer import import_dumps
from tests.conftest import REALDATA, flow_outcome, reference_outcome, run_flow

FILES = ["editgroups_one_qs_batch.jsonl.zst", "editgroups_qs_batch_with_reverts.jsonl.zst",
         "polars_book_wikimedia.ndjson.zst"]


@pytest.mark.parametrize("name", FILES)
def test_real_extract_replays_like_the_reference(tmp_path: Path, name: str) -> None:
    rec = tmp_path / "rec"
    import_dumps([REALDATA / name], rec, progress=False)
    expected = reference_outcome(replay_reference(rec, DetectionParams()))
    for workers, processes in [(1, 1), (2, 1), (1, 2)]:
        assert flow_outcome(run_flow(rec, workers=workers, processes=processes)) == expected
    with zstandard.open(REALDATA / name, "rt", encoding="utf-8") as dump:
        lines = sum(1 for line in dump if line.strip())
    assert expected[1]["events"] == lines


def test_real_bot_burst_is_flagged(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    import_dumps([REALDATA / "editgroups_qs_batch_with_reverts.jsonl.zst"], rec, progress=False)
    result = run_flow(rec, workers=2)
    flagged = {s["user"] for s in list(result.output.values()) if s["malicious"]}
    assert flagged == {"Artix Kreiger 2"}  # a QuickStatements batch at ~10.5 edits/s
    assert result.output.counts.malicious >= 5
