"""`harness report`: a self-contained HTML page you look at, instead of log lines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.args import place

__all__ = ["register"]


def register(sub: Any) -> None:
    from harness.flows.bots.detection import BotDetection

    p = sub.add_parser(
        "report", help="an HTML page of what was flagged, and the recording's health",
        description="Write one self-contained HTML page (works offline): edits per second"
                    " with flagged windows, the top flagged accounts, the rate distribution,"
                    " late/invalid/canary events and the recording's health. It replays DIR"
                    " itself, or takes a finished replay's --out/--dead-letters files.")
    p.add_argument("recording", nargs="?", type=place, metavar="DIR",
                   help="recording directory (default: the bundled sample)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.html",
                   help="the page to write")
    p.add_argument("--summaries", type=Path, metavar="FILE",
                   help="window summaries of a finished replay (its --out) instead of"
                        " replaying here")
    p.add_argument("--dead-letters", type=Path, metavar="FILE",
                   help="dead letters of that replay (its --dead-letters)")
    p.add_argument("--title", help="the page's title")
    p.add_argument("--force", action="store_true", help="overwrite an existing page")
    BotDetection.add_options(p)
    p.set_defaults(run=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.cli.outputs import Outputs
    from harness.errors import UsageError
    from harness.flows.bots.detection import BotDetection
    from harness.flows.bots.semantics import DetectionParams
    from harness.recording.sample import sample_recording
    from harness.report import load_jsonl, write_report

    recording = args.recording or sample_recording()
    if (args.summaries is None) != (args.dead_letters is None):
        raise UsageError("--summaries and --dead-letters go together (the two files of one"
                         " finished replay)")
    Outputs({"--out": args.out}, force=args.force, reading=[recording])
    summaries = load_jsonl(args.summaries) if args.summaries else None
    dead = load_jsonl(args.dead_letters) if args.dead_letters else None
    stats = write_report(recording, args.out, summaries=summaries, dead_letters=dead,
                         params=DetectionParams(**BotDetection.params_of(args)),
                         title=args.title)
    print(f"report: wrote {args.out} ({stats.bytes:,} bytes): {stats.events:,} events,"
          f" {stats.flagged_windows} flagged window(s) of {stats.flagged_accounts}"
          f" account(s), in {stats.seconds:.2f} s")
    return 0
