"""From object masks to a quadmask: the affected (grey) region, the SAM2-only ring, and the combine step.

Two ways to get the affected region:

* **VLM mode** (``affected_region``): every affected object the VLM named is tracked with SAM2 from the boxes it
  gave, and the tracks are unioned. Unlike the reference (``void-reference.md`` 8.3) nothing is gridified and
  nothing is clipped to a dilated frame-0 footprint: SAM2 follows the object wherever it goes.
* **SAM2-only mode** (``dilation_ring``): a ring of fixed width around the object, as mattes use.

``quadmask_from_masks`` then applies the combine table of ``void_ops.quadmask.combine``, clearing the
affected-only class on frame 0 by default (VOID's convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.masking.sam2_video import ObjectPrompts
from voidflow.void_ops.masking.vlm import Interaction, to_box_prompts
from voidflow.void_ops.quadmask import combine

__all__ = ["AffectedRegion", "ObjectSegmenter", "affected_region", "dilation_ring", "quadmask_from_masks", "union"]


class ObjectSegmenter(Protocol):
    """Anything that tracks prompted objects through frames (``Sam2VideoMasker``, or a fake in tests)."""

    def segment_objects(
        self, frames: np.ndarray, prompts_by_object: Mapping[int, ObjectPrompts], *, shot: str = ""
    ) -> dict[int, np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class AffectedRegion:
    """The grey region and how it was made.

    Attributes:
        mask: (T, H, W) bool, True where something the object affects is.
        segmented: nouns of the affected objects that were tracked, in the VLM's order.
        skipped: ``"noun: reason"`` for each affected object left out.
    """

    mask: np.ndarray
    segmented: tuple[str, ...]
    skipped: tuple[str, ...]


def affected_region(
    segmenter: ObjectSegmenter, frames: np.ndarray, interaction: Interaction, *, shot: str = ""
) -> AffectedRegion:
    """Track each affected object from its VLM boxes and union the tracks.

    An object's mask is cleared on frames before its ``first_appears_frame`` (SAM2's backward pass would
    otherwise carry it into frames where it does not exist yet). Objects without boxes are skipped, with the
    reason recorded.

    Args:
        segmenter: tracks objects, e.g. a ``Sam2VideoMasker``.
        frames: (T, H, W, 3) uint8 RGB plate frames, the ones the VLM was asked about.
        interaction: the VLM's answer; its boxes are 0..1000 on indices of ``frames``.
        shot: shot name for error messages.

    Returns:
        ``AffectedRegion`` whose mask is (T, H, W) bool (all False when nothing was tracked).

    Raises:
        InvalidInput: ``frames`` is not (T, H, W, 3), or a box frame lies outside it.
    """
    if frames.ndim != 4 or frames.shape[3] != 3:
        where = f"shot '{shot}': " if shot else ""
        raise InvalidInput(f"{where}frames must be (T, H, W, 3), got {frames.shape}")
    count, height, width = frames.shape[:3]
    prompts: dict[int, ObjectPrompts] = {}
    segmented: list[str] = []
    skipped: list[str] = []
    starts: dict[int, int] = {}
    for number, item in enumerate(interaction.affected_objects, start=1):
        if not item.boxes:
            skipped.append(f"{item.noun}: the VLM gave no boxes")
            continue
        prompts[number] = ObjectPrompts(boxes=tuple(to_box_prompts(item.boxes, width, height)))
        starts[number] = item.first_appears_frame or 0
        segmented.append(item.noun)
    mask = np.zeros((count, height, width), bool)
    if prompts:
        for number, track in segmenter.segment_objects(frames, prompts, shot=shot).items():
            mask[starts[number] :] |= track[starts[number] :]
    return AffectedRegion(mask, tuple(segmented), tuple(skipped))


def quadmask_from_masks(
    primary: np.ndarray, affected: np.ndarray, *, clear_affected_on_first_frame: bool = True
) -> np.ndarray:
    """Combine the object and affected masks into a quadmask.

    | primary | affected | value |
    |---|---|---|
    | True | False | 0 remove |
    | True | True | 63 overlap |
    | False | True | 127 affected (255 on frame 0 when ``clear_affected_on_first_frame``) |
    | False | False | 255 keep |

    Args:
        primary: (T, H, W) bool, the object to remove (with its integral belongings).
        affected: (T, H, W) bool, what it affects.
        clear_affected_on_first_frame: VOID's convention: grey starts at frame 1 (overlap stays 63).

    Returns:
        (T, H, W) uint8 with values in {0, 63, 127, 255}.

    Raises:
        InvalidInput: either mask is not a 3-D bool array, or their shapes differ.
    """
    _check_mask("primary", primary)
    _check_mask("affected", affected)
    return combine(primary, affected, clear_affected_on_first_frame=clear_affected_on_first_frame)


def dilation_ring(primary: np.ndarray, width_px: int) -> np.ndarray:
    """Return the ring of pixels within ``width_px`` of the object but not on it (SAM2-only affected region).

    The ring is grown per frame with an elliptical kernel of diameter ``2 * width_px + 1``, as mattes do.
    Example: a single object pixel with ``width_px=1`` gives a ring of its 4 direct neighbours (the 3x3 ellipse
    is a cross); with ``width_px=2`` the ring reaches 2 pixels straight out and 1 pixel diagonally.

    Args:
        primary: (T, H, W) bool object mask.
        width_px: ring width in plate pixels; 0 gives an empty ring.

    Returns:
        (T, H, W) bool, True on the ring.

    Raises:
        InvalidInput: ``primary`` is not (T, H, W) bool, or ``width_px`` is negative.
    """
    _check_mask("primary", primary)
    if width_px < 0:
        raise InvalidInput(f"ring width_px must be >= 0, got {width_px}")
    ring = np.zeros_like(primary)
    if width_px == 0:
        return ring
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width_px + 1, 2 * width_px + 1))
    for index, frame in enumerate(primary):
        ring[index] = cv2.dilate(frame.astype(np.uint8), kernel).astype(bool) & ~frame
    return ring


def union(masks: Mapping[int, np.ndarray]) -> np.ndarray:
    """Union several (T, H, W) bool masks (primary object plus its integral belongings).

    Raises:
        InvalidInput: no masks, or their shapes differ.
    """
    if not masks:
        raise InvalidInput("union needs at least one mask, got none")
    shapes = {mask.shape for mask in masks.values()}
    if len(shapes) != 1:
        raise InvalidInput(f"masks to union differ in shape: {sorted(shapes)}")
    union: np.ndarray = np.logical_or.reduce(list(masks.values()))
    return union


def _check_mask(name: str, mask: np.ndarray) -> None:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 3:
        found = f"{getattr(mask, 'dtype', type(mask).__name__)} {getattr(mask, 'shape', '')}"
        raise InvalidInput(f"{name} mask must be a (T, H, W) bool array, got {found.strip()}")
