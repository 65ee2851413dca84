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
    ceil((N - overlap) / (longest - overlap)): full windows stepping by ``longest - overlap``, and the last one only as
    long as what is left. When what is left is shorter than ``shortest`` (a backend pads a shorter run up to that cost
    anyway), the last two windows split the rest between them instead, one length each, so a 198-frame shot runs as
    two 107-frame windows, not as a full 197-frame run plus an 85-frame one for 17 new frames (1.39x the denoising of
    197 frames measured on an H100, issue 18). The last window ends on the last frame and may reach a frame further
    back than ``overlap``.
    Examples: ``frame_windows(198, 197, shortest=85)`` → [(0, 107), (91, 198)]; ``frame_windows(300, 197,
    shortest=85)`` → [(0, 197), (181, 300)]; ``frame_windows(400, 197, shortest=85)`` → [(0, 197), (181, 299),
    (282, 400)].

    Raises:
        InvalidInput: ``overlap`` does not leave room for progress (``longest <= overlap``).
    """
    if longest is None or frames <= longest:
        return [(0, frames)]
    if longest <= overlap:
        raise InvalidInput(f"a window of {longest} frames cannot overlap its neighbour by {overlap}")
    step = longest - overlap
    count = -(-(frames - overlap) // step)
    full = [(index * step, index * step + longest) for index in range(count - 1)]
    if frames - (count - 1) * step >= shortest:
        return [*full, ((count - 1) * step, frames)]
    start = (count - 2) * step  # the last two windows share what is left: frames start..N, overlapping by `overlap`
    length = min(max(-(-(frames - start + overlap) // 2), shortest), longest)
    return [*full[:-1], (start, start + length), (frames - length, frames)]


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
