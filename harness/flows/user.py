"""Flows over event payloads: your own `FUNCTION(source, sink)`, and what they share.

A payload flow reads a `ReplaySource` keyed by the job's `--key` (lanes
derived by that key, so each partition reads only its own keys' events, on
the worker Bytewax routes them to) and writes items, any JSON value, to a
`JsonSink`. Its counts and dead letters are the source's; its `--out` is
every item as a canonical JSON line, sorted.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.flows.contract import PAYLOADS, Flow, FlowOutput

# The command line declares every registered flow's options, for every command: what
# runs a flow (Bytewax, the source machinery) is imported only when it runs.
if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import Source

    from harness.recording.integrity import SegmentCheck
    from harness.replay.flowjob import FlowJob
    from harness.replay.source import SourceTally

__all__ = ["FlowFactory", "PayloadFlow", "UserFlow", "load_flow"]

FlowFactory = Callable[[Any, Any], "Dataflow"]


class PayloadFlow(Flow):
    """A flow whose input is payload dicts from the job's `ReplaySource`."""

    input = PAYLOADS

    def prepare(self, job: FlowJob, progress: bool | None) -> list[SegmentCheck]:
        from harness.replay.keylanes import beside_the_run

        lanes = job.payload_source(None).lanes(progress)  # derived once, found by members
        return [beside_the_run(lanes)]

    def identity(self, job: FlowJob) -> dict[str, Any]:
        from harness.replay.keylanes import FORMAT

        return {"key": job.key, "partitions": job.lane_count, "lanes": FORMAT}

    def counts(self, run_dir: Path) -> SourceTally:
        from harness.replay.source import live_source_tally

        return live_source_tally(run_dir)

    def collect(self, job: FlowJob, run_dir: Path, items: bool = True) -> FlowOutput:
        from harness.replay.items import Items, count_lines
        from harness.replay.sink import ITEMS
        from harness.replay.source import read_source_report

        tally, dead = read_source_report(run_dir)
        parts = sorted(run_dir.glob(ITEMS.format("*")))
        found = Items.merged(parts) if items else Items.counted(count_lines(parts))
        return FlowOutput(found, dead, tally)

    def summary(self, output: FlowOutput) -> tuple[str, dict[str, Any]]:
        t: SourceTally = output.counts
        extra = "".join(f" {name}={getattr(t, name)}" for name in ("outside", "damaged")
                        if getattr(t, name))
        text = (f"events={t.read} passed={t.passed} dead_letters={t.dead_letters}"
                f" (not_json={t.not_json} not_object={t.not_object} no_key={t.no_key}){extra}"
                f" items={len(output.items)}")
        return text, {"flow": self.name, **t.to_json(), "dead_letters": t.dead_letters,
                      "items": len(output.items)}


class UserFlow(PayloadFlow):
    """Your `FUNCTION(source, sink) -> Dataflow`, named `MODULE:FUNCTION`."""

    def __init__(self, spec: str, search: tuple[str, ...] = ()) -> None:
        self.name = spec
        self.factory = load_flow(spec, search)  # fails early, in one line

    def build(self, job: FlowJob, source: Source[Any], run_dir: Path, *,
              live_lanes: int | None = None) -> Dataflow:
        from bytewax.dataflow import Dataflow

        from harness.replay.sink import JsonSink, exactly_once

        sink = JsonSink(run_dir)
        try:
            flow = self.factory(source, sink)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"--flow {self.name}: building the dataflow raised"
                             f" {type(exc).__name__}: {exc}") from None
        except SystemExit as exc:  # a user's sys.exit() is not the run's exit status
            raise UsageError(f"--flow {self.name}: building the dataflow called"
                             f" sys.exit({exc.code!r})") from None
        if not isinstance(flow, Dataflow):
            raise UsageError(f"--flow {self.name}: returned {type(flow).__name__}, not a"
                             " bytewax.dataflow.Dataflow")
        if not any(type(step).__name__ == "input" for step in flow.substeps):
            raise UsageError(f"--flow {self.name}: the dataflow {flow.flow_id!r} has no"
                             " input step; read the source given to it with op.input")
        if job.read.recovery_dir is not None:
            exactly_once(flow, sink)
        return flow


def load_flow(spec: str, search: tuple[str, ...] = ()) -> FlowFactory:
    """The function `MODULE:FUNCTION` names, imported from the current directory,
    `search` or `PYTHONPATH`; a `UsageError` naming what is wrong otherwise."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name.isidentifier():
        raise UsageError(f"--flow {spec!r}: expected MODULE:FUNCTION, e.g. myflows:wiki_counts")
    for path in (*search, os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"--flow {spec!r}: no module {module_name!r} in the current"
                             " directory or on PYTHONPATH") from None
        raise UsageError(f"--flow {spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise UsageError(f"--flow {spec!r}: importing {module_name} raised"
                         f" {type(exc).__name__}: {exc}") from None
    except SystemExit as exc:  # a user's sys.exit() is not the run's exit status
        raise UsageError(f"--flow {spec!r}: importing {module_name} called"
                         f" sys.exit({exc.code!r})") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UsageError(f"--flow {spec!r}: {module_name} has no function {name!r}")
    return factory  # type: ignore[no-any-return]
