"""A flow whose every item depends on the order its key's events arrived in: per key
(the field or dotted path in KEY_ORDER_KEY, as --key), each event's rank among its
key's events and its id. Keyed like its source, it writes the same on every shape."""

import os

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from harness.source.keys import key_getter, key_text

KEY = os.environ.get("KEY_ORDER_KEY", "user")


def flow(source, sink):
    get = key_getter(KEY)
    dataflow = Dataflow("key_order")
    keyed = op.key_on("by_key", op.input("edits", dataflow, source),
                      lambda e: key_text(get(e)))

    def rank(seen, edit):
        seen = (seen or 0) + 1
        return seen, {"rank": seen, "id": edit["meta"]["id"]}

    ranked = op.stateful_map("rank", keyed, rank)
    op.output("out", op.map("row", ranked, lambda kv: {"key": kv[0], **kv[1]}), sink)
    return dataflow
