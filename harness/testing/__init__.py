"""Testing your own Bytewax flow against recordings, from pytest.

    from harness.testing import assert_deterministic, run_flow

    def test_counts(sample_recording):          # fixture of the harness's pytest plugin
        items = run_flow(wiki_counts, sample_recording, key="wiki", workers=2)
        assert {"wiki": "enwiki", ...} in items
        assert_deterministic(wiki_counts, sample_recording, key="wiki")

A flow is what `harness replay --flow` runs: your module-level `Dataflow` (or
a Bytewax factory returning one, or a `FUNCTION(source, sink)`), or its spec
string; it must be importable by name so that multi-process runs can load it.
`harness.testing.strategies` has hypothesis strategies for realistic
recentchange events, and `write_recording` turns any events into a real
recording on disk, so a flow can be property-tested against a model.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from harness.check import DEFAULT_SHAPES, CheckResult, Shape, check, outcome
from harness.errors import UsageError
from harness.flows.job import FlowJob, ReadOptions
from harness.recording.lanes import DEFAULT_LANES
from harness.recording.sample import sample_recording
from harness.run.replay import replay

__all__ = ["DEFAULT_SHAPES", "Shape", "assert_deterministic", "flow_spec", "run_flow",
           "sample_recording", "write_recording"]

FlowLike = Any
"""A flow as `--flow` names one: a spec string (`"myflows:flow"`, `"myflows:get_flow()"`,
`"./flows/wiki.py:flow"`), a module-level `Dataflow`, a Bytewax factory returning one, or a
module-level `FUNCTION(source, sink)`."""


def flow_spec(flow: FlowLike) -> tuple[str, tuple[str, ...]]:
    """The `--flow` spec of `flow` (`MODULE:NAME`), and the path its module is imported
    from; a spec string as it is."""
    if isinstance(flow, str):
        return flow, ()
    from bytewax.dataflow import Dataflow

    module, name = getattr(flow, "__module__", None), getattr(flow, "__qualname__", "")
    if isinstance(flow, Dataflow):  # where it is a module global; a test module last
        found = sorted(((m.rsplit(".", 1)[-1].startswith("test"), m, n)
                        for m, mod in list(sys.modules.items()) if m != "__main__"
                        for n, value in list(vars(mod).items()) if value is flow))
        module, name = (found[0][1], found[0][2]) if found else (None, "")
    if not module or not name.isidentifier() or module == "__main__":
        raise UsageError(f"{flow!r}: a flow must be a module-level Dataflow or function of"
                         " an importable module (multi-process runs import it by name)")
    search: tuple[str, ...] = ()
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is not None:
        root = Path(file).resolve().parent
        for _ in range(module.count(".")):
            root = root.parent
        search = (str(root),)
    return f"{module}:{name}", search


def _job(flow: FlowLike, recording: str | Path, key: str, partitions: int | None,
         input: str | None = None, outputs: Sequence[str] = (), **read: Any) -> FlowJob:
    spec, search = flow_spec(flow)
    steps = {k: v for k, v in (("input", input), ("outputs", list(outputs))) if v}
    return FlowJob(ReadOptions(Path(recording), **read), spec, key, partitions, params=steps,
                   search=search or (str(Path.cwd()),))


def run_flow(flow: FlowLike, recording: str | Path, *, key: str = "user",
             workers: int = 1, processes: int = 1, batch_size: int | None = None,
             partitions: int | None = None, clock: str = "event", input: str | None = None,
             outputs: Sequence[str] = ()) -> list[Any]:
    """Run `flow` over `recording` and return every item it wrote, as JSON values, in
    canonical order (sorted by their canonical JSON text), as `harness replay --flow`
    writes them to `--out` (a Dataflow's items are `{"step": ..., "item": ...}`; `input`
    and `outputs` are `--input` and `--output`).

    `clock="recorded"`: "now" is each event's receive time, for Bytewax's own clocks
    and `harness.source.clock.RecordedClock` (as `harness replay --clock recorded`)."""
    if clock not in ("event", "recorded"):
        raise UsageError(f"clock={clock!r}: expected 'event' or 'recorded'")
    job = _job(flow, recording, key, partitions, input, outputs, workers=workers,
               processes=processes, batch_size=batch_size)
    return list(replay(dataclasses.replace(job, clock=clock)).output.values())


def assert_deterministic(flow: FlowLike, recording: str | Path, *, key: str = "user",
                         shapes: Sequence[Shape] = DEFAULT_SHAPES,
                         partitions: int | None = None, input: str | None = None,
                         outputs: Sequence[str] = ()) -> CheckResult:
    """Run `flow` on several cluster shapes; raise AssertionError naming the shapes
    that differ and items found with only one of them."""
    job = _job(flow, recording, key, partitions, input, outputs)
    result = check(lambda shape: outcome(job, shape), shapes)
    if not result.deterministic:
        raise AssertionError(f"{job.flow}: {result.summary()}\n"
                             + "\n".join(d.describe() for d in result.differences))
    return result


def write_recording(path: str | Path, events: Iterable[dict[str, Any] | bytes | str], *,
                    lanes: int = DEFAULT_LANES, received: float | None = None,
                    spacing: float = 0.02) -> Path:
    """Write `events` (payload dicts, or raw payload text) as a real recording.

    Receive times start at `received` (default: the first event's timestamp, else
    1.7e9) and advance by `spacing` seconds per event; SSE ids are offsets.
    """
    from harness.recording.writer import RecordingWriter

    out = Path(path)
    with RecordingWriter(out, source="test:harness.testing", lanes=lanes) as writer:
        clock = received
        for i, event in enumerate(events):
            if clock is None:
                ts = event.get("timestamp") if isinstance(event, dict) else None
                clock = float(ts) if type(ts) is int else 1.7e9
            payload = orjson.dumps(event) if isinstance(event, dict) else event
            writer.append(payload, f'[{{"topic":"test","partition":0,"offset":{i}}}]',
                          clock + i * spacing)
    return out
