"""Masks from files the user already has: roto mattes (the object, and optionally the affected region) and
finished VOID quadmasks.

Every mask file is indexed like its plate: file index k covers plate index k. A movie's index 0 is its first
frame; a sequence's index 0 is its lowest-numbered file. ``matte: plate-alpha`` takes the plate's own alpha channel
(an RGBA EXR, ProRes 4444 with alpha). Each file is checked against the range of the plate the shot processes
(frame count and size) before it is read; errors are one line naming the shot and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from voidflow.void_ops import media
from voidflow.void_ops.exceptions import MatteInvalid, MediaInvalid
from voidflow.void_ops.masking.compose import dilation_ring
from voidflow.void_ops.masking.masker import MaskOutput
from voidflow.void_ops.quadmask import combine, quantise
from voidflow.void_ops.shots import PLATE_ALPHA, MediaSource, Shot

__all__ = [
    "MaskField",
    "MatteMasker",
    "QuadmaskMasker",
    "mask_sources",
    "matte_source",
    "read_mask_file",
    "to_levels",
]

#: The instructions' fields that name a mask file.
MaskField = Literal["matte", "affected_matte", "quadmask"]


def matte_source(path: str, plate: MediaSource, field: MaskField = "matte") -> MediaSource:
    """Describe the mask file at ``path`` (a movie, or a printf sequence pattern) aligned to ``plate``.

    Args:
        path: the file or pattern, or ``plate-alpha`` (for ``matte`` and ``affected_matte``).
        plate: the shot's plate.
        field: the instruction that names the file, for messages.

    Raises:
        MatteInvalid: no file exists, the pattern has no printf field, ``plate-alpha`` names a plate without
            alpha, or ``plate-alpha`` is given as a quadmask.
    """
    if path == PLATE_ALPHA:
        if field == "quadmask":
            raise MatteInvalid(f"quadmask: {PLATE_ALPHA} is a matte, not a quadmask")
        if not media.probe(plate).alpha:
            raise MatteInvalid(f"{plate.path}: {field}: plate-alpha, but the plate has no alpha channel")
        return plate
    if "%" not in path:
        if not Path(path).is_file():
            raise MatteInvalid(f"{path}: {field} not found")
        return MediaSource(path, "movie", plate.rate, plate.start)
    folder, pattern = Path(path).parent, Path(path).name
    match = re.fullmatch(r"(.*)%0?(\d*)d(.*)", pattern)
    if match is None:
        raise MatteInvalid(f"{path}: {field}: a sequence pattern needs one printf field such as %04d")
    prefix, width, suffix = match.groups()
    digits = rf"\d{{{width}}}" if width else r"\d+"
    numbers = []
    if folder.is_dir():
        regex = re.compile(re.escape(prefix) + f"({digits})" + re.escape(suffix))
        numbers = [int(found[1]) for child in folder.iterdir() if (found := regex.fullmatch(child.name))]
    if not numbers:
        raise MatteInvalid(f"{path}: no {field} frames found")
    return MediaSource(path, "sequence", plate.rate, plate.start, first_number=min(numbers))


def mask_sources(shot: Shot) -> dict[MaskField, MediaSource]:
    """The mask files ``shot``'s instructions name, by field, in the order ``quadmask``, ``matte``,
    ``affected_matte`` (absent fields left out).

    Raises:
        MatteInvalid: a file is missing (the message names the shot and the field).
    """
    if shot.media is None:
        return {}
    named: dict[MaskField, str | None] = {
        "quadmask": shot.instructions.quadmask,
        "matte": shot.instructions.matte,
        "affected_matte": shot.instructions.affected_matte,
    }
    sources: dict[MaskField, MediaSource] = {}
    for field, path in named.items():
        if path:
            try:
                sources[field] = matte_source(path, shot.media, field)
            except MatteInvalid as error:
                raise MatteInvalid(f"shot '{shot.name}': {error}") from None
    return sources


def to_levels(values: np.ndarray) -> np.ndarray:
    """Scale mask values to 8-bit levels: uint8 stays; uint16 is divided by 257 (65535 → 255); float is taken as
    0..1 (clipped) times 255; all rounded to nearest.

    Example: ``to_levels(np.array([0, 16191, 32639, 65535], np.uint16))`` → ``[0, 63, 127, 255]``.
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.uint16:
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.rint(np.clip(values.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def _check_extent(shot: Shot, field: MaskField, source: MediaSource, height: int, width: int) -> None:
    """Check a mask file against the plate range the shot processes: the size, and for movies the frame count
    (a sequence's missing file is named when it is read)."""
    assert shot.media is not None
    try:
        info = media.probe(source)
    except MediaInvalid as error:
        raise MatteInvalid(f"shot '{shot.name}': {field} unusable: {error}") from None
    if (info.width, info.height) != (width, height):
        raise MatteInvalid(f"shot '{shot.name}': {field} is {info.width}x{info.height}, the plate is {width}x{height}")
    first = shot.media.index_of(shot.first)
    if source.kind == "movie" and info.frames < first + shot.frames:
        raise MatteInvalid(
            f"shot '{shot.name}': {field} has {info.frames} frames; the shot needs plate indices "
            f"{first}-{first + shot.frames - 1} ({shot.frames} frames)"
        )


def read_mask_file(shot: Shot, field: MaskField, source: MediaSource, height: int, width: int) -> np.ndarray:
    """Read the shot's range of a mask file, checked against the plate's size and range.

    A ``quadmask`` is read as RGB and its first channel kept (grey files replicate grey into every channel, so
    this is the grey value; RGB files give red, as VOID's loader takes channel 0), scaled to 8-bit levels
    (``to_levels``) and quantised by VOID's ranges (``quadmask.quantise``), never compared for equality. A
    ``matte`` or ``affected_matte`` is read as ``media.read_matte`` does (alpha when present, else luma).

    Returns:
        (T, H, W) uint8: quadmask classes {0, 63, 127, 255}, or matte values 0..255.

    Raises:
        MatteInvalid: the file is of another size, too short, or unreadable (one line naming shot and field).
    """
    assert shot.media is not None
    _check_extent(shot, field, source, height, width)
    first = shot.media.index_of(shot.first)
    try:
        if field == "quadmask":
            values = quantise(to_levels(media.read_frames(source, first, shot.frames)[..., 0]))
        else:
            values = media.read_matte(source, first, shot.frames)
    except MediaInvalid as error:
        raise MatteInvalid(f"shot '{shot.name}': {field} unusable: {error}") from None
    if values.shape[1:] != (height, width):
        raise MatteInvalid(
            f"shot '{shot.name}': {field} is {values.shape[2]}x{values.shape[1]}, the plate is {width}x{height}"
        )
    return np.ascontiguousarray(values)


@dataclass(frozen=True, slots=True)
class MatteMasker:
    """Turn a shot's mattes into a quadmask: object → 0 (remove), affected region → 127, both → 63, rest → 255.

    The affected region is the union of the ``affected_matte`` roto (when given) and the ``affected_ring`` grown
    around the object (when > 0). The ring never covers the object, so only the roto makes overlap (63).

    Attributes:
        threshold: matte values at or above it are the object, or the affected region (0 to 255).
        clear_affected_on_first_frame: drop the affected-only class on the shot's first frame (VOID's convention).
    """

    threshold: int = 128
    clear_affected_on_first_frame: bool = False
    name: str = "matte"
    version: str = "1"

    def params(self, shot: Shot) -> dict[str, object]:
        """Return every number this masker uses for ``shot`` and which inputs it reads, for provenance."""
        instructions = shot.instructions
        return {
            "masker": self.name,
            "masker_version": self.version,
            "source": "matte+affected_matte" if instructions.affected_matte else "matte",
            "matte": instructions.matte,
            "affected_matte": instructions.affected_matte,
            "threshold": self.threshold,
            "affected_ring": instructions.affected_ring,
            "clear_affected_on_first_frame": self.clear_affected_on_first_frame,
        }

    def __call__(self, shot: Shot, plate: np.ndarray) -> MaskOutput:
        """Return the shot's quadmask.

        Args:
            shot: a ready shot whose instructions name a matte (and optionally an affected matte).
            plate: the shot's frames, (T, H, W, 3), head and tail handles included.

        Returns:
            The (T, H, W) uint8 quadmask with values in {0, 63, 127, 255}, without a prompt or VLM exchanges.

        Raises:
            MatteInvalid: the shot has no matte, or a matte is missing, too short, or of another size.
        """
        if not shot.instructions.matte or shot.media is None:
            raise MatteInvalid(f"shot '{shot.name}': no matte given (set 'matte' in the sidecar or clip metadata)")
        height, width = plate.shape[1:3]
        sources = mask_sources(shot)
        primary = read_mask_file(shot, "matte", sources["matte"], height, width) >= self.threshold
        affected = dilation_ring(primary, shot.instructions.affected_ring)
        if "affected_matte" in sources:
            affected |= read_mask_file(shot, "affected_matte", sources["affected_matte"], height, width) >= (
                self.threshold
            )
        quadmask = combine(primary, affected, clear_affected_on_first_frame=self.clear_affected_on_first_frame)
        return MaskOutput(quadmask)


@dataclass(frozen=True, slots=True)
class QuadmaskMasker:
    """Use the shot's own quadmask (``quadmask:``), from VOID's mask pipeline or painted by hand: no matte,
    SAM2 or VLM. Its first channel is quantised by VOID's ranges (``read_mask_file``), so a lossy (H.264, ProRes)
    or 16-bit/float file reads right; the classes are used as they are (frame 0 is not cleared)."""

    name: str = "quadmask"
    version: str = "1"

    def params(self, shot: Shot) -> dict[str, object]:
        """Return which file this masker reads and how it reads it, for provenance."""
        return {
            "masker": self.name,
            "masker_version": self.version,
            "source": "quadmask",
            "quadmask": shot.instructions.quadmask,
            "channel": 0,
            "quantise": "v<=31:0, v<=95:63, v<=191:127, else 255 (8-bit levels)",
        }

    def __call__(self, shot: Shot, plate: np.ndarray) -> MaskOutput:
        """Return the shot's quadmask, read from its file.

        Raises:
            MatteInvalid: the shot has no quadmask, or it is missing, too short, or of another size.
        """
        if not shot.instructions.quadmask or shot.media is None:
            raise MatteInvalid(f"shot '{shot.name}': no quadmask given (set 'quadmask' in the sidecar)")
        height, width = plate.shape[1:3]
        source = mask_sources(shot)["quadmask"]
        return MaskOutput(read_mask_file(shot, "quadmask", source, height, width))
