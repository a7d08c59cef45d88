"""Bytewax's routing, pinned: the harness places keys where Bytewax 0.21.1 sends them."""

from __future__ import annotations

import random

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.recording.keyroute import route_hash, route_lane


class _Where(DynamicSink[str]):
    """Notes which worker each item reached."""

    def __init__(self, seen: dict[str, int]) -> None:
        self.seen = seen

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Note:
        return _Note(self.seen, worker_index)


class _Note(StatelessSinkPartition[str]):
    def __init__(self, seen: dict[str, int], worker: int) -> None:
        self.seen, self.worker = seen, worker

    def write_batch(self, items: list[str]) -> None:
        for item in items:
            self.seen[item] = self.worker


def bytewax_routes(keys: list[str], workers: int) -> dict[str, int]:
    """The worker a keyed stateful step runs each key on, by asking Bytewax."""
    seen: dict[str, int] = {}
    flow = Dataflow("route_probe")
    keyed = op.key_on("key", op.input("keys", flow, TestingSource(keys, batch_size=500)),
                      lambda k: k)
    op.output("where", op.map("key_only", op.stateful_map("route", keyed,
                                                         lambda s, k: (s, k)),
                              lambda kv: kv[0]), _Where(seen))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return seen


def test_the_computed_route_is_bytewaxs_own_for_every_kind_of_key() -> None:
    rng = random.Random(7)
    keys = ["", "a", "enwiki", "www.wikidata.org", "Ünïcødé 用户 🙂", "x" * 7, "y" * 8,
            "z" * 9, "w" * 16, "q" * 1000, "1700000000", "-3"]
    keys += [f"User{i}" for i in range(300)]
    keys += ["".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(rng.randrange(40)))
             .encode("utf-8", "replace").decode() for _ in range(300)]  # no lone surrogates
    keys = list(dict.fromkeys(keys))
    for workers in (2, 3, 4, 8, 64):
        routes = bytewax_routes(keys, workers)
        assert {k: route_lane(k, workers) for k in keys} == routes, workers


@settings(max_examples=200, deadline=None)
@given(key=st.text(), lanes=st.integers(1, 512))
def test_a_lane_is_the_routing_hash_modulo_the_lanes(key: str, lanes: int) -> None:
    assert route_lane(key, lanes) == route_hash(key) % lanes
    assert 0 <= route_hash(key) < 1 << 64


class _Parts(FixedPartitionedSource[str, None]):
    def __init__(self, count: int) -> None:
        self.count = count

    def list_parts(self) -> list[str]:
        return [f"wiki-{i:05d}" for i in range(self.count)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Once:
        return _Once(for_part)


class _Once(StatefulSourcePartition[str, None]):
    def __init__(self, name: str) -> None:
        self.name, self.done = name, False

    def next_batch(self) -> list[str]:
        if self.done:
            raise StopIteration
        self.done = True
        return [self.name]

    def snapshot(self) -> None:
        return None


def test_bytewax_deals_sorted_partitions_round_robin() -> None:
    """Partition `i` of a source listed alike on every worker is read on worker
    `i % workers`: the other half of placing a lane's keys where they are routed."""
    for parts, workers in ((8, 2), (8, 4), (9, 3), (16, 8), (64, 4)):
        seen: dict[str, int] = {}
        flow = Dataflow("deal_probe")
        op.output("where", op.input("parts", flow, _Parts(parts)), _Where(seen))
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
        assert seen == {f"wiki-{i:05d}": i % workers for i in range(parts)}
