"""Pages that many editors change: per page, its distinct editors so far.

Keyed by the page, `meta.uri` (a dotted path), with `stateful_map`: a row when
a page reaches 3, 10 or 30 distinct editors. Written only against Bytewax
0.21's public API; run it with
`harness replay --flow contested_pages:contested_pages --key meta.uri`.
"""

import bytewax.operators as op
from bytewax.dataflow import Dataflow

MILESTONES = (3, 10, 30)


def page(edit):
    return str(edit["meta"]["uri"])  # the same key as --key meta.uri


def note_editor(editors, edit):
    editors = editors if editors is not None else set()
    user = edit.get("user")
    if user in editors:
        return editors, None
    editors.add(user)
    return editors, (len(editors), edit["timestamp"]) if len(editors) in MILESTONES else None


def contested_pages(source, sink):
    flow = Dataflow("contested_pages")
    edits = op.input("edits", flow, source)
    by_page = op.key_on("by_page", edits, page)
    milestones = op.filter_map(
        "milestones", op.stateful_map("editors", by_page, note_editor),
        lambda kv: None if kv[1] is None else {"page": kv[0], "editors": kv[1][0],
                                               "timestamp": kv[1][1]})
    op.output("pages", milestones, sink)
    return flow
