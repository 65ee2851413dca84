"""Masks from existing mattes (roto from compositing): the first source of quadmasks.

A matte is white (or opaque alpha) where the object is. It is indexed like its plate: matte index k covers plate
index k. A movie matte's index 0 is its first frame; a sequence matte's index 0 is its lowest-numbered file.
``matte: plate-alpha`` takes the plate's own alpha channel (an RGBA EXR, ProRes 4444 with alpha).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from voidflow.void_ops import media
from voidflow.void_ops.exceptions import MatteInvalid, MediaInvalid
from voidflow.void_ops.masking.masker import MaskOutput
from voidflow.void_ops.quadmask import combine
from voidflow.void_ops.shots import PLATE_ALPHA, MediaSource, Shot

__all__ = ["MatteMasker", "matte_source"]


def matte_source(path: str, plate: MediaSource) -> MediaSource:
    """Describe the matte at ``path`` (a movie, or a printf sequence pattern) aligned to ``plate``.

    Raises:
        MatteInvalid: no file of the matte exists, or ``plate-alpha`` names a plate without alpha.
    """
    if path == PLATE_ALPHA:
        if not media.probe(plate).alpha:
            raise MatteInvalid(f"{plate.path}: matte: plate-alpha, but the plate has no alpha channel")
        return plate
    if "%" not in path:
        if not Path(path).is_file():
            raise MatteInvalid(f"{path}: matte not found")
        return MediaSource(path, "movie", plate.rate, plate.start)
    folder, pattern = Path(path).parent, Path(path).name
    match = re.fullmatch(r"(.*)%0?(\d*)d(.*)", pattern)
    if match is None:
        raise MatteInvalid(f"{path}: a sequence pattern needs one printf field such as %04d")
    prefix, width, suffix = match.groups()
    digits = rf"\d{{{width}}}" if width else r"\d+"
    numbers = []
    if folder.is_dir():
        regex = re.compile(re.escape(prefix) + f"({digits})" + re.escape(suffix))
        numbers = [int(found[1]) for child in folder.iterdir() if (found := regex.fullmatch(child.name))]
    if not numbers:
        raise MatteInvalid(f"{path}: no matte frames found")
    return MediaSource(path, "sequence", plate.rate, plate.start, first_number=min(numbers))


@dataclass(frozen=True, slots=True)
class MatteMasker:
    """Turn a shot's matte into a quadmask: object → 0 (remove), an optional ring around it → 127, rest → 255.

    Attributes:
        threshold: matte values at or above it are the object (0 to 255).
        clear_affected_on_first_frame: drop the ring on the shot's first frame (VOID's mask convention).
    """

    threshold: int = 128
    clear_affected_on_first_frame: bool = False
    name: str = "matte"
    version: str = "1"

    def params(self, shot: Shot) -> dict[str, object]:
        """Return every number this masker uses for ``shot``, for provenance."""
        return {
            "masker": self.name,
            "masker_version": self.version,
            "matte": shot.instructions.matte,
            "threshold": self.threshold,
            "affected_ring": shot.instructions.affected_ring,
            "clear_affected_on_first_frame": self.clear_affected_on_first_frame,
        }

    def __call__(self, shot: Shot, plate: np.ndarray) -> MaskOutput:
        """Return the shot's quadmask.

        Args:
            shot: a ready shot whose instructions name a matte.
            plate: the shot's frames, (T, H, W, 3), head and tail handles included.

        Returns:
            The (T, H, W) uint8 quadmask with values in {0, 63, 127, 255}, without a prompt or VLM exchanges.

        Raises:
            MatteInvalid: the shot has no matte, or the matte is missing, too short, or of another size.
        """
        if not shot.instructions.matte or shot.media is None:
            raise MatteInvalid(f"shot '{shot.name}': no matte given (set 'matte' in the sidecar or clip metadata)")
        source = matte_source(shot.instructions.matte, shot.media)
        try:
            matte = media.read_matte(source, shot.media.index_of(shot.first), shot.frames)
        except MediaInvalid as error:
            raise MatteInvalid(f"shot '{shot.name}': matte unusable: {error}") from None
        if matte.shape[1:] != plate.shape[1:3]:
            raise MatteInvalid(
                f"shot '{shot.name}': matte is {matte.shape[2]}x{matte.shape[1]}, "
                f"the plate is {plate.shape[2]}x{plate.shape[1]}"
            )
        primary = matte >= self.threshold
        ring = shot.instructions.affected_ring
        affected = np.zeros_like(primary)
        if ring > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
            for index, frame in enumerate(primary):
                affected[index] = cv2.dilate(frame.astype(np.uint8), kernel).astype(bool) & ~frame
        quadmask = combine(primary, affected, clear_affected_on_first_frame=self.clear_affected_on_first_frame)
        return MaskOutput(quadmask)
