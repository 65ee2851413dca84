"""The per-shot stages as plain functions, file in and file out: mask, inpaint (pass 1, and pass 2), deliver.

Each stage reads what the previous one wrote, so a stage can be rerun alone. Intermediates are lossless (FFV1);
deliveries are ProRes 422 HQ movies (lossy: pixels outside the matte match the plate within codec precision) or
PNG / EXR sequences numbered from 1001 (lossless: pixels outside the matte are bit-identical to the plate).

Where a shot's files go, under the batch output folder ``out``::

    out/shots/<shot>/work/quadmask-<run>.mkv            mask stage (lossless FFV1, values 0/63/127/255)
    out/shots/<shot>/work/overlay-<run>.png, preview-<run>.mp4, plate-<run>.mp4   the mask's review pictures
    out/shots/<shot>/work/fill-<run>.mkv                pass 1 (lossless FFV1 of the backend's full frames)
    out/shots/<shot>/work/refined-<run>.mkv             pass 2 (the same, refined from pass 1's fill)
    out/shots/<shot>/<v###>/<shot>_voidclean_<v###>.mov   delivery (or a folder of the same name holding a sequence)
    out/shots/<shot>/<v###>/matte/<shot>_voidclean_<v###>_matte.%04d.png   the alpha used, numbered like the delivery
    out/shots/<shot>/<v###>/contact_sheet.png, overlay.png, review.mp4

The ``.mp4`` files are review movies (``report.review_movie``): small H.264 a browser plays instead of the plate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args

import cv2
import numpy as np

from voidflow.void_ops import media, report
from voidflow.void_ops.colour import ColourTags
from voidflow.void_ops.composite import Blend, changed_outside, composite
from voidflow.void_ops.exceptions import ConformError, InvalidInput, StorageUnavailable
from voidflow.void_ops.frames import from_unit, to_unit
from voidflow.void_ops.masking.masker import MaskOutput
from voidflow.void_ops.media import ExrCompression
from voidflow.void_ops.plates import PlateView
from voidflow.void_ops.quadmask import check_quadmask
from voidflow.void_ops.shots import Delivery, MediaSource, Shot, rate_fraction
from voidflow.void_ops.windows import windowed

__all__ = [
    "BACKENDS",
    "DELIVER_VERSION",
    "FIRST_FRAME_NUMBER",
    "MOVIE_QC_MARGIN",
    "MOVIE_TOLERANCE",
    "OUTPUT_FORMATS",
    "QC_WINDOW",
    "Backend",
    "DeliverySpec",
    "Inpainter",
    "Masker",
    "OutputFormat",
    "QcReport",
    "StageFile",
    "deliver",
    "delivery_encoding",
    "inpaint",
    "make_mask",
    "model_width",
    "plate_frames",
    "shot_dir",
]

FIRST_FRAME_NUMBER = 1001
#: The inpainting backends a batch can name (built in ``tasks.backends``): ``cleanplate`` (CPU temporal median),
#: ``void`` (VOID pass 1, optionally pass 2, on GPU workers), ``passthrough`` (no pixel work: a dry run).
Backend = Literal["cleanplate", "void", "passthrough"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
#: Version of the deliver stage's output (composite, encode, matte); bump when its pixels or files change.
#: 3: the version folder holds ``review.mp4``.
DELIVER_VERSION = "3"
OutputFormat = Literal["prores", "prores_4444", "prores_4444xq", "dnxhr_hqx", "png", "exr", "dpx", "tiff"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
#: Codec precision outside the matte for movie deliveries, as fractions of full scale: the written file decoded the
#: way an NLE decodes it (the plate's matrix, accurate chroma), against what the codec's pixel format holds of the
#: frames handed to it (``media.codec_reference``), in 8-bit values: (the difference 99.9% of samples stay within,
#: the mean difference).
#: Measured at least ``MOVIE_QC_MARGIN`` pixels clear of the grown matte: a DCT codec spreads a change across its
#: 8x8 block and 4:2:2 chroma across neighbouring columns, so the pixels right beside the fill move with it.
MOVIE_QC_MARGIN = 8
#: Frames QC reads back and compares at a time (and flicker measures): its temporaries stay this many frames large.
QC_WINDOW = 8
MOVIE_TOLERANCE = {
    "prores": (4 / 255, 0.5 / 255),
    "dnxhr_hqx": (4 / 255, 0.5 / 255),
    "prores_4444": (2 / 255, 0.25 / 255),
    "prores_4444xq": (2 / 255, 0.25 / 255),
}


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
    """Fills a shot's masked pixels: plate frames and a quadmask in, full frames of the same shape out.

    One concept for both passes: pass 1 fills from the plate alone (``first_pass`` None); VOID's pass 2 refines
    pass 1's fill, handed in as ``first_pass``. Backends with a single pass refuse a ``first_pass``.
    Implemented by ``void_ops.cleanplate.CleanPlate``, ``void_ops.passthrough.Passthrough`` and
    ``void_ops.void.backend.VoidPass``.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def max_frames(self) -> int | None:
        """Longest run of frames one call takes; longer shots run in cross-faded windows (``windowed``).
        None: no limit, every shot in one call."""
        ...

    @property
    def min_frames(self) -> int:
        """Shortest run a call costs (a shorter one is padded up to it; VOID: 85): a shot's last window is never
        shorter. 1: no floor."""
        ...

    def params(self) -> dict[str, object]: ...

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]:
        """What the backend will do to a shot of this size (padding, fit, windows), for provenance."""
        ...

    def __call__(
        self, frames: np.ndarray, quadmask: np.ndarray, *, seed: int, prompt: str, first_pass: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the fill: full frames, equal in shape and dtype to ``frames``.

        Args:
            frames: (T, H, W, 3) uint8, uint16 or float32 plate frames, as the model view shows them.
            quadmask: (T, H, W) uint8 quadmask (0 remove, 63 overlap, 127 affected, 255 keep).
            seed: the shot's seed (deterministic backends ignore it).
            prompt: the background prompt, the scene after removal (backends without a text model ignore it).
            first_pass: pass 2 only: pass 1's fill, shaped like ``frames``; None for pass 1.
        """
        ...


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
class DeliverySpec:
    """What a delivery is written as.

    Attributes:
        output: the format (``OUTPUT_FORMATS``): ProRes 422 HQ / 4444 / 4444 XQ or DNxHR HQX movies, or PNG, EXR,
            DPX (10-bit) or TIFF sequences.
        first_frame: file number of a sequence's first frame (the show's convention; 1001 is common).
        exr_compression: EXR compression: ``piz`` (lossless), ``zip``, ``dwaa`` (lossy) ...
        exr_matte: ``"layer"`` writes the blend alpha into the EXR as the channel ``matte.A``; ``"none"`` does not
            (the PNG matte sequence beside the delivery is always written).
    """

    output: OutputFormat = "prores"
    first_frame: int = FIRST_FRAME_NUMBER
    exr_compression: ExrCompression = "piz"
    exr_matte: Literal["layer", "none"] = "layer"

    @property
    def is_movie(self) -> bool:
        """True for movie formats (lossy, checked within ``MOVIE_TOLERANCE``)."""
        return self.output in MOVIE_TOLERANCE


@dataclass(frozen=True, slots=True)
class QcReport:
    """Checks of one delivered version, made on the written files.

    Attributes:
        changed_outside: pixels that differ from the plate where the blend alpha is 0 (must be 0); for lossless
            formats counted on the file as read back, for movies on the frames handed to the encoder.
        flicker: mean absolute frame-to-frame change inside the blend region minus the plate's own change just
            outside it, as a fraction of full scale (near 0 when the fill is as steady as its surroundings).
        frames: frames delivered; ``expected_frames`` is the plate range's count.
        fps: frame rate of the delivered media.
        max_flicker: the flicker above which the version fails QC.
        codec_max: movies: the largest difference outside the matte between the written file, decoded as an NLE
            decodes it, and what the codec's pixel format can hold of the frames handed to it
            (``media.codec_reference``: matrix, range and 4:2:2 chroma applied, no compression), as a fraction of
            full scale in 8-bit steps; 0 for lossless formats. Recorded; a lone sample of DCT quantisation on heavy
            grain may pass the limit by a step without anything being wrong.
        codec_p999: movies: the difference 99.9% of samples stay within; this is what ``tolerance_max`` gates (a
            wrong matrix, range or scaler moves far more than 0.1% of samples).
        codec_mean: movies: the mean of that difference.
        tolerance_max: the most ``codec_p999`` may be (``MOVIE_TOLERANCE``); 0 for lossless formats.
        tolerance_mean: the most ``codec_mean`` may be.
        header: problems found in the written file's header (colour tags, timecode), empty when it is right.
    """

    changed_outside: int
    flicker: float
    frames: int
    expected_frames: int
    fps: float
    expected_fps: float
    max_flicker: float = 0.02
    codec_max: float = 0.0
    codec_p999: float = 0.0
    codec_mean: float = 0.0
    tolerance_max: float = 0.0
    tolerance_mean: float = 0.0
    header: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, qc: Mapping[str, Any]) -> QcReport:
        """The report as a deliver run's provenance recorded it (JSON: ``header`` a list, ``passed`` beside it).

        Raises:
            TypeError: the record lacks a field this report needs (recorded by an older QC).
        """
        fields = {f.name: qc[f.name] for f in dataclasses.fields(cls) if f.name in qc}
        return cls(**{**fields, "header": tuple(qc.get("header", ()))})

    @property
    def failures(self) -> tuple[str, ...]:
        """What failed, one short phrase per check with its measure and limit; empty when the version passes."""
        checks = (
            (self.changed_outside != 0, f"{self.changed_outside} px changed outside the matte"),
            (
                self.codec_p999 > self.tolerance_max,
                f"codec p99.9 {self.codec_p999 * 255:.0f}/255 over {self.tolerance_max * 255:g}",
            ),
            (
                self.codec_mean > self.tolerance_mean,
                f"codec mean {self.codec_mean * 255:.3f}/255 over {self.tolerance_mean * 255:g}",
            ),
            (bool(self.header), "header wrong"),
            (self.frames != self.expected_frames, f"{self.frames} frames, the plate has {self.expected_frames}"),
            (self.fps != self.expected_fps, f"{self.fps:g} fps, the plate is {self.expected_fps:g}"),
            (self.flicker > self.max_flicker, f"flicker {self.flicker:+.4f} over {self.max_flicker:g}"),
        )
        return tuple(phrase for failed, phrase in checks if failed)

    @property
    def passed(self) -> bool:
        """True when nothing changed outside the matte (within codec tolerance for movies), frame count, rate and
        header match the plate, and the fill does not flicker more than ``max_flicker`` beyond its surroundings."""
        return not self.failures

    def summary(self) -> str:
        """Return a one-line description for reports: the verdict (with what failed), then every measure."""
        failures = self.failures
        verdict = f"FAILED on {'; '.join(failures)}" if failures else "passed"
        codec = ""
        if self.tolerance_max:
            codec = (
                f", codec p99.9 {self.codec_p999 * 255:.0f}/255 mean {self.codec_mean * 255:.3f}/255 "
                f"(limits {self.tolerance_max * 255:g}, {self.tolerance_mean * 255:g}; max {self.codec_max * 255:.0f})"
            )
        header = f", header: {'; '.join(self.header)}" if self.header else ""
        return (
            f"{verdict} — {self.changed_outside} px changed outside the matte{codec}, flicker {self.flicker:+.4f} "
            f"(limit {self.max_flicker:g}), {self.frames}/{self.expected_frames} frames at {self.fps:g} fps{header}"
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
    gaps = shot.instructions.missing_frames
    return media.read_frames(shot.media, shot.media.index_of(shot.first), shot.frames, gaps=gaps)


def _file(kind: str, path: Path, frames: np.ndarray, rate: float | None = None) -> StageFile:
    return StageFile(
        kind, path, media.sha256_file(path), path.stat().st_size, len(frames), rate, frames.shape[2], frames.shape[1]
    )


def _review_file(kind: str, path: Path, frames: np.ndarray, rate: float) -> StageFile:
    """A review movie of ``frames`` as a stage file: its frame count, rate and (shrunk) size."""
    width, height = report.review_size(frames.shape[2], frames.shape[1])
    return StageFile(kind, path, media.sha256_file(path), path.stat().st_size, len(frames), rate, width, height)


def make_mask(
    shot: Shot, masker: Masker, work: Path, run: str, view: PlateView
) -> tuple[StageFile, MaskOutput, list[StageFile]]:
    """Mask stage: make the shot's quadmask, store it losslessly as ``work/quadmask-<run>.mkv``, and write what a
    reviewer looks at before any GPU time is spent: ``overlay-<run>.png`` (tinted cut frames, kind ``overlay``),
    ``preview-<run>.mp4`` (the shot with its quadmask tinted, kind ``preview``) and ``plate-<run>.mp4`` (the same
    pixels untinted, kind ``plate_proxy``). Both movies are review movies (``report.review_movie``) of every plate
    frame, handles included, and are recorded with their frame count, rate and size.

    The masker and the pictures see the plate through ``view`` (display-referred; scene-linear plates are not
    clipped but rolled off).

    Returns:
        The quadmask file, the masker's output (prompt, VLM exchanges, notes), and the review pictures.

    Raises:
        MatteInvalid, MediaInvalid: the masker's or the plate's input is unusable.
    """
    plate = view.to_model(plate_frames(shot))
    output = masker(shot, plate)
    check_quadmask(output.quadmask, *plate.shape[:3], shot=shot.name)
    path = work / f"quadmask-{run}.mkv"
    work.mkdir(parents=True, exist_ok=True)
    media.write_mask(output.quadmask, path)
    cut = (shot.handles[0], shot.handles[0] + shot.duration - 1)
    overlay = report.mask_overlay(plate, output.quadmask, work / f"overlay-{run}.png", cut=cut)
    rate, aspect = rate_fraction(shot.rate), view.info.pixel_aspect
    preview = report.review_movie(
        plate, work / f"preview-{run}.mp4", rate, quadmask=output.quadmask, pixel_aspect=aspect
    )
    proxy = report.review_movie(plate, work / f"plate-{run}.mp4", rate, pixel_aspect=aspect)
    reviews = [
        StageFile("overlay", overlay, media.sha256_file(overlay), overlay.stat().st_size),
        _review_file("preview", preview, plate, shot.rate),
        _review_file("plate_proxy", proxy, plate, shot.rate),
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


def inpaint(
    shot: Shot,
    backend: Inpainter,
    quadmask_path: Path,
    work: Path,
    run: str,
    view: PlateView,
    *,
    seed: int,
    prompt: str,
    first_pass: Path | None = None,
) -> StageFile:
    """Pass 1, or pass 2 when ``first_pass`` (pass 1's fill) is given: run the backend over the shot (in
    cross-faded windows when it is longer than the backend takes) and store its full frames losslessly as
    ``work/fill-<run>.mkv`` (pass 2: ``refined-<run>``). ``prompt`` is the background prompt.

    The backend sees the plate (and pass 1's fill) through ``view``, with square pixels (an anamorphic plate is
    desqueezed to ``width x pixel_aspect``); its output is brought back to the plate's geometry and colour space
    before it is stored, so the composite happens at plate geometry in the plate's own space.
    """
    plate = plate_frames(shot)
    quadmask = media.read_mask(quadmask_path)
    check_quadmask(quadmask, *plate.shape[:3], shot=shot.name)
    square = _square_width(plate.shape[2], view.info.pixel_aspect)  # anamorphic plates are desqueezed for the model
    seen = _resize_width(view.to_model(plate), square, cv2.INTER_CUBIC)
    quadmask = _resize_width(quadmask, square, cv2.INTER_NEAREST)
    first: np.ndarray | None = None
    if first_pass is None:
        label, stem = f"backend '{backend.name}'", f"fill-{run}"
    else:
        label, stem = f"refiner '{backend.name}'", f"refined-{run}"
        first = view.to_model(media.read_frames(_fill_source(first_pass, shot.rate), 0, shot.frames))
        first = _resize_width(first.astype(seen.dtype) if first.dtype != seen.dtype else first, square, cv2.INTER_CUBIC)

    def run_window(start: int, stop: int) -> np.ndarray:
        window = None if first is None else first[start:stop]
        return backend(seen[start:stop], quadmask[start:stop], seed=seed, prompt=prompt, first_pass=window)

    fill = windowed(len(plate), backend.max_frames, run_window, shortest=backend.min_frames)
    fill = _resize_width(fill, plate.shape[2], cv2.INTER_AREA)  # back to the plate's geometry (resqueezed)
    return _store_fill(shot, view.from_model(fill, plate), plate, work, stem, label)


def model_width(view: PlateView) -> int:
    """The width the backends see the plate at: square pixels (a 2x anamorphic plate twice as wide), even."""
    return _square_width(view.info.width, view.info.pixel_aspect)


def _square_width(width: int, pixel_aspect: Fraction) -> int:
    if pixel_aspect == 1:
        return width
    return max(2, round(width * pixel_aspect / 2) * 2)


def _resize_width(frames: np.ndarray, width: int, interpolation: int) -> np.ndarray:
    """(T, H, W, ...) frames or masks resized to ``width`` columns (unchanged when already that wide)."""
    if frames.shape[2] == width:
        return frames
    height = frames.shape[1]
    return np.stack([cv2.resize(frame, (width, height), interpolation=interpolation) for frame in frames])


def _fill_source(path: Path, rate: float) -> MediaSource:
    if path.suffix == ".mkv":
        return MediaSource(str(path), "movie", rate)
    return MediaSource(str(path), "sequence", rate, first_number=FIRST_FRAME_NUMBER)


def _as_dtype(frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Bring decoded frames back to the plate's dtype (float frames are full scale in [0, 1])."""
    if frames.dtype == dtype:
        return frames
    if dtype.kind == "f":
        unit: np.ndarray = frames.astype(np.float32) / np.iinfo(frames.dtype).max
        return unit
    peak = np.iinfo(dtype).max
    if frames.dtype.kind == "f":
        rounded: np.ndarray = np.clip(np.rint(frames * peak), 0, peak)
        return rounded.astype(dtype)
    return np.rint(frames.astype(np.float64) * peak / np.iinfo(frames.dtype).max).astype(dtype)


