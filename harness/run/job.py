"""What a replay runs: a `Job` builds one dataflow over a recording, on any shape.

A job is plain data (it crosses to cluster members as JSON) plus a few
methods: `build` makes the dataflow whose outputs land in a run directory,
`prepare` does once what every member would repeat, `identity` says what a
recovery state made by it must match, and `done`/`partial` read the counts
so far. Every run is a `harness.flows.job.FlowJob`, whatever its flow;
the runner (`harness.run.runner.run_job`) sees only this protocol.
"""

from __future__ import annotations

import importlib
from pathlib import Path, PurePath
from typing import Any, Protocol

import msgspec
from bytewax.dataflow import Dataflow

from harness.flows.job import ReadOptions
from harness.recording.integrity import SegmentCheck

__all__ = ["Job", "job_from_json", "job_to_json"]

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


class _Spec(msgspec.Struct):
    """A job as JSON: the class it is rebuilt as (`module:qualname`), and its fields."""

    cls: str = msgspec.field(name="class")
    fields: msgspec.Raw


def _path_to_json(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    raise NotImplementedError(f"{type(value).__name__} is not a job field's type")


def _path_from_json(kind: type, value: Any) -> Any:
    if isinstance(kind, type) and issubclass(kind, PurePath) and isinstance(value, str):
        return kind(value)
    raise NotImplementedError(f"{kind!r} is not a job field's type")


def job_to_json(job: Any) -> str:
    """A job dataclass as JSON, with the class it is to be rebuilt as."""
    cls = type(job)
    fields = msgspec.Raw(msgspec.json.encode(job, enc_hook=_path_to_json))
    return msgspec.json.encode(_Spec(f"{cls.__module__}:{cls.__qualname__}", fields)).decode()


def job_from_json(text: str) -> Any:
    """The job `job_to_json` wrote, its fields type-checked as its class declares them
    (nested dataclasses, paths, tuples) and validated by its `__post_init__`."""
    spec = msgspec.json.decode(text, type=_Spec)
    module, _, name = spec.cls.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return msgspec.json.decode(spec.fields, type=cls, dec_hook=_path_from_json)
