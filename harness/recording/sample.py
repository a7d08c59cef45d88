"""The bundled sample recording: 20,000 synthetic events (`harness synth --events 20000
--seed 2023`), in `recordings/sample` of a source checkout.

Installed without the checkout, `sample_recording()` makes the identical
recording once (the synthesiser is deterministic per seed) in the user's
cache directory and returns that.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

from harness.errors import RecordingError
from harness.recording.manifest import MANIFEST

__all__ = ["SAMPLE_EVENTS", "SAMPLE_SEED", "sample_recording"]

SAMPLE_EVENTS: Final = 20_000
SAMPLE_SEED: Final = 2023
_CHECKOUT = Path(__file__).resolve().parents[2] / "recordings" / "sample"


def sample_recording() -> Path:
    """The path of the bundled sample recording (made once if not in a checkout)."""
    if (_CHECKOUT / MANIFEST).is_file():
        return _CHECKOUT
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wikistream-harness"
    made = cache / f"sample-{SAMPLE_EVENTS}-seed{SAMPLE_SEED}"
    if (made / MANIFEST).is_file():
        return made
    from harness.recording.importer import synthesize

    tmp = made.with_name(f"{made.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        synthesize(tmp, events=SAMPLE_EVENTS, seed=SAMPLE_SEED, progress=False)
        os.replace(tmp, made)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if (made / MANIFEST).is_file():  # another process made it first
            return made
        raise RecordingError(f"the bundled sample is not here and cannot be made in {cache}"
                             f" ({exc.strerror}); pass a recording directory") from None
    return made
