"""Which worker owns a lane's detect state: chosen, not left to the key hash.

Bytewax sends a keyed item to worker `hash(key) % workers`. With 8 lanes
over 2 workers that hash gave a 5/3 split, so one process did 62% of the
detection. Here each lane `i` gets a key that routes to worker
`i % workers` — the worker Bytewax's own round-robin gives its source
partition — so lanes spread evenly and a lane's batches mostly stay where
they were read. The keys are found by asking Bytewax itself (a tiny
in-process run), so nothing depends on how its hash is computed; when no
candidate routes as wanted, the plain lane name is used (correct, just
not balanced).
"""

from __future__ import annotations

import functools

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from harness.recording.lanes import lane_name

_CANDIDATES = 64


class _Where(DynamicSink[tuple[str, str]]):
    def __init__(self, seen: dict[str, int]) -> None:
        self.seen = seen

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Note:
        return _Note(self.seen, worker_index)


class _Note(StatelessSinkPartition[tuple[str, str]]):
    def __init__(self, seen: dict[str, int], worker: int) -> None:
        self.seen, self.worker = seen, worker

    def write_batch(self, items: list[tuple[str, str]]) -> None:
        for key, _ in items:
            self.seen[key] = self.worker


def _candidates(lane: int) -> list[str]:
    return [lane_name(lane)] + [f"{lane_name(lane)}~{j}" for j in range(_CANDIDATES)]


@functools.cache
def lane_keys(lanes: int, workers: int) -> tuple[str, ...]:
    """A key per lane such that lane `i`'s key routes to worker `i % workers`."""
    if workers <= 1:
        return tuple(lane_name(lane) for lane in range(lanes))
    keys = [key for lane in range(lanes) for key in _candidates(lane)]
    seen: dict[str, int] = {}
    flow = Dataflow("harness_routing_probe")
    keyed = op.key_on("key", op.input("keys", flow, TestingSource(keys)), lambda k: k)
    op.output("where", op.stateful_map("route", keyed, lambda _, k: (None, k)), _Where(seen))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)  # type: ignore[no-untyped-call]
    return tuple(
        next((key for key in _candidates(lane) if seen.get(key) == lane % workers),
             lane_name(lane))
        for lane in range(lanes))
