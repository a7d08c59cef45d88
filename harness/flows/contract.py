"""The flow contract: what a flow declares to the harness, and what a run of it gives back.

Every flow the harness runs, its own bot detection and yours alike, is a
`Flow`: a configuration object that says which input it wants (`PAYLOADS`:
event payload dicts from a `ReplaySource` keyed by `--key`; `CHUNKS`: raw
envelope lines of the recording's own lanes, for a flow that decodes inside
its own step), builds its dataflow over the source it is given and writes
into a run directory, and reads what the run wrote back as one `FlowOutput`:
its items (what `--out` holds, in output order), its dead letters and its
counts. How a flow's counts are summarised in one line is the flow's too.
The runner (`harness.flows.job`), `check`, `bench`, `live` and
`harness.testing` see only this interface.

Flows are named on the command line by `--flow`: a registered name
(`bots`, the default, and `passthrough`) or your own flow, named as
`python -m bytewax.run` names one (`MODULE:flow`, `MODULE:get_flow()`,
`PATH.py:flow`), or `MODULE:FUNCTION` for a `FUNCTION(source, sink)`.
"""

from __future__ import annotations

import argparse
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import Source

    from harness.flows.job import FlowJob
    from harness.recording.integrity import SegmentCheck
    from harness.recording.reader import Recording
    from harness.sink.items import Items

__all__ = ["CHUNKS", "FLOWS", "PAYLOADS", "Counts", "Flow", "FlowOutput", "Input",
           "registered", "resolve"]

Input = Literal["payloads", "chunks"]
PAYLOADS: Final[Input] = "payloads"
CHUNKS: Final[Input] = "chunks"

# Flows known by name; anything else is your own (`harness.flows.user.UserFlow`).
FLOWS: Final = {
    "bots": "harness.flows.bots.detection:BotDetection",
    "passthrough": "harness.flows.passthrough:PassThrough",
}
_YOURS: Final = "harness.flows.user:UserFlow"


class Counts(Protocol):
    """A flow's counts: events read, lines of a damaged recording skipped, and a rule
    they obey."""

    @property
    def events(self) -> int: ...

    damaged: int

    def conserved(self) -> bool: ...

    def to_json(self) -> dict[str, int]: ...


@dataclass
class FlowOutput:
    """What one run of a flow produced: its items, dead letters and counts."""

    items: Items
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    counts: Any = None  # the flow's `Counts`

    def values(self) -> Iterator[Any]:
        """The items as JSON values, in output order."""
        return self.items.values()


class Flow(ABC):
    """A flow the harness can replay, check, benchmark and run live (see the module doc).

    A subclass is built from the job's `flow` and `params` (see `resolve`) and
    must be cheap to build: every cluster member builds its own.
    """

    name: str
    input: Input = PAYLOADS

    @staticmethod
    def add_options(parser: argparse.ArgumentParser) -> None:
        """Add the flow's own command-line options (its parameters) to `parser`."""
        return None  # a flow without parameters has none

    @staticmethod
    def params_of(args: argparse.Namespace) -> dict[str, Any]:
        """The flow's parameters from parsed command-line options."""
        return {}

    def prepare(self, job: FlowJob, progress: bool | None) -> list[SegmentCheck]:
        """Work every member would repeat, done once before members start; returns
        checks of other files the run reads, started to run beside it."""
        return []

    def source(self, job: FlowJob, run_dir: Path) -> Source[Any]:
        """The replay source (the job's `ReplaySource` for `PAYLOADS`)."""
        return job.payload_source(run_dir)

    @abstractmethod
    def build(self, job: FlowJob, source: Source[Any], run_dir: Path, *,
              live_lanes: int | None = None) -> Dataflow:
        """The dataflow over `source`, writing into `run_dir`. Live (`live_lanes`: the
        lanes the live chunks are dealt into), `source` is the stream."""

    def identity(self, job: FlowJob) -> dict[str, Any]:
        """What a recovery state made by this flow must match, besides the job's."""
        return {}

    @abstractmethod
    def counts(self, run_dir: Path) -> Counts:
        """The counts so far, while the run goes on (progress, Ctrl-C)."""

    @abstractmethod
    def collect(self, job: FlowJob, run_dir: Path, items: bool = True) -> FlowOutput:
        """Everything the run wrote, merged (`items` False: the items only counted)."""

    @abstractmethod
    def summary(self, output: FlowOutput) -> tuple[str, dict[str, Any]]:
        """The summary line's text and its `--json` fields (both before the rate)."""

    def finish(self, job: FlowJob, output: FlowOutput, recording: Recording,
               whole: bool) -> None:
        """Once a run is collected: events the manifest lists that a whole
        `--skip-damaged` run neither read nor reported (a segment cut at a block
        boundary, say) are reported as damaged (`whole`: the run was the whole
        cluster, not one member's share)."""
        missing = recording.unaccounted(output.counts.events, output.counts.damaged)
        if missing is not None and whole:
            count, where = missing
            output.counts.damaged += count
            output.dead_letters.append({"seq": -1, "reason": "damaged", "where": where})


def registered(name: str) -> type[Flow] | None:
    """The class of a flow registered under `name`, if any."""
    where = FLOWS.get(name)
    return _load(where) if where is not None else None


def _load(where: str) -> type[Flow]:
    module, _, attribute = where.partition(":")
    kind: type[Flow] = getattr(importlib.import_module(module), attribute)
    return kind


def resolve(spec: str, search: tuple[str, ...] = (), params: dict[str, Any] | None = None
            ) -> Flow:
    """The `Flow` that `--flow spec` names, built with `params`."""
    kind = registered(spec)
    if kind is not None:
        return kind(**(params or {}))
    yours: Callable[..., Flow] = _load(_YOURS)  # UserFlow(spec, search, **params)
    return yours(spec, search, **(params or {}))
