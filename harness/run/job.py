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
import json
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

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
