"""Resident models on Ray actors (VOID passes and SAM2): each loads its weights once and serves many shots.

One pool per pass. With G GPUs in the cluster there is one pass-1 actor per GPU and, when the batch runs pass 2,
one pass-2 actor per GPU beside it (each holds half a GPU: both bf16 transformers fit on one 80 GB card). Without
GPUs a single actor of each pass runs on the CPU in float32 (tests, tiny models). Shot tasks reach an actor by its
name and send it only model-resolution clips.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from void_ops.exceptions import WorkerLost
from void_ops.masking.sam2_video import ObjectPrompts, Sam2Settings
from void_ops.shots import BoxPrompt, PointPrompt
from void_ops.void.backend import ModelClip, ModelSpec, VoidModel

__all__ = [
    "ActorModel",
    "ActorSegmenter",
    "Pool",
    "Sam2Actor",
    "VoidActor",
    "start_pool",
    "start_sam2_pool",
    "stop_pool",
]


@ray.remote(max_restarts=0, max_task_retries=0)
class VoidActor:
    """One VOID pass resident on this actor's device."""

    def __init__(self, spec: ModelSpec) -> None:
        self._model = VoidModel(spec)

    def params(self) -> dict[str, object]:
        """The pass recipe, placement and weight hashes."""
        return self._model.params()

    def run(
        self, clip: ModelClip, seed: int, prompt: str, first_pass: np.ndarray | None, warp: Any, label: str
    ) -> np.ndarray:
        """Run the pass on one prepared clip; prints progress every 10 steps."""

        def progress(step: int, total: int) -> None:
            if step % 10 == 0 or step == total:
                print(f"{label}: step {step}/{total}", flush=True)

        return self._model(clip, seed=seed, prompt=prompt, first_pass=first_pass, warp=warp, on_step=progress)


