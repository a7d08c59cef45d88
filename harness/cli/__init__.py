"""`harness`: a thin command line over the library (`harness.cli.main`).

`entry` is the executable (and `python -m harness`). It holds Ctrl-C and SIGTERM
while the command line's modules load, and `harness.cli.main.main` takes them
inside its own handling: a signal landing in an extension module's set-up can
crash the process (orjson's does), one landing in ordinary module code would end
it with a traceback, and one landing in code made by `exec` (every dataclass)
makes Python end the process by SIGINT whatever the command's exit status.
"""

from __future__ import annotations

import signal
import sys

from harness.process import STOPS

__all__ = ["entry"]


def entry() -> None:
    """Run the `harness` command with this process's arguments, and exit with its status."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    from harness.cli.main import main

    sys.exit(main())
