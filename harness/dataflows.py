"""A built Bytewax `Dataflow` copied with some of its steps changed: the one walk over
its tree of operator steps that both the source's clocks and the flows' surgery use."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Dataflow

__all__ = ["copied"]


def copied(flow: Dataflow, change: Callable[[Any], Any | None]) -> Dataflow:
    """A copy of `flow` in which every step that `change` returns a new step for (None:
    keep it, and look inside it) is replaced; `flow` itself is left as it was."""

    def walk(step: Any) -> Any:
        changed = change(step)
        if changed is not None:
            return changed
        inner = [walk(sub) for sub in step.substeps]
        if any(new is not old for new, old in zip(inner, step.substeps, strict=True)):
            return dataclasses.replace(step, substeps=inner)
        return step

    return Dataflow(flow.flow_id, [walk(step) for step in flow.substeps])  # its own scope