class ActorModel:
    """Calls a named ``VoidActor`` with ``VoidModel``'s signature, so the backend cannot tell the two apart."""

    def __init__(self, name: str, *, label: str = "") -> None:
        self.name = name
        self.label = label or name
        self._actor = ray.get_actor(name)

    def params(self) -> dict[str, object]:
        """The actor's pass recipe, placement and weight hashes."""
        return dict(ray.get(self._actor.params.remote()), actor=self.name)

    def __call__(
        self,
        clip: ModelClip,
        *,
        seed: int,
        prompt: str,
        first_pass: np.ndarray | None = None,
        warp: Any = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Run the pass on the actor and wait for its frames.

        Raises:
            WorkerLost: the actor died (its process was killed or its node lost); retryable.
        """
        try:
            frames: Any = ray.get(self._actor.run.remote(clip, seed, prompt, first_pass, warp, self.label))
            return np.asarray(frames)
        except ray.exceptions.RayActorError as error:
            raise WorkerLost(f"VOID actor {self.name} died: {str(error).splitlines()[0]}") from None


@dataclass(frozen=True)
class Pool:
    """Running actors of one pass: their names (for shot tasks) and handles (which keep them alive)."""

    names: tuple[str, ...]
    handles: tuple[Any, ...]


def start_pool(spec: ModelSpec, *, prefix: str, share: float = 1.0) -> Pool:
    """Start one actor per GPU (or one on the CPU without GPUs) for ``spec``.

    The caller keeps the returned pool until ``stop_pool``: Ray ends a named actor once no handle to it is left.

    Args:
        spec: what to load; its device and dtype are set here (``cuda``/bfloat16, or ``cpu``/float32).
        prefix: actor name prefix, unique per batch and pass (``voidflow-<batch>-pass1``).
        share: fraction of a GPU each actor claims (0.5 when two passes share every GPU).
    """
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        spec = dataclasses.replace(spec, device="cuda", dtype="bfloat16")
        options: dict[str, Any] = {"num_gpus": share, "num_cpus": 1}
    else:  # half a CPU each, so the shot tasks that feed the actors always find a CPU free
        spec = dataclasses.replace(spec, device="cpu", dtype="float32", compile=False, memory_mode="full")
        options = {"num_cpus": 0.5}
    names = tuple(f"{prefix}-{index}" for index in range(max(gpus, 1)))
    handles = tuple(VoidActor.options(name=name, **options).remote(spec) for name in names)  # type: ignore[attr-defined]
    return Pool(names, handles)


@ray.remote(max_restarts=0, max_task_retries=0)
class Sam2Actor:
    """SAM2's video predictor resident on this actor's device (Hydra's global state stays in this process)."""

    def __init__(self, settings: Sam2Settings, device: str) -> None:
        from void_ops.masking.sam2_video import Sam2VideoMasker

        self._masker = Sam2VideoMasker(settings, device=device)

    def params(self) -> dict[str, object]:
        """Every setting that shapes the masks."""
        return self._masker.params()

    def segment(self, frames: np.ndarray, prompts: dict[int, ObjectPrompts], shot: str) -> dict[int, np.ndarray]:
        """Track the prompted objects through ``frames``."""
        return self._masker.segment_objects(frames, prompts, shot=shot)


class ActorSegmenter:
    """Calls a named ``Sam2Actor`` with the masker's segmenter interface.

    Frames are shrunk to SAM2's working side before they travel (a 4K shot would not fit Ray's object store), the
    prompts are scaled with them, and the masks come back at plate size.
    """

    def __init__(self, name: str, max_side: int) -> None:
        self.name = name
        self.max_side = max_side
        self._actor = ray.get_actor(name)

    def params(self) -> dict[str, object]:
        """The actor's SAM2 settings (the actor's name is not part of them)."""
        return dict(ray.get(self._actor.params.remote()))

    def segment_objects(
        self, frames: np.ndarray, prompts_by_object: Mapping[int, ObjectPrompts], *, shot: str = ""
    ) -> dict[int, np.ndarray]:
        """Track objects on the actor; masks are (T, H, W) bool at the frames' size.

        Raises:
            WorkerLost: the actor died.
        """
        import cv2

        height, width = frames.shape[1:3]
        scale = min(1.0, self.max_side / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = (
            frames if scale == 1.0 else np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        )
        scaled = {number: _scale_prompts(prompts, scale) for number, prompts in prompts_by_object.items()}
        try:
            masks: Any = ray.get(self._actor.segment.remote(small, scaled, shot))
        except ray.exceptions.RayActorError as error:
            raise WorkerLost(f"SAM2 actor {self.name} died: {str(error).splitlines()[0]}") from None
        if scale == 1.0:
            return dict(masks)
        return {
            number: np.stack(
                [cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0 for m in mask]
            )
            for number, mask in masks.items()
        }


def _scale_prompts(prompts: ObjectPrompts, scale: float) -> ObjectPrompts:
    return ObjectPrompts(
        tuple(PointPrompt(p.frame, p.x * scale, p.y * scale, p.positive) for p in prompts.points),
        tuple(BoxPrompt(b.frame, b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale) for b in prompts.boxes),
    )


def start_sam2_pool(settings: Sam2Settings, *, prefix: str) -> Pool:
    """Start one SAM2 actor per GPU (a tenth of each, beside the VOID actors), or one on the CPU without GPUs."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    options: dict[str, Any] = {"num_gpus": 0.1, "num_cpus": 1} if gpus else {"num_cpus": 0.5}
    device = "cuda" if gpus else "cpu"
    names = tuple(f"{prefix}-{index}" for index in range(max(gpus, 1)))
    handles = tuple(Sam2Actor.options(name=name, **options).remote(settings, device) for name in names)  # type: ignore[attr-defined]
    return Pool(names, handles)


def stop_pool(pool: Pool) -> None:
    """Kill the pool's actors (their GPU memory is freed with their processes)."""
    for handle in pool.handles:
        ray.kill(handle, no_restart=True)
