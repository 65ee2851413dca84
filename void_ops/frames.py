"""Frame arrays: converting between the dtypes voidflow reads plates in (uint8, uint16, float32), and fitting sizes.

Integer frames use their full range (uint8 0..255, uint16 0..65535); float frames are in [0, 1]. Conversions to
integers round to the nearest value and clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fit_size", "from_unit", "to_uint8", "to_unit"]


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
    scaled: np.ndarray = clipped if target.kind == "f" else np.rint(clipped * np.iinfo(target).max)
    return scaled.astype(target)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as uint8 (16-bit keeps its high byte; float is scaled from [0, 1]); uint8 input is returned as is."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == np.uint16:
        return (frames >> 8).astype(np.uint8)
    return from_unit(frames, np.uint8)


def fit_size(height: int, width: int, max_side: int, *, even: bool = False) -> tuple[int, int]:
    """(height, width) scaled down so the longer side is at most ``max_side``, keeping the aspect; never upscales.

    Sides round to the nearest pixel and are at least 1. ``even=True`` (for encoders that need even sides, such as
    H.264 in yuv420p) then rounds each side down to an even number, at least 2, even when no scaling was needed.

    Example: ``fit_size(1080, 1920, 1024) == (576, 1024)``; ``fit_size(1081, 1919, 4096, even=True) == (1080, 1918)``.
    """
    scale = min(1.0, max_side / max(height, width))
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if even:
        return max(2, new_h - new_h % 2), max(2, new_w - new_w % 2)
    return new_h, new_w
