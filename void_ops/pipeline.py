"""The per-shot stages as plain functions, file in and file out: mask, pass 1 (inpaint), deliver.

Each stage reads what the previous one wrote, so a stage can be rerun alone. Intermediates are lossless (FFV1);
deliveries are ProRes 422 HQ movies (lossy: pixels outside the matte match the plate within codec precision) or
PNG / EXR sequences numbered from 1001 (lossless: pixels outside the matte are bit-identical to the plate).

Where a shot's files go, under the batch output folder ``out``::

    out/shots/<shot>/work/quadmask-<run>.mkv            mask stage (lossless FFV1, values 0/63/127/255)
    out/shots/<shot>/work/fill-<run>.mkv                pass 1 (lossless FFV1 of the backend's full frames)
    out/shots/<shot>/<v###>/<shot>_voidclean_<v###>.mov   delivery (or a folder of the same name holding a sequence)
    out/shots/<shot>/<v###>/matte/<shot>_voidclean_<v###>_matte.%04d.png   the alpha used, numbered like the delivery
    out/shots/<shot>/<v###>/contact_sheet.png, overlay.png
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np
import opentimelineio as otio

from void_ops import media, report
from void_ops.composite import Blend, changed_outside, composite
from void_ops.exceptions import ConformError, InvalidInput, StorageUnavailable
from void_ops.masking.masker import MaskOutput
from void_ops.quadmask import check_quadmask
from void_ops.shots import Delivery, MediaSource, Shot, rate_fraction

__all__ = [
    "DELIVER_VERSION",
    "FIRST_FRAME_NUMBER",
    "WINDOW_OVERLAP",
    "Inpainter",
    "Masker",
    "OutputFormat",
    "QcReport",
    "Refiner",
    "StageFile",
    "deliver",
    "frame_windows",
    "inpaint",
    "make_mask",
    "plate_frames",
    "refine",
    "shot_dir",
    "windowed",
]

FIRST_FRAME_NUMBER = 1001
#: Version of the deliver stage's output (composite, encode, matte); bump when its pixels or files change.
DELIVER_VERSION = "1"
OutputFormat = Literal["prores", "png", "exr"]


class Masker(Protocol):
    """Makes a shot's quadmask: ``void_ops.mattes.MatteMasker`` (roto), ``void_ops.masking.SegmentMasker``
    (SAM2, with or without the VLM)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def params(self, shot: Shot) -> dict[str, object]: ...

    def __call__(self, shot: Shot, plate: np.ndarray) -> MaskOutput: ...


class Inpainter(Protocol):
    """Fills a shot's masked pixels: takes plate frames and a quadmask, returns full frames of the same shape."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def params(self) -> dict[str, object]: ...

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]:
        """What the backend will do to a shot of this size (padding, fit, windows), for provenance."""
        ...

    def __call__(self, frames: np.ndarray, quadmask: np.ndarray, *, seed: int, prompt: str) -> np.ndarray: ...


class Refiner(Protocol):
    """Refines pass 1's fill (VOID pass 2): takes plate frames, the quadmask and pass 1's fill."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def params(self) -> dict[str, object]: ...

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]: ...

    def __call__(
        self, frames: np.ndarray, quadmask: np.ndarray, first_pass: np.ndarray, *, seed: int, prompt: str
    ) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class StageFile:
    """A file a stage wrote, with what provenance needs to know about it."""

    kind: str
    path: Path
    sha256: str
    bytes: int
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class QcReport:
    """Checks of one delivered version.

    Attributes:
        changed_outside: pixels that differ from the plate where the blend alpha is 0 (must be 0).
        flicker: mean absolute frame-to-frame change inside the blend region minus the plate's own change just
            outside it, as a fraction of full scale (near 0 when the fill is as steady as its surroundings).
        frames: frames delivered; ``expected_frames`` is the plate range's count.
        fps: frame rate of the delivered media.
        max_flicker: the flicker above which the version fails QC.
    """

    changed_outside: int
    flicker: float
    frames: int
    expected_frames: int
    fps: float
    expected_fps: float
    max_flicker: float = 0.02

    @property
    def passed(self) -> bool:
        """True when nothing changed outside the matte, frame count and rate match the plate, and the fill does not
        flicker more than ``max_flicker`` (a fraction of full scale per frame) beyond its surroundings."""
        return (
            self.changed_outside == 0
            and self.frames == self.expected_frames
            and self.fps == self.expected_fps
            and self.flicker <= self.max_flicker
        )

    def summary(self) -> str:
        """Return a one-line description for reports."""
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{verdict}: {self.changed_outside} px changed outside the matte, flicker {self.flicker:+.4f}, "
            f"{self.frames}/{self.expected_frames} frames at {self.fps:g} fps"
        )


