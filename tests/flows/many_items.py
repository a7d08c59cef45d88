"""A flow that writes many small items: 100 per event (2M for the 20k-event sample)."""

import bytewax.operators as op
from bytewax.dataflow import Dataflow


def hundred_per_event(source, sink):
    flow = Dataflow("many_items")
    edits = op.input("edits", flow, source)
    op.output("items", op.flat_map("fan_out", edits, lambda e: (
        {"id": e["meta"]["id"][:8], "n": n} for n in range(100))), sink)
    return flow
