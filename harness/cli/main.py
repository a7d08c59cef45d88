"""`harness`: a thin command line over the library.

Exit codes: 0 success, 2 usage or bad input (one line naming the file or
argument), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson

from harness import __version__
from harness.errors import HarnessError, UsageError
from harness.files import write_atomically
from harness.flows.bots.semantics import ALIGN_2023, DetectionParams, Tally
from harness.recording.lanes import DEFAULT_LANES
from harness.recording.sample import sample_recording


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _iso_or_epoch(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or unix seconds: {text}") from None


def _new_output(path: Path | None, force: bool, what: str) -> None:
    if path is None:
        return
    if path.exists() and not force:
        raise UsageError(f"{what} {path}: exists; refusing to overwrite (use --force)")
    if not path.parent.is_dir():
        raise UsageError(f"{what} {path}: directory {path.parent} does not exist")


def _outputs_of(recovery_dir: Path | None) -> set[Path]:
    """Output files a replay with this recovery state has written before."""
    record = recovery_dir / "outputs.json" if recovery_dir is not None else None
    if record is None or not record.is_file():
        return set()
    return {Path(p) for p in json.loads(record.read_text())}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """A killed run never leaves half a file under the final name."""
    write_atomically(path, (orjson.dumps(row) + b"\n" for row in rows))


def _add_detection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detection (SPEC section 2)")
    g.add_argument("--window", type=_positive_int, default=5, help="window seconds (5)")
    g.add_argument("--lateness", type=int, default=10, help="allowed lateness seconds (10)")
    g.add_argument("--threshold", type=_non_negative_float, default=10.0,
                   help="pages/second above which a window is malicious (10.0)")
    g.add_argument("--min-count", type=_positive_int, default=2,
                   help="fewest events for a window summary (2)")
    g.add_argument("--align", type=_iso_or_epoch, default=ALIGN_2023,
                   help="window alignment, ISO time or unix seconds (2023-01-01T00:00:00Z)")


def _params(args: argparse.Namespace) -> DetectionParams:
    try:
        return DetectionParams(window=args.window, lateness=args.lateness, align=args.align,
                               min_count=args.min_count, threshold=args.threshold)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cmd_replay(args: argparse.Namespace) -> int:
    from harness.flows.bots.replay import ReplayConfig, replay

    directory = args.recording or sample_recording()
    # A resumed run may rewrite the outputs an interrupted run of the same state wrote.
    rewrites = _outputs_of(args.recovery_dir)
    for path, what in ((args.out, "--out"), (args.dead_letters, "--dead-letters")):
        _new_output(path, args.force or (path is not None and path.resolve() in rewrites), what)
    try:
        config = ReplayConfig(directory, _params(args), workers=args.workers,
                              processes=args.processes, speed=args.speed,
                              batch_size=args.batch_size, console=not args.quiet,
                              recovery_dir=args.recovery_dir,
                              snapshot_interval=args.snapshot_interval,
                              skip_damaged=args.skip_damaged)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.addresses and args.process_id is None:
        raise UsageError("--addresses needs --process-id")
    result = replay(config, addresses=args.addresses.split(";") if args.addresses else None,
                    process_id=args.process_id)
    output, wall = result.output, result.wall_seconds
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    damaged = [d for d in output.dead_letters if d["reason"] == "damaged"]
    if damaged:
        print(f"warning: skipped {output.tally.skipped} damaged line(s) in {len(damaged)}"
              f" place(s): " + "; ".join(d["where"] for d in damaged[:5])
              + (" ..." if len(damaged) > 5 else ""), file=sys.stderr)
    if args.recovery_dir is not None:
        (args.recovery_dir / "outputs.json").write_text(
            json.dumps([str(p.resolve()) for p in (args.out, args.dead_letters) if p]))
    if args.out:
        _write_jsonl(args.out, output.summaries)
    if args.dead_letters:
        _write_jsonl(args.dead_letters, output.dead_letters)
    _print_tally(output.tally, wall, f" workers={args.workers} processes={args.processes}")
    return 0


def _print_tally(t: Tally, wall: float, extra: str) -> None:
    """The summary line; conservation (SPEC 2 item 6) is checked, not assumed."""
    rate = t.events / wall if wall > 0 else 0.0
    skipped = f" skipped={t.skipped}" if t.skipped else ""
    print(f"events={t.events} windows={t.windows} malicious={t.malicious} late={t.late}"
          f" invalid={t.invalid} canary={t.canary} counted={t.counted}{skipped}"
          f" events/s={rate:.0f} wall={wall:.3f}s{extra}")
    if not t.conserved():
        raise RuntimeError("conservation violated: events != canary+invalid+late+counted")


def _cmd_synth(args: argparse.Namespace) -> int:
    from harness.recording.importer import synthesize

    manifest = synthesize(args.out, events=args.events, seed=args.seed, lanes=args.lanes)
    size = sum(s.bytes for s in manifest.segments)
    print(f"synth: wrote {manifest.events} events to {args.out}"
          f" ({len(manifest.segments)} segment(s), {size:,} bytes, {manifest.lanes} lanes)")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from harness.recording.importer import import_dumps

    manifest = import_dumps(args.files, args.out, lanes=args.lanes)
    print(f"import: wrote {manifest.events} events from {len(args.files)} file(s) to {args.out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from harness.recording.verify import verify

    report = verify(args.recording)
    for note in report.truncated:
        print(f"warning: {note}", file=sys.stderr)
    if not report.ok:
        print(f"verify: {args.recording}: {report.errors[0]}"
              + (f" (+{len(report.errors) - 1} more problems)" if len(report.errors) > 1
                 else ""), file=sys.stderr)
        return 2
    state = "complete" if report.complete else "unfinished"
    print(f"verify: {args.recording}: ok, {state}; {report.events} events"
          f" ({report.not_json} not JSON) in {report.segments} segment(s), {report.blocks}"
          f" block(s), {report.lanes} lanes; {report.compressed_bytes:,} bytes,"
          f" compression {report.ratio:.1f}x")
    return 0


def _stream_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"idle_timeout": args.idle_timeout, "max_failures": args.max_failures or None}


def _cmd_record(args: argparse.Namespace) -> int:
    from harness.recording.recorder import record

    report = record(args.out, url=args.url, duration=args.duration, max_events=args.max_events,
                    since=args.since, user_agent=args.user_agent, lanes=args.lanes,
                    progress=None if not args.quiet else False,
                    stream_options=_stream_options(args))
    if report.resumed_after is not None:
        print(f"record: resumed {args.out} after seq {report.resumed_after}", file=sys.stderr)
    state = "complete" if report.complete else "unfinished (resumable)"
    print(f"record: {args.out} {state}, stopped by {report.stopped_by or 'end of stream'}:"
          f" {report.line()}")
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from harness.eventstreams.client import EventStream
    from harness.live import run_live

    _new_output(args.out, args.force, "--out")
    stream = EventStream(url=args.url, user_agent=args.user_agent, since=args.since,
                         **_stream_options(args))
    result = run_live(stream, params=_params(args), workers=args.workers,
                      record_to=args.record, max_events=args.max_events,
                      duration=args.duration, console=not args.quiet, lanes=args.lanes)
    if args.out:
        _write_jsonl(args.out, result.output.summaries)
    _print_tally(result.output.tally, result.wall_seconds,
                 f" workers={args.workers} reconnects={stream.stats.reconnects}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from harness.eventstreams.server import EventStreamServer, Faults

    try:
        faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    server = EventStreamServer(args.recording or sample_recording(), host=args.host,
                               port=args.port, speed=args.speed, faults=faults, end=args.end)
    print(f"serve: {server.url}  (Ctrl-C stops)", flush=True)
    server.serve_forever()
    return 0


def _add_stream_options(p: argparse.ArgumentParser, url_help: str) -> None:
    from harness.eventstreams.client import DEFAULT_URL, USER_AGENT

    p.add_argument("--url", default=DEFAULT_URL, help=url_help)
    p.add_argument("--since", help="start from this time: unix ms or ISO-8601 (history)")
    p.add_argument("--user-agent", default=USER_AGENT,
                   help="User-Agent header (Wikimedia requires one with contact info)")
    p.add_argument("--idle-timeout", type=_positive_float, default=30.0,
                   help="reconnect when the stream is silent this long (30 s)")
    p.add_argument("--max-failures", type=int, default=0,
                   help="give up after N consecutive failed connection attempts (0: never)")
    p.add_argument("--duration", type=_positive_float, help="stop after S seconds")
    p.add_argument("--max-events", type=_positive_int, help="stop after N events")
    p.add_argument("--lanes", type=_positive_int, default=DEFAULT_LANES,
                   help=f"key shards for parallel replay ({DEFAULT_LANES})")
    p.add_argument("--quiet", action="store_true", help="no progress or alert lines")


def build_parser() -> argparse.ArgumentParser:
    from harness.eventstreams.faults import Faults

    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("replay", help="replay a recording through the detection flow")
    p.add_argument("recording", nargs="?", type=Path,
                   help="recording directory (default: the bundled sample)")
    p.add_argument("--workers", type=_positive_int, default=1, help="workers per process (1)")
    p.add_argument("--processes", type=_positive_int, default=1,
                   help="local Bytewax cluster processes (1)")
    p.add_argument("--out", type=Path, help="write every window summary here (JSON lines)")
    p.add_argument("--dead-letters", type=Path,
                   help="write late and invalid events here (JSON lines)")
    p.add_argument("--speed", type=_non_negative_float, default=0.0,
                   help="replay at X times the recorded pace (0: as fast as possible)")
    p.add_argument("--batch-size", type=_positive_int,
                   help="at most N lines per source batch (default: whole frames,"
                        " small ones joined)")
    p.add_argument("--quiet", action="store_true", help="do not print malicious windows")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--skip-damaged", action="store_true",
                   help="replay what is readable of a damaged recording and report what was"
                        " skipped (default: stop with an error naming the place)")
    p.add_argument("--recovery-dir", type=Path,
                   help="keep Bytewax recovery state here; rerun the same command after a"
                        " crash to resume (outputs exactly once)")
    p.add_argument("--snapshot-interval", type=_positive_float, default=1.0,
                   help="seconds between recovery snapshots (1.0)")
    p.add_argument("--addresses", help="run one member of a multi-machine cluster:"
                   " 'host:port;host:port;...' (with --process-id)")
    p.add_argument("--process-id", type=int, help="this member's index in --addresses")
    _add_detection_options(p)
    p.set_defaults(run=_cmd_replay)

    p = sub.add_parser("record", help="record an EventStreams endpoint into a recording")
    p.add_argument("--out", type=Path, required=True,
                   help="recording directory (new, or an unfinished one to resume)")
    _add_stream_options(p, "EventStreams endpoint (default: Wikimedia recentchange)")
    p.set_defaults(run=_cmd_record)

    p = sub.add_parser("live", help="run the detection flow on the live stream")
    _add_stream_options(p, "EventStreams endpoint (default: Wikimedia recentchange)")
    p.add_argument("--workers", type=_positive_int, default=1, help="worker threads (1)")
    p.add_argument("--out", type=Path, help="write every window summary here (JSON lines)")
    p.add_argument("--record", type=Path, help="also record the stream into this new directory")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    _add_detection_options(p)
    p.set_defaults(run=_cmd_live)

    p = sub.add_parser("serve", help="serve a recording as a local EventStreams endpoint")
    p.add_argument("recording", nargs="?", type=Path,
                   help="recording directory (default: the bundled sample)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    p.add_argument("--speed", type=_non_negative_float, default=1.0,
                   help="X times the recorded pace; 0 as fast as possible (1)")
    p.add_argument("--end", choices=["close", "hold"], default="close",
                   help="at the end of the recording: close, or hold the connection open")
    faults = p.add_argument_group("fault injection (also as query parameters)")
    for f in fields(Faults):
        option = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            faults.add_argument(option, action="store_true", help=f.metadata["help"])
        else:
            faults.add_argument(option, type=int if f.type == "int" else float,
                                default=f.default, help=f.metadata["help"])
    p.set_defaults(run=_cmd_serve)

    p = sub.add_parser("synth", help="write a synthetic recording")
    p.add_argument("--out", type=Path, required=True, help="new recording directory")
    p.add_argument("--events", type=int, default=100_000, help="number of events (100000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--lanes", type=_positive_int, default=DEFAULT_LANES,
                   help=f"key shards for parallel replay ({DEFAULT_LANES})")
    p.set_defaults(run=_cmd_synth)

    p = sub.add_parser("import", help="turn JSON-lines dumps (.jsonl, .zst, .gz) into a recording")
    p.add_argument("files", nargs="+", type=Path, help="dumps, one event per line, stream order")
    p.add_argument("--out", type=Path, required=True, help="new recording directory")
    p.add_argument("--lanes", type=_positive_int, default=DEFAULT_LANES,
                   help=f"key shards for parallel replay ({DEFAULT_LANES})")
    p.set_defaults(run=_cmd_import)

    p = sub.add_parser("verify", help="check a recording; exit 2 naming the damage")
    p.add_argument("recording", type=Path, help="recording directory")
    p.set_defaults(run=_cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
