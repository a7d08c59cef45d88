"""The two ends that do nothing: a source that reads nothing and a sink that keeps
nothing (`--flow passthrough`'s sink; the inputs and outputs of your Dataflow that
a replay does not use)."""

from __future__ import annotations

from typing import Any

from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["Discard", "NoEvents"]


class Discard(DynamicSink[Any]):
    """A sink that keeps nothing."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Drop:
        return _Drop()


class _Drop(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class NoEvents(DynamicSource[Any]):
    """A source that reads nothing (an input of your Dataflow that is not replayed)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Ended:
        return _Ended()


class _Ended(StatelessSourcePartition[Any]):
    def next_batch(self) -> list[Any]:
        raise StopIteration
