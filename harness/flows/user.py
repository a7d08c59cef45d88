"""Flows over event payloads: your own `FUNCTION(source, sink)`, and what they share.

A payload flow reads a `ReplaySource` keyed by the job's `--key` (lanes
derived by that key, so each partition reads only its own keys' events, on
the worker Bytewax routes them to) and writes items, any JSON value, to a
`JsonSink`. Its counts and dead letters are the source's; its `--out` is
every item as a canonical JSON line, sorted by text, or by key and in emission order
for a keyed stream (`UserFlow.item_order`).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.flows.contract import PAYLOADS, Flow, FlowOutput

# The command line declares every registered flow's options, for every command: what
# runs a flow (Bytewax, the source machinery) is imported only when it runs.
if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import Source
    from bytewax.outputs import Sink

    from harness.flows.job import FlowJob
    from harness.recording.integrity import SegmentCheck
    from harness.recording.reader import Recording
    from harness.sink.jsonl import JsonSink, KeyOrder
    from harness.source.replay import SourceTally

__all__ = ["FlowSpec", "PayloadFlow", "UserFlow", "refuse_missing_key"]


class PayloadFlow(Flow):
    """A flow whose input is payload dicts from the job's `ReplaySource`."""

    input = PAYLOADS

    def prepare(self, job: FlowJob, progress: bool | None) -> list[SegmentCheck]:
        from harness.source.keylanes import beside_the_run

        lanes = job.payload_source(None).lanes(progress)  # derived once, found by members
        return [beside_the_run(lanes)]

    def identity(self, job: FlowJob) -> dict[str, Any]:
        from harness.source.keylanes import FORMAT

        return {"key": job.key, "partitions": job.lane_count, "lanes": FORMAT}

    def counts(self, run_dir: Path) -> SourceTally:
        from harness.source.replay import live_source_tally

        return live_source_tally(run_dir)

    def collect(self, job: FlowJob, run_dir: Path, items: bool = True) -> FlowOutput:
        from harness.sink.items import Items, count_lines
        from harness.sink.jsonl import ITEMS
        from harness.source.replay import read_source_report

        tally, dead = read_source_report(run_dir)
        parts = sorted(run_dir.glob(ITEMS.format("*")))
        found = (Items.merged(parts, self.item_order(run_dir)) if items
                 else Items.counted(count_lines(parts)))
        return FlowOutput(found, dead, tally)

    def item_order(self, run_dir: Path) -> KeyOrder | None:
        """The order of `--out` when it is not the lines' text."""
        return None

    def summary(self, output: FlowOutput) -> tuple[str, dict[str, Any]]:
        t: SourceTally = output.counts
        extra = "".join(f" {name}={getattr(t, name)}" for name in ("outside", "damaged")
                        if getattr(t, name))
        text = (f"events={t.read} passed={t.passed} dead_letters={t.dead_letters}"
                f" (not_json={t.not_json} not_object={t.not_object} no_key={t.no_key}){extra}"
                f" items={len(output.items)}")
        return text, {"flow": self.name, **t.to_json(), "dead_letters": t.dead_letters,
                      "items": len(output.items)}


def refuse_missing_key(key: str, counts: Any, recording: Path) -> None:
    """A `--key` that no event of a whole run had (a typo, say) is bad input, not a run
    with every event dead-lettered (the command line's rule; a test's tiny recording
    may lack a key and still be a fine answer)."""
    if counts.get("no_key") and not counts.get("passed") and not counts.get("outside"):
        from harness.recording.reader import Recording

        opened = Recording(recording)
        near = difflib.get_close_matches(key, _fields(opened), n=3)
        raise UsageError(f"--key {key}: none of the {counts['no_key']} events of"
                         f" {opened} has this field"
                         + (f" (did you mean {' or '.join(near)}?)" if near else ""))


def _fields(recording: Recording, events: int = 100) -> set[str]:
    """The fields (and one level of dotted paths) of the recording's first events."""
    found: set[str] = set()
    for index, env in enumerate(recording.envelopes()):
        if index >= events:
            break
        if isinstance(env.data, dict):
            for name, value in env.data.items():
                found.add(name)
                if isinstance(value, dict):
                    found.update(f"{name}.{inner}" for inner in value)
    return found


