"""Running `harness bench`: every row once per round, interleaved, each a whole
process timed from outside."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from harness.bench.results import BenchPlan, BenchResults, Measured
from harness.errors import HarnessError
from harness.recording.reader import Recording

__all__ = ["RUN_TIMEOUT", "TINY_EVENTS", "export_payloads", "run_bench", "tiny_copy"]

TINY_EVENTS = 200
RUN_TIMEOUT = 3600.0  # a safety stop for one process, not a threshold


def _finished(proc: subprocess.CompletedProcess[bytes] | subprocess.Popen[bytes],
              cmd: list[str], stdout: bytes, stderr: bytes) -> dict[str, Any]:
    if proc.returncode != 0:
        error = stderr.decode(errors="replace").strip().splitlines()
        raise HarnessError(f"bench: {' '.join(cmd[3:7])}... failed (exit {proc.returncode}):"
                           f" {error[-1] if error else 'no message'}")
    lines = stdout.decode().strip().splitlines()
    return orjson.loads(lines[-1]) if lines else {}


def _timed(cmd: list[str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT, check=False)
    wall = time.perf_counter() - start
    return wall, _finished(proc, cmd, proc.stdout, proc.stderr)


def _timed_pair(cmd: list[str]) -> float:
    """Wall time of two copies of `cmd` started together, until both have ended."""
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=RUN_TIMEOUT) for proc in procs]
    wall = time.perf_counter() - start
    for proc, (out, err) in zip(procs, outputs, strict=True):
        _finished(proc, cmd, out, err)
    return wall


def tiny_copy(recording: Path, directory: Path, events: int = TINY_EVENTS) -> Path:
    """A recording of the first `events` events of `recording` (same lanes)."""
    from harness.recording.writer import RecordingWriter

    source = Recording(recording)
    with RecordingWriter(directory, source="bench:tiny", lanes=source.lanes) as writer:
        for n, env in enumerate(source.envelopes()):
            if n >= events:
                break
            payload = orjson.dumps(env.data) if env.is_json else (env.raw or "")
            writer.append(payload, env.id, env.recv)
    return directory


def export_payloads(recording: Path, out: Path) -> Path:
    """The recording's payloads as JSON lines, in recording order (what a user without
    the harness would have on disk: `harness export`)."""
    from harness.recording.export import payload_lines

    with out.open("wb") as f:
        f.writelines(payload_lines(recording))
    return out


def run_bench(plan: BenchPlan, progress: Callable[[str], None] | None = None) -> BenchResults:
    """Measure every row, interleaved, `plan.rounds` times."""
    events = Recording(plan.recording).manifest.events
    baseline = Measured("plain loop (1 thread)", events, kind="plain loop")
    rows: list[Measured] = []
    for w, p in plan.shapes:
        shape = f"{w} worker{'s' if w > 1 else ''} x {p} process{'es' if p > 1 else ''}"
        rows.append(Measured(shape, events, w, p))
        if plan.payloads:
            rows.append(Measured(f"  passthrough, {w}x{p}", events, w, p, kind="passthrough"))
    results = BenchResults(plan, baseline, rows)
    if plan.payloads:
        results.naive = Measured("naive Bytewax (1 worker)", events, 1, 1, "naive bytewax")
    if any(p == 2 for p in plan.processes) and (1, 1) in plan.shapes:
        results.pair = Measured("two 1x1 at once", events, 1, 1, "pair")
    _compiled()
    work = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    try:
        tiny = tiny_copy(plan.recording, work / "tiny")
        payloads = export_payloads(plan.recording, work / "payloads.jsonl") \
            if results.naive is not None else None
        for command in (plan.command(plan.recording, 1, 1),  # lanes derived before timing
                        *([plan.command(plan.recording, 1, 1, "passthrough")]
                          if plan.payloads else [])):
            _timed(command)
        for round_ in range(plan.rounds):
            for row, wall in _round(plan, results, tiny, payloads, work, events):
                row.walls.append(wall)
                if progress is not None:
                    progress(f"round {round_ + 1}/{plan.rounds}: {row.name.strip()}:"
                             f" {wall:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _compiled() -> None:
    """The harness's modules byte-compiled, as an installed package's are (an editable
    install under PYTHONDONTWRITEBYTECODE would compile them again in every run)."""
    import compileall

    with contextlib.redirect_stdout(io.StringIO()):
        compileall.compile_dir(Path(__file__).parents[1], quiet=2)  # the harness package


def _round(plan: BenchPlan, results: BenchResults, tiny: Path, payloads: Path | None,
           work: Path, events: int) -> Iterator[tuple[Measured, float]]:
    """One round: every row once, interleaved (tiny runs recorded on the rows)."""
    yield results.baseline, _timed(plan.baseline_command(plan.recording))[0]
    if results.naive is not None and payloads is not None:
        yield results.naive, _timed(plan.naive_command(payloads, work / "naive-out"))[0]
    for row in results.rows:
        assert row.workers is not None and row.processes is not None
        flow = "passthrough" if row.kind == "passthrough" else None
        wall, summary = _timed(plan.command(plan.recording, row.workers, row.processes, flow))
        read = summary.get("events", summary.get("read"))
        if read is not None and read != events:
            raise HarnessError(f"bench: {row.name.strip()} read {read} events, the recording"
                               f" holds {events}")
        row.tiny_walls.append(_timed(plan.command(tiny, row.workers, row.processes, flow))[0])
        yield row, wall
    if results.pair is not None:
        yield results.pair, _timed_pair(plan.command(plan.recording, 1, 1))
