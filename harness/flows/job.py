"""The one kind of job: a flow over a recording, on some cluster shape.

`FlowJob` names its flow (`bots`, `passthrough`, or your `MODULE:FUNCTION`),
the flow's parameters, how its input is read (`ReadOptions`, the key and
partitions of a payload source, a slice, the clock) and whether alerts go
to the console. It is plain data, so it crosses to cluster members as JSON;
its `flow` is the `Flow` that builds the dataflow and reads the outputs
back (`harness.flows.contract`). `harness.run.replay.replay` runs any job the
same way.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bytewax.dataflow import Dataflow

from harness.errors import ERRORS, UsageError
from harness.flows.contract import CHUNKS, PAYLOADS, Flow, FlowOutput, resolve
from harness.process import ensure_open_files
from harness.recording.integrity import SegmentCheck
from harness.recording.slice import Slice
from harness.sink.items import Items
from harness.source.replay import (
    DEFAULT_PARTITIONS,
    PAYLOAD_CHUNK_BYTES,
    SHARED_CHUNK_BYTES,
    ReplaySource,
)

__all__ = ["CLOCKS", "MAX_WORKERS", "FlowJob", "ReadOptions"]

CLOCKS: Final = ("event", "recorded")
# Descriptors a run needs: 500 partitions failed at ulimit -n 900 and ran at 1200, so
# about two per partition (its dead letters and running counts; the lane's segment is
# opened while read) and a base for Python, Bytewax, logs and sinks.
_BASE_FILES: Final = 256
_FILES_PER_PARTITION: Final = 2


MAX_WORKERS = 256  # workers per process times processes; more only costs memory and time


@dataclass(frozen=True)
class ReadOptions:
    """How a recording is read and the flow run; the same for every job.

    `speed` None or 0 reads as fast as possible, X replays at X times the
    recorded pace. `batch_size` caps the events per source batch.
    """

    recording: Path
    workers: int = 1
    processes: int = 1
    speed: float | None = None
    batch_size: int | None = None
    skip_damaged: bool = False
    recovery_dir: Path | None = None
    snapshot_interval: float = 1.0

    def __post_init__(self) -> None:
        for name in ("workers", "processes"):
            if not 1 <= getattr(self, name) <= MAX_WORKERS:
                raise UsageError(f"--{name} must be 1..{MAX_WORKERS}, got {getattr(self, name)}")
        if self.workers * self.processes > MAX_WORKERS:
            raise UsageError(f"--workers x --processes must be at most {MAX_WORKERS}, got"
                             f" {self.workers * self.processes}")
        if self.batch_size is not None and not 1 <= self.batch_size <= 10_000_000:
            raise UsageError(f"--batch-size must be 1..10000000, got {self.batch_size}")
        if self.speed is not None and not (math.isfinite(self.speed) and
                                           (self.speed == 0 or 1e-6 <= self.speed <= 1e9)):
            raise UsageError(f"--speed must be 0 or between 1e-06 and 1e9, got {self.speed}")
        if not (math.isfinite(self.snapshot_interval) and 0.01 <= self.snapshot_interval
                <= 86400):
            raise UsageError("--snapshot-interval must be 0.01..86400 seconds, got"
                             f" {self.snapshot_interval}")

    @property
    def total_workers(self) -> int:
        return self.workers * self.processes


@dataclass(frozen=True)
class FlowJob:
    """A flow over a recording (a `Job`; see the module doc)."""

    read: ReadOptions
    flow: str = "bots"  # a registered flow or MODULE:FUNCTION
    key: str = "user"  # what a payload source is keyed by
    partitions: int | None = None  # lanes a payload source is dealt into
    start: int | None = None  # a slice: events with start <= timestamp < end ...
    end: int | None = None
    wikis: tuple[str, ...] | None = None  # ... of these wikis
    clock: str = "event"  # "recorded": decide by the recorded receive times
    params: dict[str, Any] = field(default_factory=dict)  # the flow's own parameters
    console: bool = False  # alerts as they happen (the bot flow's malicious windows)
    search: tuple[str, ...] = field(default_factory=lambda: (os.getcwd(),))
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # its source's, everywhere

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise UsageError(f"--clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        self.slice  # noqa: B018 - validates the slice
        if self.plugin.input == CHUNKS and (self.key != "user" or self.partitions is not None):
            raise UsageError(f"--key and --partitions shard a flow's payloads; --flow"
                             f" {self.flow} reads the recording's own lanes")

    @classmethod
    def of(cls, recording: str | Path, flow: str = "bots", **options: Any) -> FlowJob:
        """A job from keyword options: `ReadOptions` fields (`workers`, `speed`, ...)
        and job fields (`key`, `clock`, ...) alike; `params` may be a dataclass (bot
        detection's `DetectionParams`)."""
        reading = {f.name for f in dataclasses.fields(ReadOptions)}
        read = ReadOptions(Path(recording), **{k: v for k, v in options.items()
                                               if k in reading})
        job = {k: v for k, v in options.items() if k not in reading}
        params = job.get("params")
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            job["params"] = dataclasses.asdict(params)
        if "wikis" in job and job["wikis"] is not None:
            job["wikis"] = tuple(job["wikis"])
        return cls(read, flow, **job)

    @functools.cached_property
    def plugin(self) -> Flow:
        """The flow this job runs (built once per process, from `flow` and `params`)."""
        return resolve(self.flow, self.search, self.params)

    @property
    def slice(self) -> Slice:
        return Slice(self.start, self.end,
                     frozenset(self.wikis) if self.wikis is not None else None)

    @property
    def lane_count(self) -> int:
        """The partitions of a payload source: `partitions`, else the fewest lanes, at
        least 8, that every worker reads as many of (so that each key is read on the
        worker Bytewax routes it to); under recovery 8, so that a resume may change
        shape."""
        if self.partitions is not None:
            return self.partitions
        if self.read.recovery_dir is not None:
            return DEFAULT_PARTITIONS
        workers = self.read.total_workers
        return -(-DEFAULT_PARTITIONS // workers) * workers

    def reshaped(self, **read: Any) -> FlowJob:
        """This job with other `ReadOptions` (another shape, batching, ...)."""
        return dataclasses.replace(self, read=dataclasses.replace(self.read, **read))

    def payload_source(self, run_dir: Path | None) -> ReplaySource:
        """The job's `ReplaySource` (a payload flow's input)."""
        read = self.read
        return ReplaySource(read.recording, key=self.key, partitions=self.lane_count,
                            batch_size=read.batch_size, speed=read.speed, start=self.start,
                            end=self.end,
                            wikis=frozenset(self.wikis) if self.wikis is not None else None,
                            skip_damaged=read.skip_damaged, report_dir=run_dir,
                            received=self.clock == "recorded",
                            chunk_bytes=(PAYLOAD_CHUNK_BYTES if read.workers == 1
                                         else SHARED_CHUNK_BYTES),
                            error_log=run_dir / ERRORS if run_dir is not None else None,
                            token=self.token)

    # -- the Job protocol (harness.run.job) --

    def identity(self) -> dict[str, Any]:
        return {"flow": self.flow, "clock": self.clock, "start": self.start, "end": self.end,
                "wikis": list(self.wikis) if self.wikis is not None else None,
                **self.plugin.identity(self)}

    def prepare(self, progress: bool | None = False) -> list[SegmentCheck]:
        if self.plugin.input == PAYLOADS:  # a partition's report and live counts, its lane
            mine = -(-self.lane_count // self.read.processes)
            ensure_open_files(_BASE_FILES + _FILES_PER_PARTITION * mine,
                              f"--partitions {self.lane_count}")
        return self.plugin.prepare(self, progress)

    def build(self, run_dir: Path) -> Dataflow:
        return self.plugin.build(self, self.plugin.source(self, run_dir), run_dir)

    def done(self, run_dir: Path) -> int:
        return self.plugin.counts(run_dir).events

    def partial(self, run_dir: Path) -> FlowOutput:
        return FlowOutput(Items.counted(0), [], self.plugin.counts(run_dir))
