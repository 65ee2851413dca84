"""Shot windows: how a shot longer than a backend's longest run is split, and how the runs are cross-faded back.

Pure frame arithmetic (numpy only), shared by the pipeline's inpaint stage and VOID's provenance
(``void_ops.void.backend.describe_clip``) and cheap to import on a bare GPU host (the benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from voidflow.void_ops.exceptions import InvalidInput

__all__ = ["WINDOW_OVERLAP", "frame_windows", "windowed"]

#: Frames two neighbouring windows share when a shot is longer than a backend takes at once (cross-faded).
WINDOW_OVERLAP = 16


def frame_windows(
    frames: int, longest: int | None, overlap: int = WINDOW_OVERLAP, *, shortest: int = 1
) -> list[tuple[int, int]]:
    """Split ``frames`` into windows [start, stop) of at most ``longest`` frames that share ``overlap`` frames.

    One window when the shot fits (or ``longest`` is None). Otherwise as few windows as can share ``overlap`` frames,
    ceil((N - overlap) / (longest - overlap)), all of one length: the shortest that covers the shot, but never fewer
    than ``shortest`` frames (a backend pads shorter runs up to that cost anyway). Each steps by its length minus
    ``overlap``; the last ends on the last frame and may reach further back. Equal windows cost less than full ones
    and a short remainder: a denoising run costs more than its length in frames (attention grows with the square),
    and VOID pads a short remainder up to its 85-frame floor (issue 18: 198 frames as 197 + 85 cost 1.39x a 197-frame
    shot; as 107 + 107, padded to two 109-frame runs, less).
    Examples: ``frame_windows(198, 197, shortest=85)`` → [(0, 107), (91, 198)]; ``frame_windows(400, 197)`` →
    [(0, 144), (128, 272), (256, 400)].

    Raises:
        InvalidInput: ``overlap`` does not leave room for progress (``longest <= overlap``).
    """
    if longest is None or frames <= longest:
        return [(0, frames)]
    if longest <= overlap:
        raise InvalidInput(f"a window of {longest} frames cannot overlap its neighbour by {overlap}")
    count = -(-(frames - overlap) // (longest - overlap))
    length = min(max(-(-(frames + (count - 1) * overlap) // count), shortest), longest)
    step = length - overlap
    return [*((index * step, index * step + length) for index in range(count - 1)), (frames - length, frames)]


def windowed(
    frames: int,
    longest: int | None,
    run: Callable[[int, int], np.ndarray],
    *,
    shortest: int = 1,
    overlap: int = WINDOW_OVERLAP,
) -> np.ndarray:
    """Run ``run(start, stop)`` over ``frame_windows`` and cross-fade the results where windows overlap.

    ``run`` returns (stop - start, H, W, 3) frames. Each cross-fade spans exactly ``overlap`` frames, the last ones
    the earlier window computed (a short last window that reaches further back gives way before them); the blend
    weights ramp linearly across it and sum to one, and each result keeps its dtype (integers are rounded).
    """
    spans = frame_windows(frames, longest, overlap, shortest=shortest)
    if len(spans) == 1:
        return run(0, frames)
    total: np.ndarray | None = None
    weights = np.zeros(frames, np.float32)
    dtype: Any = None
    for index, (start, stop) in enumerate(spans):
        part = run(start, stop)
        dtype = part.dtype
        weight = np.ones(stop - start, np.float32)
        if index > 0:  # nothing before the fade; fade in across the last `overlap` frames of the previous window
            fade_end = spans[index - 1][1]
            fade = min(overlap, fade_end - start)
            weight[: fade_end - fade - start] = 0
            weight[fade_end - fade - start : fade_end - start] = np.linspace(0, 1, fade + 2, dtype=np.float32)[1:-1]
        if index < len(spans) - 1:  # fade out across the last `overlap` frames of this window
            fade = min(overlap, stop - spans[index + 1][0])
            ramp = np.linspace(1, 0, fade + 2, dtype=np.float32)[1:-1]
            weight[-fade:] = np.minimum(weight[-fade:], ramp)
        if total is None:
            total = np.zeros((frames, *part.shape[1:]), np.float32)
        total[start:stop] += part.astype(np.float32) * weight[:, None, None, None]
        weights[start:stop] += weight
    assert total is not None
    blended = total / weights[:, None, None, None]
    return np.rint(blended).astype(dtype) if np.issubdtype(dtype, np.integer) else blended.astype(dtype)
