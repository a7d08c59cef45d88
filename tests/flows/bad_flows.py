"""Flows for the tests: broken ones, a nondeterministic one, and a per-event one."""

import itertools

import bytewax.operators as op
from bytewax.dataflow import Dataflow

_counter = itertools.count()


def global_counter(source, sink):
    """Numbers events with a module-global counter: state outside Bytewax."""
    flow = Dataflow("global_counter")
    edits = op.input("edits", flow, source)
    op.output("out", op.map("number", edits, lambda e: {"id": e["meta"]["id"],
                                                       "n": next(_counter)}), sink)
    return flow


def not_a_flow(source, sink):
    return "a string"


def unserialisable(source, sink):
    flow = Dataflow("unserialisable")
    op.output("out", op.map("obj", op.input("edits", flow, source), lambda e: object()), sink)
    return flow


def raises(source, sink):
    flow = Dataflow("raises")
    op.output("out", op.map("get", op.input("edits", flow, source),
                            lambda e: e["no_such_field"]), sink)
    return flow


def raises_in_state(source, sink):
    """Fails in a stateful step, on the third event of some wiki."""
    flow = Dataflow("raises_in_state")
    keyed = op.key_on("by_wiki", op.input("edits", flow, source), lambda e: str(e["wiki"]))
    counted = op.stateful_map("count", keyed, lambda n, e: ((n or 0) + 1, 1 // (2 - (n or 0))))
    op.output("out", op.map("row", counted, lambda kv: {"wiki": kv[0], "n": kv[1]}), sink)
    return flow


def every_event(source, sink):
    """One item per event, keyed like the source: deterministic, and big enough to crash in."""
    flow = Dataflow("every_event")
    edits = op.input("edits", flow, source)
    keyed = op.key_on("by_wiki", edits, lambda e: str(e["wiki"]))
    numbered = op.stateful_map("number", keyed, lambda n, e: ((n or 0) + 1,
                                                             {"id": e["meta"]["id"], "n": n}))
    op.output("out", op.map("row", numbered, lambda kv: {"wiki": kv[0], **kv[1]}), sink)
    return flow


def calls_exit(source, sink):
    import sys

    sys.exit(3)


def no_input(source, sink):
    return Dataflow("no_input")


def prints(source, sink):
    """Prints while it is built and for every event, as flows under development do."""
    print("building prints")
    flow = Dataflow("prints")
    op.output("out", op.map("show", op.input("edits", flow, source),
                            lambda e: print("saw", e["meta"]["id"]) or {"seen": 1}), sink)
    return flow


def reads_twice(source, sink):
    """Two input steps over the one source: every event is read twice."""
    flow = Dataflow("reads_twice")
    for name in ("first", "second"):
        op.output(f"out_{name}", op.map(f"tag_{name}", op.input(name, flow, source),
                                        lambda e, n=name: {"step": n}), sink)
    return flow


def _one(kind):
    import math

    values = {"nan": {"rate": math.nan}, "inf": [1.0, -math.inf],
              "keys": {1: "a", "1": "b"}, "deep": None}
    if kind == "deep":
        deep = 1
        for _ in range(1000):
            deep = [deep]
        return deep
    return values[kind]


def _writes(kind):
    def factory(source, sink):
        flow = Dataflow(f"writes_{kind}")
        op.output("out", op.map("value", op.input("edits", flow, source),
                                lambda e: _one(kind)), sink)
        return flow
    return factory


writes_nan, writes_inf = _writes("nan"), _writes("inf")
writes_colliding_keys, writes_deep = _writes("keys"), _writes("deep")


def writes_int_keys(source, sink):
    flow = Dataflow("int_keys")
    op.output("out", op.map("value", op.input("edits", flow, source),
                            lambda e: {1: "a", 2: "b"}), sink)
    return flow
