"""A flow's items in output order, merged from part files in bounded memory."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import orjson

from harness.sink.items import Items, count_lines


def _parts(tmp_path: Path, lines: list[bytes], parts: int) -> list[Path]:
    paths = [tmp_path / f"items-{i}.jsonl" for i in range(parts)]
    for i, path in enumerate(paths):
        path.write_bytes(b"".join(line + b"\n" for line in lines[i::parts]))
    return paths


def test_items_are_sorted_in_spilled_runs_with_memory_of_a_run(tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = [orjson.dumps({"k": rng.randrange(10**9), "pad": "x" * rng.randrange(80)})
             for _ in range(200_000)]  # ~17 MB of text
    paths = _parts(tmp_path, lines, 3)
    tracemalloc.start()
    try:
        items = Items.merged(paths, run_bytes=1 << 20)
        count = 0
        previous = b""
        for line in items:
            assert previous <= line
            previous = line
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(items) == len(lines) == count_lines(paths)
    assert peak < 6 << 20, f"peak {peak / 2**20:.1f} MiB for {sum(map(len, lines)) >> 20} MiB"
    assert list(items) == sorted(lines)  # iterable again, the same


def test_items_follow_a_key_and_keep_the_order_of_equal_ones(tmp_path: Path) -> None:
    rows = [orjson.dumps({"t": t, "i": i}) for i, t in enumerate([3, 1, 2, 1, 3, 2] * 50)]
    items = Items.merged(_parts(tmp_path, rows, 2), lambda line: orjson.loads(line)["t"],
                         run_bytes=512)
    got = [orjson.loads(line) for line in items]
    assert [g["t"] for g in got] == sorted(g["t"] for g in got)
    for t in (1, 2, 3):  # equal keys: part 0's before part 1's, each in file order
        same = [g["i"] for g in got if g["t"] == t]
        assert same == [i for i in range(0, 300, 2) if [3, 1, 2, 1, 3, 2][i % 6] == t] + \
            [i for i in range(1, 300, 2) if [3, 1, 2, 1, 3, 2][i % 6] == t]


def test_counted_items_are_not_kept(tmp_path: Path) -> None:
    items = Items.counted(5)
    assert len(items) == 5
    try:
        iter(items)
    except ValueError as exc:
        assert "counted" in str(exc)
    else:
        raise AssertionError("counted items iterated")
