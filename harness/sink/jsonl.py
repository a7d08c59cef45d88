"""`JsonSink`: the sink a user's flow writes to; any JSON-serialisable item.

Each worker appends the items each output step writes, one canonical JSON
line each (orjson, keys sorted), to a part file of that step and worker; the
parts merge into one list sorted by the lines' text, except that the items of a
keyed stream (`(key, value)` from a stateful step, see
`harness.flows.surgery.keyed_outputs`) are sorted by key and keep each key's
emission order (`KeyOrder`). Neither order depends on which worker wrote
what, so the merged output is byte-identical across cluster shapes whenever
the flow is deterministic.

Under Bytewax recovery the runner routes the items to `PartitionedJsonSink`
instead (`exactly_once`), whose partitions' resume state is the size of
their files: what a crashed run wrote after its last snapshot is cut away
and written once by the resumed run.
"""

from __future__ import annotations

import base64
import math
import reprlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from harness.errors import ERRORS, HarnessError, UsageError, log_error, logging_errors
from harness.files import naming

__all__ = ["JsonSink", "KeyOrder", "PartitionedJsonSink", "canonical_line", "collect_items",
           "exactly_once", "json_form"]

R = TypeVar("R")
ITEMS: Final = "items-{}.jsonl"
_OPTIONS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
_REPR: Final = reprlib.Repr()  # bounded: an item may be huge or nested 1,000 deep
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 4, 80, 80


class ItemError(HarnessError):
    """An item the flow wrote that is not JSON-serialisable."""


def canonical_line(item: Any, step: str = "") -> bytes:
    """One item as its canonical JSON line (no newline): object keys sorted.

    A value JSON cannot carry faithfully is refused (`ItemError`, naming the step
    and the value), never altered: NaN and infinities (which JSON would write as
    null), an object whose keys collide as text (`{1: "a", "1": "b"}`), nesting
    deeper than JSON writers go, and types JSON has no form for.
    """
    try:
        line = orjson.dumps(item, default=json_form, option=_OPTIONS)
    except TypeError as exc:
        line = _with_text_keys(item, step, exc)
    if b"null" in line and _non_finite(item):
        raise ItemError(f"{_where(step)}the flow wrote a number JSON cannot carry (NaN or"
                        f" infinity) in {_shown(item)}")
    return line


