"""The bot flow's lane plan: every lane to exactly one worker, each worker its fixed share
of slots, and runs of neighbouring lanes when they balance about as well as dealing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.flows.bots.routing import balance, deal


def owners(slots: tuple[int, ...], workers: int) -> list[list[int]]:
    return [[lane for slot, lane in enumerate(slots) if slot % workers == w]
            for w in range(workers)]


def busiest(sizes: list[int], owned: list[list[int]]) -> int:
    return max(sum(sizes[lane] for lane in lanes) for lanes in owned)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=24), st.integers(1, 8))
def test_every_lane_goes_to_one_worker_and_the_busiest_is_never_much_busier(
        sizes: list[int], workers: int) -> None:
    slots = balance(sizes, workers)
    assert sorted(slots) == list(range(len(sizes)))
    owned = owners(slots, workers)
    assert busiest(sizes, owned) <= busiest(sizes, deal(sizes, workers)) * 1.02


def test_even_lanes_go_in_runs_and_a_skewed_lane_is_dealt() -> None:
    even = [25_000, 26_000, 24_000, 25_500, 24_500, 25_200, 24_800, 25_000]
    assert owners(balance(even, 2), 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    skewed = [90_000, 80_000, 1_000, 1_000, 1_000, 1_000, 1_000, 1_000]
    owned = owners(balance(skewed, 2), 2)
    assert sorted(map(sorted, owned)) != [[0, 1, 2, 3], [4, 5, 6, 7]]  # 0 and 1 apart
    assert {0, 1} - set(owned[0]) and {0, 1} - set(owned[1])

