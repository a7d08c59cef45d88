"""`harness record`, `harness live`, `harness serve`: the stream side."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

from harness.cli.args import add_json, place, since, url
from harness.cli.flows import add_flow_options
from harness.errors import UsageError, signal_exit_status
from harness.recording.lanes import DEFAULT_LANES, MAX_LANES
from harness.recording.sample import sample_recording
from harness.values import count, number

__all__ = ["register"]


def register(sub: Any) -> None:
    from harness.serve.faults import Faults

    p = sub.add_parser("record", help="record an EventStreams endpoint into a recording",
                       description="Record Wikimedia's recentchange stream (or --url) into a"
                                   " recording; the same command resumes an unfinished one.")
    p.add_argument("--out", type=place, required=True, metavar="DIR",
                   help="recording directory (new, or an unfinished one to resume)")
    _add_stream_options(p)
    add_json(p)
    p.set_defaults(run=cmd_record)

    p = sub.add_parser("live", help="run the bot-detection flow (or yours) on the live stream",
                       description="Run the bot-detection flow, or your own (--flow), on the"
                                   " live stream, deciding by each event's receive time;"
                                   " with --record, `harness replay --clock recorded` of the"
                                   " recording reproduces --out and --dead-letters exactly.")
    _add_stream_options(p)
    p.add_argument("--workers", type=count(1, 64), default=1, metavar="N",
                   help="worker threads (1)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write every window summary (or every item your flow wrote) here,"
                        " as JSON lines")
    p.add_argument("--dead-letters", type=Path, metavar="FILE",
                   help="write late and invalid events (for --flow: the source's dead"
                        " letters) here (JSON lines)")
    p.add_argument("--record", type=place, metavar="DIR",
                   help="also record the stream into this new directory")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_flow_options(p)
    p.set_defaults(run=cmd_live)

    p = sub.add_parser("serve", help="serve a recording as a local EventStreams endpoint",
                       description="Play a recording as an EventStreams-compatible SSE"
                                   " endpoint, with the real service's faults on request.")
    p.add_argument("recording", nargs="?", type=place, metavar="DIR",
                   help="recording directory (default: the bundled sample)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    p.add_argument("--port", type=count(0, 65535), default=8080,
                   help="port (8080; 0 picks a free one)")
    p.add_argument("--speed", type=number(0, 1e9), default=1.0, metavar="X",
                   help="X times the recorded pace; 0 as fast as possible (1)")
    p.add_argument("--end", choices=["close", "hold"], default="close",
                   help="at the end of the recording: close, or hold the connection open")
    p.add_argument("--header-timeout", type=number(0.1, 3600), default=10.0, metavar="S",
                   help="disconnect a client that sends no complete request within S (10)")
    p.add_argument("--max-connections", type=count(1, 10_000), default=128, metavar="N",
                   help="answer 503 beyond N open connections (128)")
    faults = p.add_argument_group("fault injection (also as query parameters)")
    for f in dataclasses.fields(Faults):
        option = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            faults.add_argument(option, action="store_true", help=f.metadata["help"])
        elif f.type == "str":
            faults.add_argument(option, default=f.default, metavar="TEXT",
                                help=f.metadata["help"])
        else:
            kind = count(0) if f.type == "int" else number(0)
            faults.add_argument(option, type=kind, default=f.default, metavar="N",
                                help=f.metadata["help"])
    p.set_defaults(run=cmd_serve, on_interrupt=None)


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    from harness.eventstreams.ids import DEFAULT_URL, USER_AGENT

    p.add_argument("--url", type=url, default=DEFAULT_URL,
                   help="EventStreams endpoint (default: Wikimedia recentchange)")
    p.add_argument("--since", type=since, metavar="T",
                   help="start from this past time: unix ms or ISO-8601 (EventStreams"
                        " keeps about 7 days)")
    p.add_argument("--user-agent", default=USER_AGENT,
                   help="User-Agent header (Wikimedia requires one with contact info)")
    p.add_argument("--idle-timeout", type=number(0.1, 3600), default=30.0, metavar="S",
                   help="reconnect when the stream is silent this long (30 s)")
    p.add_argument("--max-failures", type=count(0), default=0, metavar="N",
                   help="give up after N consecutive failed connection attempts (0: never)")
    p.add_argument("--duration", type=number(0, above=True), metavar="S",
                   help="stop after S seconds")
    p.add_argument("--max-events", type=count(1), metavar="N",
                   help="stop once the recording holds N events")
    p.add_argument("--lanes", type=count(1, MAX_LANES), default=DEFAULT_LANES, metavar="K",
                   help=f"key shards for parallel replay ({DEFAULT_LANES})")
    p.add_argument("--max-event-mb", type=number(0.001, 1024), default=16.0, metavar="MB",
                   help="drop (and count) an event larger than this (16 MiB)")
    p.add_argument("--retry-after-cap", type=number(1, 86400), default=300.0, metavar="S",
                   help="never wait longer than this for a server's Retry-After (300 s)")
    p.add_argument("--quiet", action="store_true", help="no progress or alert lines")


def _stream_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"idle_timeout": args.idle_timeout, "max_failures": args.max_failures or None,
            "max_event_bytes": int(args.max_event_mb * (1 << 20)),
            "retry_after_cap": args.retry_after_cap}


def cmd_record(args: argparse.Namespace) -> int:
    from harness.recording.recorder import record

    def problem(text: str) -> None:
        print(f"record: {text}; retrying with backoff", file=sys.stderr, flush=True)

    report = record(args.out, url=args.url, duration=args.duration, max_events=args.max_events,
                    since=args.since, user_agent=args.user_agent, lanes=args.lanes,
                    progress=False if args.quiet or args.json else None,
                    stream_options=_stream_options(args),
                    # a line per new problem, unless there is a progress line to show it
                    # or the stream gives up anyway (--max-failures: then one error line)
                    problems=None if (args.json or args.max_failures or args.quiet
                                      or sys.stderr.isatty()) else problem)
    if args.json:
        row = {k: v for k, v in dataclasses.asdict(report).items() if k != "stream"}
        row["directory"] = str(report.directory)
        row["stream"] = {k: v for k, v in dataclasses.asdict(report.stream).items()}
        print(orjson.dumps(row, default=str).decode())
        return _status(report.stopped_by)
    if report.resumed_after is not None:
        print(f"record: resumed {report.directory} after seq {report.resumed_after}",
              file=sys.stderr)
    if report.events == 0 and not report.resumed_after:
        state = "complete but EMPTY (no event arrived)" if report.complete else "empty"
    else:
        state = "complete" if report.complete else "unfinished (resumable)"
    print(f"record: {report.directory} {state}, stopped by {report.stopped_by or 'end of stream'}:"
          f" {report.line()}")
    return _status(report.stopped_by)


def cmd_live(args: argparse.Namespace) -> int:
    from harness.cli.flows import job_of, refuse_flow_options, report, write_outputs
    from harness.cli.outputs import Outputs
    from harness.eventstreams.client import EventStream
    from harness.flows.job import ReadOptions
    from harness.live import LIVE, run_live

    refuse_flow_options(args)
    outputs = Outputs({"--out": args.out, "--dead-letters": args.dead_letters},
                      force=args.force, reading=[args.record] if args.record else [])
    job = job_of(args, ReadOptions(LIVE, args.workers), console=not args.quiet)
    stream = EventStream(url=args.url, user_agent=args.user_agent, since=args.since,
                         **_stream_options(args))
    result = run_live(stream, job, record_to=args.record, max_events=args.max_events,
                      duration=args.duration, lanes=args.lanes)
    if result.overtaken:
        print(f"warning: {result.overtaken} event(s) reached a window only after an"
              " idle close had passed their receive time; a replay with --clock recorded"
              " may decide their windows differently", file=sys.stderr)
    write_outputs(outputs, result.output)
    report(job, result.output, result.wall_seconds, _live_shape(args, stream), False)
    failed = result.recording_failed
    if failed is not None:  # the outputs above are kept; say where the recording stopped
        print(f"harness live: error: {failed.filename}: {failed.strerror or failed}; the"
              f" run ended there; the recording (unfinished, resumable) holds the first"
              f" {result.recorded:,} of the {result.received:,} events it decided on",
              file=sys.stderr)
        return 1
    return _status(stream.stopped_by)


def _status(stopped_by: str) -> int:
    """0, or 130/143 when Ctrl-C or SIGTERM ended the stream (everything is kept)."""
    return signal_exit_status(stopped_by) if stopped_by in ("SIGINT", "SIGTERM") else 0


def _live_shape(args: argparse.Namespace, stream: Any) -> dict[str, Any]:
    """The summary line's tail: workers, reconnects, and the signal that ended the run."""
    shape: dict[str, Any] = {"workers": args.workers, "reconnects": stream.stats.reconnects}
    if stream.stopped_by:
        shape["stopped_by"] = stream.stopped_by
    return shape


def cmd_serve(args: argparse.Namespace) -> int:
    from harness.serve.server import EventStreamServer, Faults

    try:
        faults = Faults(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        server = EventStreamServer(args.recording or sample_recording(), host=args.host,
                                   port=args.port, speed=args.speed, faults=faults,
                                   end=args.end, header_timeout=args.header_timeout,
                                   max_connections=args.max_connections)
    except OSError as exc:
        raise UsageError(f"--host {args.host} --port {args.port}: cannot listen"
                         f" ({exc.strerror or exc})") from None
    print(f"serve: {server.url}  (Ctrl-C stops)", flush=True)
    server.serve_forever()
    return 0
