"""Items of a keyed stream in `--out`: which outputs are keyed (from the dataflow's
structure) and the order their lines take (by key, each key's in the order emitted)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
import orjson
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.testing import TestingSink, TestingSource
from hypothesis import given
from hypothesis import strategies as st

from harness.flows.surgery import keyed_outputs
from harness.sink.items import Items
from harness.sink.jsonl import JsonSink, KeyOrder


@operator
def running_total(step_id: str, up: Stream[Any]) -> Stream[Any]:
    """An operator of a user's own, wrapping a stateful one."""
    return op.stateful_map("total", op.key_on("key", up, str), lambda s, v: ((s or 0) + v,) * 2)


@operator
def doubled(step_id: str, up: Stream[Any]) -> Stream[Any]:
    return op.map("twice", up, lambda v: v * 2)


def test_outputs_fed_by_a_stateful_step_through_keeping_steps_are_keyed() -> None:
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1, 2, 3]))
    keyed = op.key_on("by", nums, str)
    counts = op.stateful_map("count", keyed, lambda s, v: ((s or 0) + 1,) * 2)
    windows = win.count_window(
        "win", nums, win.EventClock(lambda v: datetime(2024, 1, 1, tzinfo=timezone.utc),
                                    timedelta(0)),
        win.TumblingWindower(timedelta(seconds=1), datetime(2024, 1, 1, tzinfo=timezone.utc)),
        str)
    halves = op.branch("odd", counts, lambda kv: kv[1] % 2 == 1)
    sink: TestingSink[Any] = TestingSink([])
    outs = {
        "state": counts, "values": op.map_value("str", counts, str),
        "filtered": op.filter("some", op.inspect("saw", counts), lambda kv: True),
        "trues": halves.trues, "falses": halves.falses,
        "win_down": windows.down, "win_late": windows.late, "win_meta": windows.meta,
        "joined": op.join("join", keyed, keyed, emit_mode="final"),
        "final": op.reduce_final("sum", keyed, lambda a, b: a + b),
        "own_stateful": running_total("mine", nums),
        # not keyed, or not in one order per key:
        "key_on": keyed, "raw": nums, "mapped": op.map("map", counts, lambda kv: kv),
        "merged": op.merge("merge", counts, counts),
        "spread": op.redistribute("redist", counts), "own_map": doubled("dbl", counts),
        "key_rm": op.key_rm("rm", counts),
    }
    for name, stream in outs.items():
        op.output(name, stream, sink)
    assert keyed_outputs(flow) == {f"f.{name}" for name in (
        "state", "values", "filtered", "trues", "falses", "win_down", "win_late", "win_meta",
        "joined", "final", "own_stateful")}


def _line(sink: JsonSink, step: str, item: Any) -> bytes:
    return sink.line(item, step)


keys = st.text(alphabet='a"\\é', max_size=4) | st.text(max_size=6)


@given(st.lists(st.tuples(keys, st.integers(0, 99)), max_size=60), st.booleans())
def test_key_order_sorts_by_key_and_keeps_each_keys_order(
        pairs: list[tuple[str, int]], tagged: bool) -> None:
    """Quotes and backslashes in a key do not move where its text ends."""
    sink = JsonSink(Path("."), tagged=tagged)
    order = KeyOrder((sink.key_prefix("f.keyed"),))
    lines = [_line(sink, "f.keyed", pair) for pair in pairs]
    expected = sorted(pairs, key=lambda kv: orjson.dumps(kv[0]))  # stable
    assert [line for line in sorted(lines, key=order)] == \
        [_line(sink, "f.keyed", pair) for pair in expected]


def test_a_keyed_step_and_a_text_sorted_one_share_one_output(tmp_path: Path) -> None:
    sink = JsonSink(tmp_path, tagged=True)
    order = KeyOrder((sink.key_prefix("f.a"),))
    keyed = [_line(sink, "f.a", ("k", n)) for n in (3, 1, 2)]
    other = [_line(sink, "f.b", ("k", n)) for n in (3, 1, 2)]
    part = tmp_path / "items-x.jsonl"
    part.write_bytes(b"\n".join(keyed + other) + b"\n")
    assert list(Items.merged([part], order)) == keyed + sorted(other)
