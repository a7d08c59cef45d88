"""The `harness` command as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import zstandard

from harness.recording import Manifest, Recording
from tests.conftest import harness


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def parse_summary(stdout: str) -> dict[str, str]:
    last = stdout.strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in last.split())


def test_synth_verify_replay_end_to_end(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    synth = harness("synth", "--out", str(rec), "--events", "3000", "--seed", "5")
    assert synth.returncode == 0, synth.stderr
    verified = harness("verify", str(rec))
    assert verified.returncode == 0 and "ok, complete; 3000 events" in verified.stdout
    out = tmp_path / "alerts.jsonl"
    replayed = harness("replay", str(rec), "--workers", "2", "--out", str(out))
    assert replayed.returncode == 0, replayed.stderr
    summary = parse_summary(replayed.stdout)
    assert summary["events"] == "3000" and int(summary["malicious"]) >= 1
    assert float(summary["events/s"]) > 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(rows) == int(summary["windows"])
    malicious = [r for r in rows if r["malicious"]]
    assert len(malicious) == int(summary["malicious"])
    printed = [line for line in replayed.stdout.splitlines() if line.startswith("MALICIOUS")]
    assert len(printed) == len(malicious)
    assert set(rows[0]) >= {"user", "window_start", "window_end", "count", "first_timestamp",
                            "last_timestamp", "rate", "malicious"}


def test_default_replay_uses_the_bundled_sample(tmp_path: Path) -> None:
    proc = harness("replay", "--workers", "4", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = parse_summary(proc.stdout)
    assert int(summary["events"]) == Recording(
        Path(__file__).resolve().parents[1] / "recordings" / "sample").manifest.events
    assert summary["workers"] == "4"


def test_import_plain_zst_gz_keeps_order_and_flags_non_json(tmp_path: Path) -> None:
    events = [orjson.dumps({"user": f"u{i}", "timestamp": 1_700_000_000 + i,
                            "meta": {"topic": "t", "partition": 0, "offset": i}})
              for i in range(30)]
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b"\n".join(events[:10]) + b"\nthis is not json\n\n")
    zst = tmp_path / "b.jsonl.zst"
    cctx = zstandard.ZstdCompressor()
    zst.write_bytes(cctx.compress(b"\n".join(events[10:20]) + b"\n")
                    + cctx.compress(b"\n".join(events[20:25]) + b"\n"))  # two frames
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n".join(events[25:]) + b"\n"))
    rec = tmp_path / "rec"
    proc = harness("import", str(plain), str(zst), str(gz), "--out", str(rec))
    assert proc.returncode == 0, proc.stderr
    envs = list(Recording(rec).envelopes())
    assert len(envs) == 31
    users = [e.data["user"] for e in envs if e.is_json]
    assert users == [f"u{i}" for i in range(30)]
    assert envs[10].error == "not-json" and envs[10].raw == "this is not json"
    assert envs[0].id == '[{"topic":"t","partition":0,"offset":0}]'
    assert harness("verify", str(rec)).returncode == 0
    # an imported dump has no receive times: the recorded clock refuses it, for either flow
    for flow in ([], ["--flow", "wiki_counts:wiki_counts", "--key", "wiki"]):
        one_line_error(harness("replay", str(rec), "--clock", "recorded", *flow),
                       "--clock recorded", "no receive times")


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    one_line_error(harness("replay", str(tmp_path / "nope")), "nope")
    one_line_error(harness("replay", "--workers", "0"), "--workers")
    one_line_error(harness("replay", "--workers", "many"), "--workers")
    one_line_error(harness("replay", "--bogus"), "--bogus")
    # a member started on the wrong machine (its address is not local) is told so
    one_line_error(harness("replay", "--addresses", "192.0.2.1:2101;127.0.0.1:2999",
                           "--process-id", "0"), "--process-id 0", "cannot listen")
    one_line_error(harness("import", str(tmp_path / "missing.jsonl"), "--out",
                           str(tmp_path / "x")), "missing.jsonl")
    not_a_recording = tmp_path / "empty"
    not_a_recording.mkdir()
    one_line_error(harness("verify", str(not_a_recording)), "manifest.json")


def test_damaged_segment_and_existing_outputs(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    assert harness("synth", "--out", str(rec), "--events", "500").returncode == 0
    # nothing already recorded is overwritten
    before = sorted(p.name for p in rec.iterdir())
    one_line_error(harness("synth", "--out", str(rec), "--events", "5"), str(rec),
                   "refusing to overwrite")
    assert sorted(p.name for p in rec.iterdir()) == before
    out = tmp_path / "alerts.jsonl"
    out.write_text("keep me\n")
    one_line_error(harness("replay", str(rec), "--out", str(out)), "--out", "exists")
    assert out.read_text() == "keep me\n"
    # flip one byte inside the segment: verify and replay both name the segment
    seg = rec / Manifest.load(rec).segments[0].file
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    one_line_error(harness("verify", str(rec)), seg.name)
    one_line_error(harness("replay", str(rec), "--quiet"), seg.name)
    one_line_error(harness("replay", str(rec), "--quiet", "--processes", "2"), seg.name)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_console_script_is_installed() -> None:
    proc = subprocess.run([Path(sys.executable).with_name("harness"), "--version"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "harness" in proc.stdout