def json_form(value: Any) -> Any:
    """The JSON form of a value orjson has none for (see the table in
    docs/your-own-flow.md): a set is a list sorted by its members' canonical text, a
    `timedelta` its seconds, bytes their base64 text. Tuples, `datetime`s (RFC 3339),
    dataclasses (Bytewax's `WindowMetadata`, say) and enums orjson writes itself."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda member: orjson.dumps(member, default=json_form,
                                                             option=_OPTIONS))
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _where(step: str) -> str:
    return f"step {step}: " if step else ""


def _shown(item: Any) -> str:
    return f"{type(item).__name__} {_REPR.repr(item)}"


def _with_text_keys(item: Any, step: str, exc: TypeError) -> bytes:
    """An item orjson refused: with non-text object keys that do not collide as text, its
    line; else the `ItemError` that says why."""
    if "Dict key must be str" in str(exc):
        collision = _colliding_keys(item)
        if collision is not None:
            raise ItemError(f"{_where(step)}the flow wrote an object whose keys {collision}"
                            f" are the same text in JSON: {_shown(item)}") from None
        try:
            return orjson.dumps(item, default=json_form,
                                option=_OPTIONS | orjson.OPT_NON_STR_KEYS)
        except TypeError as again:
            exc = again
    if "Recursion limit" in str(exc):
        raise ItemError(f"{_where(step)}the flow wrote an item nested too deeply for JSON:"
                        f" {_shown(item)}") from None
    raise ItemError(f"{_where(step)}the flow wrote an item that is not JSON-serialisable"
                    f" ({exc}): {_shown(item)}") from None


def _colliding_keys(value: Any, depth: int = 0) -> str | None:
    """Two keys of one object (anywhere in `value`) that JSON writes as the same text."""
    if depth > 300:
        return None
    if isinstance(value, dict):
        texts: dict[str, Any] = {}
        for key, inner in value.items():
            text = key if isinstance(key, str) else orjson.dumps(
                key, option=orjson.OPT_NON_STR_KEYS).decode().strip('"')
            if text in texts:
                return f"{texts[text]!r} and {key!r}"
            texts[text] = key
            found = _colliding_keys(inner, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for inner in value:
            found = _colliding_keys(inner, depth + 1)
            if found is not None:
                return found
    return None


def _non_finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 300:
        return False
    if isinstance(value, dict):
        return any(_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v, depth + 1) for v in value)
    return False


class _OutputFile:
    """A file of output lines. What fails on it names it, and is logged for a cluster's
    parent too (Bytewax loses a member's exception on its way out)."""

    def __init__(self, path: Path, error_log: Path, size: int | None = None) -> None:
        self._path, self._error_log = path, error_log
        self._file: BinaryIO = self._guarded(lambda: path.open("ab"))
        if size is not None:
            self._guarded(self._file.truncate, size)

    def _guarded(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            with naming(self._path):
                return fn(*args)
        except (HarnessError, OSError) as exc:
            log_error(self._error_log, exc)
            raise

    def close(self) -> None:
        self._guarded(self._file.close)


class _PartWriter(_OutputFile, StatelessSinkPartition[Any]):
    def __init__(self, path: Path, step: str, error_log: Path, sink: JsonSink) -> None:
        super().__init__(path, error_log)
        self._step = step
        self._line = sink.line if sink.tagged else canonical_line  # a call less per item

    def write_batch(self, items: list[Any]) -> None:
        if items:
            self._guarded(self._write, items)

    def _write(self, items: list[Any]) -> None:
        step, line = self._step, self._line
        self._file.write(b"\n".join(line(item, step) for item in items) + b"\n")


@dataclass(frozen=True)
class JsonSink(DynamicSink[Any]):
    """Writes every item as a canonical JSON line into `run_dir` (one file per worker).

    `tagged`: each line is `{"step": STEP_ID, "item": ITEM}` (an unchanged Bytewax
    dataflow's outputs, told apart in one `--out`), so lines sort by step first."""

    run_dir: Path
    tagged: bool = False

    def line(self, item: Any, step_id: str) -> bytes:
        """`item`'s line, as written by output step `step_id`."""
        line = canonical_line(item, step_id)
        if self.tagged:
            return b'{"step":' + orjson.dumps(step_id) + b',"item":' + line + b"}"
        return line

    def key_prefix(self, step_id: str) -> bytes:
        """What every line of keyed output step `step_id` starts with, up to its key."""
        return (b'{"step":' + orjson.dumps(step_id) + b',"item":["' if self.tagged
                else b'["')

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PartWriter:
        return _PartWriter(self.run_dir / ITEMS.format(f"{step_id}~w{worker_index:05d}"),
                           step_id, self.run_dir / ERRORS, self)


class _ResumableWriter(_OutputFile, StatefulSinkPartition[bytes, int]):
    def __init__(self, path: Path, size: int, error_log: Path) -> None:
        super().__init__(path, error_log, size)

    def write_batch(self, lines: list[bytes]) -> None:
        if lines:
            self._guarded(self._file.write, b"\n".join(lines) + b"\n")

    def snapshot(self) -> int:
        self._guarded(self._file.flush)
        return self._file.tell()


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
                                resume_state or 0, self.run_dir / ERRORS)


@dataclass(frozen=True)
class KeyOrder:
    """The output order of item lines: by text, but a line starting with one of
    `prefixes` (a keyed step's, see `JsonSink.key_prefix`) by its prefix and key alone.

    Sorted stably, the lines of one key keep the order they were written in, which
    is the order the flow emitted them: all of a keyed stream's items for one key
    come from one worker, into one file."""

    prefixes: tuple[bytes, ...]

    def __call__(self, line: bytes) -> bytes:
        for prefix in self.prefixes:
            if line.startswith(prefix):
                return line[:_string_end(line, len(prefix)) + 1]
        return line


def _string_end(line: bytes, start: int) -> int:
    """The index of the quote ending the JSON string whose text begins at `start`."""
    end = line.find(b'"', start)
    while end > 0 and line[end - 1] == 0x5C and (end - len(line[:end].rstrip(b"\\"))) % 2:
        end = line.find(b'"', end + 1)  # that quote was escaped
    return end if end > 0 else len(line)


def exactly_once(flow: Dataflow, sink: JsonSink, parts: int = 8,
                 order: KeyOrder | None = None) -> int:
    """Re-route the flow's top-level `op.output` steps that write to `sink` through
    `PartitionedJsonSink`, whose output survives a resume exactly once.

    Bytewax's dynamic sinks keep no state, so after a crash the items written
    since the last snapshot would appear twice. A line goes to the partition of
    its text, or with `order` of its key: a key's lines stay in one file, in
    order. Returns how many steps were re-routed.
    """
    placed = order if order is not None else (lambda line: line)
    rerouted = 0
    for step in list(flow.substeps):
        if type(step).__name__ != "output" or getattr(step, "sink", None) is not sink:
            continue
        flow.substeps.remove(step)
        up: Stream[Any] = Stream(step.up.stream_id, flow._scope)  # type: ignore[attr-defined]

        def keyed(item: Any, step_id: str = step.step_id) -> tuple[str, bytes]:
            line = sink.line(item, step_id)
            return str(zlib.crc32(placed(line)) % parts), line

        lines = op.map(f"{step.step_name}_to_partitions", up,
                       logging_errors(keyed, sink.run_dir / ERRORS))
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
