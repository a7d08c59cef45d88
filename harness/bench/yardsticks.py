"""The rows a replay is measured against, each run as `python -m harness.bench KIND`:
the plain loop (`plain_read`; bot detection's is `reference.plain_loop`) and the naive
Bytewax pipeline (`naive_bytewax`)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson
import zstandard
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from harness.errors import HarnessError
from harness.recording.reader import Recording

__all__ = ["naive_bytewax", "plain_read"]


def plain_read(path: Path) -> int:
    """The plain loop without detection: stream every segment through zstd and parse
    every line with orjson, in one thread. Returns the number of lines."""
    recording = Recording(path)
    count = 0
    for index in range(len(recording.manifest.segments)):
        with recording.open_segment(index) as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            for line in io.BufferedReader(reader, 1 << 20):
                orjson.loads(line)
                count += 1
    return count


def naive_bytewax(payloads: Path, flow: str, key: str, out: Path) -> int:
    """`flow` the way a Bytewax user runs it without the harness: `FileSource` over the
    payloads' JSON lines, `orjson.loads` in a map (dropping what the harness would not
    pass on: not JSON, not an object, no `key`), one worker, items written as JSON
    lines. Returns the number of items."""
    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.run import cli_main

    from harness.flows.contract import resolve
    from harness.flows.surgery import input_steps, splice_after_input
    from harness.flows.user import UserFlow
    from harness.source.keys import key_getter, key_text

    plugin = resolve(flow, (str(Path.cwd()),))
    if not isinstance(plugin, UserFlow):
        raise HarnessError(f"bench: the naive pipeline needs your own flow, not {flow}")
    get = key_getter(key)

    def parse(line: str) -> Any:
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return payload if isinstance(payload, dict) and key_text(get(payload)) else None

    out.mkdir(exist_ok=True)
    sink = _LinesSink(out)
    dataflow = plugin.dataflow(FileSource(payloads), sink)
    (step,) = input_steps(dataflow)
    splice_after_input(dataflow, step, lambda lines: op.filter_map("parse", lines, parse))
    cast(Callable[..., None], cli_main)(dataflow, workers_per_process=1)  # untyped in Bytewax
    return sum(p.read_bytes().count(b"\n") for p in out.iterdir())


class _LinesSink(DynamicSink[Any]):
    """Items as JSON lines, a file per step and worker (`FileSink` and a map, fused)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LinesPart:
        return _LinesPart(self.directory / f"{step_id}-{worker_index}.jsonl")


class _LinesPart(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")

    def write_batch(self, items: list[Any]) -> None:
        from harness.sink.jsonl import json_form

        self.file.write(b"".join(orjson.dumps(item, default=json_form) + b"\n"
                                 for item in items))

    def close(self) -> None:
        self.file.close()
