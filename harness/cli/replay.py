"""`harness replay`, `harness check`, `harness bench`: flows over recordings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from harness.cli.args import add_json, add_slice_options, place
from harness.cli.flows import (
    add_flow_options,
    flow_prints_to_stderr,
    job_of,
    refuse_flow_options,
    refuse_missing_key,
    report,
    warn_damage,
    write_outputs,
)
from harness.errors import UsageError
from harness.recording.sample import sample_recording
from harness.values import count, count_list, number

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay", help="replay a recording through the bot-detection flow or your own",
        description="Replay a recording deterministically through the bot-detection flow"
                    " (default) or your own flow (--flow), on any number of workers and"
                    " processes.")
    _add_recording(p)
    _add_shape(p)
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write every window summary (or every item your flow wrote) here,"
                        " as JSON lines")
    p.add_argument("--dead-letters", type=Path, metavar="FILE",
                   help="write late, invalid and damaged events here (JSON lines)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--quiet", action="store_true",
                   help="no alert lines, no progress (the summary line stays)")
    p.add_argument("--recovery-dir", type=Path, metavar="STATE",
                   help="keep Bytewax recovery state here; rerun the same command after a"
                        " crash to resume (outputs exactly once)")
    p.add_argument("--snapshot-interval", type=number(0.01, 86400), default=1.0, metavar="S",
                   help="seconds between recovery snapshots (1.0)")
    p.add_argument("--addresses", metavar="'HOST:PORT;HOST:PORT'",
                   help="run one member of a multi-machine cluster (with --process-id)")
    p.add_argument("--process-id", type=count(0, 255), metavar="I",
                   help="this member's index in --addresses")
    p.add_argument("--clock", choices=["event", "recorded"], default="event",
                   help="event: decide by event time alone (deterministic on any shape);"
                        " recorded: by each event's recorded receive time, as a live run"
                        " decided, so its output is reproduced exactly (default: event)")
    add_json(p)
    add_flow_options(p)
    add_slice_options(p)
    p.set_defaults(run=cmd_replay)

    p = sub.add_parser(
        "check", help="run a flow on several cluster shapes and compare the outputs",
        description="Run a flow on 1 worker, 4 workers, 2 processes x 2 workers, and with"
                    " batches of 1 and 1000 events; exit 0 if every output is the same, 1"
                    " naming the shapes that differ and items that are only in one.")
    _add_recording(p)
    add_json(p)
    add_flow_options(p)
    add_slice_options(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser(
        "bench", help="throughput of a flow per cluster shape, side by side with a plain loop",
        description="Time whole `harness replay` processes per shape, interleaved with a"
                    " plain single-threaded Python read of the same recording; report"
                    " events/s, the ratio to the plain loop, and figures net of start-up.")
    _add_recording(p)
    p.add_argument("--workers", type=count_list(1, 64), default=[1, 2, 4], metavar="N,N",
                   help="worker counts per process to measure (1,2,4)")
    p.add_argument("--processes", type=count_list(1, 16), default=[1, 2], metavar="P,P",
                   help="process counts to measure (1,2)")
    p.add_argument("--rounds", type=count(1, 50), default=3,
                   help="interleaved rounds per shape; the median is reported (3)")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="also draw events/s per shape (needs matplotlib)")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="write the results as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_json(p)
    add_flow_options(p, own=False)
    p.set_defaults(run=cmd_bench)


def _add_recording(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", nargs="?", type=place, metavar="DIR",
                   help="recording directory or s3://bucket/prefix (default: the bundled"
                        " sample)")


def _add_shape(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=count(1, 256), default=1, metavar="N",
                   help="worker threads per process (1)")
    p.add_argument("--processes", type=count(1, 64), default=1, metavar="P",
                   help="processes in a local Bytewax cluster (1)")
    p.add_argument("--speed", type=number(0, 1e9), default=0.0, metavar="X",
                   help="replay at X times the recorded pace (0: as fast as possible)")
    p.add_argument("--batch-size", type=count(1, 10_000_000), metavar="N",
                   help="at most N events per source batch (default: whole frames)")
    p.add_argument("--skip-damaged", action="store_true",
                   help="replay what is readable of a damaged recording and report what was"
                        " skipped (default: stop with an error naming the place)")


def cmd_replay(args: argparse.Namespace) -> int:
    from harness.recording import integrity

    recording = args.recording or sample_recording()
    integrity.begin(recording, args.skip_damaged)  # on the idle core, during the imports

    from harness.cli.outputs import Outputs
    from harness.errors import Interrupted
    from harness.flows.job import ReadOptions
    from harness.run.replay import replay

    _warn_if_empty(recording)
    if (args.addresses is None) != (args.process_id is None):
        raise UsageError("--addresses and --process-id go together (one member of a"
                         " multi-machine cluster)")
    addresses = _addresses(args.addresses, args.process_id)
    if addresses is not None:  # the cluster's shape: one process per address
        if args.processes not in (1, len(addresses)):
            raise UsageError(f"--processes {args.processes}: with --addresses the cluster has"
                             f" one process per address ({len(addresses)})")
        args.processes = len(addresses)
    outputs = Outputs({"--out": args.out, "--dead-letters": args.dead_letters},
                      force=args.force, reading=[recording], state=args.recovery_dir)
    refuse_flow_options(args)
    read = ReadOptions(recording, args.workers, args.processes, args.speed or None,
                       args.batch_size, args.skip_damaged, args.recovery_dir,
                       args.snapshot_interval)
    job = job_of(args, read, console=not args.quiet and not args.json)
    shape = {"workers": args.workers, "processes": args.processes}
    if args.process_id is not None:
        shape["process_id"] = args.process_id
    try:
        with flow_prints_to_stderr(args.json):
            result = replay(job, addresses=addresses, process_id=args.process_id,
                            progress=False if args.quiet or args.json else None,
                            items=args.out is not None)
    except Interrupted as stop:  # the counts so far; outputs are not written
        if stop.partial is not None:
            report(job, stop.partial.output, stop.partial.wall_seconds, shape, args.json,
                   partial=True)
        raise
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    warn_damage(result.output)
    if addresses is None:  # a member's share may lack a key the whole run has
        refuse_missing_key(job, result.output.counts.to_json())
    write_outputs(outputs, result.output)
    report(job, result.output, result.wall_seconds, shape, args.json)
    return 0


def _warn_if_empty(recording: Path) -> None:
    from harness.recording.reader import Recording

    opened = Recording(recording, skip_damaged=True)
    if opened.manifest.events:
        return
    # the manifest counts a segment only once it is finished: look at what is written
    for block in opened.blocks():
        if block.header.events:
            return
    state = "complete" if opened.manifest.complete else "unfinished"
    print(f"warning: {opened} is empty ({state}, 0 events): nothing to replay",
          file=sys.stderr)


def _addresses(text: str | None, process_id: int | None) -> list[str] | None:
    if text is None:
        return None
    addresses = [a.strip() for a in text.split(";") if a.strip()]
    for address in addresses:
        host, colon, port = address.rpartition(":")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UsageError(f"--addresses: {address!r} is not HOST:PORT")
    if process_id is not None and process_id >= len(addresses):
        raise UsageError(f"--process-id {process_id}: --addresses lists only"
                         f" {len(addresses)} member(s) (0..{len(addresses) - 1})")
    if process_id is not None:
        _check_listenable(addresses[process_id], process_id)
    return addresses


def _check_listenable(address: str, process_id: int) -> None:
    """This member listens on its own address: say so now if it cannot (another host's
    address, a port in use), instead of Bytewax's failure deep in a cluster start."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        raise UsageError(f"--process-id {process_id}: cannot listen on its address {address}"
                         f" here ({exc.strerror or exc}); is this the right --process-id"
                         " for this machine?") from None


