"""`harness.report`: the HTML page holds the right numbers, escapes what users control,
works offline, and draws its charts in a real browser (headless Chromium).

Everything here is real: recordings written by `RecordingWriter`/`synthesize`,
results from the real Bytewax replay, pages read back with `html.parser`.
Set HARNESS_REPORT_SCREENSHOT=<file.png> to keep the browser test's screenshot
of the bundled sample's report.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.errors import HarnessError
from harness.flows.bots.semantics import DetectionParams, classify
from harness.flows.job import FlowJob
from harness.recording import Manifest, Recording, RecordingWriter
from harness.recording.importer import import_dumps, synthesize
from harness.recording.sample import sample_recording
from harness.report import ReportStats, load_jsonl, write_report
from harness.report.page import Inputs, flagged_accounts, render
from harness.report.scan import MAX_POINTS, SecondCounts, scan
from harness.run.replay import Result, replay

CHROMIUM = Path("/usr/bin/chromium")
T0 = 1_700_000_000
EVIL = "<b>Evil&Bot</b>"
SCRIPTY = "</script><script>alert(1)</script>"
ODD = 'Ünï "quoted" \u2028 \'bot\''
EVIL_WIKI = "<i>x</i>&wiki"


# ---------------------------------------------------------------- reading pages back


class Page(HTMLParser):
    """What a report page says, read back the way a browser's parser reads it."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tiles: dict[str, str] = {}  # data-count key -> shown number (first tile wins)
        self.accounts: list[dict[str, Any]] = []  # flagged-table rows
        self.reasons: dict[str, int] = {}  # dead-letter rows
        self.figures: dict[str, dict[str, str]] = {}
        self.marks: dict[str, Counter[str]] = {}  # figure id -> mark kind -> count
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.text: list[str] = []
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._figure: str | None = None
        self._row: dict[str, Any] | None = None
        self._cell: list[str] | None = None
        self._cell_class = [""]
        self._tile: str | None = None
        self._script: tuple[dict[str, str], list[str]] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "figure":
            self._figure = a["id"]
            self.figures[a["id"]] = a
            self.marks[a["id"]] = Counter()
        if "mark" in classes and self._figure:
            self.marks[self._figure][" ".join(c for c in classes if c != "mark") or "band"] += 1
        if "tile" in classes and a.get("data-count") not in self.tiles:
            self._tile = a["data-count"]
            self.tiles[self._tile] = ""
        if tag == "tr" and "data-user" in a:
            self._row = {"user": a["data-user"], "windows": int(a["data-windows"]),
                         "peak": float(a["data-peak"]), "cells": {}}
            self.accounts.append(self._row)
        if tag == "tr" and "data-reason" in a:
            self.reasons[a["data-reason"]] = int(a["data-count"])
        if tag == "td" and self._row is not None:
            self._cell = []
            self._cell_class = a.get("class", "").split()[-1:] or [""]
        if tag == "script":
            self._script = (a, [])
        if tag not in ("rect", "line", "i", "br", "meta"):  # void or self-closed here
            self._stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break
        if tag == "figure":
            self._figure = None
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"][self._cell_class[0]] = "".join(self._cell).strip()
            self._cell = None
        if tag == "tr":
            self._row = None
        if tag == "div" and self._tile is not None and not any(
                "tile" in attrs.get("class", "") for _, attrs in self._stack):
            self._tile = None
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script[1].append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._tile is not None and not self.tiles[self._tile]:
            self.tiles[self._tile] = data

    def count(self, key: str) -> int:
        return int(self.tiles[key].replace(",", ""))

    def data(self) -> dict[str, Any]:
        (found,) = [body for attrs, body in self.scripts if attrs.get("id") == "report-data"]
        value: dict[str, Any] = orjson.loads(found)
        return value


