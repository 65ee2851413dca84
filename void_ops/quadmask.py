"""VOID quadmasks: per-pixel classes 0 remove, 63 overlap, 127 affected, 255 keep, as (T, H, W) uint8 arrays.

Classes are always recovered by value *ranges* (``quantise``), never by equality, so a mask that went through a
resize or a lossy codec still reads correctly:

| value v | class |
|---|---|
| v ≤ 31 | 0 remove |
| 31 < v ≤ 95 | 63 overlap |
| 95 < v ≤ 191 | 127 affected |
| v > 191 | 255 keep |
"""

from __future__ import annotations

import numpy as np

from voidflow.void_ops.exceptions import InvalidInput

__all__ = ["AFFECTED", "KEEP", "OVERLAP", "REMOVE", "check_quadmask", "combine", "quantise", "region"]

REMOVE, OVERLAP, AFFECTED, KEEP = 0, 63, 127, 255


def quantise(values: np.ndarray) -> np.ndarray:
    """Snap any uint8 mask to the four classes by the ranges above.

    Example: ``quantise(np.array([10, 40, 130, 200]))`` → ``[0, 63, 127, 255]``.
    """
    values = np.asarray(values)
    out = np.full(values.shape, KEEP, np.uint8)
    out[values <= 191] = AFFECTED
    out[values <= 95] = OVERLAP
    out[values <= 31] = REMOVE
    return out


def combine(primary: np.ndarray, affected: np.ndarray, *, clear_affected_on_first_frame: bool = False) -> np.ndarray:
    """Build a quadmask from boolean object and affected-region masks (the reference's combine table).

    | primary | affected | result |
    |---|---|---|
    | True | False | 0 |
    | True | True | 63 |
    | False | True | 127 |
    | False | False | 255 |

    Args:
        primary: (T, H, W) bool, the object to remove.
        affected: (T, H, W) bool, what the object affects (shadow, reflection, things that move).
        clear_affected_on_first_frame: drop the affected-only class on frame 0, as VOID's mask pipeline does.

    Raises:
        InvalidInput: the two masks differ in shape.
    """
    if primary.shape != affected.shape:
        raise InvalidInput(f"primary mask {primary.shape} and affected mask {affected.shape} differ in shape")
    out = np.full(primary.shape, KEEP, np.uint8)
    out[affected] = AFFECTED
    out[primary] = REMOVE
    out[primary & affected] = OVERLAP
    if clear_affected_on_first_frame and len(out):
        out[0][out[0] == AFFECTED] = KEEP
    return out


def region(quadmask: np.ndarray) -> np.ndarray:
    """Return the pixels to replace (every class but keep) as a bool array of the same shape."""
    return np.asarray(quadmask) <= 191


def check_quadmask(quadmask: np.ndarray, frames: int, height: int, width: int, *, shot: str) -> None:
    """Check a quadmask's dtype and shape against its plate.

    Raises:
        InvalidInput: naming the shot, the expected and the actual shape or dtype.
    """
    expected = (frames, height, width)
    if quadmask.dtype != np.uint8 or quadmask.shape != expected:
        raise InvalidInput(
            f"shot '{shot}': quadmask must be uint8 {expected} (frames, height, width), "
            f"got {quadmask.dtype} {quadmask.shape}"
        )
