"""Testing a flow with the harness's pytest plugin and hypothesis strategies."""

from hypothesis import given, settings

from harness import assert_deterministic, event_streams, run_flow, write_recording
from wiki_counts import wiki_counts


def test_counts_on_the_sample(sample_recording):
    items = run_flow(wiki_counts, sample_recording, key="wiki", workers=2)
    windows = [item for item in items if "edits" in item]
    # 19,995 events have a wiki; 9 of them have no integer timestamp, 45 arrive late
    assert sum(item["edits"] for item in windows) == 19_995 - 9 - 45


def test_deterministic_on_every_shape(sample_recording):
    assert_deterministic(wiki_counts, sample_recording, key="wiki")


@settings(max_examples=10, deadline=None)
@given(events=event_streams(max_size=100))
def test_every_timed_edit_is_counted_once_or_late(tmp_path_factory, events):
    path = write_recording(tmp_path_factory.mktemp("rec") / "r", events)
    items = run_flow(wiki_counts, path, key="wiki")
    timed = [e for e in events if isinstance(e, dict) and isinstance(e.get("wiki"), str)
             and type(e.get("timestamp")) is int]
    counted = sum(item.get("edits", 0) for item in items)
    late = sum("late" in item for item in items)
    assert counted + late == len(timed)
