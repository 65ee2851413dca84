"""Converting frame arrays between the dtypes voidflow reads plates in: uint8, uint16 (10-16 bit) and float32.

Integer frames use their full range (uint8 0..255, uint16 0..65535); float frames are in [0, 1]. Conversions to
integers round to the nearest value and clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["from_unit", "to_uint8", "to_unit"]


def to_unit(frames: np.ndarray) -> np.ndarray:
    """Frames as float32 in [0, 1] (float input is clipped)."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255
    if frames.dtype == np.uint16:
        return frames.astype(np.float32) / 65535
    return np.clip(frames.astype(np.float32), 0, 1)


def from_unit(frames: np.ndarray, dtype: np.dtype[Any] | type) -> np.ndarray:
    """Frames in [0, 1] as ``dtype`` (integers use their full range, rounded)."""
    target = np.dtype(dtype)
    clipped = np.clip(frames, 0, 1)
    if target.kind == "f":
        return clipped.astype(target)
    return np.rint(clipped * np.iinfo(target).max).astype(target)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as uint8 (16-bit keeps its high byte; float is scaled from [0, 1]); uint8 input is returned as is."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == np.uint16:
        return (frames >> 8).astype(np.uint8)
    return from_unit(frames, np.uint8)
