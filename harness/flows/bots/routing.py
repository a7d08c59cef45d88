"""Which worker reads and detects each lane: planned, not left to hashes and names.

Bytewax gives a fixed-partition source's (and sink's) partitions to workers
round robin in the sorted order of their names, and sends a keyed item to
worker `hash(key) % workers`. Left alone, 8 lanes over 2 workers split 5/3
by key hash, and even 4/4 by count is 57/43 by events (lanes differ in
size). A `LanePlan` fixes both: partition *slot* s (named `lane-0000s`)
lives on worker `s % workers`, the plan decides which recorded lane each
slot reads, greedily balancing the lanes' event counts (read from the
block headers, cheap), and each lane gets a detect key that routes to its
slot's worker, so a lane's batches stay where they were read. Keys are
found by asking Bytewax itself (a tiny in-process run), so nothing depends
on how its hash is computed; when no candidate routes as wanted, the plain
lane name is used (correct, just not balanced). Under recovery the plan is
the identity with plain keys, so that state taken on one shape resumes on
any other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from harness.recording.lanes import lane_name
from harness.recording.reader import Recording

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


def _candidates(lane: int, count: int = _CANDIDATES) -> list[str]:
    return [lane_name(lane)] + [f"{lane_name(lane)}~{j}" for j in range(count)]


@dataclass(frozen=True)
class LanePlan:
    """Slot s reads recorded lane `lanes[s]`; recorded lane l is keyed `keys[l]`."""

    lanes: tuple[int, ...]
    keys: tuple[str, ...]

    @functools.cached_property
    def slot_of(self) -> dict[int, int]:
        return {lane: slot for slot, lane in enumerate(self.lanes)}

    @classmethod
    def identity(cls, lanes: int) -> LanePlan:
        """Slot = lane, plain lane names: the same on every shape."""
        return cls(tuple(range(lanes)), tuple(lane_name(lane) for lane in range(lanes)))

    @classmethod
    def dealt(cls, slots: tuple[int, ...], workers: int) -> LanePlan:
        """`slots`, with keys routing each lane to its slot's worker."""
        targets = [0] * len(slots)
        for slot, lane in enumerate(slots):
            targets[lane] = slot % workers
        return cls(slots, lane_keys(tuple(targets), workers))


def plan_lanes(recording: Path, workers: int, balanced: bool = True) -> LanePlan:
    """The plan for `workers` workers in all (see the module doc)."""
    manifest = Recording(recording).manifest
    if workers <= 1 or not balanced:
        return LanePlan.identity(manifest.lanes)
    return _balanced_plan(recording, manifest.created, manifest.events, workers)


@functools.cache
def _balanced_plan(recording: Path, created: str, events: int, workers: int) -> LanePlan:
    return LanePlan.dealt(balance(lane_sizes(recording), workers), workers)


def lane_sizes(recording: Path) -> list[int]:
    """Events per lane, from the block headers (no frame is decompressed)."""
    reading = Recording(recording, skip_damaged=True)
    sizes = [0] * reading.lanes
    for block in reading.blocks():
        for ref in block.header.lanes:
            if ref.lane < len(sizes):
                sizes[ref.lane] += ref.events
    return sizes


_RUNS_SLACK: Final = 1.02  # runs of lanes may load the busiest worker this much more


def balance(sizes: list[int], workers: int) -> tuple[int, ...]:
    """Slots in order: slot s goes to worker s % workers, and each worker's share of
    slots is fixed, so lanes are dealt (`deal`). If cutting the lanes into runs of
    neighbours, in order, loads the busiest worker about as much (within 2%), each
    worker gets a run instead: a recording in object storage then sends a worker's
    frames of a block in one GET (`harness.recording.remote`)."""
    owned = deal(sizes, workers)
    capacity = [len(lanes) for lanes in owned]
    starts = [sum(capacity[:w]) for w in range(workers)]
    runs = [list(range(start, start + n)) for start, n in zip(starts, capacity, strict=True)]
    if _busiest(sizes, runs) <= _busiest(sizes, owned) * _RUNS_SLACK:
        owned = runs
    return tuple(owned[slot % workers][slot // workers] for slot in range(len(sizes)))


def deal(sizes: list[int], workers: int) -> list[list[int]]:
    """Each worker's lanes, dealt biggest first to the least loaded worker that still has
    a slot free (worker w has a slot for every lane s with s % workers == w)."""
    capacity = [len(range(w, len(sizes), workers)) for w in range(workers)]
    load = [0] * workers
    owned: list[list[int]] = [[] for _ in range(workers)]
    for lane in sorted(range(len(sizes)), key=lambda lane: (-sizes[lane], lane)):
        worker = min((w for w in range(workers) if len(owned[w]) < capacity[w]),
                     key=lambda w: (load[w], w))
        owned[worker].append(lane)
        load[worker] += sizes[lane]
    return owned


def _busiest(sizes: list[int], owned: list[list[int]]) -> int:
    return max(sum(sizes[lane] for lane in lanes) for lanes in owned)


@functools.cache
def lane_keys(targets: tuple[int, ...], workers: int) -> tuple[str, ...]:
    """A key per lane such that lane `l`'s key routes to worker `targets[l]`.

    A few candidates per worker almost always suffice (each lands on the wanted
    worker with chance 1/workers); only when one does not are all tried."""
    lanes = len(targets)
    if workers <= 1:
        return tuple(lane_name(lane) for lane in range(lanes))
    for count in dict.fromkeys((min(_CANDIDATES, 8 * workers), _CANDIDATES)):  # no repeat
        seen = _routes([key for lane in range(lanes) for key in _candidates(lane, count)],
                       workers)
        found = [next((key for key in _candidates(lane, count)
                       if seen.get(key) == targets[lane]), None) for lane in range(lanes)]
        if None not in found:
            break
    return tuple(key or lane_name(lane) for lane, key in enumerate(found))


def _routes(keys: list[str], workers: int) -> dict[str, int]:
    """The worker Bytewax sends each key to, from a tiny in-process run."""
    seen: dict[str, int] = {}
    flow = Dataflow("harness_routing_probe")
    keyed = op.key_on("key", op.input("keys", flow, TestingSource(keys, batch_size=len(keys))),
                      lambda k: k)
    op.output("where", op.stateful_map("route", keyed, lambda _, k: (None, k)), _Where(seen))
    cast(Callable[..., None], cluster_main)(flow, [], 0, worker_count_per_proc=workers)
    return seen
