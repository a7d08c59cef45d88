"""Recordings: the on-disk format, and the ways a recording is made and checked.

A recording is a directory holding `manifest.json` and segments
`seg-NNNNNN.jsonl.zst`. Each line is an `Envelope` (one received event);
a segment is a sequence of blocks, one per flush, each holding one zstd
frame per *lane* (key shard). Modules, in the order data passes through them:

- `envelope`: the line schema and its codec;
- `lanes`: the key shards and `Chunk`, a run of one lane's lines;
- `blocks`: the block header codec and the scanner of segment files;
- `manifest`: `manifest.json`;
- `writer` / `reader`: `RecordingWriter` and `Recording`;
- `verify`: checking a whole recording;
- `recorder`, `importer`, `synth`: making recordings from a stream, from
  dumps, or synthetically.
"""

from harness.errors import RecordingError
from harness.recording.blocks import PARTIAL, Block, BlockHeader, Damage, LaneRef, scan_blocks
from harness.recording.envelope import NOT_JSON, Envelope, EnvelopeError, encode_envelope
from harness.recording.lanes import (
    DEFAULT_LANES,
    MAX_LANES,
    Chunk,
    lane_for,
    lane_index,
    lane_name,
    lane_of,
)
from harness.recording.manifest import FORMAT, MANIFEST, VERSION, Manifest, Segment
from harness.recording.reader import LanePosition, Recording
from harness.recording.writer import RecordingWriter, ResumePoint

__all__ = [
    "DEFAULT_LANES", "FORMAT", "MANIFEST", "MAX_LANES", "NOT_JSON", "PARTIAL", "VERSION",
    "Block", "BlockHeader", "Chunk", "Damage", "Envelope", "EnvelopeError", "LanePosition",
    "LaneRef", "Manifest", "Recording", "RecordingError", "RecordingWriter", "ResumePoint",
    "Segment", "encode_envelope", "lane_for", "lane_index", "lane_name", "lane_of",
    "scan_blocks",
]
