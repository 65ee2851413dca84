"""SAM2 video tracking behind a typed facade: plate frames and prompts in, one bool mask per frame out.

What differs from the reference's stage 1 (``void-reference.md`` 8.1), on purpose:

* Frames are downscaled so the longest side is at most ``Sam2Settings.max_side`` before SAM2 reads them, and the
  masks are brought back to plate size (SAM2 itself works at ``image_size`` squared whatever the input size).
* Tracking runs forward from the earliest prompted frame **and** backward from it to frame 0 (defect 7), so every
  frame gets a mask; the mask count is checked against the frame count.
* Prompts are used as given: no box is invented around points.

SAM2's ``inference_state`` dict, its JPEG-folder input and its Hydra configuration stay inside this module.
``import sam2`` initialises Hydra globally, so sam2 (and torch) are imported only in ``Sam2VideoMasker.__init__``.

Several boxes on one frame for one object: SAM2 takes one box per frame and object, so each extra box becomes a
separate *part*, tracked from that frame alone, and the object's mask is the union of its parts.

Parts are tracked in one SAM2 inference state per distinct earliest prompted frame, forward and backward from it.
A part never meets frames before its own first prompt in forward order: SAM2 would then see no object pointer
from a past conditioning frame, which on CPU (no bf16 autocast) even fails with a dtype error, and which on GPU
tracks the object from its future memory only. The image encoder runs once per frame per state.
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np

from voidflow.void_ops.exceptions import (
    ConfigurationError,
    GpuOutOfMemory,
    InvalidInput,
    ModelLoadError,
    PermanentError,
    StorageUnavailable,
)
from voidflow.void_ops.frames import fit_size
from voidflow.void_ops.hashing import sha256_file
from voidflow.void_ops.shots import BoxPrompt, PointPrompt

__all__ = ["ObjectPrompts", "Sam2Pass", "Sam2Settings", "Sam2Tracks", "Sam2VideoMasker"]

_VERSION = "1"
_JPEG_QUALITY = 95
# SAM2's own post-processing overrides, minus hole filling (it needs the sam2._C CUDA extension, absent on CPU
# builds); build_sam2_video_predictor(apply_postprocessing=True) would add fill_hole_area=8 after ours.
_POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=0",
)


@dataclass(frozen=True, slots=True)
class Sam2Settings:
    """How SAM2 is built and fed; every field is recorded by ``Sam2VideoMasker.params``.

    Attributes:
        config: a config name inside the sam2 package (``configs/sam2.1/sam2.1_hiera_l.yaml``).
        checkpoint: local path of the matching ``.pt`` checkpoint; None builds random weights (tests only).
        max_side: frames are downscaled (area filter) so their longest side is at most this before SAM2 reads them.
        image_size: SAM2's working size (``++model.image_size``), a multiple of 32; None keeps the config's (1024).
        offload_video_to_cpu: keep the decoded frames in CPU memory (long shots on a GPU).
        threshold: a pixel belongs to the object where SAM2's logit is above this.
        seed: seeds the random weights when ``checkpoint`` is None; with a checkpoint nothing is random.
        autocast_bf16: on CUDA devices, run under bf16 autocast as SAM2's own examples do (ignored on CPU).
    """

    config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
    checkpoint: str | None = None
    max_side: int = 1024
    image_size: int | None = None
    offload_video_to_cpu: bool = True
    threshold: float = 0.0
    seed: int = 0
    autocast_bf16: bool = True

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise InvalidInput(f"Sam2Settings.max_side must be at least 16 pixels, got {self.max_side}")
        if self.image_size is not None and (self.image_size < 64 or self.image_size % 32):
            raise InvalidInput(f"Sam2Settings.image_size must be a multiple of 32 from 64, got {self.image_size}")
        if not math.isfinite(self.threshold):
            raise InvalidInput(f"Sam2Settings.threshold must be finite, got {self.threshold}")


@dataclass(frozen=True, slots=True)
class ObjectPrompts:
    """Every prompt for one object; ``frame`` values are indices into the frames passed with them."""

    points: tuple[PointPrompt, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()


@dataclass(frozen=True, slots=True)
class Sam2Pass:
    """One SAM2 inference state: the objects whose earliest prompt is ``start``, tracked both ways from it.

    Attributes:
        start: the earliest prompted frame of every part in this pass.
        objects: ids of the objects with parts in this pass.
        forward_frames: frame indices in the order the forward pass yielded them (``start`` to the end).
        reverse_frames: frame indices in the order the backward pass yielded them (``start`` down to 0; empty
            when ``start`` is 0).
    """

    start: int
    objects: tuple[int, ...]
    forward_frames: tuple[int, ...]
    reverse_frames: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Sam2Tracks:
    """What one tracking run produced.

    Attributes:
        masks: object id -> (T, H, W) bool mask at plate size, True on the object.
        working_size: (height, width) of the frames SAM2 read, after the ``max_side`` downscale.
        passes: one per distinct earliest prompted frame, in order of ``start``.
    """

    masks: Mapping[int, np.ndarray]
    working_size: tuple[int, int]
    passes: tuple[Sam2Pass, ...]


@dataclass(frozen=True, slots=True)
class _Part:
    """One SAM2 object: the prompts of one object that SAM2 can take together, by frame."""

    owner: int
    prompts: dict[int, tuple[tuple[PointPrompt, ...], BoxPrompt | None]] = field(default_factory=dict)


class Sam2VideoMasker:
    """Hold one SAM2 video predictor on one device; track prompted objects through a shot's frames.

    Not thread-safe: one masker serves one caller at a time (host it in one Ray actor per GPU). Each call builds
    and drops its own inference state, so calls do not influence each other.

    Example::

        masker = Sam2VideoMasker(Sam2Settings(checkpoint="/models/sam2.1_hiera_large.pt"), device="cuda")
        mask = masker(frames, [PointPrompt(frame=12, x=640.0, y=360.0)], [])   # (T, H, W) bool
    """

    def __init__(self, settings: Sam2Settings, *, device: str = "cpu") -> None:
        """Build the predictor once (and load the checkpoint when one is given).

        Args:
            settings: the model config, checkpoint and input sizes.
            device: a torch device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

        Raises:
            ConfigurationError: the checkpoint file is missing, or sam2 cannot compose the config.
            ModelLoadError: the checkpoint does not fit the config's architecture.
        """
        import torch

        self.settings = settings
        self.device = device
        self._torch: Any = torch
        checkpoint = Path(settings.checkpoint) if settings.checkpoint is not None else None
        if checkpoint is not None and not checkpoint.is_file():
            raise ConfigurationError(f"SAM2 checkpoint {checkpoint}: file not found")
        self.overrides: tuple[str, ...] = (
            *((f"++model.image_size={settings.image_size}",) if settings.image_size is not None else ()),
            *_POSTPROCESSING,
        )
        self._predictor: Any = self._build(checkpoint)
        self.image_size = int(self._predictor.image_size)
        self.checkpoint_sha256 = sha256_file(checkpoint) if checkpoint is not None else None

    def _build(self, checkpoint: Path | None) -> Any:
        torch = self._torch
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException
        from sam2.build_sam import build_sam2_video_predictor

        # Random initial weights come from the global CPU generator; fork it so the caller's stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            try:
                predictor = build_sam2_video_predictor(
                    self.settings.config,
                    ckpt_path=None,
                    device=self.device,
                    apply_postprocessing=False,
                    hydra_overrides_extra=list(self.overrides),
                )
            except (HydraException, OmegaConfBaseException) as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ConfigurationError(f"SAM2 config '{self.settings.config}' unusable: {message}") from None
        if checkpoint is not None:
            try:
                state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
                raise ModelLoadError(f"SAM2 checkpoint {checkpoint} unreadable: {str(error).splitlines()[0]}") from None
            if not isinstance(state, dict) or "model" not in state:
                raise ModelLoadError(f"SAM2 checkpoint {checkpoint}: no 'model' state dict inside")
            missing, unexpected = predictor.load_state_dict(state["model"], strict=False)
            if missing or unexpected:
                raise ModelLoadError(
                    f"SAM2 checkpoint {checkpoint} does not fit config '{self.settings.config}': "
                    f"{len(missing)} missing keys (first {list(missing[:3])}), "
                    f"{len(unexpected)} unexpected (first {list(unexpected[:3])})"
                )
        return predictor.eval()

    def params(self) -> dict[str, object]:
        """Return every setting that shapes the masks, for provenance."""
        from importlib.metadata import version

        return {
            "masker": "sam2-video",
            "masker_version": _VERSION,
            "sam2_version": version("sam2"),
            **asdict(self.settings),
            "checkpoint_sha256": self.checkpoint_sha256,
            "random_weights": self.settings.checkpoint is None,
            "effective_image_size": self.image_size,
            "hydra_overrides": list(self.overrides),
            "propagation": "forward+reverse",
            "jpeg_quality": _JPEG_QUALITY,
            "device": self.device,
        }

    def __call__(
        self,
        frames: np.ndarray,
        points: Sequence[PointPrompt],
        boxes: Sequence[BoxPrompt],
        *,
        obj_id: int = 1,
        shot: str = "",
    ) -> np.ndarray:
        """Track one object through ``frames``.

        Args:
            frames: (T, H, W, 3) uint8 RGB at plate size (an ``np.memmap`` works; frames are read one at a time).
            points: clicks in plate pixels; ``frame`` is an index into ``frames``; ``positive=False`` excludes.
            boxes: boxes in plate pixels, same frame convention; several frames may be prompted.
            obj_id: the object's id (only used in messages for a single object).
            shot: shot name for error messages.

        Returns:
            (T, H, W) bool, True on the object, one mask for every frame including those before the first prompt.

        Raises:
            InvalidInput: no prompts, a prompt frame out of range, a point or box outside the frame, bad frames.
            GpuOutOfMemory: the device ran out of memory.
        """
        tracks = self.track(frames, {obj_id: ObjectPrompts(tuple(points), tuple(boxes))}, shot=shot)
        return tracks.masks[obj_id]

    def segment_objects(
        self, frames: np.ndarray, prompts_by_object: Mapping[int, ObjectPrompts], *, shot: str = ""
    ) -> dict[int, np.ndarray]:
        """Track several objects in one pass (the image encoder runs once per frame for all of them).

        Args:
            frames: (T, H, W, 3) uint8 RGB at plate size.
            prompts_by_object: object id -> its prompts (plate pixels, frame indices into ``frames``).
            shot: shot name for error messages.

        Returns:
            object id -> (T, H, W) bool mask. Objects are tracked independently and may overlap.

        Raises:
            InvalidInput: as for ``__call__``, naming the object.
            GpuOutOfMemory: the device ran out of memory.
        """
        return dict(self.track(frames, prompts_by_object, shot=shot).masks)

    def track(
        self, frames: np.ndarray, prompts_by_object: Mapping[int, ObjectPrompts], *, shot: str = ""
    ) -> Sam2Tracks:
        """Track several objects and report how SAM2 ran (``segment_objects`` with the run's details).

        Returns:
            ``Sam2Tracks`` with one (T, H, W) bool mask per object id.

        Raises:
            InvalidInput: as for ``segment_objects``.
            GpuOutOfMemory: the device ran out of memory.
        """
        where = f"shot '{shot}': " if shot else ""
        count, height, width = _check_frames(frames, where)
        parts = _plan_parts(prompts_by_object, count, height, width, where)
        work_h, work_w = fit_size(height, width, self.settings.max_side)
        masks = {obj_id: np.zeros((count, height, width), bool) for obj_id in prompts_by_object}
        groups: dict[int, list[_Part]] = {}
        for part in parts:
            groups.setdefault(min(part.prompts), []).append(part)
        torch = self._torch
        passes: list[Sam2Pass] = []
        try:
            with (
                tempfile.TemporaryDirectory(prefix="voidflow-sam2-") as folder,
                torch.inference_mode(),
                self._autocast(),
            ):
                _write_jpegs(frames, Path(folder), (work_w, work_h))
                for start, group in sorted(groups.items()):
                    passes.append(self._run_pass(folder, start, group, masks, (height, width), (work_h, work_w)))
        except torch.OutOfMemoryError:
            raise GpuOutOfMemory(
                f"{where}SAM2 ran out of memory on {self.device} tracking {count} frames of {work_w}x{work_h}"
            ) from None
        for done in passes:
            covered = set(done.forward_frames) | set(done.reverse_frames)
            if covered != set(range(count)):
                missing = sorted(set(range(count)) - covered)
                raise PermanentError(
                    f"{where}SAM2 returned masks for {len(covered)} of {count} frames (missing {missing[:5]})"
                )
        return Sam2Tracks(masks, (work_h, work_w), tuple(passes))

    def _autocast(self) -> AbstractContextManager[object]:
        if self.settings.autocast_bf16 and self._torch.device(self.device).type == "cuda":
            return cast(AbstractContextManager[object], self._torch.autocast("cuda", dtype=self._torch.bfloat16))
        return nullcontext()

    def _run_pass(
        self,
        folder: str,
        start: int,
        group: list[_Part],
        masks: dict[int, np.ndarray],
        plate: tuple[int, int],
        work: tuple[int, int],
    ) -> Sam2Pass:
        """Track ``group`` (parts whose earliest prompt is ``start``) forward and backward; OR into ``masks``."""
        (height, width), (work_h, work_w) = plate, work
        sx, sy = work_w / width, work_h / height  # plate pixels -> SAM2 input pixels
        predictor = self._predictor
        state = predictor.init_state(video_path=folder, offload_video_to_cpu=self.settings.offload_video_to_cpu)
        if (state["video_height"], state["video_width"]) != work:
            raise PermanentError(
                f"SAM2 read {state['video_width']}x{state['video_height']} frames, not {work_w}x{work_h}"
            )
        for sam_id, part in enumerate(group):
            for frame, (points, box) in sorted(part.prompts.items()):
                predictor.add_new_points_or_box(
                    state,
                    frame_idx=frame,
                    obj_id=sam_id,
                    points=[[p.x * sx, p.y * sy] for p in points] or None,
                    labels=[1 if p.positive else 0 for p in points] or None,
                    box=None if box is None else [box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy],
                )
        visited: tuple[list[int], list[int]] = ([], [])
        seen: set[int] = set()
        for direction, reverse in enumerate((False, True)):
            for frame, sam_ids, logits in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                visited[direction].append(int(frame))
                if frame in seen:
                    continue
                seen.add(frame)
                scores = logits[:, 0].float().cpu().numpy()
                for row, sam_id in enumerate(sam_ids):
                    score = scores[row]
                    if score.shape != (height, width):
                        score = cv2.resize(score, (width, height), interpolation=cv2.INTER_LINEAR)
                    masks[group[sam_id].owner][frame] |= score > self.settings.threshold
        return Sam2Pass(start, tuple(dict.fromkeys(part.owner for part in group)), *map(tuple, visited))


def _check_frames(frames: np.ndarray, where: str) -> tuple[int, int, int]:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        shape = getattr(frames, "shape", None)
        raise InvalidInput(f"{where}frames must be (T, H, W, 3) uint8 RGB, got {getattr(frames, 'dtype', '?')} {shape}")
    count, height, width = frames.shape[:3]
    if count < 1 or height < 2 or width < 2:
        raise InvalidInput(f"{where}frames must hold at least one 2x2 frame, got shape {frames.shape}")
    return int(count), int(height), int(width)


def _plan_parts(
    prompts_by_object: Mapping[int, ObjectPrompts], count: int, height: int, width: int, where: str
) -> list[_Part]:
    """Validate prompts and split each object into SAM2 objects (one box per frame each)."""
    if not prompts_by_object:
        raise InvalidInput(f"{where}no objects to track: prompts_by_object is empty")
    parts: list[_Part] = []
    for obj_id, prompts in prompts_by_object.items():
        if not any(p.positive for p in prompts.points) and not prompts.boxes:
            raise InvalidInput(f"{where}object {obj_id}: needs at least one positive point or one box, got none")
        for point in prompts.points:
            _check_frame(point.frame, count, obj_id, point, where)
            if not (0 <= point.x <= width and 0 <= point.y <= height):
                raise InvalidInput(f"{where}object {obj_id}: {point} lies outside the {width}x{height} frame")
        for box in prompts.boxes:
            _check_frame(box.frame, count, obj_id, box, where)
            inside = 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height
            if not inside:
                raise InvalidInput(
                    f"{where}object {obj_id}: {box} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}"
                )
        main = _Part(obj_id)
        extra: list[_Part] = []
        for frame in sorted({p.frame for p in prompts.points} | {b.frame for b in prompts.boxes}):
            points = tuple(p for p in prompts.points if p.frame == frame)
            boxes = [b for b in prompts.boxes if b.frame == frame]
            main.prompts[frame] = (points, boxes[0] if boxes else None)
            extra.extend(_Part(obj_id, {frame: ((), box)}) for box in boxes[1:])
        parts += [main, *extra]
    return parts


def _check_frame(frame: int, count: int, obj_id: int, prompt: PointPrompt | BoxPrompt, where: str) -> None:
    values = (prompt.x, prompt.y) if isinstance(prompt, PointPrompt) else (prompt.x0, prompt.y0, prompt.x1, prompt.y1)
    if not all(math.isfinite(value) for value in values):
        raise InvalidInput(f"{where}object {obj_id}: {prompt} has a non-finite value")
    if not 0 <= frame < count:
        raise InvalidInput(
            f"{where}object {obj_id}: {prompt} frame {frame} is outside the frames given (0..{count - 1})"
        )


def _write_jpegs(frames: np.ndarray, folder: Path, size: tuple[int, int]) -> None:
    """Write ``%05d.jpg`` frames at ``size`` (width, height), the layout SAM2's ``init_state`` reads."""
    for index, frame in enumerate(frames):
        if (frame.shape[1], frame.shape[0]) != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        path = folder / f"{index:05d}.jpg"
        if not cv2.imwrite(str(path), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
            raise StorageUnavailable(f"could not write SAM2 input frame {path}")
