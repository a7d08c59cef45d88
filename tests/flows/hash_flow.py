"""A flow whose items depend on hash() of a string: the same in one interpreter, not in
another with another hash seed."""

import bytewax.operators as op
from bytewax.dataflow import Dataflow


def flow(source, sink):
    dataflow = Dataflow("hash_flow")
    edits = op.input("edits", dataflow, source)
    op.output("out", op.map("bucket", edits,
                            lambda e: {"wiki": e["wiki"], "bucket": hash(e["wiki"]) % 7}), sink)
    return dataflow
