"""Compaction: merged blocks hold the same lines, replay the same from any position,
pace flush by flush, survive a crash mid-rewrite, and need a reader of version 2."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.recording import LanePosition, Manifest, Recording, RecordingError, RecordingWriter
from harness.recording.blocks import PARTIAL, Block, BlockHeader, LaneRef, Part, scan_blocks
from harness.recording.compact import SUFFIX, compact_segment
from harness.recording.verify import verify
from harness.source.lanes import LanePartition


def _write(path: Path, n: int, *, lanes: int = 3, block: int = 7,
           compact: int | None = None) -> None:
    with RecordingWriter(path, source="t", lanes=lanes, block_events=block,
                         compact_bytes=compact) as w:
        for i in range(n):
            w.append(orjson.dumps({"user": f"u{i % 11}", "timestamp": 1_700_000_000 + i}),
                     f"id-{i}", 1000.0 + i / 4)


START = LanePosition()


def _read(recording: Recording, lane: int, start: LanePosition = START, *,
          batch: int | None = None, speed: float | None = None, coalesce: int = 1 << 19
          ) -> list[tuple[int, LanePosition]]:
    """(lines in the chunk, the snapshot after it) for each chunk of a lane."""
    part = LanePartition(recording, lane, start, speed, batch, None, coalesce=coalesce)
    out = []
    while True:
        try:
            chunks = part.next_batch()
        except StopIteration:
            return out
        out += [(chunk.line_count, part.snapshot()) for chunk in chunks if chunk.lines]


def _lines(recording: Recording, lane: int, start: LanePosition = START) -> list[bytes]:
    part = LanePartition(recording, lane, start, None, None, None)
    lines: list[bytes] = []
    while True:
        try:
            chunks = part.next_batch()
        except StopIteration:
            return lines
        for chunk in chunks:
            lines += chunk.lines.splitlines()


parts = st.lists(st.builds(Part, st.integers(0, 2**28), st.integers(0, 2**28),
                           st.floats(allow_nan=False)), min_size=1, max_size=4).map(tuple)


@given(refs=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                               st.none() | parts), max_size=5))
def test_a_header_with_parts_reads_back_as_written(refs: list) -> None:
    lanes = tuple(LaneRef(lane, *((sum(p.events for p in pp), sum(p.size for p in pp), pp)
                                  if pp else (events, size)))
                  for lane, (events, size, pp) in enumerate(refs))
    header = BlockHeader(1, 9, 1.5, 2.5, lanes)
    encoded = header.encode()
    assert encoded[8:12] == (b"WSB2" if any(r.parts for r in lanes) else b"WSB1")
    got = BlockHeader.read(io.BytesIO(encoded))
    assert got is not None and got[1] == len(encoded) and got[0].encode() == encoded
    back = got[0]
    assert (back.first_seq, back.last_seq, back.first_recv, back.last_recv) == (1, 9, 1.5, 2.5)
    assert [(r.lane, r.events, r.size, back.pieces(r)) for r in back.lanes] == \
        [(r.lane, r.events, r.size, header.pieces(r)) for r in header.lanes]


@pytest.mark.parametrize("bad", ["sum", "cut", "extra", "none"])
def test_a_part_table_that_does_not_add_up_is_not_a_header(bad: str) -> None:
    two = (Part(2, 10, 1.0), Part(3, 20, 2.0))
    header = BlockHeader(1, 5, 1.0, 2.0, (LaneRef(0, 5, 30, two),)).encode()
    payload = bytearray(header[8:])
    if bad == "sum":
        payload[-16:-12] = (4).to_bytes(4, "little")  # the second part's events: 2 + 4 != 5
    elif bad == "cut":
        del payload[-8:]
    elif bad == "extra":
        payload += b"\0"
    else:
        payload[-34:-32] = (0).to_bytes(2, "little")  # a lane of no parts
    with pytest.raises(ValueError, match="not a block header"):
        BlockHeader.read(io.BytesIO(header[:4] + len(payload).to_bytes(4, "little")
                                    + bytes(payload)))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 300), lanes=st.integers(1, 4), block=st.integers(1, 40),
       target=st.sampled_from([1, 400, 3_000, 1 << 20]))
def test_compaction_keeps_every_line_lane_and_seq(tmp_path_factory: pytest.TempPathFactory,
                                                  n: int, lanes: int, block: int,
                                                  target: int) -> None:
    base = tmp_path_factory.mktemp("c")
    _write(base / "plain", n, lanes=lanes, block=block)
    _write(base / "compact", n, lanes=lanes, block=block, compact=target)
    plain, compact = Recording(base / "plain"), Recording(base / "compact")
    assert list(compact.envelopes()) == list(plain.envelopes())
    for lane in range(lanes):
        assert _lines(compact, lane) == _lines(plain, lane)
    report = verify(base / "compact")
    assert report.ok, report.errors
    for lane in range(lanes):  # every flush's frame kept, in order, as a part
        assert [p for b in compact.blocks() for r in b.header.lanes if r.lane == lane
                for p in b.header.pieces(r)] == \
            [p for b in plain.blocks() for r in b.header.lanes if r.lane == lane
             for p in b.header.pieces(r)]
    for was, now in zip(plain.manifest.segments, compact.manifest.segments, strict=True):
        if target == 1:
            assert now.blocks == was.blocks
        if target >= was.bytes:
            assert now.blocks <= 1
    assert compact.manifest.version == 2 and plain.manifest.version == 1  # the lowest that reads it


def test_a_lane_resumes_from_any_snapshot_inside_a_merged_block(tmp_path: Path) -> None:
    _write(tmp_path / "r", 400, lanes=2, block=9, compact=1 << 20)
    recording = Recording(tmp_path / "r")
    assert recording.manifest.segments[0].blocks == 1  # 45 flushes, one block
    for lane in range(2):
        lines = _lines(recording, lane)
        for kwargs in ({"coalesce": 300}, {"batch": 4}, {"coalesce": 1}):
            done = 0
            for count, position in _read(recording, lane, **kwargs):  # type: ignore[arg-type]
                done += count
                assert _lines(recording, lane, position) == lines[done:], (kwargs, position)
            assert done == len(lines)


def test_paced_replay_goes_flush_by_flush_through_a_merged_block(tmp_path: Path) -> None:
    _write(tmp_path / "r", 200, lanes=1, block=10, compact=1 << 20)
    recording = Recording(tmp_path / "r")
    (block,) = [b for b in scan_blocks(recording.segment_path(0)) if isinstance(b, Block)]
    parts = block.header.lanes[0].parts
    assert [p.events for p in parts] == [10] * 20
    assert [p.first_recv for p in parts] == [1000.0 + i * 2.5 for i in range(20)]
    paced = _read(recording, 0, speed=1e12)
    assert [count for count, _ in paced] == [10] * 20  # one flush at a time, each when due


def test_a_crash_mid_compaction_resumes_with_every_line(tmp_path: Path) -> None:
    path = tmp_path / "r"
    _write(tmp_path / "whole", 300, block=5)
    writer = RecordingWriter(path, source="t", lanes=3, block_events=5, compact_bytes=1 << 20)
    for env in Recording(tmp_path / "whole").envelopes():
        writer.append(orjson.dumps(env.data), env.id, env.recv)
    writer.flush()
    writer.abandon()  # killed: the segment is still .partial
    partial = next(path.glob("*" + PARTIAL))
    keep = tmp_path / "before"
    shutil.copy(partial, keep)
    compact_segment(partial, 1 << 20)  # killed after the rewrite replaced it
    shutil.copy(keep, partial.with_name(partial.name + SUFFIX))  # and a stray one, too
    with RecordingWriter(path, source="t", resume=True, compact_bytes=1 << 20) as resumed:
        assert resumed.events == 300
    assert not list(path.glob("*" + SUFFIX))
    assert list(Recording(path).envelopes()) == list(Recording(tmp_path / "whole").envelopes())
    assert verify(path).ok


@pytest.mark.parametrize("version", [3, True, "2"])
def test_a_manifest_of_another_version_is_refused_by_name(tmp_path: Path, version: object
                                                         ) -> None:
    _write(tmp_path / "r", 10)
    raw = orjson.loads((tmp_path / "r" / "manifest.json").read_bytes())
    (tmp_path / "r" / "manifest.json").write_bytes(orjson.dumps({**raw, "version": version}))
    with pytest.raises(RecordingError, match=r"manifest.json: format version .*, this harness"
                                             r" reads 1 and 2"):
        Manifest.load(tmp_path / "r")


def test_verify_names_a_part_whose_count_is_wrong_though_the_sums_agree(tmp_path: Path
                                                                       ) -> None:
    _write(tmp_path / "r", 40, lanes=1, block=10, compact=1 << 20)
    segment = next((tmp_path / "r").glob("seg-*"))
    data = bytearray(segment.read_bytes())
    (block,) = [b for b in scan_blocks(segment) if isinstance(b, Block)]
    parts = block.header.lanes[0].parts
    shifted = (Part(11, parts[0].size, parts[0].first_recv),
               Part(9, parts[1].size, parts[1].first_recv), *parts[2:])
    ref = block.header.lanes[0]
    header = BlockHeader(block.header.first_seq, block.header.last_seq,
                         block.header.first_recv, block.header.last_recv,
                         (LaneRef(0, ref.events, ref.size, shifted),)).encode()
    assert len(header) == block.header_size
    data[block.offset:block.offset + block.header_size] = header
    segment.write_bytes(bytes(data))
    problems = "\n".join(verify(tmp_path / "r").errors)
    assert "lane 0 frame part 1 has 10 lines, header says 11" in problems
    assert "lane 0 frame part 2 has 10 lines, header says 9" in problems
