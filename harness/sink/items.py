"""A flow's items in output order, merged from the part files its workers wrote.

Workers write items to part files in whatever order they come. `Items`
sorts them once the run is over, in bounded memory: parts are read in runs
of at most `RUN_BYTES`; a run that fills memory is sorted and spilled to a
file of its own, and the output is a k-way merge of the runs. So `--out` of a
flow that writes ten million items needs the memory of a run, not of ten
million items; an output that fits in one run never touches the disk again.
The order is the line text (canonical JSON: byte-identical across cluster
shapes whenever the flow is deterministic) or a key the flow gives.
"""

from __future__ import annotations

import heapq
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = ["RUN_BYTES", "Items", "count_lines"]

RUN_BYTES: Final = 64 << 20  # lines sorted in memory at once
_READ: Final = 8 << 20
_BUFFER: Final = 64 << 10

Order = Callable[[bytes], Any]


class Items:
    """Item lines (no newline) in output order; iterable any number of times."""

    def __init__(self, runs: list[list[bytes] | Path], count: int, order: Order | None,
                 spill: Path | None = None) -> None:
        self._runs = runs
        self.count = count
        self._order = order
        if spill is not None:
            weakref.finalize(self, shutil.rmtree, spill, True)

    @classmethod
    def counted(cls, count: int) -> Items:
        """Only how many items there were (nobody asked for them)."""
        return cls([], count, None)

    @classmethod
    def of_lines(cls, lines: list[bytes], order: Order | None = None) -> Items:
        """Items held in memory (live runs, tests)."""
        lines = sorted(lines, key=order) if order is not None else sorted(lines)
        return cls([lines], len(lines), order)

    @classmethod
    def merged(cls, parts: Iterable[Path], order: Order | None = None,
               run_bytes: int = RUN_BYTES) -> Items:
        """The lines of `parts` in output order, sorted in runs of `run_bytes`."""
        runs: list[list[bytes] | Path] = []
        spill: Path | None = None
        count, held, size = 0, [], 0
        for line in _lines(parts):
            held.append(line)
            count += 1
            size += len(line) + 48  # and the bytes object around it
            if size >= run_bytes:
                if spill is None:
                    spill = Path(tempfile.mkdtemp(prefix="harness-items-"))
                runs.append(_spilled(held, order, spill / f"run-{len(runs):05d}"))
                held, size = [], 0
        if held or not runs:
            held.sort(key=order)
            runs.append(held)
        return cls(runs, count, order, spill)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[bytes]:
        if self.count and not self._runs:
            raise ValueError("these items were counted, not kept")
        streams = [run if isinstance(run, list) else _lines([run]) for run in self._runs]
        if len(streams) == 1:
            return iter(streams[0])
        return heapq.merge(*streams, key=self._order)

    def values(self) -> Iterator[Any]:
        return (orjson.loads(line) for line in self)


def _spilled(lines: list[bytes], order: Order | None, path: Path) -> Path:
    lines.sort(key=order)
    with path.open("wb") as f:
        for start in range(0, len(lines), 4096):
            f.write(b"\n".join(lines[start:start + 4096]) + b"\n")
    return path


def _lines(paths: Iterable[Path]) -> Iterator[bytes]:
    """Every line of the files, without its newline, read through a small buffer (a
    merge reads many runs at once)."""
    for path in paths:
        with path.open("rb", buffering=_BUFFER) as f:
            for line in f:
                if line != b"\n":
                    yield line[:-1] if line.endswith(b"\n") else line


def count_lines(paths: Iterable[Path]) -> int:
    """How many lines the files hold, without keeping any."""
    total = 0
    for path in paths:
        with path.open("rb") as f:
            total += sum(block.count(b"\n") for block in iter(lambda: f.read(_READ), b""))
    return total