def shot_dir(out_dir: Path, shot: Shot) -> Path:
    """Return the folder holding everything voidflow writes for ``shot`` under ``out_dir``."""
    return out_dir / "shots" / shot.name


def plate_frames(shot: Shot) -> np.ndarray:
    """Decode the shot's plate range, handles included: (T, H, W, 3), T = ``shot.frames``.

    Raises:
        InvalidInput: the shot has no media.
        MediaInvalid: the media is missing, corrupt or shorter than the range.
    """
    if shot.media is None:
        raise InvalidInput(f"shot '{shot.name}': no media to read")
    return media.read_frames(shot.media, shot.media.index_of(shot.first), shot.frames)


def _file(kind: str, path: Path, frames: np.ndarray, rate: float | None = None) -> StageFile:
    return StageFile(
        kind, path, media.sha256_file(path), path.stat().st_size, len(frames), rate, frames.shape[2], frames.shape[1]
    )


def make_mask(shot: Shot, masker: Masker, work: Path, run: str) -> tuple[StageFile, MaskOutput, list[StageFile]]:
    """Mask stage: make the shot's quadmask, store it losslessly as ``work/quadmask-<run>.mkv``, and write what a
    reviewer looks at before any GPU time is spent: ``overlay-<run>.png`` (tinted cut frames) and
    ``preview-<run>.mp4`` (the tinted shot as a small H.264 movie).

    Returns:
        The quadmask file, the masker's output (prompt, VLM exchanges, notes), and the review pictures.

    Raises:
        MatteInvalid, MediaInvalid: the masker's or the plate's input is unusable.
    """
    plate = plate_frames(shot)
    output = masker(shot, plate)
    check_quadmask(output.quadmask, *plate.shape[:3], shot=shot.name)
    path = work / f"quadmask-{run}.mkv"
    work.mkdir(parents=True, exist_ok=True)
    media.write_mask(output.quadmask, path)
    cut = (shot.handles[0], shot.handles[0] + shot.duration - 1)
    overlay = report.mask_overlay(plate, output.quadmask, work / f"overlay-{run}.png", cut=cut)
    preview = report.mask_preview(plate, output.quadmask, work / f"preview-{run}.mp4", rate_fraction(shot.rate))
    reviews = [
        StageFile("overlay", overlay, media.sha256_file(overlay), overlay.stat().st_size),
        StageFile("preview", preview, media.sha256_file(preview), preview.stat().st_size, len(plate), shot.rate),
    ]
    return _file("quadmask", path, output.quadmask), output, reviews


def _store_fill(shot: Shot, fill: np.ndarray, plate: np.ndarray, work: Path, stem: str, label: str) -> StageFile:
    if fill.shape != plate.shape or fill.dtype != plate.dtype:
        raise InvalidInput(
            f"shot '{shot.name}': {label} returned {fill.dtype}{fill.shape}, "
            f"expected the plate's {plate.dtype}{plate.shape}"
        )
    work.mkdir(parents=True, exist_ok=True)
    if fill.dtype.kind == "f":  # float plates (EXR) keep full precision in a float EXR sequence
        stored = media.write_sequence(fill, work / stem / "fill.%06d.exr", rate_fraction(shot.rate), fmt="exr")
        return _media_file("fill", stored, fill, shot.rate)
    path = work / f"{stem}.mkv"
    media.write_movie(fill, path, rate_fraction(shot.rate), codec="ffv1")
    return _file("fill", path, fill, shot.rate)