def _flicker(plate: np.ndarray, result: np.ndarray, alpha: np.ndarray, *, ring: int = 16) -> float:
    """Temporal flicker of the fill: mean frame-to-frame change inside the blend region minus the plate's own
    change in a ``ring``-pixel band just outside it (grain, light), as a fraction of full scale.

    Near 0 when the fill is as steady as its surroundings; positive when it flickers; negative when it is steadier
    (a still clean plate where the plate had grain). Counted in windows of ``QC_WINDOW`` frame pairs, so its
    float temporaries stay a window large whatever the shot's length.
    """
    if len(plate) < 2:
        return 0.0
    scale = 1.0 if plate.dtype.kind == "f" else float(np.iinfo(plate.dtype).max)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    inside_sum = around_sum = 0.0
    inside_count = around_count = 0
    for start in range(0, len(plate) - 1, QC_WINDOW):
        span = slice(start, min(start + QC_WINDOW + 1, len(plate)))  # the window's pairs share its last frame
        region = alpha[span] > 0
        band = np.stack([cv2.dilate(frame.astype(np.uint8), kernel).astype(bool) for frame in region]) & ~region
        inside, around = region[1:] | region[:-1], band[1:] & band[:-1]
        if inside.any():
            steps = np.abs(np.diff(result[span].astype(np.float32), axis=0)).mean(axis=-1)
            inside_sum += float(steps[inside].sum(dtype=np.float64))
            inside_count += int(inside.sum())
        if around.any():
            plate_steps = np.abs(np.diff(plate[span].astype(np.float32), axis=0)).mean(axis=-1)
            around_sum += float(plate_steps[around].sum(dtype=np.float64))
            around_count += int(around.sum())
    if not inside_count:
        return 0.0
    baseline = around_sum / around_count if around_count else 0.0
    return (inside_sum / inside_count - baseline) / scale


