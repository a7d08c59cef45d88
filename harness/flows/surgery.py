"""Rewiring a built Bytewax dataflow: a step spliced in after an input.

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

__all__ = ["input_steps", "splice_after_input"]


def input_steps(flow: Dataflow) -> list[Any]:
    """The top-level `op.input` steps of a flow, in order."""
    return [step for step in flow.substeps if type(step).__name__ == "input"]


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