#: Frames two neighbouring windows share when a shot is longer than a backend takes at once (cross-faded).
WINDOW_OVERLAP = 16


def frame_windows(frames: int, longest: int | None, overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """Split ``frames`` into windows [start, stop) of at most ``longest`` frames sharing ``overlap`` frames.

    One window when the shot fits (or ``longest`` is None); otherwise as few full-length windows as share at least
    ``overlap`` frames, spread evenly from the first frame to the last. Example: ``frame_windows(300, 197)`` →
    [(0, 197), (103, 300)]; ``frame_windows(44, 29)`` → [(0, 29), (8, 37), (15, 44)].

    Raises:
        InvalidInput: ``overlap`` does not leave room for progress (``longest <= overlap``).
    """
    if longest is None or frames <= longest:
        return [(0, frames)]
    if longest <= overlap:
        raise InvalidInput(f"a window of {longest} frames cannot overlap its neighbour by {overlap}")
    count = -(-(frames - overlap) // (longest - overlap))  # ceil: windows needed for at least `overlap` shared
    starts = [round(index * (frames - longest) / (count - 1)) for index in range(count)]
    return [(start, start + longest) for start in starts]


def windowed(frames: int, longest: int | None, run: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Run ``run(start, stop)`` over ``frame_windows`` and cross-fade the results where windows overlap.

    ``run`` returns (stop - start, H, W, 3) frames; the blend weights ramp linearly across each shared stretch
    and sum to one, and each result keeps its dtype (integers are rounded).
    """
    spans = frame_windows(frames, longest)
    if len(spans) == 1:
        return run(0, frames)
    total: np.ndarray | None = None
    weights = np.zeros(frames, np.float32)
    dtype: Any = None
    for index, (start, stop) in enumerate(spans):
        part = run(start, stop)
        dtype = part.dtype
        weight = np.ones(stop - start, np.float32)
        if index > 0:  # fade in across what this window shares with the previous one
            shared = spans[index - 1][1] - start
            weight[:shared] = np.minimum(weight[:shared], np.linspace(0, 1, shared + 2, dtype=np.float32)[1:-1])
        if index < len(spans) - 1:  # fade out across what it shares with the next one
            shared = stop - spans[index + 1][0]
            ramp = np.linspace(1, 0, shared + 2, dtype=np.float32)[1:-1]
            weight[-shared:] = np.minimum(weight[-shared:], ramp)
        if total is None:
            total = np.zeros((frames, *part.shape[1:]), np.float32)
        total[start:stop] += part.astype(np.float32) * weight[:, None, None, None]
        weights[start:stop] += weight
    assert total is not None
    blended = total / weights[:, None, None, None]
    return np.rint(blended).astype(dtype) if np.issubdtype(dtype, np.integer) else blended.astype(dtype)


def inpaint(
    shot: Shot, backend: Inpainter, quadmask_path: Path, work: Path, run: str, *, seed: int, prompt: str
) -> StageFile:
    """Pass 1: run the backend over the shot (in cross-faded windows when it is longer than the backend takes)
    and store its full frames losslessly as ``work/fill-<run>.mkv``. ``prompt`` is the background prompt."""
    plate = plate_frames(shot)
    quadmask = media.read_mask(quadmask_path)
    check_quadmask(quadmask, *plate.shape[:3], shot=shot.name)
    fill = windowed(
        len(plate),
        getattr(backend, "max_frames", None),
        lambda a, b: backend(plate[a:b], quadmask[a:b], seed=seed, prompt=prompt),
    )
    return _store_fill(shot, fill, plate, work, f"fill-{run}", f"backend '{backend.name}'")


def refine(
    shot: Shot, refiner: Refiner, quadmask_path: Path, fill_path: Path, work: Path, run: str, *, seed: int, prompt: str
) -> StageFile:
    """Pass 2: refine pass 1's fill and store the result losslessly as ``work/refined-<run>.mkv``."""
    plate = plate_frames(shot)
    quadmask = media.read_mask(quadmask_path)
    check_quadmask(quadmask, *plate.shape[:3], shot=shot.name)
    first = media.read_frames(_fill_source(fill_path, shot.rate), 0, shot.frames).astype(plate.dtype)
    refined = windowed(
        len(plate),
        getattr(refiner, "max_frames", None),
        lambda a, b: refiner(plate[a:b], quadmask[a:b], first[a:b], seed=seed, prompt=prompt),
    )
    return _store_fill(shot, refined, plate, work, f"refined-{run}", f"refiner '{refiner.name}'")


def _fill_source(path: Path, rate: float) -> MediaSource:
    if path.suffix == ".mkv":
        return MediaSource(str(path), "movie", rate)
    return MediaSource(str(path), "sequence", rate, first_number=FIRST_FRAME_NUMBER)


def _as_dtype(frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Bring decoded frames back to the plate's dtype (float frames are full scale in [0, 1])."""
    if frames.dtype == dtype:
        return frames
    if dtype.kind == "f":
        return frames.astype(np.float32) / np.iinfo(frames.dtype).max
    peak = np.iinfo(dtype).max
    if frames.dtype.kind == "f":
        return np.clip(np.rint(frames * peak), 0, peak).astype(dtype)
    return np.rint(frames.astype(np.float64) * peak / np.iinfo(frames.dtype).max).astype(dtype)


def _flicker(plate: np.ndarray, result: np.ndarray, alpha: np.ndarray, *, ring: int = 16) -> float:
    """Temporal flicker of the fill: mean frame-to-frame change inside the blend region minus the plate's own
    change in a ``ring``-pixel band just outside it (grain, light), as a fraction of full scale.

    Near 0 when the fill is as steady as its surroundings; positive when it flickers; negative when it is steadier
    (a still clean plate where the plate had grain).
    """
    if len(plate) < 2:
        return 0.0
    scale = 1.0 if plate.dtype.kind == "f" else float(np.iinfo(plate.dtype).max)
    region = alpha > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    band = np.stack([cv2.dilate(frame.astype(np.uint8), kernel).astype(bool) for frame in region]) & ~region
    inside, around = region[1:] | region[:-1], band[1:] & band[:-1]
    if not inside.any():
        return 0.0
    steps = np.abs(np.diff(result.astype(np.float32), axis=0)).mean(axis=-1)
    plate_steps = np.abs(np.diff(plate.astype(np.float32), axis=0)).mean(axis=-1)
    baseline = float(plate_steps[around].mean()) if around.any() else 0.0
    return (float(steps[inside].mean()) - baseline) / scale


def _timecode(shot: Shot, plate: MediaSource) -> str | None:
    if plate.kind != "movie":
        return None
    info = media.probe(plate)
    drop = bool(info.timecode and ";" in info.timecode)
    return str(otio.opentime.to_timecode(otio.opentime.RationalTime(shot.first, shot.rate), shot.rate, drop))


def deliver(
    shot: Shot,
    fill_path: Path,
    quadmask_path: Path,
    shot_folder: Path,
    *,
    version: str,
    blend: Blend,
    output: OutputFormat = "prores",
) -> tuple[Delivery, QcReport, list[StageFile]]:
    """Deliver stage: composite the fill into the plate inside the grown, feathered mask and write the version.

    Args:
        shot: the shot.
        fill_path: pass 1's lossless fill.
        quadmask_path: the mask stage's quadmask.
        shot_folder: ``shot_dir(out, shot)``; the version folder ``<shot_folder>/<version>`` must not exist.
        version: ``v001`` and up.
        blend: grow and feather of the matte.
        output: ``prores`` (a ``.mov``), ``png`` or ``exr`` (sequences numbered from 1001).

    Returns:
        The delivery (its media starts at the plate range's first media time, so the clip's ``source_range``
        indexes it unchanged), its QC, and every file written.

    Raises:
        StorageUnavailable: the version folder exists or cannot be written.
        ConformError: the written media does not have the plate range's frame count, rate or size.
    """
    plate = plate_frames(shot)
    quadmask = media.read_mask(quadmask_path)
    fill = media.read_frames(_fill_source(fill_path, shot.rate), 0, shot.frames)
    check_quadmask(quadmask, *plate.shape[:3], shot=shot.name)
    alpha = blend.alpha(quadmask)
    result = composite(plate, fill.astype(plate.dtype), alpha)
    folder = shot_folder / version
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise StorageUnavailable(f"{folder}: version folder exists; versions are never overwritten") from None
    except OSError as error:
        raise StorageUnavailable(f"{folder}: cannot create the version folder ({error.strerror})") from None
    stem = f"{shot.name}_voidclean_{version}"
    rate = rate_fraction(shot.rate)
    assert shot.media is not None  # plate_frames checked it
    if output == "prores":
        written = media.write_movie(result, folder / f"{stem}.mov", rate, timecode=_timecode(shot, shot.media))
    else:
        pattern = folder / stem / f"{stem}.%04d.{output}"
        written = media.write_sequence(result, pattern, rate, first_number=FIRST_FRAME_NUMBER, fmt=output)
    matte_frames = np.rint(alpha * 255).astype(np.uint8)
    matte_pattern = folder / "matte" / f"{stem}_matte.%04d.png"
    matte = media.write_sequence(
        np.repeat(matte_frames[..., None], 3, axis=-1), matte_pattern, rate, first_number=FIRST_FRAME_NUMBER
    )
    delivered = dataclasses.replace(written, start=shot.first)
    info = media.probe(delivered)
    # Lossless deliveries are checked as written; ProRes is lossy, so its frames are checked before encoding.
    check = result if output == "prores" else _as_dtype(media.read_frames(delivered, 0, shot.frames), plate.dtype)
    qc = QcReport(
        changed_outside=changed_outside(plate, check, alpha),
        flicker=_flicker(plate, result, alpha),
        frames=info.frames,
        expected_frames=shot.frames,
        fps=float(info.rate),
        expected_fps=float(rate),
    )
    if (info.frames, info.rate, info.width, info.height) != (shot.frames, Fraction(rate), *plate.shape[2:0:-1]):
        raise ConformError(
            f"shot '{shot.name}': delivered {info.width}x{info.height}, {info.frames} frames at {info.rate} fps; "
            f"the plate range is {plate.shape[2]}x{plate.shape[1]}, {shot.frames} frames at {rate} fps"
        )
    cut = (shot.handles[0], shot.handles[0] + shot.duration - 1)
    sheet = report.contact_sheet(plate, result, quadmask, folder / "contact_sheet.png", cut=cut)
    overlay = report.mask_overlay(plate, quadmask, folder / "overlay.png", cut=cut)
    files = [
        _media_file("delivery", delivered, result, shot.rate),
        _media_file("matte", matte, matte_frames[..., None], shot.rate),
        StageFile("contact_sheet", sheet, media.sha256_file(sheet), sheet.stat().st_size),
        StageFile("overlay", overlay, media.sha256_file(overlay), overlay.stat().st_size),
    ]
    delivery = Delivery(
        shot.name,
        version,
        delivered,
        dataclasses.replace(matte, start=shot.first),
        plate.shape[2],
        plate.shape[1],
    )
    return delivery, qc, files


def _media_file(kind: str, source: MediaSource, frames: np.ndarray, rate: float) -> StageFile:
    path = Path(source.path)
    if source.kind == "movie":
        return StageFile(
            kind,
            path,
            media.sha256_file(path),
            path.stat().st_size,
            len(frames),
            rate,
            frames.shape[2],
            frames.shape[1],
        )
    size = sum(source.file_for_index(i).stat().st_size for i in range(len(frames)))
    return StageFile(kind, path, media.sha256_source(source), size, len(frames), rate, frames.shape[2], frames.shape[1])