class UserFlow(PayloadFlow):
    """Your flow, named as `python -m bytewax.run` names one (see `FlowSpec`): a
    `Dataflow`, a factory returning one, or `FUNCTION(source, sink)`.

    A `Dataflow` runs unchanged: its input step (`input`: a step id; default its only
    `op.input`) reads the replay source instead and any other input reads nothing;
    every `op.output` step (or those in `outputs`; the others write nowhere) writes to
    the harness's sink, each line tagged with its step id; and Bytewax's own clocks
    read the recording's time (`harness.source.clock.virtual_time`). Your module is
    not edited, and the sources and sinks it was built with are never opened.
    """

    def __init__(self, spec: str, search: tuple[str, ...] = (), input: str | None = None,
                 outputs: tuple[str, ...] | list[str] = ()) -> None:
        self.name = spec
        self.spec = FlowSpec.parse(spec)
        self.input_step, self.outputs = input, tuple(outputs)
        self.target = self.spec.load(search)  # fails early, in one line
        if self.is_function and (input is not None or self.outputs):
            raise UsageError(f"--input and --output choose steps of a Dataflow; --flow"
                             f" {spec} is a FUNCTION(source, sink)")

    @functools.cached_property
    def is_function(self) -> bool:
        """Whether this is the harness's own `FUNCTION(source, sink)` contract."""
        from bytewax.dataflow import Dataflow

        return not isinstance(self.target, Dataflow) and not self.spec.called \
            and _takes_source_and_sink(self.target)

    def identity(self, job: FlowJob) -> dict[str, Any]:
        return {**super().identity(job), "input": self.input_step,
                "outputs": list(self.outputs)}

    def build(self, job: FlowJob, source: Source[Any], run_dir: Path, *,
              live_lanes: int | None = None) -> Dataflow:
        from harness.sink.jsonl import JsonSink, exactly_once
        from harness.source.clock import virtual_time

        virtual_time()
        sink = JsonSink(run_dir, tagged=not self.is_function)
        flow = self.dataflow(source, sink)
        if job.read.recovery_dir is not None:
            exactly_once(flow, sink, order=self._key_order(flow, sink))
        return flow

    def item_order(self, run_dir: Path) -> KeyOrder | None:
        """By key, each key's items in the order emitted, for the outputs fed a keyed
        stream (`harness.flows.surgery.keyed_outputs`); by text for the others."""
        from harness.flows.nothing import NoEvents
        from harness.sink.jsonl import JsonSink

        sink = JsonSink(run_dir, tagged=not self.is_function)
        return self._key_order(self.dataflow(NoEvents(), sink), sink)

    @staticmethod
    def _key_order(flow: Dataflow, sink: JsonSink) -> KeyOrder | None:
        from harness.flows.surgery import keyed_outputs, output_steps
        from harness.sink.jsonl import KeyOrder

        keyed = keyed_outputs(flow)
        writing = [step.step_id for step in output_steps(flow) if step.sink is sink]
        if not sink.tagged and not all(step in keyed for step in writing):
            return None  # untagged lines of a keyed step and of another look alike
        prefixes = sorted({sink.key_prefix(step) for step in writing if step in keyed})
        return KeyOrder(tuple(prefixes)) if prefixes else None

    def dataflow(self, source: Source[Any], sink: Sink[Any]) -> Dataflow:
        """Your flow reading `source` and writing to `sink`, as one `UsageError` line if
        building it fails."""
        from bytewax.dataflow import Dataflow

        from harness.flows.surgery import input_steps

        with _users_code(f"--flow {self.name}: building the dataflow"):
            flow = (self.target(source, sink) if self.is_function
                    else self.target if isinstance(self.target, Dataflow)
                    else self.spec.call(self.target))
        if not isinstance(flow, Dataflow):
            raise UsageError(f"--flow {self.name}: returned {type(flow).__name__}, not a"
                             " bytewax.dataflow.Dataflow")
        if not self.is_function:
            return self._replaying(flow, source, sink)
        if not input_steps(flow):
            raise UsageError(f"--flow {self.name}: the dataflow {flow.flow_id!r} has no"
                             " input step; read the source given to it with op.input")
        return flow

    def _replaying(self, flow: Dataflow, source: Source[Any], sink: Sink[Any]) -> Dataflow:
        """`flow` with the replay source for its input and `sink` for its outputs."""
        from harness.flows.nothing import Discard, NoEvents
        from harness.flows.surgery import input_steps, output_steps, rewired

        ids = [step.step_id for step in input_steps(flow)]
        outputs = [step.step_id for step in output_steps(flow)]
        chosen = self.input_step
        if chosen is None:
            if len(ids) != 1:
                raise UsageError(f"--flow {self.name}: the dataflow {flow.flow_id!r} has"
                                 f" {len(ids)} input steps ({', '.join(ids) or 'none'});"
                                 " name the one to replay into with --input STEP_ID")
            chosen = ids[0]
        elif chosen not in ids and f"{flow.flow_id}.{chosen}" in ids:
            chosen = f"{flow.flow_id}.{chosen}"
        if chosen not in ids:
            raise UsageError(f"--input {self.input_step}: the dataflow {flow.flow_id!r} has"
                             f" no such input step (its inputs: {', '.join(ids) or 'none'})")
        wanted = {o if o in outputs else f"{flow.flow_id}.{o}" for o in self.outputs}
        unknown = sorted(o for o in wanted if o not in outputs)
        if unknown:
            raise UsageError(f"--output {unknown[0].split('.', 1)[-1]}: the dataflow"
                             f" {flow.flow_id!r} has no such output step (its outputs:"
                             f" {', '.join(outputs) or 'none'})")
        return rewired(flow, {i: source if i == chosen else NoEvents() for i in ids},
                       lambda step: sink if not wanted or step.step_id in wanted
                       else Discard())


