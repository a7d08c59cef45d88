"""The harness's version, for `--version` and the `User-Agent` it sends."""

__version__ = "0.1.0"
