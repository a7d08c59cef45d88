"""What a replay runs: a `Job` builds one dataflow over a recording, on any shape.

A job is plain data (it crosses to cluster members as JSON) plus a few
methods: `build` makes the dataflow whose outputs land in a run directory,
`prepare` does once what every member would repeat, `identity` says what a
recovery state made by it must match, and `done`/`partial` read the counts
so far. Every run is a `harness.replay.flowjob.FlowJob`, whatever its flow;
the runner (`harness.replay.run.run_job`) sees only this protocol.
"""

from __future__ import annotations

import importlib
import json
import math
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bytewax.dataflow import Dataflow

from harness.errors import UsageError
from harness.recording.integrity import SegmentCheck

__all__ = ["MAX_WORKERS", "Job", "ReadOptions", "job_from_json", "job_to_json"]

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


class Job(Protocol):
    """A dataflow over a recording that the runner can start anywhere."""

    @property
    def read(self) -> ReadOptions:
        """How the recording is read and the flow run."""
        ...

    def build(self, run_dir: Path) -> Dataflow:
        """The dataflow of one process; it writes its outputs under `run_dir`."""
        ...

    def prepare(self, progress: bool | None = False) -> list[SegmentCheck]:
        """Work every member would repeat, done once before members are forked
        (`progress` None: shown when stderr is a terminal). Returns checks of other
        files the run reads (derived lanes), started to run beside it."""
        ...

    def identity(self) -> dict[str, Any]:
        """What a recovery state made by this job must match to be resumed."""
        ...

    def done(self, run_dir: Path) -> int:
        """Events read so far, from what the workers wrote into `run_dir` (for progress)."""
        ...

    def partial(self, run_dir: Path) -> Any:
        """The counts so far of a run that was interrupted (outputs are not kept)."""
        ...


J = TypeVar("J")


def _encode(value: Any) -> Any:
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__path__"}:
            return Path(value["__path__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def job_to_json(job: Any) -> str:
    """A job dataclass as JSON, with the class it is to be rebuilt as."""
    cls = type(job)
    return json.dumps({"class": f"{cls.__module__}:{cls.__qualname__}",
                       "fields": _encode(asdict(job))})


def job_from_json(text: str) -> Any:
    raw = json.loads(text)
    module, _, name = raw["class"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return _rebuild(cls, _decode(raw["fields"]))


def _rebuild(cls: type[J], values: dict[str, Any]) -> J:
    """A (frozen) dataclass from `asdict` output, nested dataclasses included."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = values[f.name]
        kind = hints[f.name]
        for option in typing.get_args(kind) or (kind,):
            if isinstance(option, type) and hasattr(option, "__dataclass_fields__") and \
                    isinstance(value, dict):
                value = _rebuild(option, value)
                break
        if isinstance(value, list) and typing.get_origin(kind) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
