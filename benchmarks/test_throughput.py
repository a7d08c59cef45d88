"""Throughput of each stage and of the whole flow, side by side with the reference model.

Every row replays the same recording. The reference model (plain Python:
decompress, full orjson parse, detect; one thread) runs before each round of
every other row, so each row's ratio compares runs made at the same time on
this noisy machine. No wall-clock thresholds: rows only check they did the work.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
import zstandard
from bench_support import TINY_EVENTS, NullSink, Row, fixed_cost_samples, measure_row
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from harness.flows.bots.decode import decode
from harness.flows.bots.reference import replay_reference
from harness.flows.bots.replay import ReplayConfig, replay
from harness.flows.bots.semantics import DetectionParams, Tally
from harness.recording import Recording
from harness.recording.lanes import Chunk
from harness.replay.cluster import terminate
from harness.replay.lanes import LaneSource

RECORD_TIMEOUT = 600.0  # seconds; a safety stop for the recorder row, not a threshold


@pytest.mark.benchmark(group="stages")
def test_reference(benchmark, rows, recording: Path, events: int) -> None:
    """Baseline: the plain-Python reference model."""
    results = measure_row(benchmark, rows, Row("reference (plain Python)", events),
                          lambda: replay_reference(recording, DetectionParams()), None)
    assert all(r.tally.events == events for r in results)


def _decompress(recording: Path) -> int:
    rec = Recording(recording)
    dctx = zstandard.ZstdDecompressor()
    size = 0
    for block in rec.blocks():
        for _, data in rec.read_frames(block, None, dctx):
            size += len(data)
    return size


def _decode(recording: Path) -> int:
    rec = Recording(recording)
    dctx = zstandard.ZstdDecompressor()
    count = 0
    for block in rec.blocks():
        for lane, data in rec.read_frames(block, None, dctx):
            count += decode(Chunk(lane, data)).events
    return count


@pytest.mark.benchmark(group="stages")
def test_decompress_only(benchmark, rows, recording: Path, events: int) -> None:
    """Reading and decompressing every frame, nothing else."""
    results = measure_row(benchmark, rows, Row("decompress only", events),
                          lambda: _decompress(recording), recording)
    assert results[0] > 0


@pytest.mark.benchmark(group="stages")
def test_decode_only(benchmark, rows, recording: Path, events: int) -> None:
    """Decompress + the flow's `decode` step, outside Bytewax."""
    results = measure_row(benchmark, rows, Row("decompress + decode", events),
                          lambda: _decode(recording), recording)
    assert results == [events] * len(results)


def _source_only(recording: Path, with_decode: bool) -> int:
    flow = Dataflow("bench_source")
    stream = op.input("in", flow, LaneSource(recording))
    if with_decode:
        stream = op.map("decode", stream, decode)
    sink = NullSink()
    op.output("out", stream, sink)
    run_main(flow)
    return sink.items[0]


@pytest.mark.benchmark(group="stages")
def test_source_to_null_sink(benchmark, rows, recording: Path, events: int) -> None:
    """Bytewax input only: LaneSource (reads + decompresses lanes) -> no-op sink."""
    results = measure_row(benchmark, rows, Row("bytewax source -> no-op sink", events),
                          lambda: _source_only(recording, False), recording)
    assert results[0] > 0  # chunks


@pytest.mark.benchmark(group="stages")
def test_source_decode_to_null_sink(benchmark, rows, recording: Path, events: int) -> None:
    """Bytewax input + decode step -> no-op sink (no keyed exchange, no detection)."""
    results = measure_row(benchmark, rows, Row("bytewax source -> decode -> no-op", events),
                          lambda: _source_only(recording, True), recording)
    assert results[0] > 0


FLOW_SHAPES = [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2)]


@pytest.mark.benchmark(group="flow")
@pytest.mark.parametrize(("workers", "processes"), FLOW_SHAPES,
                         ids=[f"w{w}xp{p}" for w, p in FLOW_SHAPES])
def test_flow(benchmark, rows, recording: Path, tiny_recording: Path, events: int,
              reference_tally: Tally, workers: int, processes: int) -> None:
    """The whole replay (`harness.runner.replay`): source -> decode -> detect -> part files."""

    def run(path: Path) -> Tally:
        return replay(ReplayConfig(path, workers=workers, processes=processes)).tally

    row = Row(f"flow {workers} worker(s) x {processes} process(es)", events,
              workers=workers, processes=processes)
    row.fixed_samples = fixed_cost_samples(lambda: run(tiny_recording))
    results = measure_row(benchmark, rows, row, lambda: run(recording), recording)
    assert all(t == reference_tally for t in results), (results[0], reference_tally)


@pytest.fixture
def recorder_module() -> Any:
    """`harness.recorder`, or a clean skip while it does not exist."""
    return pytest.importorskip("harness.recorder", reason="harness.recorder not available")


@pytest.fixture
def event_server(recording: Path) -> Iterator[str]:
    """`harness serve` playing the benchmark recording as fast as possible, in its own process."""
    with tempfile.TemporaryFile() as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "harness", "serve", str(recording), "--port", "0",
             "--speed", "0"], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            line: list[str] = []
            reader = threading.Thread(target=lambda: line.append(server.stdout.readline()),
                                      daemon=True)
            reader.start()
            reader.join(60)
            if not line or not line[0].startswith("serve: "):
                err.seek(0)
                pytest.fail(f"harness serve did not start: {line} {err.read().decode()[-2000:]}")
            yield line[0].split()[1]
        finally:
            terminate(server, grace=10)
            if server.stdout is not None:
                server.stdout.close()


@pytest.mark.benchmark(group="recorder")
def test_recorder(benchmark, rows, recording: Path, events: int, recorder_module: Any,
                  event_server: str, tmp_path: Path) -> None:
    """`harness record` from a local `harness serve` (separate process) over loopback."""
    recorder = recorder_module
    counter = iter(range(1_000_000))

    def run() -> int:
        out = tmp_path / f"rec-{next(counter)}"
        report = recorder.record(out, url=event_server, max_events=events,
                                 duration=RECORD_TIMEOUT, progress=False)
        if report.stopped_by != "max-events":
            pytest.fail(f"recorder stopped by {report.stopped_by!r} after {report.events}"
                        f" of {events} events")
        return report.events

    results = measure_row(benchmark, rows,
                          Row("recorder (serve -> record, loopback)", events), run, recording)
    assert results == [events] * len(results)


def test_fixed_cost_recording_is_small(tiny_recording: Path) -> None:
    """The start-up probe really is tiny, so its wall time is (almost) all fixed cost."""
    assert Recording(tiny_recording).manifest.events == TINY_EVENTS
