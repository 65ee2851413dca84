"""Small record builders the tests share."""

from __future__ import annotations

from typing import Any

from voidflow.void_ops.shots import MediaSource, Shot, ShotInstructions


def one_shot(source: MediaSource, frames: int, *, first: int | None = None, **instructions: Any) -> Shot:
    """Shot ``sh010``: ``frames`` frames of ``source`` from media time ``first`` (default: the media's start), a
    one-frame handle at each end of the cut, ready, with ``instructions`` (``ShotInstructions`` fields)."""
    start = source.start if first is None else first
    return Shot(
        name="sh010",
        track="V1",
        index=0,
        clip_name="sh010",
        name_source="clip",
        media=source,
        rate=24.0,
        source_start=start + 1,
        duration=frames - 2,
        handles=(1, 1),
        record_start=0,
        status="ready",
        instructions=ShotInstructions(**instructions),
    )
