"""`harness bench`: throughput per cluster shape, measured side by side, whole processes.

Every figure is the wall time of a whole process (start-up, imports and
cluster connect included), run in rounds that interleave every row, so
ratios compare runs made at the same time on a noisy machine; the median of
the rounds is reported with min and max. The rows:

- *plain loop*: one Python thread that streams the recording's segments
  through zstd and parses every line with orjson (and, for bot detection,
  detects with the same rules, `reference.plain_loop`);
- *naive Bytewax* (a flow of payloads): what a Bytewax user does without the
  harness: the same flow fed by `bytewax.connectors.files.FileSource` over
  the payloads as JSON lines, `orjson.loads` in a map (events the harness
  would not pass on dropped there), one worker;
- per shape, `harness replay` of the flow, and (a flow of payloads) of
  `--flow passthrough` with the same key: the source into a sink that keeps
  nothing, so the difference is the flow's own share;
- *ceiling* (two processes): two one-worker replays run at once show how
  much the cores slow each other (`m`); with the one-worker start-up `s`
  (the tiny recording) and wall `T1`, two processes can at best reach
  `T1 / (s + (T1 - s) / 2 * m)`. A two-process row says what share of that
  it reached.

"Net of start-up" subtracts the median wall time of the same shape on a tiny
recording (the first events of the same one).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import zstandard
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from harness.errors import HarnessError
from harness.recording.reader import Recording

__all__ = ["BenchPlan", "BenchResults", "Measured", "export_payloads", "net_rate",
           "plain_read", "run_bench"]

TINY_EVENTS = 200
RUN_TIMEOUT = 3600.0  # a safety stop for one process, not a threshold


@dataclass(frozen=True)
class BenchPlan:
    """What to measure: a flow over a recording, per shape."""

    recording: Path
    flow: str = "bots"
    key: str = "user"
    partitions: int | None = None
    workers: Sequence[int] = (1, 2, 4)
    processes: Sequence[int] = (1, 2)
    rounds: int = 3
    extra_args: tuple[str, ...] = ()

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [(w, p) for p in self.processes for w in self.workers]

    @property
    def payloads(self) -> bool:
        """Whether the flow reads payloads (then it gets the naive and pass-through rows)."""
        from harness.flows.contract import CHUNKS, registered

        kind = registered(self.flow)
        return kind is None or kind.input != CHUNKS

    def command(self, recording: Path, workers: int, processes: int,
                flow: str | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "harness", "replay", str(recording), "--quiet", "--json",
               "--workers", str(workers), "--processes", str(processes), *self.extra_args,
               "--flow", flow or self.flow]
        if self.payloads:
            cmd += ["--key", self.key]
            if self.partitions is not None:
                cmd += ["--partitions", str(self.partitions)]
        return cmd

    def baseline_command(self, recording: Path) -> list[str]:
        return [sys.executable, "-m", "harness.bench", "read" if self.payloads else "detect",
                str(recording)]

    def naive_command(self, payloads: Path, out: Path) -> list[str]:
        return [sys.executable, "-m", "harness.bench", "naive", str(payloads), self.flow,
                self.key, str(out)]


def net_rate(events: int, wall: float, fixed: float) -> float | None:
    """Events per second of `wall` with a `fixed` cost (start-up) taken off; None when
    the fixed cost leaves under a quarter of the wall for the work, where the
    difference of two noisy times would mean nothing."""
    work = wall - fixed
    return None if work < 0.25 * wall else events / work


@dataclass
class Measured:
    """Wall times of one row (whole processes), and of the same row on the tiny recording."""

    name: str
    events: int
    workers: int | None = None
    processes: int | None = None
    kind: str = "flow"  # flow | passthrough | plain loop | naive bytewax | pair
    walls: list[float] = field(default_factory=list)
    tiny_walls: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def events_per_s(self) -> float:
        return self.events / self.median

    @property
    def startup(self) -> float | None:
        return statistics.median(self.tiny_walls) if self.tiny_walls else None

    @property
    def net_events_per_s(self) -> float | None:
        """Throughput with the start-up (tiny-recording wall) taken off the median."""
        return None if self.startup is None else net_rate(self.events, self.median,
                                                          self.startup)

    def to_json(self, results: BenchResults | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "events": self.events,
            "workers": self.workers, "processes": self.processes,
            "walls_s": [round(w, 4) for w in self.walls], "median_s": round(self.median, 4),
            "min_s": round(min(self.walls), 4), "max_s": round(max(self.walls), 4),
            "events_per_s": round(self.events_per_s),
        }
        if self.startup is not None:
            row["startup_s"] = round(self.startup, 4)
            net = self.net_events_per_s
            row["net_events_per_s"] = round(net) if net is not None else None
        if results is not None:
            row["ratio_to_plain_loop"] = round(results.baseline.median / self.median, 3)
            if results.naive is not None:
                row["ratio_to_naive_bytewax"] = round(results.naive.median / self.median, 3)
            share = results.of_ceiling(self)
            if share is not None:
                row["share_of_ceiling"] = round(share, 3)
            flow_share = results.flow_share(self)
            if flow_share is not None:
                row["flow_share"] = round(flow_share, 3)
        return row


@dataclass
class BenchResults:
    plan: BenchPlan
    baseline: Measured
    rows: list[Measured]
    naive: Measured | None = None
    pair: Measured | None = None

    def row(self, workers: int, processes: int, kind: str = "flow") -> Measured | None:
        return next((r for r in self.rows if (r.workers, r.processes, r.kind)
                     == (workers, processes, kind)), None)

    @property
    def ceiling(self) -> dict[str, float] | None:
        """What two processes can reach on this machine (see the module doc)."""
        one = self.row(1, 1)
        if self.pair is None or one is None or one.startup is None:
            return None
        t1, s = one.median, one.startup
        m = self.pair.median / t1
        return {"T1_s": round(t1, 4), "startup_s": round(s, 4), "mutual_slowdown": round(m, 3),
                "speedup": round(t1 / (s + (t1 - s) / 2 * m), 3)}

    def of_ceiling(self, row: Measured) -> float | None:
        """A two-process flow row's speed-up over one worker, as a share of the ceiling."""
        ceiling, one = self.ceiling, self.row(1, 1)
        if ceiling is None or one is None or row.processes != 2 or row.kind != "flow":
            return None
        return one.median / row.median / ceiling["speedup"]

    def flow_share(self, row: Measured) -> float | None:
        """The share of a flow row's wall time that the pass-through does not spend."""
        if row.kind != "flow" or row.workers is None or row.processes is None:
            return None
        passing = self.row(row.workers, row.processes, "passthrough")
        return None if passing is None else 1 - passing.median / row.median

    def to_json(self) -> dict[str, Any]:
        return {
            "recording": str(self.plan.recording), "flow": self.plan.flow,
            "key": self.plan.key, "rounds": self.plan.rounds, "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "baseline": self.baseline.to_json(None),
            "naive_bytewax": self.naive.to_json(self) if self.naive is not None else None,
            "ceiling": self.ceiling,
            "rows": [row.to_json(self) for row in self.rows],
        }

    def table(self) -> list[str]:
        naive = self.naive is not None
        head = (f"{'shape':<28} {'events/s':>10} {'min-max s':>13} {'x plain':>8}"
                + (f" {'x naive':>8}" if naive else "")
                + f" {'start-up s':>10} {'net ev/s':>10}  notes")
        lines = [f"{self.plan.flow} on {self.plan.recording} ({self.baseline.events:,} events,"
                 f" median of {self.plan.rounds} rounds, whole processes)", head,
                 "-" * len(head)]
        for row in [self.baseline, *([self.naive] if self.naive else []), *self.rows]:
            net = row.net_events_per_s
            notes = []
            share, flow_share = self.of_ceiling(row), self.flow_share(row)
            if share is not None:
                notes.append(f"{share:.0%} of the ceiling")
            if flow_share is not None:
                notes.append(f"flow's share {flow_share:.0%}")
            lines.append(
                f"{row.name:<28} {row.events_per_s:>10,.0f}"
                f" {f'{min(row.walls):.2f}-{max(row.walls):.2f}':>13}"
                f" {self.baseline.median / row.median:>8.2f}"
                + (f" {self.naive.median / row.median:>8.2f}" if self.naive else "")
                + f" {f'{row.startup:.2f}' if row.startup is not None else '-':>10}"
                f" {f'{net:,.0f}' if net is not None else '-':>10}  {', '.join(notes)}"
                .rstrip())
        ceiling = self.ceiling
        if ceiling is not None:
            lines.append(f"ceiling for 2 processes: {ceiling['speedup']:.2f}x one worker"
                         f" (T1 {ceiling['T1_s']:.2f} s, start-up {ceiling['startup_s']:.2f} s,"
                         f" cores' mutual slowdown {ceiling['mutual_slowdown']:.2f} from two"
                         " one-worker replays at once)")
        return lines

    def plot_png(self) -> bytes:
        """Events/s per shape (median, min-max bars) and the reference rows' lines."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise HarnessError("--plot needs matplotlib: pip install"
                               " 'wikistream-harness[bench]'") from None
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        names = [row.name for row in self.rows]
        medians = [row.events_per_s for row in self.rows]
        lows = [row.events / max(row.walls) for row in self.rows]
        highs = [row.events / min(row.walls) for row in self.rows]
        errors = [[m - lo for m, lo in zip(medians, lows, strict=True)],
                  [hi - m for m, hi in zip(medians, highs, strict=True)]]
        colors = ["#c44e52" if row.kind == "passthrough" else "#4c72b0" for row in self.rows]
        ax.bar(names, medians, yerr=errors, capsize=4, color=colors, label="harness replay")
        nets = [row.net_events_per_s for row in self.rows]
        ax.scatter([n for n, v in zip(names, nets, strict=True) if v is not None],
                   [v for v in nets if v is not None], marker="_", s=400, color="#dd8452",
                   label="net of start-up", zorder=3)
        ax.axhline(self.baseline.events_per_s, color="#55a868", linestyle="--",
                   label=f"plain loop ({self.baseline.events_per_s:,.0f}/s)")
        if self.naive is not None:
            ax.axhline(self.naive.events_per_s, color="#8172b2", linestyle=":",
                       label=f"naive Bytewax ({self.naive.events_per_s:,.0f}/s)")
        ax.set_ylabel("events per second (whole process)")
        ax.set_title(f"{self.plan.flow}: {self.baseline.events:,} events,"
                     f" median of {self.plan.rounds}, min-max bars", fontsize=10)
        ax.legend(fontsize=8)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        plt.close(fig)
        return out.getvalue()


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
        compileall.compile_dir(Path(__file__).parent, quiet=2)  # the harness package


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


def plain_read(path: Path) -> int:
    """The plain loop without detection: stream every segment through zstd and parse
    every line with orjson, in one thread. Returns the number of lines."""
    recording = Recording(path)
    count = 0
    for index in range(len(recording.manifest.segments)):
        with recording.segment_path(index).open("rb") as f:
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


def _main(argv: list[str]) -> None:
    kind, path, *rest = argv
    if kind == "read":
        print(orjson.dumps({"events": plain_read(Path(path))}).decode())
    elif kind == "naive":
        flow, key, out = rest
        print(orjson.dumps({"items": naive_bytewax(Path(path), flow, key, Path(out))}).decode())
    else:
        from harness.flows.bots.reference import plain_loop
        from harness.flows.bots.semantics import DetectionParams

        tally = plain_loop(Path(path), DetectionParams())
        print(orjson.dumps(tally.to_json()).decode())


if __name__ == "__main__":
    _main(sys.argv[1:])
