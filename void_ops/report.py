"""Pictures and movies for people: contact sheets, matte overlays and review movies (the review room and the
batch report, in ``tasks/review``, show them).

Contact sheets show sampled frames of the cut (handles left out) in three rows: the plate, the result, and the
result with the blend region tinted, so a supervisor can judge a shot at a glance.

Review movies are what a browser plays instead of plates: every frame of the shot (handles included) as H.264
4:2:0 in an ``.mp4``, at most ``REVIEW_WIDTH`` px wide with even sides (``review_size``), tagged BT.709, index
first (faststart), and a keyframe every ``REVIEW_GOP`` frames with no B-frames, so a seek to any frame decodes at
most ``REVIEW_GOP - 1`` frames before it. A shot's three review movies (the mask preview, the plate proxy and the
version's review movie) share geometry and frame count, so a page can wipe, flip and scrub them in step.
Measured on 100-frame shots (``benchmarks/review_gop.py``, crf 16): every frame a keyframe 1.8 MB (the demo plate
at 640x360) and 2.2 MB (VOID's BigBen sample at 544x360); a 12-frame GOP 0.34 MB and 0.76 MB, 3 to 5 times smaller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from voidflow.void_ops.colour import ColourTags
from voidflow.void_ops.files import atomic_write
from voidflow.void_ops.frames import to_uint8

__all__ = [
    "REVIEW_GOP",
    "REVIEW_TAGS",
    "REVIEW_WIDTH",
    "contact_sheet",
    "mask_overlay",
    "review_movie",
    "review_size",
]

#: Review movies are at most this wide (px).
REVIEW_WIDTH = 640
#: A review movie's keyframe interval in frames (half a second at 24 fps); no B-frames.
REVIEW_GOP = 12
#: A review movie's colour tags: BT.709 video range, what a browser assumes of the model view's display pixels.
REVIEW_TAGS = ColourTags(primaries="bt709", transfer="bt709", matrix="bt709", range="tv")
_THUMB_WIDTH = 240
_TINTS = {0: (255, 40, 40), 63: (255, 160, 0), 127: (40, 160, 255)}  # remove, overlap, affected


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a hidden temporary file beside ``path`` (its folder created), then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        write(temporary)
    return path


def _save_png(image: Image.Image, path: Path) -> Path:
    return _atomic(path, lambda target: image.save(target, format="PNG", compress_level=1))  # fast: pictures for people


def _sample(count: int, first: int, last: int) -> list[int]:
    return sorted({round(x) for x in np.linspace(first, last, num=min(count, last - first + 1))})


def _thumb(frame: np.ndarray) -> Image.Image:
    image = Image.fromarray(frame)
    height = max(1, round(frame.shape[0] * _THUMB_WIDTH / frame.shape[1]))
    return image.resize((_THUMB_WIDTH, height), Image.Resampling.BILINEAR)


def _tint(frame: np.ndarray, quadmask: np.ndarray) -> np.ndarray:
    out = frame.astype(np.float32)
    for value, colour in _TINTS.items():
        hit = (np.abs(quadmask.astype(np.int16) - value) <= 31) if value else quadmask <= 31
        out[hit] = out[hit] * 0.5 + np.array(colour, np.float32) * 0.5
    return out.astype(np.uint8)


def _grid(rows: Sequence[Sequence[np.ndarray]], path: Path) -> Path:
    thumbs = [[_thumb(frame) for frame in row] for row in rows]
    width, height = thumbs[0][0].size
    sheet = Image.new("RGB", (width * len(thumbs[0]) + 4 * (len(thumbs[0]) - 1), (height + 4) * len(thumbs) - 4))
    for r, row in enumerate(thumbs):
        for c, thumb in enumerate(row):
            sheet.paste(thumb, (c * (width + 4), r * (height + 4)))
    return _save_png(sheet, path)


def contact_sheet(
    plate: np.ndarray, result: np.ndarray, quadmask: np.ndarray, path: Path, *, cut: tuple[int, int], samples: int = 6
) -> Path:
    """Write a before/after contact sheet PNG.

    Args:
        plate: (T, H, W, 3) plate frames (any of uint8, uint16, float32).
        result: (T, H, W, 3) delivered frames, same shape.
        quadmask: (T, H, W) uint8 quadmask.
        path: the PNG to write (atomically).
        cut: (first, last) frame indices of the cut inside the arrays, handles excluded; frames are sampled there.
        samples: number of frames across.

    Returns:
        ``path``.
    """
    picks = _sample(samples, *cut)
    before, after = to_uint8(plate[picks]), to_uint8(result[picks])
    tinted = [_tint(frame, mask) for frame, mask in zip(after, quadmask[picks], strict=True)]
    return _grid([list(before), list(after), tinted], path)


def mask_overlay(
    plate: np.ndarray, quadmask: np.ndarray, path: Path, *, cut: tuple[int, int], samples: int = 6
) -> Path:
    """Write a PNG of sampled plate frames with the quadmask classes tinted (red remove, orange overlap, blue
    affected): the picture a supervisor approves before GPU time is spent."""
    picks = _sample(samples, *cut)
    frames = to_uint8(plate[picks])
    return _grid([[_tint(frame, mask) for frame, mask in zip(frames, quadmask[picks], strict=True)]], path)


def review_size(width: int, height: int) -> tuple[int, int]:
    """The (width, height) of the review movies of a ``width`` x ``height`` plate: scaled to ``REVIEW_WIDTH`` px
    wide at most, aspect kept, each side rounded down to even (at least 2). ``review_size(1280, 720) == (640, 360)``,
    ``review_size(2048, 858) == (640, 268)``, ``review_size(320, 180) == (320, 180)``."""
    scale = min(1.0, REVIEW_WIDTH / width)
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def review_movie(
    frames: np.ndarray,
    path: Path,
    rate: Fraction,
    *,
    quadmask: np.ndarray | None = None,
    pixel_aspect: Fraction = Fraction(1),
) -> Path:
    """Write a review movie (see the module docstring): the mask stage's preview (``quadmask`` tinted) and plate
    proxy, and the deliver stage's review of the result.

    Args:
        frames: (T, H, W, 3) display-referred frames (the model view), uint8, uint16 or float32 in [0, 1].
        path: the ``.mp4`` to write (atomically); it must not exist.
        rate: frame rate; the movie holds exactly T frames.
        quadmask: (T, H, W) uint8 quadmask to tint over the frames (red remove, orange overlap, blue affected),
            after shrinking; None for plain frames.
        pixel_aspect: the plate's pixel aspect, stored in the stream so a player shows an anamorphic plate unsqueezed.

    Returns:
        ``path``, holding ``review_size(W, H)`` frames.

    Raises:
        InvalidInput, StorageUnavailable, MediaInvalid: as ``media.write_movie``.
    """
    from voidflow.void_ops import media

    size = review_size(frames.shape[2], frames.shape[1])
    # to_uint8 frame by frame: on a whole float shot its temporaries would be three float copies of the shot.
    shrunk = [np.asarray(Image.fromarray(to_uint8(frame)).resize(size, Image.Resampling.BILINEAR)) for frame in frames]
    if quadmask is not None:  # shrink first, then tint: the movie's pixels, not the plate's
        masks = [np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)) for mask in quadmask]
        shrunk = [_tint(frame, mask) for frame, mask in zip(shrunk, masks, strict=True)]
    media.write_movie(
        np.stack(shrunk),
        path,
        rate,
        codec="h264",
        colour=REVIEW_TAGS,
        pixel_aspect=pixel_aspect,
        keyframe_interval=REVIEW_GOP,
    )
    return path
