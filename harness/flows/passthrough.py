"""`--flow passthrough`: the source straight into a sink that keeps nothing.

What a replay costs before any flow logic: reading, decompressing and
decoding the payloads by `--key`, and the counting. `harness bench --flow`
runs it beside your flow on every shape, so the difference is your flow's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.flows.nothing import Discard
from harness.flows.user import PayloadFlow

if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import Source

    from harness.flows.job import FlowJob

__all__ = ["PassThrough"]


class PassThrough(PayloadFlow):
    """Payloads by `--key`, read and dropped."""

    name = "passthrough"

    def build(self, job: FlowJob, source: Source[Any], run_dir: Path, *,
              live_lanes: int | None = None) -> Dataflow:
        import bytewax.operators as op
        from bytewax.dataflow import Dataflow

        flow = Dataflow("passthrough")
        op.output("discard", op.input("edits", flow, source), Discard())
        return flow
