"""A user's flow as a replay job: `harness replay --flow MODULE:FUNCTION --key FIELD`.

The job builds the user's dataflow over a `ReplaySource` (keyed by `key`)
and a `JsonSink` in the run directory; `replay_flow` runs it on any shape
and returns every item the flow wrote in canonical order, with the source's
counts and dead letters.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from harness.flows import build_user_flow, load_flow
from harness.recording.integrity import SegmentCheck
from harness.replay.cluster import ERRORS
from harness.replay.job import ReadOptions
from harness.replay.keylanes import FORMAT as KEY_LANES_FORMAT
from harness.replay.keylanes import beside_the_run
from harness.replay.run import Run, run_job, unaccounted
from harness.replay.sink import JsonSink, collect_items, exactly_once
from harness.replay.source import (
    DEFAULT_PARTITIONS,
    ReplaySource,
    SourceTally,
    live_source_tally,
    read_source_report,
)

__all__ = ["FlowJob", "FlowOutput", "replay_flow"]


@dataclass(frozen=True)
class FlowJob:
    """A user's flow over a recording (a `Job`)."""

    read: ReadOptions
    flow: str  # MODULE:FUNCTION
    key: str = "user"
    partitions: int | None = None
    start: int | None = None
    end: int | None = None
    wikis: tuple[str, ...] | None = None
    search: tuple[str, ...] = field(default_factory=lambda: (os.getcwd(),))
    clock: str = "event"  # "recorded": items carry their receive times (RecordedClock)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # its source's, everywhere

    def __post_init__(self) -> None:
        load_flow(self.flow, self.search)  # fail early, in this process, in one line

    def identity(self) -> dict[str, Any]:
        return {"flow": self.flow, "key": self.key, "partitions": self.lane_count,
                "lanes": KEY_LANES_FORMAT,
                "clock": self.clock, "start": self.start, "end": self.end,
                "wikis": list(self.wikis) if self.wikis is not None else None}

    def source(self, run_dir: Path | None) -> ReplaySource:
        read = self.read
        return ReplaySource(read.recording, key=self.key, partitions=self.lane_count,
                            batch_size=read.batch_size, speed=read.speed, start=self.start,
                            end=self.end,
                            wikis=frozenset(self.wikis) if self.wikis is not None else None,
                            skip_damaged=read.skip_damaged, report_dir=run_dir,
                            received=self.clock == "recorded",
                            error_log=run_dir / ERRORS if run_dir is not None else None,
                            token=self.token)

    @property
    def lane_count(self) -> int:
        """The partitions of the source: `partitions`, else the fewest lanes, at least
        8, that every worker reads as many of (so that each key is read on the worker
        Bytewax routes it to); under recovery 8, so that a resume may change shape."""
        if self.partitions is not None:
            return self.partitions
        workers = self.read.total_workers
        if self.read.recovery_dir is not None:
            return DEFAULT_PARTITIONS
        return -(-DEFAULT_PARTITIONS // workers) * workers

    def prepare(self, progress: bool | None = False) -> list[SegmentCheck]:
        load_flow(self.flow, self.search)  # imported once, before members are forked
        lanes = self.source(None).lanes(progress)  # derived once, found by every member
        return [beside_the_run(lanes)]

    def done(self, run_dir: Path) -> int:
        return live_source_tally(run_dir).read

    def partial(self, run_dir: Path) -> FlowOutput:
        return FlowOutput([], live_source_tally(run_dir), [])

    def build(self, run_dir: Path) -> Dataflow:
        sink = JsonSink(run_dir)
        flow = build_user_flow(self.flow, load_flow(self.flow, self.search),
                               self.source(run_dir), sink)
        if self.read.recovery_dir is not None:
            exactly_once(flow, sink)
        return flow


@dataclass
class FlowOutput:
    """What a user flow's run produced: items (canonical lines) and the source's report."""

    lines: list[bytes]
    tally: SourceTally
    dead_letters: list[dict[str, Any]]


def collect(run_dir: Path) -> FlowOutput:
    tally, dead = read_source_report(run_dir)
    return FlowOutput(collect_items(run_dir), tally, dead)


def replay_flow(job: FlowJob, *, addresses: list[str] | None = None,
                process_id: int | None = None, progress: bool | None = False
                ) -> Run[FlowOutput]:
    """Run a user's flow over a recording and collect what it wrote."""
    run = run_job(job, collect, addresses=addresses, process_id=process_id,
                  progress=progress)
    tally = run.output.tally
    missing = unaccounted(run.recording, tally.read, tally.damaged)
    if missing is not None and addresses is None:
        count, where = missing
        tally.damaged += count
        run.output.dead_letters.append({"seq": -1, "reason": "damaged", "partition": None,
                                        "where": where})
    return run
