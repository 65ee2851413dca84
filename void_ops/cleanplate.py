"""``cleanplate``: a classical CPU inpainting backend for locked-off shots.

Each masked pixel takes the temporal median of the same pixel over the frames where it is not masked, so what the
camera saw elsewhere in the shot fills the hole. Pixels masked in every frame (never seen) are filled by OpenCV's
Telea inpainting from their surroundings. The method assumes a still camera; on a moving camera it smears, which
the report's contact sheet shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.frames import from_unit, to_uint8
from voidflow.void_ops.quadmask import region

__all__ = ["CleanPlate"]

_CHUNK = 1 << 16  # masked pixel positions per median batch: bounds memory to T x 65536 x 3 floats


def _masked_median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median over axis 0 of ``values`` (T, N, C) using only rows where ``valid`` (T, N); NaN where none is."""
    data = np.where(valid[..., None], values.astype(np.float32), np.nan)
    data.sort(axis=0)  # NaN sorts last
    count = valid.sum(axis=0)[None, :, None]
    low = np.take_along_axis(data, np.maximum(count - 1, 0) // 2, axis=0)[0]
    high = np.take_along_axis(data, count // 2, axis=0)[0]
    median: np.ndarray = (low + high) / 2  # NaN where no row is valid
    return median


@dataclass(frozen=True, slots=True)
class CleanPlate:
    """Fill masked pixels from the shot's other frames, then by inpainting.

    Attributes:
        inpaint_radius: radius in pixels of OpenCV's Telea inpainting for never-seen pixels.
    """

    inpaint_radius: int = 5
    name: str = "cleanplate"
    version: str = "1"

    def params(self) -> dict[str, object]:
        """Return every number the backend uses, for provenance."""
        return {"backend": self.name, "backend_version": self.version, "inpaint_radius": self.inpaint_radius}

    @property
    def max_frames(self) -> None:
        """No limit: the median draws on every frame of the shot, so a shot is never split into windows."""
        return None

    @property
    def min_frames(self) -> int:
        """No floor: any run costs what its frames cost."""
        return 1

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]:
        """Nothing shot-specific: every frame is processed at plate size."""
        return {}

    def __call__(
        self, frames: np.ndarray, quadmask: np.ndarray, *, seed: int, prompt: str, first_pass: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the fill for every frame: a full frame whose masked pixels are replaced.

        Args:
            frames: (T, H, W, 3) uint8, uint16 or float32 plate frames.
            quadmask: (T, H, W) uint8 quadmask; every class but keep (255) is filled.
            seed: unused (the method is deterministic); accepted for the backend interface.
            prompt: unused; accepted for the backend interface.
            first_pass: must be None: the method has one pass.

        Returns:
            (T, H, W, 3) array of ``frames``' dtype, equal to ``frames`` outside the mask.

        Raises:
            InvalidInput: shapes disagree, the radius is not positive, or a ``first_pass`` was given.
        """
        if first_pass is not None:
            raise InvalidInput("cleanplate has one pass: it takes no first_pass (pass 2 runs with the void backend)")
        if frames.ndim != 4 or frames.shape[-1] != 3 or quadmask.shape != frames.shape[:3]:
            raise InvalidInput(
                f"cleanplate needs frames (T, H, W, 3) and a quadmask (T, H, W); got {frames.shape}, {quadmask.shape}"
            )
        if self.inpaint_radius < 1:
            raise InvalidInput(f"inpaint_radius must be >= 1, got {self.inpaint_radius}")
        hole = region(quadmask)
        fill = frames.copy()
        ever = hole.any(axis=0)
        rows, cols = np.nonzero(ever)
        unseen = np.zeros(hole.shape[1:], bool)
        for start in range(0, len(rows), _CHUNK):
            r, c = rows[start : start + _CHUNK], cols[start : start + _CHUNK]
            median = _masked_median(frames[:, r, c], ~hole[:, r, c])
            seen = ~np.isnan(median[:, 0])
            unseen[r[~seen], c[~seen]] = True
            for index in range(len(frames)):
                take = hole[index, r, c] & seen
                values = median[take]
                if np.issubdtype(frames.dtype, np.integer):
                    values = np.rint(values)
                fill[index, r[take], c[take]] = values.astype(frames.dtype)
        if unseen.any():
            for index in range(len(frames)):
                todo = (hole[index] & unseen).astype(np.uint8)
                if todo.any():
                    painted = cv2.inpaint(to_uint8(fill[index]), todo, self.inpaint_radius, cv2.INPAINT_TELEA)
                    fill[index][todo > 0] = from_unit(painted.astype(np.float32) / 255, frames.dtype)[todo > 0]
        return fill
