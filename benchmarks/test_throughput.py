"""Throughput of each stage and of whole flows, side by side with the reference model.

Every row times a call in this (pytest) process over the same recording: no
interpreter start-up or imports are in it (`harness bench` times whole
processes). The reference model (plain Python: decompress, full orjson parse,
detect; one thread) runs before each round of every other row, so each row's
ratio compares runs made at the same time on this noisy machine. No wall-clock
thresholds: rows only check they did the work.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import bytewax.operators as op
import pytest
import zstandard
from bench_support import (
    EXAMPLES,
    REFERENCE_ROW,
    TINY_EVENTS,
    NullSink,
    Row,
    measure_flow_row,
    measure_row,
    shape_name,
)
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from harness.flows.bots.decode import Decoder
from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams, Tally
from harness.flows.job import FlowJob
from harness.recording import Recording
from harness.recording.lanes import Chunk
from harness.recording.recorder import record
from harness.run.cluster import terminate
from harness.run.replay import Result, replay
from harness.source.lanes import LaneSource

RECORD_TIMEOUT = 600.0  # seconds; a safety stop for the recorder row, not a threshold


@pytest.mark.benchmark(group="stages")
def test_reference(benchmark, rows, recording: Path, events: int) -> None:
    """Baseline: the plain-Python reference model."""
    results = measure_row(benchmark, rows, Row(REFERENCE_ROW, events),
                          lambda: replay_reference(recording, DetectionParams()), None)
    assert all(r.tally.events == events for r in results)


def _frames(recording: Path) -> Iterator[tuple[int, bytes]]:
    """(lane, decompressed lines) of every lane frame of every block."""
    rec = Recording(recording)
    dctx = zstandard.ZstdDecompressor()
    for block in rec.blocks():
        for lane, data in rec.read_frames(block, None, dctx):
            assert isinstance(data, bytes), data  # a synthetic recording has no damage
            yield lane, data


def _decompress(recording: Path) -> int:
    return sum(len(data) for _, data in _frames(recording))


def _decode(recording: Path) -> int:
    decode = Decoder(DetectionParams())  # one per flow, as build_flow makes it
    return sum(decode(Chunk(lane, data)).events for lane, data in _frames(recording))


@pytest.mark.benchmark(group="stages")
def test_decompress_only(benchmark, rows, recording: Path, events: int) -> None:
    """Reading and decompressing every frame, nothing else."""
    results = measure_row(benchmark, rows, Row("decompress only", events),
                          lambda: _decompress(recording), recording)
    assert results[0] > 0


@pytest.mark.benchmark(group="stages")
def test_decode_only(benchmark, rows, recording: Path, events: int) -> None:
    """Decompress + `Decoder` (what the flow's detect step runs first on each chunk),
    outside Bytewax."""
    results = measure_row(benchmark, rows, Row("decompress + decode", events),
                          lambda: _decode(recording), recording)
    assert results == [events] * len(results)


def _source_only(recording: Path, with_decode: bool) -> int:
    flow = Dataflow("bench_source")
    stream = op.input("in", flow, LaneSource(recording))
    if with_decode:  # not a step of the real flow, which decodes inside its detect step
        stream = op.map("decode", stream, Decoder(DetectionParams()))
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
    """Bytewax input + `Decoder` as a map step -> no-op sink: decode's cost inside
    Bytewax, without the keyed exchange and detection it is fused with in the flow."""
    results = measure_row(benchmark, rows, Row("bytewax source -> decode -> no-op", events),
                          lambda: _source_only(recording, True), recording)
    assert results[0] > 0


FLOW_SHAPES = [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2)]


@pytest.mark.benchmark(group="flow")
@pytest.mark.parametrize(("workers", "processes"), FLOW_SHAPES,
                         ids=[f"w{w}xp{p}" for w, p in FLOW_SHAPES])
def test_flow(benchmark, rows, recording: Path, tiny_recording: Path, events: int,
              reference_tally: Tally, workers: int, processes: int) -> None:
    """The bot-detection replay (`replay(FlowJob.of(...))`): lanes -> key by lane ->
    detect (decode + detect) -> part files, merged."""

    def run(path: Path) -> Tally:
        counts: Tally = replay(FlowJob.of(path, workers=workers,
                                          processes=processes)).output.counts
        return counts

    row = Row(shape_name("flow", workers, processes), events, workers=workers,
              processes=processes)
    results = measure_flow_row(benchmark, rows, row, run, recording, tiny_recording)
    assert all(t == reference_tally for t in results), (results[0], reference_tally)




@pytest.mark.benchmark(group="user flow")
def test_user_flow(benchmark, rows, recording: Path, tiny_recording: Path,
                   events: int) -> None:
    """docs/examples/wiki_counts.py (a Bytewax count_window) through the public source:
    a `FlowJob` over `ReplaySource`, as `harness replay --flow wiki_counts:wiki_counts
    --key wiki` runs it."""

    def run(path: Path) -> Result:
        return replay(FlowJob.of(path, "wiki_counts:wiki_counts", key="wiki",
                                 search=(str(EXAMPLES),)))

    row = Row(shape_name("wiki_counts", 1, 1), events, workers=1, processes=1,
              note="user flow (FlowJob); the reference does detection, not counting")
    results = measure_flow_row(benchmark, rows, row, run, recording, tiny_recording)
    for result in results:
        assert result.output.counts.read == events
        assert len(result.output.items), "wiki_counts wrote nothing"


@pytest.fixture
def event_server(recording: Path) -> Iterator[str]:
    """`harness serve` (an `EventStreamServer`) playing the benchmark recording as fast
    as possible, in its own process, started once for all rounds."""
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
def test_recorder(benchmark, rows, recording: Path, events: int, event_server: str,
                  tmp_path: Path) -> None:
    """`harness.recording.recorder.record` (what `harness record` runs) from a local
    `harness serve` (separate process) over loopback, into a new recording each round."""
    counter = iter(range(1_000_000))

    def run() -> int:
        out = tmp_path / f"rec-{next(counter)}"
        report = record(out, url=event_server, max_events=events, duration=RECORD_TIMEOUT,
                        progress=False)
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
