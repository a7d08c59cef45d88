"""The command line's side of the flow contract: choosing a flow, reporting any flow.

Every command that runs a flow (`replay`, `check`, `bench`, `live`, `report`)
takes `--flow` (a registered flow, or MODULE:FUNCTION), `--key` and
`--partitions`, and the options each registered flow declares (bot
detection's `--window`, `--lateness`, ...). A run of any flow is reported by
`report`: the flow's own summary, then the rate and the shape.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from harness.errors import UsageError
from harness.flows.contract import FLOWS, FlowOutput, registered
from harness.values import count

__all__ = ["add_flow_options", "flow_prints_to_stderr", "job_of", "report", "warn_damage",
           "write_outputs"]


def add_flow_options(p: argparse.ArgumentParser, *, own: bool = True) -> None:
    """--flow, --key, --partitions, and (`own`) the registered flows' options."""
    g = p.add_argument_group("the flow")
    g.add_argument("--flow", default="bots", metavar="FLOW",
                   help=f"a flow of the harness ({', '.join(FLOWS)}) or your own, named as"
                        " python -m bytewax.run names it (MODULE:flow, MODULE:get_flow(),"
                        " PATH.py:flow) or MODULE:FUNCTION(source, sink); imported from the"
                        " current directory or PYTHONPATH (default: bots, the bot detection)")
    g.add_argument("--input", metavar="STEP_ID",
                   help="your Dataflow's input step the recording replaces (default: its"
                        " only op.input)")
    g.add_argument("--output", action="append", default=[], metavar="STEP_ID",
                   help="capture only this op.output step of your Dataflow into --out"
                        " (repeatable; default: every one)")
    g.add_argument("--key", default="user", metavar="FIELD",
                   help="shard your flow's source by this payload field or dotted path (user);"
                        " key your flow by the same field")
    g.add_argument("--partitions", type=count(1, 65535), metavar="N",
                   help="lanes your flow's source is dealt into (default: the fewest, at"
                        " least 8, that every worker reads as many of)")
    p.set_defaults(flow_options=own)
    if own:
        for name in FLOWS:
            kind = registered(name)
            assert kind is not None
            kind.add_options(p)


def job_of(args: argparse.Namespace, read: Any, *, console: bool = False) -> Any:
    """The `FlowJob` the parsed options describe, reading as `read` says."""
    from harness.flows.job import FlowJob

    kind = registered(args.flow)
    params = kind.params_of(args) if kind is not None and args.flow_options else {}
    if kind is None:  # your flow: which of its steps the harness takes over
        params = {k: v for k, v in (("input", args.input), ("outputs", args.output)) if v}
    elif args.input or args.output:
        raise UsageError(f"--input and --output choose steps of your Dataflow; --flow"
                         f" {args.flow} is the harness's own")
    wikis = getattr(args, "wikis", None)
    return FlowJob(read, args.flow, args.key, args.partitions,
                   getattr(args, "start", None), getattr(args, "end", None),
                   tuple(wikis) if wikis else None, getattr(args, "clock", "event"),
                   params, console, search=(str(Path.cwd()),))


@contextmanager
def flow_prints_to_stderr(json_out: bool) -> Iterator[None]:
    """With `--json`, stdout is the one summary line: whatever a flow prints while it is
    built and runs (in this process and the members forked from it) goes to stderr
    instead. Python's stdout only: what Bytewax's threads write to descriptor 1 is the
    cluster's to keep off stdout (`harness.run.cluster`)."""
    if not json_out:
        yield
        return
    previous, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        if sys.stdout is sys.stderr:  # else the cluster took stdout over: it is its
            sys.stdout = previous


def report(job: Any, output: FlowOutput, wall: float, shape: dict[str, Any], as_json: bool,
           partial: bool = False) -> None:
    """The summary line of a run; conservation is checked, not assumed (except of a
    partial run)."""
    counts = output.counts
    if partial:
        shape = {**shape, "interrupted": True}
    elif not counts.conserved():
        raise RuntimeError(f"conservation violated: {counts.to_json()}")
    text, fields = job.plugin.summary(output)
    rate = counts.events / wall if wall > 0 else 0.0
    if as_json:
        print(orjson.dumps({**fields, "events_per_second": round(rate),
                            "wall_seconds": round(wall, 3), **shape}).decode())
        return
    print(f"{text} events/s={rate:.0f} wall={wall:.3f}s"
          + "".join(f" {k}={v}" for k, v in shape.items()))


def refuse_missing_key(job: Any, counts: dict[str, int]) -> None:
    """A payload flow's `--key` that no event of the whole run had is bad input."""
    from harness.flows.contract import PAYLOADS
    from harness.flows.user import refuse_missing_key as refuse

    if job.plugin.input == PAYLOADS:
        refuse(job.key, counts, job.read.recording)


def write_outputs(outputs: Any, output: FlowOutput) -> None:
    """--out (the flow's items) and --dead-letters of a run."""
    if "--out" in outputs:
        outputs.write("--out", (line + b"\n" for line in output.items))
    outputs.write("--dead-letters", (orjson.dumps(d) + b"\n" for d in output.dead_letters))


def warn_damage(output: FlowOutput) -> None:
    damaged = [d for d in output.dead_letters if d["reason"] == "damaged"]
    if damaged:
        print(f"warning: skipped {output.counts.damaged} damaged line(s) in {len(damaged)}"
              " place(s): " + "; ".join(str(d["where"]) for d in damaged[:5])
              + (" ..." if len(damaged) > 5 else ""), file=sys.stderr)


def refuse_flow_options(args: argparse.Namespace) -> None:
    if args.flow == "bots" and (args.key != "user" or args.partitions is not None):
        raise UsageError("--key and --partitions choose how your flow's source is sharded;"
                         " give --flow MODULE:FUNCTION too")
