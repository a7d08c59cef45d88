"""`harness synth`, `harness import`, `harness verify`, `harness export`: recordings made
offline, checked, and handed to other tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from harness.cli.args import add_json, add_slice_options, place
from harness.recording.lanes import DEFAULT_LANES, MAX_LANES
from harness.store.location import location
from harness.values import count, number

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("synth", help="write a synthetic recording",
                       description="Write a recording of realistic synthetic recentchange"
                                   " events (deterministic per seed).")
    p.add_argument("--out", type=place, required=True, metavar="DIR",
                   help="new recording directory (or s3://bucket/prefix)")
    p.add_argument("--events", type=count(0, 1_000_000_000), default=100_000, metavar="N",
                   help="number of events (100000)")
    p.add_argument("--seed", type=count(0, 2**63 - 1), default=0, help="random seed (0)")
    _add_lanes(p)
    p.set_defaults(run=cmd_synth)

    p = sub.add_parser("import", help="turn JSON-lines dumps (.jsonl, .zst, .gz) into a recording",
                       description="Turn dumps of recentchange events (one JSON object per"
                                   " line, in stream order) into a recording; lines that are"
                                   " not JSON are kept, flagged.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="dumps, one event per line, in stream order")
    p.add_argument("--out", type=place, required=True, metavar="DIR",
                   help="new recording directory (or s3://bucket/prefix)")
    _add_lanes(p)
    p.add_argument("--max-line-mb", type=number(0.001, 1024), default=16.0, metavar="MB",
                   help="refuse a dump line longer than this, naming it (16 MiB)")
    p.set_defaults(run=cmd_import)

    p = sub.add_parser("verify", help="check a recording; exit 2 naming the damage",
                       description="Check a recording end to end: manifest against segments,"
                                   " sha256, block structure, lanes, every line, seq"
                                   " contiguity, repeated events.")
    p.add_argument("recording", type=place, metavar="DIR",
                   help="recording directory or s3://bucket/prefix")
    add_json(p)
    p.set_defaults(run=cmd_verify)


    p = sub.add_parser("export", help="write a recording's payloads as JSON lines",
                       description="Write every event's payload, in recording order, one per"
                                   " line (lines that were not JSON as their text): for"
                                   " Bytewax's TestingSource or FileSource, or other tools.")
    p.add_argument("recording", type=place, metavar="DIR",
                   help="recording directory or s3://bucket/prefix")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl",
                   help="where to write the payloads")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    add_slice_options(p)
    p.set_defaults(run=cmd_export)


def _add_lanes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lanes", type=count(1, MAX_LANES), default=DEFAULT_LANES, metavar="K",
                   help=f"key shards for parallel replay ({DEFAULT_LANES})")


def cmd_synth(args: argparse.Namespace) -> int:
    from harness.recording.importer import synthesize

    manifest = synthesize(args.out, events=args.events, seed=args.seed, lanes=args.lanes)
    size = sum(s.bytes for s in manifest.segments)
    print(f"synth: wrote {manifest.events} events to {location(args.out)}"
          f" ({len(manifest.segments)} segment(s), {size:,} bytes, {manifest.lanes} lanes)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from harness.recording.importer import import_dumps

    manifest = import_dumps(args.files, args.out, lanes=args.lanes,
                            max_line_bytes=int(args.max_line_mb * (1 << 20)))
    duplicates = manifest.stream.get("duplicates", 0)
    print(f"import: wrote {manifest.events} events from {len(args.files)} file(s) to"
          f" {location(args.out)}"
          + (f"; dropped {duplicates} repeated event(s) (same meta.id or offset)"
             if duplicates else ""))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.recording.verify import verify

    report = verify(args.recording)
    if args.json:
        print(orjson.dumps(report.to_json()).decode())
        return 0 if report.ok else 2
    for note in report.truncated:
        print(f"warning: {note}", file=sys.stderr)
    if not report.ok:
        print(f"verify: {report.path}: {report.errors[0]}"
              + (f" (+{len(report.errors) - 1} more problems)" if len(report.errors) > 1
                 else ""), file=sys.stderr)
        return 2
    state = "complete" if report.complete else "unfinished"
    print(f"verify: {report.path}: ok, {state}; {report.events} events"
          f" ({report.not_json} not JSON) in {report.segments} segment(s), {report.blocks}"
          f" block(s), {report.lanes} lanes; {report.compressed_bytes:,} bytes,"
          f" compression {report.ratio:.1f}x")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from harness.cli.outputs import Outputs
    from harness.recording.export import payload_lines
    from harness.recording.slice import Slice

    slice_ = Slice(args.start, args.end, frozenset(args.wikis) if args.wikis else None)
    outputs = Outputs({"--out": args.out}, force=args.force, reading=[args.recording])
    written = 0

    def counted() -> Iterator[bytes]:
        nonlocal written
        for line in payload_lines(args.recording, slice_):
            written += 1
            yield line

    outputs.write("--out", counted())
    print(f"export: wrote {written} payload line(s) of {location(args.recording)} to"
          f" {args.out}")
    return 0
