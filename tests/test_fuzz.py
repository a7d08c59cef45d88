"""Fuzzing: hostile events and byte-level damage never crash, never silently change the answer."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.flows.bots.reference import detect
from harness.flows.bots.semantics import DetectionParams
from harness.flows.job import FlowJob
from harness.recording import Manifest, Recording, RecordingError, RecordingWriter, scan_blocks
from harness.recording.blocks import Block
from harness.recording.verify import verify
from harness.run.replay import replay
from tests.conftest import flow_outcome, reference_outcome, run_flow, write_recording

T0 = 1_700_000_000
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "\x00", "\ud7ff", "\U0001f600", "a\u202eb", "\ufeff", "e\u0301"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
hostile_user = st.one_of(json_values, st.text(max_size=20),
                         st.integers(1, 200_000).map(lambda n: "x" * n))  # huge strings
hostile_ts = st.one_of(json_values, st.integers(T0 - 30, T0 + 30),
                       st.sampled_from([0, -1, -(2**62), 2**62, 10**12, T0 + 0.5, True, False,
                                        str(T0), -62_135_596_801, 253_402_300_799]))
hostile_event = st.one_of(
    st.fixed_dictionaries({"user": hostile_user, "timestamp": hostile_ts},
                          optional={"meta": json_values, "bot": json_values}),
    json_values,
    st.builds(lambda depth: {"user": "deep", "timestamp": T0,
                             "x": orjson.Fragment(b"[" * depth + b"]" * depth)},
              st.integers(1, 1100)),
)


def _payload(event: Any) -> bytes:
    return orjson.dumps(event)


@settings(max_examples=60)
@given(events=st.lists(hostile_event, max_size=30), lanes=st.integers(1, 4))
def test_hostile_events_are_counted_never_crash(tmp_path_factory, events: list[Any],
                                                lanes: int) -> None:
    path = write_recording(tmp_path_factory.mktemp("rec") / "r", map(_payload, events),
                           lanes=lanes, block_events=7)
    result = run_flow(path, workers=2)
    tally = result.output.counts
    assert tally.events == len(events) and tally.conserved()
    assert flow_outcome(result) == reference_outcome(detect(Recording(path).envelopes(),
                                                            DetectionParams()))
    assert verify(path).ok


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A 2-segment recording, and every block and frame boundary in its first segment."""
    path = tmp_path_factory.mktemp("pristine") / "rec"
    events = [{"user": f"u{i % 13}", "timestamp": T0 + i // 9, "meta": {"id": str(i)}}
              for i in range(400)]
    with RecordingWriter(path, source="t", lanes=3, block_events=25,
                         segment_bytes=4_000) as writer:
        for i, event in enumerate(events):
            writer.append(orjson.dumps(event), str(i), float(i))
    first = path / Manifest.load(path).segments[0].file
    bounds = []
    for block in scan_blocks(first):
        bounds += [block.offset, block.offset + block.header_size]
        bounds += [block.frame_offset(i) for i in range(len(block.header.lanes))]
    return path, sorted(set(bounds))


def _damaged_copy(src: Path, dst: Path, cut: int | None, flip: int | None) -> str:
    dst.mkdir()
    for item in src.iterdir():
        (dst / item.name).write_bytes(item.read_bytes())
    segment = dst / Manifest.load(dst).segments[0].file
    data = bytearray(segment.read_bytes())
    if flip is not None:
        data[flip % len(data)] ^= 1 << (flip % 8)
    if cut is not None:
        del data[cut % len(data):]
    segment.write_bytes(bytes(data))
    return segment.name


@settings(max_examples=40)
@given(data=st.data(), kind=st.sampled_from(["cut-at-boundary", "cut-inside", "flip"]))
def test_byte_damage_is_named_or_skipped_and_counted(tmp_path_factory, pristine, data,
                                                     kind: str) -> None:
    path, bounds = pristine
    total = Manifest.load(path).events
    if kind == "cut-at-boundary":
        cut, flip = data.draw(st.sampled_from(bounds[1:])), None
    elif kind == "cut-inside":
        cut, flip = data.draw(st.integers(1, 10**6)), None
    else:
        cut, flip = None, data.draw(st.integers(0, 10**7))
    copy = tmp_path_factory.mktemp("damaged") / "rec"
    _assert_named_or_skipped_and_counted(copy, _damaged_copy(path, copy, cut, flip), total)


def _assert_named_or_skipped_and_counted(copy: Path, name: str, total: int) -> None:
    """Damage to segment `name` of `copy` (which listed `total` events) is named by verify
    and by a strict replay, and a --skip-damaged replay reads or reports every event."""
    report = verify(copy)  # never raises; names the segment
    assert not report.ok and name in report.errors[0]
    with pytest.raises(RecordingError, match=name.replace(".", r"\.")):
        replay(FlowJob.of(copy))
    skipped = replay(FlowJob.of(copy, skip_damaged=True, workers=2))
    tally = skipped.output.counts
    assert tally.conserved()
    assert tally.events + tally.skipped == total  # every listed event read or reported
    assert tally.events < total or tally.skipped == 0  # (a flip the checks cannot see is ok)
    places = [d for d in skipped.output.dead_letters if d["reason"] == "damaged"]
    assert all(name in d["where"] or "manifest" in d["where"] for d in places)


def test_every_bit_of_a_block_headers_lane_numbers_is_checked(tmp_path: Path,
                                                              pristine) -> None:
    """A flipped lane number can repeat a lane (0, 1, 2 -> 2, 1, 2) or put lanes out of
    order: the header is damage, never two frames where a reader expects one."""
    path, _ = pristine
    total = Manifest.load(path).events
    segment = path / Manifest.load(path).segments[0].file
    block = list(scan_blocks(segment))[1]
    assert isinstance(block, Block) and len(block.header.lanes) == 3
    ref_size = struct.calcsize("<HII")  # a lane's entry: lane u16, events u32, size u32
    table = block.offset + block.header_size - 3 * ref_size
    for ref in range(3):
        for bit in range(16):
            byte = table + ref * ref_size + bit // 8
            flip = next(f for f in range(byte, 10**7, segment.stat().st_size) if f % 8 == bit % 8)
            copy = tmp_path / f"ref{ref}-bit{bit}"
            _assert_named_or_skipped_and_counted(copy, _damaged_copy(path, copy, None, flip),
                                                 total)


def test_skip_damaged_reports_a_bad_frame_exactly(tmp_path: Path, pristine) -> None:
    path, _ = pristine
    copy = tmp_path / "rec"
    copy.mkdir()
    for item in path.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    seg = copy / Manifest.load(copy).segments[0].file
    block = next(b for b in scan_blocks(seg) if isinstance(b, object))
    lost = block.header.lanes[1].events
    data = bytearray(seg.read_bytes())
    data[block.frame_offset(1) + block.header.lanes[1].size // 2] ^= 0x40
    seg.write_bytes(bytes(data))
    result = replay(FlowJob.of(copy, skip_damaged=True))
    assert result.output.counts.skipped == lost
    assert result.output.counts.events == Manifest.load(copy).events - lost
    assert any("sha256" in note for note in result.notes)
    [place] = [d for d in result.output.dead_letters if d["reason"] == "damaged"]
    assert f"byte {block.frame_offset(1)}: lane {block.header.lanes[1].lane}" in place["where"]


def test_a_line_that_is_not_an_envelope_is_named(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "r", [{"user": "a", "timestamp": T0}] * 3, lanes=1)
    # rewrite the only segment with a valid frame whose second line is not an envelope
    import zstandard

    from harness.recording import BlockHeader, LaneRef

    lines = (b'{"seq":1,"id":null,"recv":1.0,"data":{"user":"a","timestamp":1700000000}}\n'
             b'[1, 2, 3]\n'
             b'{"seq":3,"id":null,"recv":1.0,"data":{"user":"a","timestamp":1700000000}}\n')
    frame = zstandard.ZstdCompressor().compress(lines)
    header = BlockHeader(1, 3, 1.0, 1.0, (LaneRef(0, 3, len(frame)),))
    seg = path / Manifest.load(path).segments[0].file
    seg.write_bytes(header.encode() + frame)
    manifest = Manifest.load(path)
    from harness.files import sha256_file

    manifest.segments[0].sha256 = sha256_file(seg)
    manifest.segments[0].bytes = seg.stat().st_size
    manifest.segments[0].blocks = 1
    manifest.save(path)
    with pytest.raises(RecordingError, match=r"seg-000001\.jsonl\.zst: block at byte 0: lane 0"
                                             r" line 2: not a recording envelope"):
        replay(FlowJob.of(path))
    result = replay(FlowJob.of(path, skip_damaged=True))
    tally = result.output.counts
    assert tally.events == 2 and tally.skipped == 1 and tally.conserved()
