"""`JsonSink`: the sink a user's flow writes to; any JSON-serialisable item.

Each worker appends the items each output step writes, one canonical JSON
line each (orjson, keys sorted), to a part file of that step and worker; `collect`
merges the parts into one list sorted by the lines' text. That order does
not depend on which worker wrote what, so the merged output is
byte-identical across cluster shapes whenever the flow is deterministic.

Under Bytewax recovery the runner routes the items to `PartitionedJsonSink`
instead (`exactly_once`), whose partitions' resume state is the size of
their files: what a crashed run wrote after its last snapshot is cut away
and written once by the resumed run.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from harness.errors import HarnessError, UsageError

__all__ = ["JsonSink", "PartitionedJsonSink", "canonical_line", "collect_items",
           "exactly_once"]

ITEMS: Final = "items-{}.jsonl"
_OPTIONS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class ItemError(HarnessError):
    """An item the flow wrote that is not JSON-serialisable."""


def canonical_line(item: Any) -> bytes:
    """One item as its canonical JSON line (no newline): object keys sorted."""
    try:
        return orjson.dumps(item, option=_OPTIONS)
    except TypeError as exc:
        raise ItemError(f"the flow wrote an item that is not JSON-serialisable"
                        f" ({type(item).__name__}: {exc}): {item!r:.200}") from None


class _PartWriter(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")

    def write_batch(self, items: list[Any]) -> None:
        if items:
            self._file.write(b"\n".join(canonical_line(item) for item in items) + b"\n")

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class JsonSink(DynamicSink[Any]):
    """Writes every item as a canonical JSON line into `run_dir` (one file per worker)."""

    run_dir: Path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PartWriter:
        return _PartWriter(self.run_dir / ITEMS.format(f"{step_id}~w{worker_index:05d}"))


class _ResumableWriter(StatefulSinkPartition[bytes, int]):
    def __init__(self, path: Path, size: int) -> None:
        self._file: BinaryIO = path.open("ab")
        self._file.truncate(size)

    def write_batch(self, lines: list[bytes]) -> None:
        if lines:
            self._file.write(b"\n".join(lines) + b"\n")

    def snapshot(self) -> int:
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class PartitionedJsonSink(FixedPartitionedSink[bytes, int]):
    """Canonical lines keyed to `parts` partitions; resume state = each file's size."""

    run_dir: Path
    parts: int = 8

    def list_parts(self) -> list[str]:
        return [f"p{i:05d}" for i in range(self.parts)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None
                   ) -> _ResumableWriter:
        # by step and partition: a flow's outputs never share a file (nor truncate one)
        return _ResumableWriter(self.run_dir / ITEMS.format(f"{step_id}~{for_part}"),
                                resume_state or 0)


def exactly_once(flow: Dataflow, sink: JsonSink, parts: int = 8) -> int:
    """Re-route the flow's top-level `op.output` steps that write to `sink` through
    `PartitionedJsonSink`, whose output survives a resume exactly once.

    Bytewax's dynamic sinks keep no state, so after a crash the items written
    since the last snapshot would appear twice. Returns how many steps were
    re-routed.
    """
    rerouted = 0
    for step in list(flow.substeps):
        if type(step).__name__ != "output" or getattr(step, "sink", None) is not sink:
            continue
        flow.substeps.remove(step)
        up: Stream[Any] = Stream(step.up.stream_id, flow._scope)  # type: ignore[attr-defined]

        def keyed(item: Any) -> tuple[str, bytes]:
            line = canonical_line(item)
            return str(zlib.crc32(line) % parts), line

        lines = op.map(f"{step.step_name}_to_partitions", up, keyed)
        op.output(step.step_name, lines, PartitionedJsonSink(sink.run_dir, parts))
        rerouted += 1
    if not rerouted and _writes_to(flow.substeps, sink):
        raise UsageError("with --recovery-dir, write to the harness sink from a top-level"
                         " op.output step (not inside your own operator)")
    return rerouted


def _writes_to(steps: list[Any], sink: JsonSink) -> bool:
    return any(getattr(step, "sink", None) is sink or _writes_to(step.substeps, sink)
               for step in steps)


def collect_items(run_dir: Path) -> list[bytes]:
    """Every item line all workers wrote, in canonical order (sorted by text)."""
    lines: list[bytes] = []
    for path in sorted(run_dir.glob(ITEMS.format("*"))):
        lines.extend(path.read_bytes().splitlines())
    lines.sort()
    return lines


def iter_items(lines: list[bytes]) -> Iterator[Any]:
    return (orjson.loads(line) for line in lines)
