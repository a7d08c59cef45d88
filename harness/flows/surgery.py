"""Rewiring a built Bytewax dataflow: a step spliced in after an input, and its
steps' failures reported where they happen.

A `Dataflow` is a tree of operator steps connected by stream ids
(`bytewax.dataflow`). To put a step between an input and everything that
read it, the step is made on the input's stream and every reference to that
stream downstream is renamed to the new step's output. Only Bytewax 0.21's
public dataflow structure is used (its final release).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Dataflow, MultiPort, SinglePort, Stream
from bytewax.operators import StatefulBatchLogic

from harness.dataflows import copied

__all__ = ["input_steps", "keyed_outputs", "output_steps", "reporting_failures", "rewired",
           "splice_after_input"]

StepFailed = Callable[[Exception, str], None]
"""Told of an exception a step raised and the id of that (core) step."""

# The Python callables Bytewax's core operators call, by operator name.
_CALLBACKS = {"flat_map_batch": "mapper", "branch": "predicate",
              "inspect_debug": "inspector"}


def input_steps(flow: Dataflow) -> list[Any]:
    """The top-level `op.input` steps of a flow, in order."""
    return [step for step in flow.substeps if type(step).__name__ == "input"]


def output_steps(flow: Dataflow) -> list[Any]:
    """Every `op.output` step of a flow, inside your own operators too, in order."""
    found: list[Any] = []

    def walk(steps: list[Any]) -> None:
        for step in steps:
            if type(step).__name__ == "output":
                found.append(step)
            walk(step.substeps)

    walk(flow.substeps)
    return found


# Operators whose every output is a keyed stream in one order: all of a key's items
# come from the one worker holding its state, in the order its logic emitted them.
_KEYING = frozenset({
    "stateful_batch", "stateful", "stateful_flat_map", "stateful_map", "collect", "join",
    "count_final", "fold_final", "max_final", "min_final", "reduce_final", "window",
    "collect_window", "count_window", "fold_window", "join_window", "max_window",
    "min_window", "reduce_window"})
# Operators that keep each item (key and all) on its worker and in its order.
_KEEPING = frozenset({"map_value", "flat_map_value", "filter_value", "filter_map_value",
                      "filter", "inspect", "inspect_debug", "branch"})
# Bytewax's other operators: what they emit is in no one order per key.
_UNORDERED = frozenset({"input", "output", "map", "flat_map", "flat_map_batch", "filter_map",
                        "flatten", "key_on", "key_rm", "merge", "redistribute",
                        "enrich_cached", "_noop"})


def keyed_outputs(flow: Dataflow) -> frozenset[str]:
    """The ids of the output steps fed a keyed stream in one order: by a stateful
    operator (`stateful_map`, a window, `join`, `reduce_final`, ...) through operators
    that keep items where and as they are (`map_value`, `filter`, `inspect`,
    `branch`, ...). Their items are `(key, value)` pairs, and each key's come in an
    order the flow decides, the same on every cluster shape if the flow is deterministic.

    Told from the dataflow's structure alone (Bytewax marks no keyed stream at run
    time): a stream is judged by the outermost operator producing it that Bytewax
    names; your own operators are looked into.
    """
    makers: dict[str, list[Any]] = {}  # stream id -> its producers, outermost first
    feeds: dict[str, str] = {}  # output step id -> the stream it writes

    def walk(steps: list[Any]) -> None:
        for step in steps:
            for name in step.dwn_names:
                for sid in _stream_ids(getattr(step, name)):
                    makers.setdefault(sid, []).append(step)
            if type(step).__name__ == "output":
                feeds[step.step_id] = step.up.stream_id
            walk(step.substeps)

    walk(flow.substeps)
    judged: dict[str, bool] = {}

    def keyed(sid: str) -> bool:
        if sid not in judged:
            judged[sid] = False  # a cycle (none in a Dataflow) is not keyed
            judged[sid] = _judge(makers.get(sid, []), keyed)
        return judged[sid]

    return frozenset(step_id for step_id, sid in feeds.items() if keyed(sid))


def _judge(producers: list[Any], keyed: Callable[[str], bool]) -> bool:
    for step in producers:
        kind = type(step).__name__
        if kind in _KEYING:
            return True
        if kind in _KEEPING:
            return all(keyed(sid) for name in step.ups_names
                       for sid in _stream_ids(getattr(step, name)))
        if kind in _UNORDERED:
            return False
    return False  # only your own operators, all the way down


def _stream_ids(port: Any) -> list[str]:
    return list(port.stream_ids.values()) if isinstance(port, MultiPort) else [port.stream_id]


def rewired(flow: Dataflow, sources: dict[str, Any], sinks: Callable[[Any], Any]) -> Dataflow:
    """A copy of `flow` whose input steps named in `sources` (by step id) read those
    sources and whose every output step writes to `sinks(step)`; `flow` itself, and the
    sources and sinks it was built with, are left untouched (never opened)."""

    def swap(step: Any) -> Any | None:
        kind = type(step).__name__
        if kind == "input" and step.step_id in sources:
            return dataclasses.replace(step, source=sources[step.step_id])
        if kind == "output":
            return dataclasses.replace(step, sink=sinks(step))
        return None

    return copied(flow, swap)


def splice_after_input(flow: Dataflow, step: Any,
                       make: Callable[[Stream[Any]], Stream[Any]]) -> None:
    """Put the steps `make(stream)` builds between input `step` and its readers."""
    index = flow.substeps.index(step)
    original = step.down.stream_id
    before = len(flow.substeps)
    made = make(Stream(original, flow._scope))
    new_steps = flow.substeps[before:]
    del flow.substeps[before:]
    for later in flow.substeps[index + 1:]:
        _rename(later, original, made.stream_id)
    flow.substeps[index + 1:index + 1] = new_steps


def _rename(step: Any, old: str, new: str) -> None:
    """Every port of `step` (and its substeps) reading stream `old` reads `new`."""
    for f in dataclasses.fields(step):
        value = getattr(step, f.name)
        if isinstance(value, SinglePort) and value.stream_id == old:
            object.__setattr__(step, f.name, dataclasses.replace(value, stream_id=new))
        elif isinstance(value, MultiPort) and old in value.stream_ids.values():
            ids = {name: new if sid == old else sid for name, sid in value.stream_ids.items()}
            object.__setattr__(step, f.name, dataclasses.replace(value, stream_ids=ids))
    for sub in step.substeps:
        _rename(sub, old, new)


def reporting_failures(flow: Dataflow, failed: StepFailed) -> None:
    """Make every step of `flow` tell `failed` of an exception it raises, then raise it.

    A multi-process Bytewax cluster loses a step's exception (a peer's broken
    connection is all that comes out), so its members report it on the way.
    """
    for step in flow.substeps:
        _report(step, failed)


def _report(step: Any, failed: StepFailed) -> None:
    name, step_id = type(step).__name__, step.step_id
    if name == "flat_map_batch":  # Bytewax iterates what it returns: its errors count too
        mapper = step.mapper
        object.__setattr__(step, "mapper", _reported(lambda batch: list(mapper(batch)),
                                                     step_id, failed))
    elif name in ("branch", "inspect_debug"):
        field = "predicate" if name == "branch" else "inspector"
        object.__setattr__(step, field, _reported(getattr(step, field), step_id, failed))
    elif name == "stateful_batch":
        build = step.builder
        object.__setattr__(step, "builder", _reported(
            lambda state: _ReportedLogic(build(state), step_id, failed), step_id, failed))
    for sub in step.substeps:
        _report(sub, failed)


def _reported(fn: Callable[..., Any], step_id: str, failed: StepFailed) -> Callable[..., Any]:
    def reported(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            failed(exc, step_id)
            raise

    return reported


class _ReportedLogic(StatefulBatchLogic[Any, Any, Any]):
    """A stateful step's logic whose every call reports what it raises, including while
    what it emits is iterated."""

    def __init__(self, logic: StatefulBatchLogic[Any, Any, Any], step_id: str,
                 failed: StepFailed) -> None:
        self.logic, self.step_id, self.failed = logic, step_id, failed

    def _call(self, method: Callable[..., Any], *args: Any, emits: bool = False) -> Any:
        try:
            if emits:  # (what to emit, whether to discard the logic)
                out, discard = method(*args)
                return list(out), discard
            return method(*args)
        except Exception as exc:
            self.failed(exc, self.step_id)
            raise

    def on_batch(self, values: list[Any]) -> Any:
        return self._call(self.logic.on_batch, values, emits=True)

    def on_notify(self) -> Any:
        return self._call(self.logic.on_notify, emits=True)

    def on_eof(self) -> Any:
        return self._call(self.logic.on_eof, emits=True)

    def notify_at(self) -> Any:
        return self._call(self.logic.notify_at)

    def snapshot(self) -> Any:
        return self._call(self.logic.snapshot)
