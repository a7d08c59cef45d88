"""Replaying a recording through the bot-detection flow: `replay(ReplayConfig(...))`.

This is what `harness replay` runs without `--flow`: the lane fast path
(`LaneSource` -> detect, which decodes, keyed by lane) with the exactly-once lane
sink, on one process or a local cluster, merged into one `RunOutput`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from harness.errors import RecordingError, UsageError
from harness.flows.bots.flow import build_flow
from harness.flows.bots.routing import LanePlan, plan_lanes
from harness.flows.bots.semantics import DetectionParams, Tally
from harness.flows.bots.sinks import LaneFileSink, RunOutput, collect, live_tally
from harness.recording.integrity import SegmentCheck
from harness.recording.slice import Slice
from harness.replay.cluster import ERRORS
from harness.replay.job import ReadOptions
from harness.replay.lanes import LaneSource
from harness.replay.run import run_job, unaccounted

__all__ = ["CLOCKS", "ReplayConfig", "ReplayResult", "replay"]

CLOCKS = ("event", "recorded")
STATE_FORMAT = 2  # of the detectors' recovery snapshots


@dataclass(frozen=True)
class ReplayConfig:
    """Everything that defines one replay of the bot-detection flow (a `Job`)."""

    recording: Path
    params: DetectionParams = field(default_factory=DetectionParams)
    workers: int = 1
    processes: int = 1
    speed: float | None = None
    batch_size: int | None = None
    console: bool = False
    recovery_dir: Path | None = None
    snapshot_interval: float = 1.0
    skip_damaged: bool = False
    start: int | None = None  # a slice: events with start <= timestamp < end ...
    end: int | None = None
    wikis: tuple[str, ...] | None = None  # ... of these wikis
    clock: str = "event"  # "recorded": decide as live did, by each event's receive time

    def __post_init__(self) -> None:
        self.read  # noqa: B018 - validates the options
        self.slice  # noqa: B018
        if self.clock not in CLOCKS:
            raise UsageError(f"--clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")

    @property
    def slice(self) -> Slice:
        return Slice(self.start, self.end,
                     frozenset(self.wikis) if self.wikis is not None else None)

    @property
    def read(self) -> ReadOptions:
        return ReadOptions(self.recording, self.workers, self.processes, self.speed,
                           self.batch_size, self.skip_damaged, self.recovery_dir,
                           self.snapshot_interval)

    def identity(self) -> dict[str, Any]:
        # the snapshot is marshal, whose format only one Python version promises to read
        return {"flow": "bots", "state": STATE_FORMAT, "python": list(sys.version_info[:2]),
                "params": asdict(self.params),
                "clock": self.clock, "start": self.start, "end": self.end,
                "wikis": list(self.wikis) if self.wikis is not None else None}

    def prepare(self, progress: bool | None = False) -> list[SegmentCheck]:
        self.plan()
        return []

    def plan(self) -> LanePlan:
        """Lanes balanced over this shape's workers, or, when the state must survive a
        change of shape, the identity plan (the same on any shape)."""
        return plan_lanes(self.recording, self.workers * self.processes,
                          balanced=self.recovery_dir is None)

    def done(self, run_dir: Path) -> int:
        return live_tally(run_dir).events

    def partial(self, run_dir: Path) -> RunOutput:
        return RunOutput(tally=live_tally(run_dir))

    def build(self, run_dir: Path) -> Dataflow:
        plan = self.plan()
        source = LaneSource(self.recording, self.speed, self.batch_size,
                            error_log=run_dir / ERRORS, skip_damaged=self.skip_damaged,
                            slice_=self.slice, slots=plan.lanes)
        sink = LaneFileSink(run_dir, plan, self.console)
        return build_flow(source, sink, self.params, recorded=self.clock == "recorded",
                          recovery=self.recovery_dir is not None, error_log=run_dir / ERRORS,
                          plan=plan, slice_=self.slice)


@dataclass
class ReplayResult:
    """Merged output of a replay and how long it took."""

    output: RunOutput
    wall_seconds: float
    notes: list[str] = field(default_factory=list)  # cut-short tails, hash mismatches

    @property
    def tally(self) -> Tally:
        return self.output.tally

    @property
    def events_per_second(self) -> float:
        return self.tally.events / self.wall_seconds if self.wall_seconds > 0 else 0.0


def replay(config: ReplayConfig, *, addresses: list[str] | None = None,
           process_id: int | None = None, progress: bool | None = False,
           summaries: bool = True) -> ReplayResult:
    """Replay a recording through the detection flow and merge the outputs.

    With `addresses`, this process is member `process_id` of a cluster whose
    other members run elsewhere; the result then holds this member's share.
    `summaries` False leaves the window summaries out of the result (the
    counts are still there), which spares reading them all back.
    """
    run = run_job(config, lambda run_dir: collect(run_dir, summaries), addresses=addresses,
                  process_id=process_id, progress=progress)
    manifest, output = run.recording.manifest, run.output
    missing = unaccounted(run.recording, output.tally.events, output.tally.skipped)
    if missing is not None and addresses is None:
        count, where = missing
        output.tally.skipped += count
        output.dead_letters.append({"seq": -1, "reason": "damaged", "user": None,
                                    "timestamp": None, "where": where})
    if (manifest.complete and addresses is None and not config.skip_damaged
            and not config.slice and output.tally.events != manifest.events):
        raise RecordingError(f"{config.recording}: the manifest lists {manifest.events}"
                             f" events, the segments hold {output.tally.events}")
    return ReplayResult(output, run.wall_seconds, run.notes)