def read_page(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


# ---------------------------------------------------------------- recordings


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """3,000 synthetic events (bot bursts, late, invalid, canary) and their replay."""
    path = tmp_path_factory.mktemp("report") / "synth"
    synthesize(path, events=3000, seed=5, progress=False)
    return path, replay(FlowJob.of(path))


@pytest.fixture(scope="module")
def synth_page(synth: tuple[Path, Result], tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[ReportStats, str, Page]:
    out = tmp_path_factory.mktemp("page") / "report.html"
    stats = write_report(synth[0], out)
    text, page = read_page(out)
    return stats, text, page


def evil_recording(path: Path) -> Path:
    """Two fast accounts with hostile names (30 edits/s for 3 s), a slow one, a gap."""
    with RecordingWriter(path, source="test", lanes=2) as writer:
        recv = float(T0)
        for second in range(3):
            for i in range(30):
                for user in (EVIL, SCRIPTY):
                    event = {"user": user, "timestamp": T0 + second, "wiki": EVIL_WIKI,
                             "bot": False, "meta": {"domain": "x.wikipedia.org"}}
                    recv += 1 / 60
                    writer.append(orjson.dumps(event), f"id-{second}-{i}", recv)
        for i in range(4):  # slow, odd-named, after a 12 s receive gap
            event = {"user": ODD, "timestamp": T0 + 20 + i, "wiki": "enwiki", "bot": True}
            writer.append(orjson.dumps(event), None, T0 + 15.0 + i)
        writer.append(b"not json <script>", None, T0 + 19.5)
    return path


# ---------------------------------------------------------------- the numbers


def test_counts_match_the_tally(synth: tuple[Path, Result],
                                synth_page: tuple[ReportStats, str, Page]) -> None:
    """Every count tile, the stats and the embedded data say what the replay's tally says."""
    stats, _, page = synth_page
    tally = synth[1].output.counts.to_json()
    assert tally["malicious"] > 0 and tally["late"] > 0 and tally["canary"] > 0
    for key, value in tally.items():
        if key in ("outside", "skipped") and key not in page.tiles:
            assert value == 0, key  # shown only when there are any
        else:
            assert page.count(key) == value, key
    assert page.data()["tally"] == tally
    assert (stats.events, stats.windows, stats.late, stats.invalid, stats.canary) == (
        tally["events"], tally["windows"], tally["late"], tally["invalid"], tally["canary"])
    assert stats.flagged_windows == tally["malicious"] and stats.replayed
    assert "events = canary + invalid + late + counted ✓" in "".join(page.text)


def test_flagged_accounts_are_exactly_those_with_malicious_windows(
        synth: tuple[Path, Result], synth_page: tuple[ReportStats, str, Page]) -> None:
    """One row per account with a malicious window: its window count, peak rate and wikis."""
    path, result = synth
    malicious = [s for s in list(result.output.values()) if s["malicious"]]
    windows = Counter(s["user"] for s in malicious)
    peaks: dict[str, float] = {}
    for s in malicious:
        peaks[s["user"]] = max(peaks.get(s["user"], 0.0), s["rate"])
    stats, _, page = synth_page
    assert {row["user"] for row in page.accounts} == set(windows)
    assert len(page.accounts) == len(windows) == stats.flagged_accounts
    for row in page.accounts:
        assert row["windows"] == windows[row["user"]]
        assert row["peak"] == peaks[row["user"]]
    ranked = [(-row["windows"], -row["peak"], row["user"]) for row in page.accounts]
    assert ranked == sorted(ranked)
    # The wikis column starts with the account's most edited wiki in the recording.
    wikis: dict[str, Counter[str]] = {user: Counter() for user in windows}
    for env in Recording(path).envelopes():
        if env.is_json and isinstance(env.data, dict) and env.data.get("user") in wikis:
            wikis[env.data["user"]][env.data["wiki"]] += 1
    for row in page.accounts:
        top, n = wikis[row["user"]].most_common(1)[0]
        cells = row["cells"]
        assert cells["wikis"].startswith(f"{top} \u00d7{n:,}"), row
        assert cells["events"] == f"{sum(wikis[row['user']].values()):,}"
        assert cells["bot"] == "yes"  # the synthetic bursts are by bot accounts


def test_the_bundled_sample_flags_its_known_bots(tmp_path: Path) -> None:
    stats = write_report(sample_recording(), tmp_path / "r.html")
    _, page = read_page(tmp_path / "r.html")
    users = [row["user"] for row in page.accounts]
    assert {"Succu919Bot", "SuccuDataBot"} <= set(users)
    peak = {row["user"]: row["peak"] for row in page.accounts}
    assert peak["Succu919Bot"] == 45.0
    assert stats.events == 20_000 and stats.event_bucket_seconds == 1


def test_dead_letters_by_reason(synth: tuple[Path, Result],
                                synth_page: tuple[ReportStats, str, Page]) -> None:
    """Late and each invalid reason are listed with the replay's counts."""
    reasons = Counter(d["reason"] for d in synth[1].output.dead_letters)
    assert len(reasons) >= 3 and "late" in reasons
    assert synth_page[2].reasons == dict(reasons)


def test_charts_hold_one_bar_per_busy_second_and_one_band_per_flagged_span(
        synth: tuple[Path, Result], synth_page: tuple[ReportStats, str, Page]) -> None:
    """The event-time chart's bars are the distinct seconds of countable events."""
    path, result = synth
    seconds = {verdict[1] for env in Recording(path).envelopes() if env.is_json
               and isinstance(verdict := classify(env.data), tuple)}
    received = {int(env.recv) for env in Recording(path).envelopes()}
    stats, _, page = synth_page
    assert stats.event_bucket_seconds == 1 and stats.receive_bucket_seconds == 1
    timeline = page.marks["chart-timeline"]
    assert timeline["edits"] == len(seconds)
    assert 1 <= timeline["band"] <= result.output.counts.malicious
    assert page.marks["chart-arrivals"]["arrivals"] == len(received)
    rates = page.marks["chart-rates"]
    assert rates["flagged"] >= 1 and rates["ok"] >= 3
    for name, marks in page.marks.items():
        assert int(page.figures[name]["data-expected"]) == sum(marks.values())


def test_rate_histogram_puts_the_threshold_on_a_bin_edge(
        synth: tuple[Path, Result], tmp_path: Path) -> None:
    """A rate equal to the threshold is not malicious and is not drawn red; just above is."""
    summaries = [
        {"user": user, "window_start": "2023-11-14T22:13:20+00:00",
         "window_end": "2023-11-14T22:13:25+00:00", "count": 10, "first_timestamp": T0,
         "last_timestamp": T0 + 1, "rate": rate, "malicious": rate > 10.0}
        for user, rate in (("a", 10.0), ("b", 10.5), ("c", 2.0), ("d", 0.5), ("e", 9.99))]
    write_report(synth[0], tmp_path / "r.html", summaries=summaries, dead_letters=[])
    text, page = read_page(tmp_path / "r.html")
    assert page.marks["chart-rates"] == Counter({"ok": 3, "flagged": 1})
    rates = text[text.index('id="chart-rates"'):]
    red = re.findall(r'<rect class="mark flagged"[^>]*><title>([^<]*)</title>', rates)
    assert red == ["1 window(s) with rate in (10, 12.6] edits/s"]
    blue = re.findall(r'<rect class="mark ok"[^>]*><title>([^<]*)</title>', rates)
    assert "2 window(s) with rate in (7.94, 10] edits/s" in blue
    assert [row["user"] for row in page.accounts] == ["b"]
    assert "threshold 10/s" in text


def test_given_results_read_from_replay_files(
        synth: tuple[Path, Result], synth_page: tuple[ReportStats, str, Page],
        tmp_path: Path) -> None:
    """Results from `--out`/`--dead-letters` files, no tally: same page numbers, no replay."""
    output = synth[1].output
    out_file, dead_file = tmp_path / "summaries.jsonl", tmp_path / "dead.jsonl"
    for path, rows in ((out_file, list(output.values())), (dead_file, output.dead_letters)):
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b"\n")
    summaries, dead = load_jsonl(out_file), load_jsonl(dead_file)
    assert summaries == list(output.values()) and dead == output.dead_letters
    stats = write_report(synth[0], tmp_path / "r.html", summaries=summaries, dead_letters=dead)
    _, page = read_page(tmp_path / "r.html")
    _, _, replayed = synth_page
    assert not stats.replayed
    assert page.tiles == replayed.tiles  # the derived tally equals the flow's
    assert page.accounts == replayed.accounts and page.reasons == replayed.reasons
    assert "counts derived from them and the recording" in "".join(page.text)


def test_a_given_tally_is_shown_and_checked(synth: tuple[Path, Result],
                                           tmp_path: Path) -> None:
    """Counts not in every run (outside a slice, skipped lines) show only when there are any;
    a tally that does not add up is called out."""
    output = synth[1].output
    tally = {**output.counts.to_json(), "outside": 7, "skipped": 2}
    tally["events"] += 7
    write_report(synth[0], tmp_path / "r.html", summaries=list(output.values()),
                 dead_letters=output.dead_letters, tally=tally)
    _, page = read_page(tmp_path / "r.html")
    assert page.count("outside") == 7 and page.count("skipped") == 2
    assert "events = canary + invalid + late + counted + outside ✓" in page.text
    tally["events"] += 1
    write_report(synth[0], tmp_path / "r.html", summaries=list(output.values()),
                 dead_letters=output.dead_letters, tally=tally)
    _, page = read_page(tmp_path / "r.html")
    assert any("the tally does not add up" in t for t in page.text)


def test_load_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(HarnessError, match=r"x\.jsonl: line 3: not a JSON object"):
        load_jsonl(path)
    path.write_bytes(b'{"a": 1}\n{nope\n')
    with pytest.raises(HarnessError, match=r"line 2: not JSON"):
        load_jsonl(path)


# ---------------------------------------------------------------- escaping, offline, health


def test_user_controlled_strings_are_escaped(tmp_path: Path) -> None:
    """Hostile account and wiki names show as text; nothing they hold becomes markup."""
    out = tmp_path / "r.html"
    stats = write_report(evil_recording(tmp_path / "rec"), out)
    text, page = read_page(out)
    assert stats.flagged_accounts == 2
    for raw in (EVIL, SCRIPTY, "<i>x</i>", "<script>alert", "not json <script>"):
        assert raw not in text
    assert "&lt;b&gt;Evil&amp;Bot&lt;/b&gt;" in text
    # Read back as a browser would, the names come out exactly as they went in.
    assert {row["user"] for row in page.accounts} == {EVIL, SCRIPTY}
    assert all(row["cells"]["wikis"] == f"{EVIL_WIKI} \u00d790" for row in page.accounts)
    assert all(row["cells"]["bot"] == "no" for row in page.accounts)
    assert [attrs.get("id") for attrs, _ in page.scripts] == ["report-data", None]
    assert text.count("</script") == 2
    data = page.data()
    assert {a["user"] for a in data["flagged"]} == {EVIL, SCRIPTY}
    assert page.figures.keys() == {"chart-timeline", "chart-rates", "chart-arrivals"}
    # The slow account with quotes and U+2028 is not flagged but its late-free edits count.
    assert page.count("events") == 2 * 90 + 4 + 1 and page.count("invalid") == 1


def test_page_is_self_contained_and_replaced_atomically(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("old")
    write_report(evil_recording(tmp_path / "rec"), out)
    text = out.read_text()
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    lowered = text.lower()
    for external in ("<link", " src=", "@import", "url(", 'href="http', "//cdn", "<iframe"):
        assert external not in lowered, external
    assert [p.name for p in tmp_path.iterdir() if p.name != "rec"] == ["r.html"]


def test_receive_gaps_are_listed_largest_first(tmp_path: Path) -> None:
    path = evil_recording(tmp_path / "rec")
    write_report(path, tmp_path / "r.html")
    _, page = read_page(tmp_path / "r.html")
    body = " ".join(page.text)
    # The burst ends at T0+3 s (180 events 1/60 s apart); the next event arrives at T0+15.
    assert "Largest gaps" in page.text and "12 s" in page.text
    assert "reconnects" in body and "not recorded" in body
    facts = scan(Recording(path), [])
    assert facts.gap_count == 1 and facts.gaps[0].seconds == pytest.approx(12.0)


def test_reconnects_are_shown_when_the_manifest_records_them(tmp_path: Path) -> None:
    """A manifest with recorder counters (`stream`) shows its reconnects."""
    path = evil_recording(tmp_path / "rec")
    recording = Recording(path)
    streamed = type("StreamManifest", (Manifest,), {})(**{
        f: getattr(recording.manifest, f) for f in Manifest.__dataclass_fields__})
    streamed.stream = {"reconnects": 3, "duplicates": 7}
    summaries = list(replay(FlowJob.of(path)).output.values())
    flagged = flagged_accounts(summaries)
    text = render(Inputs("t", path, streamed, DetectionParams(), False, "given", summaries, [],
                         {"events": 185}, scan(recording, [a.user for a in flagged]), flagged))
    page = Page(text)
    assert page.text[page.text.index("reconnects") + 1] == "3"
    assert "Recorder counters: reconnects 3 · duplicates 7" in " ".join(page.text)


def test_imported_dump_says_receive_times_are_unknown(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(b"".join(
        orjson.dumps({"user": "Fast", "timestamp": T0 + i // 20, "wiki": "enwiki"}) + b"\n"
        for i in range(100)))
    path = tmp_path / "rec"
    import_dumps([dump], path, progress=False)
    assert not Recording(path).manifest.has_receive_times
    stats = write_report(path, tmp_path / "r.html")
    _, page = read_page(tmp_path / "r.html")
    assert "Receive times are not known" in " ".join(page.text)
    assert "chart-arrivals" not in page.figures
    assert stats.receive_bucket_seconds is None and stats.gaps == 0
    assert [row["user"] for row in page.accounts] == ["Fast"]


def test_an_empty_recording_still_makes_a_page(tmp_path: Path) -> None:
    RecordingWriter(tmp_path / "rec", source="test", lanes=1).close()
    stats = write_report(tmp_path / "rec", tmp_path / "r.html")
    _, page = read_page(tmp_path / "r.html")
    assert stats.events == 0 and stats.event_bucket_seconds is None
    assert page.count("events") == 0 and page.accounts == []
    assert all(sum(marks.values()) == 0 for marks in page.marks.values())
    assert "The recording holds no countable event." in page.text


def test_a_timestamp_no_date_holds_is_shown_as_seconds(tmp_path: Path) -> None:
    """An event's timestamp is input: one far past year 9999 is a dead letter in the
    detection and a number of seconds on the page, not a failed report."""
    from harness.testing import write_recording

    events = [{"user": "ann", "timestamp": 1_700_000_000 + i, "wiki": "enwiki", "title": "T",
               "type": "edit", "bot": False, "namespace": 0, "meta": {"id": str(i)}}
              for i in range(5)]
    events.append({**events[0], "timestamp": 10**15, "meta": {"id": "far"}})
    recording = write_recording(tmp_path / "rec", events, received=1_700_000_000)
    stats = write_report(recording, tmp_path / "r.html")
    text, _ = read_page(tmp_path / "r.html")
    assert stats.events == 6
    assert f"{10**15} s (no date)" in text


# ---------------------------------------------------------------- bucketing


def test_buckets_keep_charts_under_the_point_limit() -> None:
    counts = SecondCounts()
    for t in range(T0, T0 + 7200, 3):  # two hours
        counts.add(t + 0.5)
    series = counts.series()
    assert series is not None
    assert len(series.counts) <= MAX_POINTS and series.width == 15
    assert sum(series.counts) == 2400 and series.outside == 0
    assert series.start <= T0 and series.end >= T0 + 7199


def test_far_outliers_do_not_squash_the_time_axis() -> None:
    counts = SecondCounts()
    for t in range(T0, T0 + 600):
        for _ in range(5):
            counts.add(t)
    counts.add(T0 - 365 * 86400)  # one event a year early
    series = counts.series()
    assert series is not None
    assert series.width == 1 and series.outside == 1 and series.start == T0
    assert series.earliest == T0 - 365 * 86400


def test_counts_coarsen_without_losing_events() -> None:
    counts = SecondCounts()
    n = 250_000
    for t in range(T0, T0 + n):
        counts.add(t)
    assert counts.resolution == 10 and counts.total == n
    series = counts.series()
    assert series is not None
    assert sum(series.counts) == n and len(series.counts) <= MAX_POINTS
    assert series.width % 10 == 0


# ---------------------------------------------------------------- in a real browser


def _chromium(args: list[str], profile: Path, timeout: float = 30) -> tuple[str, str]:
    """Run headless Chromium; kill its whole process group if it overstays."""
    proc = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
         "--enable-logging=stderr", f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s")
    return out, err


def _png_rgb(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB/RGBA non-interlaced PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    stride, bpp = width * channels, channels
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1)
                                                          * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = bytes(line)
        rows.append(prev if channels == 3 else bytes(
            v for i, v in enumerate(prev) if i % 4 != 3))
    return width, height, rows


def _pixels_like(rows: list[bytes], rect: tuple[int, ...], colour: tuple[int, int, int],
                 tolerance: int = 40) -> int:
    """How many pixels in the box `rect` (x, y, w, h) are within `tolerance` of `colour`."""
    x, y, w, h = rect
    found = 0
    for row in rows[y:y + h]:
        for i in range(3 * x, 3 * (x + w), 3):
            if (abs(row[i] - colour[0]) + abs(row[i + 1] - colour[1])
                    + abs(row[i + 2] - colour[2])) <= tolerance:
                found += 1
    return found


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser test needs Debian's"
                    " chromium at /usr/bin/chromium (apt-get install chromium)")
def test_charts_draw_in_a_real_browser(tmp_path: Path) -> None:
    """Chromium runs the page: no script error, every chart mark laid out, bars coloured in.

    The page's self-check script records per chart how many marks got a non-empty
    box (data-drawn) and where the chart is (data-rect); the screenshot must show
    the bar colours inside those boxes: blue edits, red flagged windows and bins,
    teal arrivals.
    """
    out = tmp_path / "report.html"
    write_report(sample_recording(), out)
    dom, err = _chromium(["--window-size=1200,2000", "--dump-dom", out.as_uri()],
                         tmp_path / "profile-dom")
    assert "Uncaught" not in err, err
    page = Page(dom)
    (body,) = _body_attrs(dom)
    assert body.get("data-ready") == "1" and "data-error" not in body, body
    assert page.figures.keys() == {"chart-timeline", "chart-rates", "chart-arrivals"}
    for name, fig in page.figures.items():
        assert int(fig["data-drawn"]) == int(fig["data-expected"]) > 0, name
    height = min(int(body["data-height"]), 8000)
    shot = tmp_path / "report.png"
    _chromium([f"--window-size=1200,{height}", f"--screenshot={shot}", out.as_uri()],
              tmp_path / "profile-shot")
    width, shot_height, rows = _png_rgb(shot)
    assert (width, shot_height) == (1200, height)
    rects = {name: tuple(int(v) for v in fig["data-rect"].split(","))
             for name, fig in page.figures.items()}
    for rect in rects.values():
        assert rect[0] + rect[2] <= width and rect[1] + rect[3] <= height and rect[2] > 900
    area = rects["chart-timeline"][2] * rects["chart-timeline"][3]
    assert _pixels_like(rows, rects["chart-timeline"], (0x38, 0x67, 0xD6)) > area // 10
    assert _pixels_like(rows, rects["chart-timeline"], (0xD6, 0x33, 0x6C), 60) > 50
    assert _pixels_like(rows, rects["chart-rates"], (0xD6, 0x33, 0x6C)) > 500
    assert _pixels_like(rows, rects["chart-rates"], (0x38, 0x67, 0xD6)) > area // 20
    assert _pixels_like(rows, rects["chart-arrivals"], (0x4C, 0x8D, 0xAE)) > area // 10
    keep = os.environ.get("HARNESS_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def _body_attrs(dom: str) -> list[dict[str, str]]:
    """The attributes of the `<body>` tags of a document."""
    found: list[dict[str, str]] = []

    class Body(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "body":
                found.append({k: v or "" for k, v in attrs})

    Body().feed(dom)
    return found
