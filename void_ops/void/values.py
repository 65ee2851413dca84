"""VOID's value path, as numbers: frame fitting, temporal padding, quadmask conditioning and multidiffusion windows.

Every function here reproduces one table of ``void-reference.md`` (sections 3, 4 and 6.2) and is pinned by a value
test; the departures the spec asks for are the fit (aspect kept instead of a stretch) and trimming back to the
input length (``ModelClip.frames``), both recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.quadmask import quantise

__all__ = [
    "PASS1",
    "PASS2",
    "Fit",
    "FitMode",
    "MaskMode",
    "PassSettings",
    "condition_from_quadmask",
    "fit_frames",
    "latent_frames",
    "padded_length",
    "pass1_condition",
    "pass2_condition",
    "pingpong",
    "unfit_frames",
    "vae_mask_input",
    "window_spans",
    "window_weights",
]

FitMode = Literal["letterbox", "crop"]
MaskMode = Literal["trimask", "binary"]


def padded_length(frames: int, *, min_length: int = 85, max_length: int = 197) -> int:
    """Return the length VOID processes a clip of ``frames`` frames at (the reference's ``temporal_padding``).

    4·⌊F/4⌋+1, plus 4 when that is short of F; plus 4 again when ⌊m/4⌋ is even, so the latent length (m-1)/4+1 is
    even for the 2-frame temporal patch; then clamped to [min_length, max_length].
    Examples: 46 → 85, 86 → 93, 100 → 101, 120 → 125, 150 → 157, 300 → 197.

    Raises:
        InvalidInput: ``frames`` < 1.
    """
    if frames < 1:
        raise InvalidInput(f"frames must be >= 1, got {frames}")
    length = 4 * (frames // 4) + 1
    if length < frames:
        length += 4
    if (length // 4) % 2 == 0:
        length += 4
    return min(max(length, min_length), max_length)


def latent_frames(frames: int) -> int:
    """Return the VAE's latent length for ``frames`` pixel frames (4x temporal compression, frame 0 kept)."""
    return (frames - 1) // 4 + 1


def pingpong(array: np.ndarray, length: int) -> np.ndarray:
    """Cut or extend ``array`` along axis 0 to ``length`` by appending time-reversed copies (turn frame repeated).

    Example: frames [0, 1, 2] to length 7 → [0, 1, 2, 2, 1, 0, 0].
    """
    out = array
    while len(out) < length:
        out = np.concatenate([out, out[::-1]], axis=0)
    return out[:length]


@dataclass(frozen=True, slots=True)
class Fit:
    """How plate frames were placed in the model frame, so results can be put back exactly.

    Attributes:
        mode: ``letterbox`` (whole frame, bars added) or ``crop`` (frame filled, edges cut).
        plate_width: plate width in pixels.
        plate_height: plate height in pixels.
        x: left edge of the plate's image in model pixels (negative when cropping).
        y: top edge of the plate's image in model pixels (negative when cropping).
        width: width of the plate's image in model pixels.
        height: height of the plate's image in model pixels.
    """

    mode: FitMode
    plate_width: int
    plate_height: int
    x: int
    y: int
    width: int
    height: int

    def as_dict(self) -> dict[str, object]:
        """Return the fit for provenance."""
        return {name: getattr(self, name) for name in self.__slots__}


def fit_frames(
    frames: np.ndarray, model_height: int, model_width: int, *, mode: FitMode, interpolation: int = 3
) -> tuple[np.ndarray, Fit]:
    """Place (T, H, W[, C]) frames into model frames of ``model_height`` x ``model_width`` keeping the aspect ratio.

    ``letterbox`` scales the whole plate inside and pads with zeros (black; for masks, pass ``255 - mask`` and
    invert back so bars read as keep); ``crop`` scales to cover and cuts the overflow, centred. The reference
    stretches instead (defect 4); area interpolation as in the reference.

    ``interpolation`` is an OpenCV flag (3 = ``cv2.INTER_AREA``).

    Returns:
        The model-sized frames (same dtype and channel count) and the ``Fit`` that ``unfit_frames`` inverts.
    """
    import cv2  # imported here so model code on a GPU host without OpenCV can use the rest of this module

    plate_height, plate_width = frames.shape[1:3]
    choose = min if mode == "letterbox" else max
    scale = choose(model_width / plate_width, model_height / plate_height)
    width, height = max(1, round(plate_width * scale)), max(1, round(plate_height * scale))
    x, y = (model_width - width) // 2, (model_height - height) // 2
    fit = Fit(mode, plate_width, plate_height, x, y, width, height)
    out = np.zeros((len(frames), model_height, model_width, *frames.shape[3:]), frames.dtype)
    src_y0, src_x0 = max(-y, 0), max(-x, 0)
    dst_y0, dst_x0 = max(y, 0), max(x, 0)
    rows, cols = min(height - src_y0, model_height - dst_y0), min(width - src_x0, model_width - dst_x0)
    for index, frame in enumerate(frames):
        scaled = cv2.resize(frame, (width, height), interpolation=interpolation)
        out[index, dst_y0 : dst_y0 + rows, dst_x0 : dst_x0 + cols] = scaled[
            src_y0 : src_y0 + rows, src_x0 : src_x0 + cols
        ]
    return out, fit


def unfit_frames(frames: np.ndarray, fit: Fit, *, interpolation: int = 2) -> np.ndarray:
    """Invert ``fit_frames``: take the plate's image out of model frames and scale it back to plate size
    (``interpolation`` 2 = ``cv2.INTER_CUBIC``).

    Where ``crop`` cut the plate's edges, the result holds zeros (the compositor keeps the plate there only if the
    mask does not reach them; ``void_ops.void.backend`` refuses masks that do).
    """
    import cv2

    height, width = frames.shape[1:3]
    canvas = np.zeros((len(frames), fit.height, fit.width, *frames.shape[3:]), frames.dtype)
    src_y0, src_x0 = max(fit.y, 0), max(fit.x, 0)
    dst_y0, dst_x0 = max(-fit.y, 0), max(-fit.x, 0)
    rows, cols = min(fit.height - dst_y0, height - src_y0), min(fit.width - dst_x0, width - src_x0)
    canvas[:, dst_y0 : dst_y0 + rows, dst_x0 : dst_x0 + cols] = frames[
        :, src_y0 : src_y0 + rows, src_x0 : src_x0 + cols
    ]
    size = (fit.plate_width, fit.plate_height)
    return np.stack([cv2.resize(frame, size, interpolation=interpolation) for frame in canvas])


def condition_from_quadmask(quadmask: np.ndarray) -> np.ndarray:
    """Return the reference's loaded mask: quantise by ranges, invert (255 - v), divide by 255.

    | file value | class | result |
    |---|---|---|
    | 0 | remove | 1.0 |
    | 63 | overlap | 0.7529 |
    | 127 | affected | 0.5020 |
    | 255 | keep | 0.0 |
    """
    return (255 - quantise(quadmask).astype(np.float32)) / 255.0


def pass1_condition(condition: np.ndarray) -> np.ndarray:
    """Pass 1 thresholds (trimask): > 0.75 → 1.0; [0.25, 0.75] → 127/255; < 0.25 → 0. Overlap merges with remove."""
    out = np.zeros_like(condition, dtype=np.float32)
    out[(condition >= 0.25) & (condition <= 0.75)] = 127 / 255
    out[condition > 0.75] = 1.0
    return out


def pass2_condition(condition: np.ndarray, mode: MaskMode = "binary") -> np.ndarray:
    """Pass 2 thresholds: ``binary`` (the released script) > 0.5 → 1 else 0, so remove, overlap and affected
    all become 1; ``trimask`` uses pass 1's thresholds (what pass 2 was trained with)."""
    if mode == "trimask":
        return pass1_condition(condition)
    return (condition > 0.5).astype(np.float32)


def vae_mask_input(condition: np.ndarray) -> np.ndarray:
    """Return what the VAE encodes for the mask channels: ``1 - condition`` tiled to 3 channels, in [0, 1]
    (no remap to [-1, 1]): (T, H, W) → (3, T, H, W) float32, keep white and remove black."""
    inverted = 1.0 - condition.astype(np.float32)
    return np.repeat(inverted[None], 3, axis=0)


def window_spans(latent_length: int, *, window: int = 22, overlap: int = 4) -> list[tuple[int, int]]:
    """Return the multidiffusion windows [start, stop) over ``latent_length`` latent frames.

    One window when the clip fits; otherwise windows of ``window`` frames, each starting ``overlap`` frames before
    the previous one ends, the last cut at the clip's end. Examples (window 22, overlap 4): 22 → [(0, 22)];
    32 → [(0, 22), (18, 32)]; 42 → [(0, 22), (18, 40), (36, 42)]; 50 → [(0, 22), (18, 40), (36, 50)].

    Raises:
        InvalidInput: ``overlap`` is not smaller than ``window``, or a length is not positive.
    """
    if latent_length < 1 or window < 1 or not 0 <= overlap < window:
        raise InvalidInput(
            f"need latent_length >= 1 and 0 <= overlap < window, got {latent_length}, {overlap}, {window}"
        )
    spans, start = [], 0
    while True:
        stop = min(start + window, latent_length)
        spans.append((start, stop))
        if stop == latent_length:
            return spans
        start = stop - overlap


def window_weights(start: int, stop: int, latent_length: int, *, overlap: int = 4) -> np.ndarray:
    """Return a window's blend weights, (stop - start,) float32: ones, ramping up over the first ``overlap`` frames
    unless the window starts the clip (0.2, 0.4, 0.6, 0.8 for overlap 4) and down over the last ``overlap`` frames
    unless it ends the clip; in every overlap the two windows' weights sum to 1."""
    weights = np.ones(stop - start, np.float32)
    ramp = np.linspace(0, 1, overlap + 2, dtype=np.float32)[1:-1]
    if start > 0:
        weights[:overlap] = ramp
    if stop < latent_length:
        weights[-overlap:] = ramp[::-1]
    return weights


#: The usual CogVideoX-Fun negative prompt (unused while guidance is 1.0).
_FUN_NEGATIVE = (
    "The video is not of a high quality, it has a low resolution. Watermark present in each frame. The background "
    "is solid. Strange body and strange trajectory. Distortion. "
)


@dataclass(frozen=True, slots=True)
class PassSettings:
    """One pass's sampling recipe; every field is recorded in provenance.

    Attributes:
        name: ``pass1`` or ``pass2``.
        steps: denoising steps actually run.
        guidance: classifier-free guidance scale; 1.0 runs one forward per step and no negative prompt.
        mask_mode: ``trimask`` (pass 1) or ``binary`` (the released pass 2) thresholds.
        scheduler: ``ddim`` (diffusers DDIMScheduler) or ``cogvideox_ddim`` (CogVideoXDDIMScheduler).
        negative_prompt: used only when ``guidance`` > 1.
        window: latent frames per multidiffusion window (85 pixel frames).
        overlap: latent frames two windows share (16 pixel frames).
        noise_aug_strength: sigma of the noise added to the conditioning video when the transformer config asks.
    """

    name: str
    steps: int
    guidance: float
    mask_mode: MaskMode
    scheduler: Literal["ddim", "cogvideox_ddim"]
    negative_prompt: str
    window: int = 22
    overlap: int = 4
    noise_aug_strength: float = 0.0563

    def as_dict(self) -> dict[str, object]:
        """Return the recipe for provenance."""
        return {name: getattr(self, name) for name in self.__slots__}


PASS1 = PassSettings(
    "pass1", steps=30, guidance=1.0, mask_mode="trimask", scheduler="ddim", negative_prompt=_FUN_NEGATIVE
)
PASS2 = PassSettings(
    "pass2", steps=50, guidance=6.0, mask_mode="binary", scheduler="cogvideox_ddim", negative_prompt=""
)
