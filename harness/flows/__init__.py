"""Flows the harness runs: the bot-detection flow (`bots`), and a user's own.

A user's flow is a function `FUNCTION(source, sink) -> bytewax.dataflow.Dataflow`,
named `MODULE:FUNCTION` on the command line (`--flow`). `source` is a
`harness.replay.source.ReplaySource` (items: event payload dicts, sharded by
`--key`); `sink` accepts any JSON-serialisable item.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Dataflow

from harness.errors import UsageError

__all__ = ["FlowFactory", "load_flow"]

FlowFactory = Callable[[Any, Any], Dataflow]


def load_flow(spec: str, search: tuple[str, ...] = ()) -> FlowFactory:
    """The function `MODULE:FUNCTION` names, imported from the current directory,
    `search` or `PYTHONPATH`; a `UsageError` naming what is wrong otherwise."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name.isidentifier():
        raise UsageError(f"--flow {spec!r}: expected MODULE:FUNCTION, e.g. myflows:wiki_counts")
    for path in (*search, os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"--flow {spec!r}: no module {module_name!r} in the current"
                             " directory or on PYTHONPATH") from None
        raise UsageError(f"--flow {spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise UsageError(f"--flow {spec!r}: importing {module_name} raised"
                         f" {type(exc).__name__}: {exc}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UsageError(f"--flow {spec!r}: {module_name} has no function {name!r}")
    return factory  # type: ignore[no-any-return]


def build_user_flow(spec: str, factory: FlowFactory, source: Any, sink: Any) -> Dataflow:
    """`factory(source, sink)`, checked to be a Dataflow."""
    try:
        flow = factory(source, sink)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"--flow {spec}: building the dataflow raised"
                         f" {type(exc).__name__}: {exc}") from None
    if not isinstance(flow, Dataflow):
        raise UsageError(f"--flow {spec}: returned {type(flow).__name__}, not a"
                         " bytewax.dataflow.Dataflow")
    return flow
