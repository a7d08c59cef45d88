"""`harness`: a thin command line over the library (`harness.cli.main`)."""

from harness.cli.main import main

__all__ = ["main"]
