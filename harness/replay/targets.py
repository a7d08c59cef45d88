"""What a command replays: the bot-detection flow or a user's `--flow`, uniformly.

A `Target` makes the job for a given way of reading (shape, batching, ...),
runs it, and reduces the result to what `harness check` compares (canonical
lines and counts) and what `replay` prints (a summary). The CLI, `check`,
`bench` and `harness.testing` all go through it, so a new option touches
one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from harness.check import Outcome, Shape
from harness.errors import UsageError
from harness.flows.bots.replay import ReplayConfig, ReplayResult, replay
from harness.flows.bots.semantics import DetectionParams
from harness.recording.manifest import Manifest
from harness.replay.flowjob import FlowJob, FlowOutput, replay_flow
from harness.replay.job import ReadOptions
from harness.replay.run import Run

__all__ = ["Target", "require_receive_times"]


def require_receive_times(recording: Path) -> None:
    """Refuse `--clock recorded` on a recording whose `recv` is not when events arrived."""
    manifest = Manifest.load(recording)
    if not manifest.has_receive_times:
        raise UsageError(f"--clock recorded: {recording} was imported from dumps"
                         f" ({manifest.source[:80]}), so it has no receive times (its recv"
                         " is each event's own timestamp); replay it with --clock event, or"
                         " record the stream with harness record or harness live --record")


@dataclass(frozen=True)
class Target:
    """The bot-detection flow (`flow` None) or a user flow `MODULE:FUNCTION`, with
    the source options that define its input."""

    flow: str | None = None
    key: str = "user"
    partitions: int | None = None
    start: int | None = None
    end: int | None = None
    wikis: tuple[str, ...] | None = None
    params: DetectionParams = field(default_factory=DetectionParams)
    search: tuple[str, ...] = ()
    console: bool = False
    clock: str = "event"  # "recorded": decide by the recorded receive times

    @property
    def name(self) -> str:
        return self.flow or "bot detection"

    def job(self, read: ReadOptions) -> ReplayConfig | FlowJob:
        if self.flow is None:
            return ReplayConfig(read.recording, self.params, read.workers, read.processes,
                                read.speed, read.batch_size, self.console, read.recovery_dir,
                                read.snapshot_interval, read.skip_damaged, self.start,
                                self.end, self.wikis, self.clock)
        job = FlowJob(read, self.flow, self.key, self.partitions, self.start, self.end,
                      self.wikis, clock=self.clock)
        return dataclasses.replace(job, search=self.search) if self.search else job

    def run(self, read: ReadOptions, *, addresses: list[str] | None = None,
            process_id: int | None = None, progress: bool | None = False,
            summaries: bool = True) -> ReplayResult | Run[FlowOutput]:
        if self.clock == "recorded":
            require_receive_times(read.recording)
        job = self.job(read)
        if isinstance(job, ReplayConfig):
            return replay(job, addresses=addresses, process_id=process_id, progress=progress,
                          summaries=summaries)
        return replay_flow(job, addresses=addresses, process_id=process_id,
                           progress=progress)

    def outcome(self, recording: Path, shape: Shape) -> Outcome:
        """Run on `shape` and reduce the result to canonical lines and counts."""
        read = ReadOptions(recording, shape.workers, shape.processes,
                           batch_size=shape.batch_size)
        result = self.run(read)
        if isinstance(result, ReplayResult):
            out = result.output
            lines = sorted([orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for s in out.summaries]
                           + [orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
                              for d in out.dead_letters])
            return Outcome(lines, out.tally.to_json())
        return Outcome(result.output.lines, result.output.tally.to_json())

    def replace(self, **changes: Any) -> Target:
        return dataclasses.replace(self, **changes)
