"""Plate-safe compositing: a fill goes into the plate only inside the grown, feathered mask.

The alpha is exactly 0 beyond ``grow + feather`` pixels from the mask, and there the output *is* the plate: the
same values, not a blend that happens to round back. ``changed_outside`` counts any pixel that breaks that rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.quadmask import region

__all__ = ["Blend", "changed_outside", "composite"]


@dataclass(frozen=True, slots=True)
class Blend:
    """How the fill meets the plate.

    Attributes:
        grow: pixels the mask is dilated by before blending (covers matte edge error); alpha 1 inside.
        feather: width in pixels of the linear ramp from alpha 1 to 0 outside the grown mask.
    """

    grow: int = 4
    feather: int = 4

    def alpha(self, quadmask: np.ndarray) -> np.ndarray:
        """Return the blend alpha, (T, H, W) float32 in [0, 1], from a (T, H, W) quadmask.

        Raises:
            InvalidInput: ``grow`` or ``feather`` is negative.
        """
        if self.grow < 0 or self.feather < 0:
            raise InvalidInput(f"grow and feather must be >= 0, got grow={self.grow} feather={self.feather}")
        inside = region(quadmask).astype(np.uint8)
        alpha = np.zeros(inside.shape, np.float32)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.grow + 1, 2 * self.grow + 1))
        for index, frame in enumerate(inside):
            core = cv2.dilate(frame, kernel) if self.grow else frame
            if self.feather == 0:
                alpha[index] = core
                continue
            distance = cv2.distanceTransform(1 - core, cv2.DIST_L2, 5)
            alpha[index] = np.clip(1.0 - distance / (self.feather + 1), 0.0, 1.0)
        return alpha


def composite(plate: np.ndarray, fill: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend ``fill`` over ``plate`` by ``alpha``; where alpha is 0 the plate's values are copied unchanged.

    Args:
        plate: (T, H, W, 3) uint8, uint16 or float32.
        fill: same shape and dtype as ``plate``.
        alpha: (T, H, W) float32 in [0, 1].

    Returns:
        (T, H, W, 3) array of the plate's dtype.

    Raises:
        InvalidInput: shapes or dtypes disagree.
    """
    if plate.shape != fill.shape or plate.dtype != fill.dtype or alpha.shape != plate.shape[:3]:
        raise InvalidInput(
            f"composite needs plate and fill of one shape and dtype and alpha of shape (T, H, W); got plate "
            f"{plate.dtype}{plate.shape}, fill {fill.dtype}{fill.shape}, alpha {alpha.shape}"
        )
    out = plate.copy()
    for index in range(len(plate)):
        weight = alpha[index]
        touched = weight > 0
        if not touched.any():
            continue
        a = weight[touched][:, None]
        mixed = plate[index][touched].astype(np.float32) * (1 - a) + fill[index][touched].astype(np.float32) * a
        if np.issubdtype(plate.dtype, np.integer):
            mixed = np.clip(np.rint(mixed), 0, np.iinfo(plate.dtype).max)
        out[index][touched] = mixed.astype(plate.dtype)
    return out


def changed_outside(plate: np.ndarray, result: np.ndarray, alpha: np.ndarray) -> int:
    """Count pixels where alpha is 0 but ``result`` differs from ``plate`` (must be 0)."""
    outside = alpha == 0
    return int(np.any(plate != result, axis=-1)[outside].sum())
