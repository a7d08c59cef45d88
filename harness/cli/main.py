"""harness: record Wikipedia's edit stream once; replay it deterministically into
Bytewax dataflows.

A thin command line over the library. Exit status: 0 success; 1 an
unexpected failure (one line); 2 bad input (one line naming the file,
argument or place); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from harness.cli import recordings, replay, report, stream
from harness.cli.args import Parser, add_store_options, apply_store_options
from harness.errors import (
    HarnessError,
    Terminated,
    describe,
    interruption,
    signal_exit_status,
)
from harness.process import one_job_process, stops_taken
from harness.version import __version__

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  harness replay --workers 4                   the bundled sample, bot detection
  harness replay DIR --flow mymod:myflow --key wiki --out items.jsonl
  harness check DIR --flow mymod:myflow --key wiki
  harness record --out DIR --duration 600      ten minutes of the live stream
  harness report --out report.html             look at what was flagged

'harness COMMAND --help' describes each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harness", description=__doc__.split("\n\n")[0].replace("\n", " "),
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in (replay, stream, recordings, report):
        module.register(sub)
    for command in sub.choices.values():
        add_store_options(command)
    parser.set_defaults(commands=sub.choices)
    return parser


@contextmanager
def _terminate_raises() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    if not os.environ.get("HARNESS_DEBUG"):
        os.environ["RUST_BACKTRACE"] = "0"  # a failure is one line, never a Rust backtrace
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if not words:
        parser.print_help()
        return 0
    args, extras = parser.parse_known_args(words)
    if args.command is None:
        parser.print_help()
        return 0
    if extras:  # name the subcommand and suggest from its own options
        args.commands[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    run: Callable[[argparse.Namespace], int] = args.run
    name = f"harness {args.command}"
    one_job_process()
    try:
        with _terminate_raises(), stops_taken():
            apply_store_options(args)
            return run(args)
    except HarnessError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:  # pyo3's PanicException is not an Exception
        stopped_by = interruption(exc)  # a Ctrl-C inside a step arrives wrapped by Bytewax
        if stopped_by is not None:
            # a command may say what an interruption leaves (serve: nothing to leave)
            note = getattr(args, "on_interrupt", "what was done so far is above, outputs"
                                                 " not written")
            print(f"{name}: interrupted by {stopped_by}" + (f"; {note}" if note else ""),
                  file=sys.stderr)
            return signal_exit_status(stopped_by)
        if isinstance(exc, OSError):
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 1
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # SystemExit
        print(f"{name}: unexpected failure: {describe(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
