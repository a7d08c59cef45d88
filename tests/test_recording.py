"""Recording format: round trips, frames and segments, cut-short tails, refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from harness.recording import (
    PARTIAL,
    LanePosition,
    Manifest,
    Recording,
    RecordingError,
    RecordingWriter,
    lane_of,
)
from harness.recording.verify import verify

payloads = st.one_of(
    st.builds(lambda u, t: orjson.dumps({"user": u, "timestamp": t, "n": [1, {"x": None}]}),
              st.text(max_size=12), st.integers(-(2**40), 2**40)),
    st.binary(max_size=30),                                  # anything at all, kept as raw
    st.text(max_size=30),
    st.just(b'{"pretty":\n  true}'),                          # valid JSON with a newline
)


@given(items=st.lists(payloads, max_size=120), lanes=st.integers(1, 6),
       block=st.integers(1, 25), segment_bytes=st.sampled_from([200, 2_000, 1 << 20]))
def test_round_trip_across_frames_and_segments(tmp_path_factory, items, lanes, block,
                                               segment_bytes) -> None:
    path = tmp_path_factory.mktemp("rec") / "r"
    with RecordingWriter(path, source="t", lanes=lanes, block_events=block,
                         segment_bytes=segment_bytes) as w:
        for i, p in enumerate(items):
            w.append(p, f"id-{i}", 1000.0 + i)
    recording = Recording(path)
    envelopes = list(recording.envelopes())
    assert [e.seq for e in envelopes] == list(range(1, len(items) + 1))
    assert [e.id for e in envelopes] == [f"id-{i}" for i in range(len(items))]
    for env, original in zip(envelopes, items, strict=True):
        raw = original.encode() if isinstance(original, str) else original
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            assert env.error == "not-json" and not env.is_json
            assert env.raw == raw.decode("utf-8", "backslashreplace")
        else:
            assert env.data == value  # value-faithful
    lanes_seen = {}
    for lane in range(lanes):
        for _, _, data in recording.lane_frames(lane):
            assert isinstance(data, list)
            for line in b"".join(data).splitlines():
                env = orjson.loads(line)
                lanes_seen[env["seq"]] = lane
                user = env.get("data", {}).get("user") if isinstance(env.get("data"), dict) \
                    else None
                if isinstance(user, str):
                    assert lane == lane_of(user, lanes)
    assert sorted(lanes_seen) == list(range(1, len(items) + 1))
    report = verify(path)
    assert report.ok, report.errors
    assert report.events == len(items)
    assert recording.manifest.complete
    assert sum(s.events for s in recording.manifest.segments) == len(items)


def _events(n: int) -> list[bytes]:
    return [orjson.dumps({"user": f"u{i % 7}", "timestamp": 1_700_000_000 + i}) for i in range(n)]


def test_segments_rotate_and_zstdcat_reads_every_line(tmp_path: Path) -> None:
    path = tmp_path / "r"
    with RecordingWriter(path, source="t", lanes=3, block_events=10, segment_bytes=1500) as w:
        for i, p in enumerate(_events(200)):
            w.append(p, str(i), float(i))
    manifest = Manifest.load(path)
    assert len(manifest.segments) > 2
    assert all(s.complete and s.sha256 and s.events for s in manifest.segments)
    assert next(s.first_seq for s in manifest.segments) == 1
    for a, b in zip(manifest.segments, manifest.segments[1:], strict=False):
        assert b.first_seq == a.last_seq + 1
    # independent zstd frames with skippable block headers: stock zstd reads every line
    lines = []
    for seg in manifest.segments:
        with (path / seg.file).open("rb") as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            lines += reader.read().splitlines()
    assert sorted(orjson.loads(x)["seq"] for x in lines) == list(range(1, 201))
    zstd = subprocess.run(["bash", "-c", "command -v zstdcat"], capture_output=True)
    if zstd.returncode == 0:
        out = subprocess.run(["zstdcat", *[str(path / s.file) for s in manifest.segments]],
                             capture_output=True, check=True).stdout
        assert len(out.splitlines()) == 200


def _killed_writer(path: Path, n: int) -> RecordingWriter:
    """A writer that flushed `n` events in blocks of 10 and was then abandoned (as if killed)."""
    w = RecordingWriter(path, source="t", lanes=2, block_events=10)
    for i, p in enumerate(_events(n)):
        w.append(p, str(i), float(i))
    w.flush()
    w.abandon()  # what a kill leaves: files as they are, the lock released
    return w


def test_cut_short_last_block_is_reported_and_earlier_data_intact(tmp_path: Path) -> None:
    path = tmp_path / "r"
    _killed_writer(path, 95)
    partial = path / ("seg-000001.jsonl.zst" + PARTIAL)
    data = partial.read_bytes()
    partial.write_bytes(data[:-7])  # the kill landed inside the last block's frames
    recording = Recording(path)
    seqs = [e.seq for e in recording.envelopes()]
    assert seqs == list(range(1, 91))  # the 9 full blocks; no hole, nothing after a hole
    assert len(recording.truncated) == 1 and "seg-000001.jsonl.zst" in recording.truncated[0]
    report = verify(path)
    assert report.ok and report.events == 90 and not report.complete
    assert report.truncated


def test_unfinished_recording_replays(tmp_path: Path) -> None:
    from tests.conftest import run_flow

    path = tmp_path / "r"
    _killed_writer(path, 40)
    result = run_flow(path)
    assert result.output.counts.events == 40


def test_writer_refuses_existing_recording(tmp_path: Path) -> None:
    path = tmp_path / "r"
    _killed_writer(path, 5).close()
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(RecordingError, match="refusing to overwrite"):
        RecordingWriter(path, source="t")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_lane_resume_position_continues_exactly(tmp_path: Path) -> None:
    path = tmp_path / "r"
    with RecordingWriter(path, source="t", lanes=1, block_events=10) as w:
        for i, p in enumerate(_events(50)):
            w.append(p, str(i), float(i))
    recording = Recording(path)
    frames = list(recording.lane_frames(0))
    _, third, _ = frames[2]
    resumed = list(recording.lane_frames(0, LanePosition(0, third.offset)))
    assert [d for _, _, d in resumed] == [d for _, _, d in frames[2:]]


@pytest.mark.parametrize("damage", ["bitflip", "sha", "missing", "lane", "count"])
def test_verify_names_the_damage(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "r"
    with RecordingWriter(path, source="t", lanes=2, block_events=10, segment_bytes=800) as w:
        for i, p in enumerate(_events(60)):
            w.append(p, str(i), float(i))
    manifest = Manifest.load(path)
    seg = path / manifest.segments[1].file
    if damage == "bitflip":
        data = bytearray(seg.read_bytes())
        data[len(data) // 2] ^= 0x10
        seg.write_bytes(bytes(data))
        expect = manifest.segments[1].file
    elif damage == "sha":
        manifest.segments[0].sha256 = "0" * 64
        manifest.save(path)
        expect = "sha256"
    elif damage == "missing":
        seg.unlink()
        expect = "missing"
    elif damage == "lane":
        # a user written into the wrong lane would break deterministic replay
        other = RecordingWriter(tmp_path / "o", source="t", lanes=3, block_events=10)
        for i, p in enumerate(_events(20)):
            other.append(p, str(i), float(i))
        other.close()
        m = Manifest.load(tmp_path / "o")
        m.lanes = 2
        m.save(tmp_path / "o")
        path, expect = tmp_path / "o", "lane"  # "belongs in lane N" or "a lane beyond"
    else:
        manifest.segments[0].events += 1
        manifest.save(path)
        expect = "manifest says"
    report = verify(path)
    assert not report.ok
    assert expect in report.errors[0]


def test_resume_after_kill_continues_without_gap_or_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "r"
    _killed_writer(path, 95)
    partial = path / ("seg-000001.jsonl.zst" + PARTIAL)
    partial.write_bytes(partial.read_bytes()[:-7])  # killed inside the last block
    with RecordingWriter(path, source="t", resume=True, block_events=10) as w:
        point = w.resume_point
        assert point.last_seq == 90 and point.last_id == "89" and point.dropped
        for i, p in enumerate(_events(120)[90:], start=90):
            w.append(p, str(i), float(i))
    manifest = Manifest.load(path)
    assert manifest.complete and [s.file for s in manifest.segments] == [
        "seg-000001.jsonl.zst", "seg-000002.jsonl.zst"]
    assert manifest.segments[0].events == 90 and manifest.segments[1].first_seq == 91
    envs = list(Recording(path).envelopes())
    assert [e.seq for e in envs] == list(range(1, 121))
    assert [e.id for e in envs] == [str(i) for i in range(120)]
    assert verify(path).ok
    with pytest.raises(RecordingError, match="complete"):
        RecordingWriter(path, source="t", resume=True)


def test_resume_collects_recent_event_ids_for_deduplication(tmp_path: Path) -> None:
    path = tmp_path / "r"
    w = RecordingWriter(path, source="t", lanes=2, block_events=5)
    for i in range(12):
        w.append(orjson.dumps({"meta": {"id": f"uuid-{i}"}, "user": "u", "timestamp": i}),
                 str(i), float(i))
    w.flush()
    w.abandon()
    resumed = RecordingWriter(path, source="t", resume=True)
    assert resumed.resume_point.recent_event_ids == tuple(f"uuid-{i}" for i in range(12))
    resumed.close()


def test_symlinks_cannot_lead_reads_or_writes_out_of_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "r"
    with RecordingWriter(path, source="t", lanes=1) as w:
        w.append(b'{"user":"a","timestamp":1}', "0", 0.0)
    segment = path / Manifest.load(path).segments[0].file
    outside = tmp_path / "elsewhere.zst"
    segment.rename(outside)
    segment.symlink_to(outside)
    with pytest.raises(RecordingError, match="outside the recording"):
        Recording(path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(RecordingError, match="symlink"):
        RecordingWriter(tmp_path / "link", source="t")
    assert not any((tmp_path / "real").iterdir())