def cmd_check(args: argparse.Namespace) -> int:
    from harness.check import check, outcome
    from harness.flows.job import ReadOptions

    recording = args.recording or sample_recording()
    refuse_flow_options(args)
    job = job_of(args, ReadOptions(recording))

    def progress(shape: Any, seconds: float) -> None:
        if not args.json:
            print(f"check: {shape}: done in {seconds:.1f} s", file=sys.stderr)

    with flow_prints_to_stderr(args.json):
        def run(shape: Any) -> Any:
            found = outcome(job, shape)
            refuse_missing_key(job, found.counts)
            return found

        result = check(run, progress=progress)
    name = job.plugin.name
    if args.json:
        print(orjson.dumps({"flow": name, **result.to_json()}).decode())
    else:
        print(f"check: {name}: {result.summary()}")
        for difference in result.differences:
            print(difference.describe())
        if not result.deterministic:
            print("check: the harness gives every shape the same events and the same clock"
                  " (Bytewax's own clocks read the recording's time); a step that reads the"
                  " wall clock (time.time(), datetime.now()), random numbers, hash() of"
                  " text or state outside Bytewax decides differently from run to run")
    return 0 if result.deterministic else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import BenchPlan, run_bench
    from harness.cli.outputs import Outputs
    from harness.flows.job import ReadOptions

    recording = args.recording or sample_recording()
    outputs = Outputs({"--out": args.out, "--plot": args.plot}, force=args.force,
                      reading=[recording])
    refuse_flow_options(args)
    job_of(args, ReadOptions(recording))  # validates --flow/--key here, before any timing
    plan = BenchPlan(recording, flow=args.flow, key=args.key, partitions=args.partitions,
                     workers=args.workers, processes=args.processes, rounds=args.rounds)
    results = run_bench(plan, progress=None if args.json else _bench_progress)
    outputs.write("--out", [orjson.dumps(results.to_json(), option=orjson.OPT_INDENT_2)])
    if args.plot is not None:
        outputs.write("--plot", [results.plot_png()])
    if args.json:
        print(orjson.dumps(results.to_json()).decode())
    else:
        print("\n".join(results.table()))
    return 0


def _bench_progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)
