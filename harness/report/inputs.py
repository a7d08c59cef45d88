"""`Inputs`: everything the report page shows, gathered by `harness.report.write_report`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.flows.bots.semantics import DetectionParams
from harness.recording import Manifest
from harness.report.analysis import FlaggedAccount
from harness.report.scan import RecordingFacts

__all__ = ["Inputs"]


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything the page shows."""

    title: str
    recording: Path
    manifest: Manifest
    params: DetectionParams
    params_given: bool
    results: str  # where summaries/dead letters/tally came from, in words
    summaries: Sequence[dict[str, Any]]
    dead_letters: Sequence[dict[str, Any]]
    tally: dict[str, int]
    facts: RecordingFacts
    flagged: Sequence[FlaggedAccount]
