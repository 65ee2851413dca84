"""``passthrough``: a backend that does no pixel work; its fill is the plate itself.

It lets a batch run every other stage for real (masks, the ledger, delivery, QC, conform, the report) without
inpainting anything: a dry run of the pipeline, and the orchestration benchmark (``benchmarks/orchestration.py``).
Deliveries are the plate again, so QC's "changed outside the matte" is 0 by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voidflow.void_ops.exceptions import InvalidInput

__all__ = ["Passthrough"]


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Return the plate frames unchanged as the fill (``void_ops.pipeline.Inpainter``).

    Attributes:
        max_frames: longest run it takes: None, every shot in one piece (there is nothing to window).
        min_frames: shortest run it costs (1: no floor); with ``max_frames`` it lets tests window like VOID.
    """

    max_frames: int | None = None
    min_frames: int = 1
    name: str = "passthrough"
    version: str = "1"

    def params(self) -> dict[str, object]:
        """Return the backend's name and version, for provenance (it has no other parameters)."""
        return {"backend": self.name, "backend_version": self.version}

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]:
        """Nothing shot-specific: the frames pass through at plate size."""
        return {}

    def __call__(
        self, frames: np.ndarray, quadmask: np.ndarray, *, seed: int, prompt: str, first_pass: np.ndarray | None = None
    ) -> np.ndarray:
        """Return a copy of ``frames`` as the fill, in either pass (``void_ops.pipeline.Inpainter``); only the
        shapes of ``frames`` and ``quadmask`` are read, and ``seed``, ``prompt`` and ``first_pass`` not at all.

        The copy has the plate's values, shape and dtype (a copy, so no caller can alias the plate); a dry run of
        pass 2 passes the plate through too.

        Raises:
            InvalidInput: shapes disagree.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or quadmask.shape != frames.shape[:3]:
            raise InvalidInput(
                f"passthrough needs frames (T, H, W, 3) and a quadmask (T, H, W); got {frames.shape}, {quadmask.shape}"
            )
        return frames.copy()
