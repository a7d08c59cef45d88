"""The harness's pytest plugin (registered as `harness` under the `pytest11` entry point).

Fixtures:
- `sample_recording`: the path of the bundled sample recording (20,000
  synthetic recentchange events), made once if not in a source checkout;
- `recording_factory`: `recording_factory(events, lanes=8)` writes events
  into a new recording in the test's temporary directory and returns its path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["recording_factory", "sample_recording"]


@pytest.fixture(scope="session")
def sample_recording() -> Path:
    from harness.recording.sample import sample_recording as locate

    return locate()


@pytest.fixture
def recording_factory(tmp_path: Path) -> Callable[..., Path]:
    from harness.testing import write_recording

    made = 0

    def make(events: Iterable[dict[str, Any] | bytes | str], **options: Any) -> Path:
        nonlocal made
        made += 1
        return write_recording(tmp_path / f"recording-{made}", events, **options)

    return make