def _timecode(shot: Shot, view: PlateView) -> str | None:
    """The delivery's start timecode: the plate's own timecode counted on to the shot's first frame, or None.

    Counted from the file's timecode, not from the edit's media time: an image sequence's media time is its frame
    number (1001 …), which is no timecode.
    """
    if view.info.timecode is None or shot.media is None:
        return None
    return media.timecode_plus(view.info.timecode, shot.media.index_of(shot.first), rate_fraction(shot.rate))


def deliver(
    shot: Shot,
    fill_path: Path,
    quadmask_path: Path,
    shot_folder: Path,
    view: PlateView,
    *,
    version: str,
    blend: Blend,
    spec: DeliverySpec,
) -> tuple[Delivery, QcReport, list[StageFile]]:
    """Deliver stage: composite the fill into the plate inside the grown, feathered mask and write the version.

    The composite happens in the plate's own colour space. Sequences keep the plate's sample type (half EXR in,
    half EXR out) and are bit-identical to the plate outside the matte. Movies of display-referred plates carry
    the plate's colour tags; movies of scene-referred plates are encoded through the model view (display-referred
    Rec.709, tagged BT.709), and that encoding is recorded. Beside the delivery go the matte sequence, the contact
    sheet, the overlay and ``review.mp4`` (kind ``review``): the result through the model view as a review movie
    (``report.review_movie``), one frame per delivered frame, in the geometry of the mask stage's movies.

    Args:
        shot: the shot.
        fill_path: the lossless fill (pass 1's or pass 2's), in the plate's colour space.
        quadmask_path: the mask stage's quadmask.
        shot_folder: ``shot_dir(out, shot)``; the version folder ``<shot_folder>/<version>`` must not exist.
        view: the plate's facts and colour (``void_ops.plates.plate_view``).
        version: ``v001`` and up.
        blend: grow and feather of the matte.
        spec: the delivery's format, first frame number and EXR options.

    Returns:
        The delivery (its media starts at the plate range's first media time, so the clip's ``source_range``
        indexes it unchanged), its QC (made on the written files), and every file written.

    Raises:
        StorageUnavailable: the version folder exists or cannot be written.
        ConformError: the written media does not have the plate range's frame count, rate or size.
    """
    plate = plate_frames(shot)
    quadmask = media.read_mask(quadmask_path)
    check_quadmask(quadmask, *plate.shape[:3], shot=shot.name)
    alpha = blend.alpha(quadmask)
    fill = media.read_frames(_fill_source(fill_path, shot.rate), 0, shot.frames)
    result = composite(plate, fill.astype(plate.dtype, copy=False), alpha)
    del fill  # not needed past the composite: the rest of the stage holds one copy fewer
    folder = shot_folder / version
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise StorageUnavailable(f"{folder}: version folder exists; versions are never overwritten") from None
    except OSError as error:
        raise StorageUnavailable(f"{folder}: cannot create the version folder ({error.strerror})") from None
    stem = f"{shot.name}_voidclean_{version}"
    rate = rate_fraction(shot.rate)
    timecode = _timecode(shot, view)
    seen_result = view.to_model(result)  # the identity for display-referred plates; an OCIO pass otherwise
    if spec.is_movie:
        tags = _movie_tags(view)
        written = media.write_movie(
            seen_result,
            folder / f"{stem}.mov",
            rate,
            codec=cast(media.MovieCodec, spec.output),
            timecode=timecode,
            colour=tags,
            pixel_aspect=view.info.pixel_aspect,
            alpha=alpha if spec.output.startswith("prores_4444") else None,  # 4444 carries the blend alpha, straight
        )
    else:
        pattern = folder / stem / f"{stem}.%04d.{spec.output}"
        written = media.write_sequence(
            result,
            pattern,
            rate,
            first_number=spec.first_frame,
            fmt=cast(media.SequenceFormat, spec.output),
            pixel_type=_exr_sample(view) if spec.output == "exr" else None,
            compression=spec.exr_compression if spec.output == "exr" else None,
            alpha=alpha if spec.output == "exr" and spec.exr_matte == "layer" else None,
            alpha_channel="matte.A",
            attributes=_header(shot, view, version, timecode, spec.output),
        )
    matte_frames = np.rint(alpha * 255).astype(np.uint8)
    matte_pattern = folder / "matte" / f"{stem}_matte.%04d.png"
    matte = media.write_sequence(
        np.repeat(matte_frames[..., None], 3, axis=-1), matte_pattern, rate, first_number=spec.first_frame
    )
    delivered = dataclasses.replace(written, start=shot.first)
    info = media.probe(delivered)
    qc = _qc(shot, view, spec, plate, result, seen_result, alpha, delivered, info, timecode)
    if (info.frames, info.rate, info.width, info.height) != (shot.frames, Fraction(rate), *plate.shape[2:0:-1]):
        raise ConformError(
            f"shot '{shot.name}': delivered {info.width}x{info.height}, {info.frames} frames at {info.rate} fps; "
            f"the plate range is {plate.shape[2]}x{plate.shape[1]}, {shot.frames} frames at {rate} fps"
        )
    cut = (shot.handles[0], shot.handles[0] + shot.duration - 1)
    sheet, overlay = _pictures(view, plate, seen_result, quadmask, folder, cut)
    review = report.review_movie(seen_result, folder / "review.mp4", rate, pixel_aspect=view.info.pixel_aspect)
    files = [
        _media_file("delivery", delivered, result, shot.rate),
        _media_file("matte", matte, matte_frames[..., None], shot.rate),
        StageFile("contact_sheet", sheet, media.sha256_file(sheet), sheet.stat().st_size),
        StageFile("overlay", overlay, media.sha256_file(overlay), overlay.stat().st_size),
        _review_file("review", review, seen_result, shot.rate),
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


def _pictures(
    view: PlateView,
    plate: np.ndarray,
    seen_result: np.ndarray,
    quadmask: np.ndarray,
    folder: Path,
    cut: tuple[int, int],
) -> tuple[Path, Path]:
    """The version's contact sheet and overlay; the plate's model view made for them is gone when this returns."""
    seen_plate = view.to_model(plate)
    sheet = report.contact_sheet(seen_plate, seen_result, quadmask, folder / "contact_sheet.png", cut=cut)
    return sheet, report.mask_overlay(seen_plate, quadmask, folder / "overlay.png", cut=cut)


def delivery_encoding(view: PlateView, spec: DeliverySpec) -> dict[str, object]:
    """How the delivery's pixels are encoded, for provenance: the colour space the file holds and its tags."""
    if not spec.is_movie:
        return {"colourspace": view.colour.name, "encoding": "plate values (composite in the plate's space)"}
    if view.view.scene_referred:
        return {"colourspace": "display Rec.709 (model view)", "encoding": view.view.describe(), "tags": "bt709"}
    tags = _movie_tags(view)
    return {
        "colourspace": view.colour.name,
        "encoding": "plate values",
        "tags": f"{tags.primaries}/{tags.transfer}/{tags.matrix}/{tags.range}",
    }


def _movie_tags(view: PlateView) -> ColourTags:
    """A movie delivery's tags: the plate's (NLE conventions filling gaps), or BT.709 for the model view."""
    if view.view.scene_referred:
        return ColourTags(primaries="bt709", transfer="bt709", matrix="bt709", range="tv")
    return view.info.decoding_tags()


def _exr_sample(view: PlateView) -> Literal["half", "float"]:
    return "half" if view.info.sample == "half" else "float"


def _header(shot: Shot, view: PlateView, version: str, timecode: str | None, output: str) -> dict[str, Any]:
    """Header attributes that travel with a sequence delivery: where it came from, when, and in what space."""
    header: dict[str, Any] = {"voidflow:shot": shot.name, "voidflow:version": version}
    if output not in ("exr", "dpx", "tiff"):
        return header
    header["voidflow:sourcePlate"] = shot.media.path if shot.media else ""
    header["PixelAspectRatio"] = float(view.info.pixel_aspect)
    if output == "exr":
        header["oiio:ColorSpace"] = view.colour.name
        chroma = view.info.attribute("chromaticities")
        if chroma:
            header["chromaticities"] = ("float[8]", tuple(float(value) for value in chroma.split()))
    if timecode is not None:
        header["smpte:TimeCode"] = timecode
    return header


def _qc(
    shot: Shot,
    view: PlateView,
    spec: DeliverySpec,
    plate: np.ndarray,
    result: np.ndarray,
    seen_result: np.ndarray,
    alpha: np.ndarray,
    delivered: MediaSource,
    info: media.MediaInfo,
    timecode: str | None,
) -> QcReport:
    """Check the delivery as written (``info`` is its probe): pixels outside the matte, frames, rate, colour tags
    and timecode. ``seen_result`` is ``result`` through the model view, what a movie delivery encodes.

    The written file is read back and compared ``QC_WINDOW`` frames at a time, so QC holds a window of the
    delivery, never a second copy of the shot. Movies' codec differences are counted in a histogram of 8-bit
    steps, which gives their maximum, mean and 99.9th percentile exactly as over the whole shot at once.
    """
    frames = min(shot.frames, info.frames)
    header: list[str] = []
    codec_max = codec_p999 = codec_mean = tolerance_max = tolerance_mean = 0.0
    changed = 0
    steps = np.zeros(256, np.int64)  # movies: how many samples outside the matte differ by 0, 1, ... 255 steps
    tags = _movie_tags(view)
    for start in range(0, frames, QC_WINDOW):
        span = slice(start, min(start + QC_WINDOW, frames))
        back = media.read_frames(delivered, span.start, span.stop - span.start)
        if spec.is_movie:
            # Against what the codec's pixel format can hold (4:2:2 chroma keeps less than RGB at saturated edges, in
            # any encoder); both rounded to 8 bits as a review decode sees them, every channel counted.
            reference = media.codec_reference(seen_result[span], cast(media.MovieCodec, spec.output), tags)
            error = np.abs(_eight_bit(back) - _eight_bit(reference))[_clear_of(alpha[span], MOVIE_QC_MARGIN)]
            steps += np.bincount(error.ravel(), minlength=256)[:256]
        else:
            changed += changed_outside(plate[span], _as_dtype(back, plate.dtype), alpha[span])
    if spec.is_movie:
        tolerance_max, tolerance_mean = MOVIE_TOLERANCE[spec.output]
        if steps.sum():
            codec_max = float(np.flatnonzero(steps)[-1]) / 255
            codec_p999 = _percentile(steps, 99.9) / 255
            codec_mean = float((steps * np.arange(256)).sum() / steps.sum()) / 255
        changed = changed_outside(plate, result, alpha)  # the composite itself, before the lossy encode
        if info.colour != tags or info.colour.is_empty:
            header.append(f"colour tags {info.colour} (expected {tags})")
    carries_timecode = spec.is_movie or spec.output in ("exr", "dpx")
    if timecode is not None and carries_timecode and info.timecode != timecode:
        header.append(f"timecode {info.timecode} (expected {timecode})")
    return QcReport(
        changed_outside=changed,
        flicker=_flicker(plate, result, alpha),
        frames=info.frames,
        expected_frames=shot.frames,
        fps=float(info.rate),
        expected_fps=float(rate_fraction(shot.rate)),
        codec_max=codec_max,
        codec_p999=codec_p999,
        codec_mean=codec_mean,
        tolerance_max=tolerance_max,
        tolerance_mean=tolerance_mean,
        header=tuple(header),
    )


def _percentile(counts: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of the values ``counts`` holds: ``counts[v]`` samples of
    each value ``v``. Example: counts ``[2, 0, 1]`` (values 0, 0, 2), q 50 → 0.0; q 75 → 1.0."""
    position = q / 100 * (int(counts.sum()) - 1)
    low, high = math.floor(position), math.ceil(position)
    cumulative = np.cumsum(counts)
    below = int(np.searchsorted(cumulative, low, side="right"))
    above = int(np.searchsorted(cumulative, high, side="right"))
    return below + (position - low) * (above - below)


def _clear_of(alpha: np.ndarray, margin: int) -> np.ndarray:
    """Pixels at least ``margin`` px from any pixel the fill touched (alpha > 0)."""
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return np.stack([cv2.dilate((frame > 0).astype(np.uint8), kernel) == 0 for frame in alpha])


def _eight_bit(frames: np.ndarray) -> np.ndarray:
    """Frames of any dtype (float in [0, 1]) rounded to 8-bit values, as int16 for differences."""
    return from_unit(to_unit(frames), np.uint8).astype(np.int16)


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