@contextmanager
def _users_code(doing: str) -> Iterator[None]:
    """Your module's code (importing it, building the flow): what it raises, or a
    `sys.exit()` in it, is one `UsageError` line starting with `doing`, not the run's
    traceback or exit status."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{doing} raised {type(exc).__name__}: {exc}") from None
    except SystemExit as exc:
        raise UsageError(f"{doing} called sys.exit({exc.code!r})") from None


def _takes_source_and_sink(fn: Any) -> bool:
    """Whether `fn` can be called with two arguments (the harness's contract), not none
    (a Bytewax factory, as `bytewax.run` calls one)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    try:
        signature.bind()
    except TypeError:
        return True
    return False


@dataclass(frozen=True)
class FlowSpec:
    """What `--flow` names, as `python -m bytewax.run` reads it: `MODULE[:ATTR]` or
    `PATH.py[:ATTR]`, where ATTR (default `flow`) is a name or a call with literal
    arguments (`get_flow()`, `get_flow("enwiki", limit=5)`)."""

    text: str
    module: str
    path: str | None  # the directory a PATH.py spec is imported from
    name: str
    called: bool = False
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> FlowSpec:
        where, _, attribute = spec.partition(":")
        attribute = attribute.strip() or "flow"
        if not where:
            raise UsageError(f"--flow {spec!r}: expected MODULE:FLOW, e.g. myflows:flow or"
                             " ./myflows.py:get_flow()")
        try:
            expr = ast.parse(attribute, mode="eval").body
        except SyntaxError:
            expr = None
        if isinstance(expr, ast.Name):
            name, called = expr.id, False
            args: tuple[Any, ...] = ()
            kwargs: tuple[tuple[str, Any], ...] = ()
        elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            try:
                args = tuple(ast.literal_eval(a) for a in expr.args)
                kwargs = tuple((str(k.arg), ast.literal_eval(k.value)) for k in expr.keywords)
            except ValueError:
                raise UsageError(f"--flow {spec!r}: the arguments of {expr.func.id} must be"
                                 " literal values (numbers, strings, lists, ...)") from None
            name, called = expr.func.id, True
        else:
            raise UsageError(f"--flow {spec!r}: {attribute!r} is neither a name nor a call"
                             " of one, e.g. myflows:flow or myflows:get_flow()")
        path = None
        if where.endswith(".py") or os.sep in where:
            file = Path(where).resolve()
            if file.suffix != ".py" or not file.is_file():
                raise UsageError(f"--flow {spec!r}: no Python file {where}")
            path, where = str(file.parent), file.stem
        return cls(spec, where, path, name, called, args, kwargs)

    def load(self, search: tuple[str, ...] = ()) -> Any:
        """The named object: a `Dataflow`, a factory or `FUNCTION(source, sink)`."""
        spec, module_name = self.text, self.module
        for path in (*search, os.getcwd(), *([self.path] if self.path else [])):
            if path not in sys.path:
                sys.path.insert(0, path)
        with _users_code(f"--flow {spec!r}: importing {module_name}"):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and module_name.startswith(exc.name):
                    raise UsageError(f"--flow {spec!r}: no module {module_name!r} in the"
                                     " current directory or on PYTHONPATH") from None
                raise UsageError(f"--flow {spec!r}: importing {module_name} failed: {exc}"
                                 ) from None
        from bytewax.dataflow import Dataflow

        target = getattr(module, self.name, None)
        if target is None:
            raise UsageError(f"--flow {spec!r}: {module_name} has no {self.name!r}")
        if not isinstance(target, Dataflow) and not callable(target):
            raise UsageError(f"--flow {spec!r}: {module_name}.{self.name} is a"
                             f" {type(target).__name__}, not a bytewax.dataflow.Dataflow"
                             " or a function")
        if self.called and isinstance(target, Dataflow):
            raise UsageError(f"--flow {spec!r}: {module_name}.{self.name} is a Dataflow;"
                             f" name it without arguments: {module_name}:{self.name}")
        return target

    def call(self, factory: Callable[..., Any]) -> Any:
        """What a Bytewax factory returns, called as `bytewax.run` calls it."""
        return factory(*self.args, **dict(self.kwargs))

