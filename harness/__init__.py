"""Record Wikipedia's live edit stream once, then replay it into your Bytewax dataflow,
deterministically and fast, on any cluster shape.

What a user imports is here; the command line (`harness ...`) is a thin layer over it.

    from harness import run_flow, assert_deterministic, write_recording, event_streams

- Running your flow: `run_flow`, `assert_deterministic` (`Shape`, `CheckResult`),
  `FlowJob` and `replay` (the one run path: a `Run` whose `output` is a `FlowOutput`).
- Reading recordings in your own dataflow: `ReplaySource` (payload dicts sharded by a
  key; `read_source_report` merges its counts and dead letters), `RecordedClock`
  (Bytewax's `EventClock` on receive time) and `Received` (a payload that carries its
  receive time).
- Recordings: `Recording` (read), `RecordingWriter` and `write_recording` (write),
  `sample_recording` (the bundled one), `event_streams` (hypothesis strategy).
- Errors: `HarnessError` (bad input: exit 2), `UsageError`, `RecordingError`.

Names resolve on first use, so `import harness` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.version import __version__ as __version__

__all__ = ["CheckResult", "FlowJob", "FlowOutput", "HarnessError", "Received", "RecordedClock",
           "Recording", "RecordingError", "RecordingWriter", "ReplaySource", "Run", "Shape",
           "UsageError", "assert_deterministic", "event_streams", "read_source_report",
           "replay", "run_flow", "sample_recording", "write_recording"]

_HOMES = {
    "CheckResult": "harness.check", "Shape": "harness.check",
    "FlowJob": "harness.flows.job", "Run": "harness.run.runner",
    "replay": "harness.run.replay", "FlowOutput": "harness.flows.contract",
    "HarnessError": "harness.errors", "RecordingError": "harness.errors",
    "UsageError": "harness.errors",
    "Received": "harness.source.clock", "RecordedClock": "harness.source.clock",
    "ReplaySource": "harness.source.replay", "read_source_report": "harness.source.replay",
    "Recording": "harness.recording.reader", "RecordingWriter": "harness.recording.writer",
    "sample_recording": "harness.recording.sample",
    "assert_deterministic": "harness.testing", "run_flow": "harness.testing",
    "write_recording": "harness.testing", "event_streams": "harness.testing.strategies",
}

if TYPE_CHECKING:
    from harness.check import CheckResult, Shape
    from harness.errors import HarnessError, RecordingError, UsageError
    from harness.flows.contract import FlowOutput
    from harness.flows.job import FlowJob
    from harness.recording.reader import Recording
    from harness.recording.sample import sample_recording
    from harness.recording.writer import RecordingWriter
    from harness.run.replay import replay
    from harness.run.runner import Run
    from harness.source.clock import Received, RecordedClock
    from harness.source.replay import ReplaySource, read_source_report
    from harness.testing import assert_deterministic, run_flow, write_recording
    from harness.testing.strategies import event_streams


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
