"""Bytewax's key routing, computed: which worker a stateful step sends a key to.

Bytewax 0.21.1 (its final release) routes every item of a keyed stream to
worker `hash(key) % workers`, where `hash` is Rust's `DefaultHasher`
(SipHash-1-3 with both keys zero) over the key's `String`: its UTF-8 bytes
followed by one `0xff` byte. Lanes derived by this hash (`route_lane`) put
each key's events on the very worker that the flow's first keyed step sends
that key to, so a flow keyed like its source exchanges nothing between
processes. `tests/test_keyroute.py` pins the computation against Bytewax.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ROUTE_RULE", "route_hash", "route_lane"]

ROUTE_RULE: Final = "siphash13(utf8(key) + 0xff) % lanes (Bytewax 0.21's key routing)"

_MASK: Final = (1 << 64) - 1


def route_hash(key: str) -> int:
    """The 64-bit hash Bytewax routes the key `key` by."""
    data = key.encode("utf-8", "surrogatepass") + b"\xff"
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D  # the keys are zero: k ^ v == v
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573
    size = len(data)
    whole = size - size % 8
    blocks = [int.from_bytes(data[i:i + 8], "little") for i in range(0, whole, 8)]
    blocks.append(((size & 0xFF) << 56) | int.from_bytes(data[whole:], "little"))
    for m in blocks:  # one compression round per block (the "1" of SipHash-1-3)
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    v2 ^= 0xFF
    for _ in range(3):  # three finalisation rounds (the "3")
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = ((v1 << 13) | (v1 >> 51)) & _MASK ^ v0
    v0 = ((v0 << 32) | (v0 >> 32)) & _MASK
    v2 = (v2 + v3) & _MASK
    v3 = ((v3 << 16) | (v3 >> 48)) & _MASK ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = ((v3 << 21) | (v3 >> 43)) & _MASK ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = ((v1 << 17) | (v1 >> 47)) & _MASK ^ v2
    v2 = ((v2 << 32) | (v2 >> 32)) & _MASK
    return v0, v1, v2, v3


def route_lane(key: str, lanes: int) -> int:
    """The lane of a key among `lanes` lanes derived by Bytewax's routing. When the
    cluster's worker count divides `lanes`, every key of lane `l` goes to worker
    `l % workers`: the worker that reads partition `l` (Bytewax deals sorted
    partitions round robin)."""
    return route_hash(key) % lanes
