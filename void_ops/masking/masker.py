"""Quadmasks without a matte: SAM2 tracks the object, the VLM says what it affects (VOID's mask pipeline, no GUI).

For one shot, ``SegmentMasker``:

1. takes the object's prompts from the shot's points and boxes, or, when there are none, asks the VLM to locate
   the object its text names (``remove``) on a few keyframes of the cut;
2. tracks it with SAM2 both ways through the shot (handles included);
3. with a VLM: asks what must go with it and what it affects; locates and tracks each integral belonging into the
   object mask, tracks each affected object into the grey region, and takes the scene description as the
   background prompt; without one: grows the shot's ``affected_ring`` around the object as the grey region;
4. combines them into a quadmask (grey cleared on the first frame when the VLM drew it, VOID's convention).

Prompt frames in shot instructions count from the first cut frame; they are shifted by the head handle here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput
from voidflow.void_ops.frames import to_uint8
from voidflow.void_ops.masking.compose import ObjectSegmenter, affected_region, dilation_ring, quadmask_from_masks
from voidflow.void_ops.masking.sam2_video import ObjectPrompts
from voidflow.void_ops.masking.vlm import Vlm, VlmExchange, keyframe_indices
from voidflow.void_ops.shots import BoxPrompt, PointPrompt, Shot

__all__ = ["MaskOutput", "SegmentMasker", "Segmenter"]

_VERSION = "1"


@dataclass(frozen=True, slots=True)
class MaskOutput:
    """A masker's result.

    Attributes:
        quadmask: (T, H, W) uint8 in {0, 63, 127, 255}.
        prompt: the VLM's description of the scene without the object (a background prompt), or None.
        exchanges: every VLM exchange the mask used, to store for replay.
        notes: what was left out and why (e.g. affected objects the VLM gave no boxes for).
    """

    quadmask: np.ndarray
    prompt: str | None = None
    exchanges: tuple[VlmExchange, ...] = ()
    notes: tuple[str, ...] = field(default=())


class Segmenter(ObjectSegmenter, Protocol):
    """Tracks objects through frames (``Sam2VideoMasker`` in one process, or an actor adapter) and says how."""

    def params(self) -> dict[str, object]: ...


@dataclass
class SegmentMasker:
    """SAM2 for the object and, optionally, the VLM for what it affects (``void_ops.pipeline.Masker``).

    Attributes:
        segmenter: the SAM2 tracker.
        vlm: the VLM (live, replaying, or both), or None for SAM2 alone.
        locate_keyframes: cut frames shown to the VLM when it must find the object itself.
    """

    segmenter: Segmenter
    vlm: Vlm | None = None
    locate_keyframes: int = 4
    name: str = "segment"
    version: str = _VERSION

    def params(self, shot: Shot) -> dict[str, object]:
        """Every setting and prompt the mask depends on, for provenance and the stage key."""
        instructions = shot.instructions
        vlm = None if self.vlm is None else _settings(self.vlm)
        return {
            "masker": self.name,
            "masker_version": self.version,
            "segmenter": self.segmenter.params(),
            "vlm": vlm,
            "remove": instructions.remove,
            "points": [_fields(p) for p in instructions.points],
            "boxes": [_fields(b) for b in instructions.boxes],
            "affected_ring": instructions.affected_ring if self.vlm is None else None,
            "locate_keyframes": self.locate_keyframes,
        }

    def __call__(self, shot: Shot, plate: np.ndarray) -> MaskOutput:
        """Make the shot's quadmask from its plate frames (T, H, W, 3) with handles.

        Raises:
            ConfigurationError: the shot has no prompts and no VLM is available to find the object.
            InvalidInput: prompts fall outside the shot, or the VLM found nothing to track.
            VlmRateLimited, VlmResponseInvalid: from the VLM.
        """
        frames = to_uint8(plate)
        head = shot.handles[0]
        points = [PointPrompt(p.frame + head, p.x, p.y, p.positive) for p in shot.instructions.points]
        boxes = [BoxPrompt(b.frame + head, b.x0, b.y0, b.x1, b.y1) for b in shot.instructions.boxes]
        exchanges: list[VlmExchange] = []
        notes: list[str] = []
        if not points and not boxes:
            boxes = self._locate(shot, frames, shot.instructions.remove, exchanges)
        tracks = self.segmenter.segment_objects(frames, {1: ObjectPrompts(tuple(points), tuple(boxes))}, shot=shot.name)
        primary = tracks[1]
        if self.vlm is None:
            affected = dilation_ring(primary, shot.instructions.affected_ring)
            return MaskOutput(quadmask_from_masks(primary, affected, clear_affected_on_first_frame=False))
        instruction = shot.instructions.remove or "remove the selected object and everything it affects"
        interaction, exchange = self.vlm.reason(frames, primary, instruction, fps=shot.rate, shot=shot.name)
        exchanges.append(exchange)
        for belonging in interaction.integral_belongings:
            try:
                found = self._locate(shot, frames, belonging.noun, exchanges)
            except InvalidInput as error:
                notes.append(f"{belonging.noun}: not located ({error})")
                continue
            primary = (
                primary
                | self.segmenter.segment_objects(frames, {1: ObjectPrompts((), tuple(found))}, shot=shot.name)[1]
            )
        region = affected_region(self.segmenter, frames, interaction, shot=shot.name)
        notes.extend(region.skipped)
        quadmask = quadmask_from_masks(primary, region.mask, clear_affected_on_first_frame=True)
        return MaskOutput(quadmask, interaction.scene_description or None, tuple(exchanges), tuple(notes))

    def _locate(
        self, shot: Shot, frames: np.ndarray, description: str, exchanges: list[VlmExchange]
    ) -> list[BoxPrompt]:
        if self.vlm is None:
            raise ConfigurationError(
                f"shot '{shot.name}': no points or boxes to track, and no VLM to find '{description}' "
                "(give points/boxes or a matte in the sidecar, or run with the VLM)"
            )
        if not description:
            raise InvalidInput(f"shot '{shot.name}': no points, boxes or 'remove' text to find the object by")
        head = shot.handles[0]
        cut = [head + index for index in keyframe_indices(shot.duration, self.locate_keyframes)]
        found, exchange = self.vlm.locate({index: frames[index] for index in cut}, description, shot=shot.name)
        exchanges.append(exchange)
        if not found:
            raise InvalidInput(f"shot '{shot.name}': the VLM did not find '{description}' on frames {cut}")
        return found


def _fields(prompt: PointPrompt | BoxPrompt) -> list[Any]:
    return [getattr(prompt, name) for name in prompt.__slots__]


def _settings(vlm: Vlm) -> dict[str, object]:
    settings = vlm.settings
    return {name: getattr(settings, name) for name in settings.__slots__}
