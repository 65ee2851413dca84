"""Resident models on Ray actors (VOID passes and SAM2): each loads its weights once and serves many shots.

VOID runs on one ``GpuWorker`` per GPU holding every pass the batch needs (pass 1, and pass 2 beside it), so one
card runs one call at a time. Shot tasks ask the batch's ``Dispatcher`` (``tasks.placement``) for a lease before
each call: it picks the GPU, queues by priority, and quarantines a GPU that keeps failing. Without GPUs a single
worker runs on the CPU in float32 (tests, tiny models). Shot tasks send workers only model-resolution clips.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from voidflow.tasks.placement import Dispatcher, Grant, Outcome, Request
from voidflow.void_ops.exceptions import (
    ConfigurationError,
    GpuOutOfMemory,
    ModelLoadError,
    NoDeviceFits,
    PermanentError,
    StageTimeout,
    WorkerLost,
)
from voidflow.void_ops.frames import fit_size
from voidflow.void_ops.masking.sam2_video import ObjectPrompts, Sam2Settings
from voidflow.void_ops.shots import BoxPrompt, PointPrompt
from voidflow.void_ops.void.backend import ModelClip, ModelSpec, PassInput, VoidModel
from voidflow.void_ops.void.memory import RECIPES, Footprint, estimate_gb

__all__ = [
    "ActorModel",
    "ActorSegmenter",
    "GpuPool",
    "GpuWorker",
    "Pool",
    "Sam2Actor",
    "forget_shot",
    "gpu_stats",
    "start_gpu_pool",
    "start_sam2_pool",
    "stop_gpu_pool",
    "stop_pool",
]


class GpuWorker:
    """Every VOID pass of the batch resident on one device; Ray runs its calls one at a time."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._models = {name: VoidModel(spec) for name, spec in specs.items()}

    def describe(self) -> dict[str, Any]:
        """Each pass's recipe, placement, weight hashes and footprint, and the device's memory (None: no limit)."""
        first = next(iter(self._models.values()))
        return {
            "passes": {name: model.params() for name, model in self._models.items()},
            "footprints": {name: model.footprint.as_dict() for name, model in self._models.items()},
            "memory_gb": first.memory_gb,
        }

    def run(self, name: str, call: PassInput, label: str) -> tuple[np.ndarray, dict[str, object]]:
        """Run pass ``name`` on one prepared call; return its frames and how it ran (``PassRun.facts``).

        The pass's memory budget is the card's less what the other resident passes hold.
        """

        def progress(step: int, total: int) -> None:
            if step % 10 == 0 or step == total:
                print(f"{label}: step {step}/{total}", flush=True)

        model = self._models[name]
        budget = model.memory_gb
        if budget is not None:
            others = [m.footprint for key, m in self._models.items() if key != name]
            budget -= sum(f.transformer_gb + f.vae_gb for f in others)
        frames = model(call, on_step=progress, budget_gb=budget)
        run = model.last_run
        assert run is not None
        if run.passed_over:
            print(f"{label}: ran with memory recipe '{run.recipe.name}' ({'; '.join(run.passed_over)})", flush=True)
        return frames, run.facts()


@dataclass(frozen=True, slots=True)
class GpuPool:
    """The batch's GPU workers as shot tasks see them: names only (plain data, fit for task parameters).

    Attributes:
        dispatcher: the name of the batch's ``Dispatcher`` actor.
        workers: GPU worker names.
        params: per pass, the recipe, placement and weight hashes (the same on every worker).
        footprints: per pass, what the model keeps on its device (``void_ops.void.memory.Footprint`` fields).
        timeout_s: longest a model call may take, its wait in the worker's queue included.
    """

    dispatcher: str
    workers: tuple[str, ...]
    params: Mapping[str, Mapping[str, object]]
    footprints: Mapping[str, Mapping[str, Any]]
    timeout_s: float


def start_gpu_pool(
    specs: Mapping[str, ModelSpec],
    *,
    prefix: str,
    timeout_s: float,
    on_cpu: bool = False,
    gpu_wait_s: float = 600.0,
    depth: int = 2,
    strikes: int = 2,
) -> tuple[GpuPool, tuple[Any, ...]]:
    """Start one worker per GPU holding ``specs`` (or, with ``on_cpu``, one float32 worker on the CPU), wait for
    their models to load, and start the batch's dispatcher over them.

    Returns the pool for shot tasks, and the actor handles, which the caller keeps until ``stop_gpu_pool`` (Ray
    ends a named actor once no handle to it is left).

    Raises:
        ConfigurationError: no GPU joined the cluster within ``gpu_wait_s`` (never a silent CPU worker).
        ModelLoadError: a worker failed to load its models (the first line of its error).
    """
    gpus = 0 if on_cpu else _wait_for_gpus(gpu_wait_s)
    if gpus:
        alone = len(specs) == 1  # one pass per GPU leaves room to keep T5 there between prompts
        specs = {
            k: dataclasses.replace(s, device="cuda", dtype="bfloat16", text_encoder_resident=alone)
            for k, s in specs.items()
        }
        options: dict[str, Any] = {"num_gpus": 0.9, "num_cpus": 1}  # a tenth left for a SAM2 actor beside it
    else:  # half a CPU, so the shot tasks that feed the worker always find a CPU free
        specs = {
            k: dataclasses.replace(s, device="cpu", dtype="float32", compile=False, memory_mode="full")
            for k, s in specs.items()
        }
        options = {"num_cpus": 0.5}
    remote: Any = ray.remote(max_restarts=0, max_task_retries=0)(GpuWorker)
    names = tuple(f"{prefix}-gpu{index}" for index in range(max(gpus, 1)))
    workers = tuple(remote.options(name=name, **options).remote(specs) for name in names)
    try:
        described: list[dict[str, Any]] = ray.get([worker.describe.remote() for worker in workers])
    except ray.exceptions.RayActorError as error:
        for worker in workers:
            ray.kill(worker, no_restart=True)
        raise ModelLoadError(f"VOID models failed to load: {_last_error_line(error)}") from None
    dispatcher_name = f"{prefix}-dispatcher"
    memory = {name: info["memory_gb"] for name, info in zip(names, described, strict=True)}
    dispatcher = (
        ray.remote(Dispatcher)
        .options(name=dispatcher_name, num_cpus=0, max_restarts=0)
        .remote(memory, depth=depth, strikes=strikes)
    )
    first = described[0]
    pool = GpuPool(dispatcher_name, names, first["passes"], first["footprints"], timeout_s)
    return pool, (*workers, dispatcher)


def _wait_for_gpus(wait_s: float, *, poll_s: float = 2.0) -> int:
    """The cluster's GPU count, asking its autoscaler for one and waiting up to ``wait_s`` seconds where a GPU
    group is scaled to zero.

    Raises:
        ConfigurationError: still no GPU after ``wait_s`` seconds.
    """
    from ray.autoscaler.sdk import request_resources

    deadline = time.monotonic() + wait_s
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if not gpus and wait_s > 0:
        request_resources(bundles=[{"GPU": 1}])  # an autoscaled GPU group grows from zero; a fixed cluster ignores it
        print(f"VOID: no GPU in the cluster yet; waiting up to {wait_s:g} s for one to join")
    while not gpus and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
        gpus = int(ray.cluster_resources().get("GPU", 0))
    if not gpus:
        raise ConfigurationError(
            f"the void backend found no GPU in the Ray cluster after {wait_s:g} s (is its GPU group scaled to zero "
            "and not growing?); VOID on CPUs is for tests only: --device cpu"
        )
    return gpus


def _last_error_line(error: BaseException) -> str:
    """The innermost ``SomeError: message`` line of a Ray error's text (which carries the remote traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if re.match(r"\s*[\w.]+(Error|Exception): ", line)]
    return lines[-1] if lines else str(error).splitlines()[0]


def stop_gpu_pool(handles: tuple[Any, ...]) -> None:
    """Kill the workers and the dispatcher (GPU memory is freed with their processes)."""
    for handle in handles:
        ray.kill(handle, no_restart=True)


def gpu_stats(pool: GpuPool) -> dict[str, object]:
    """The dispatcher's per-GPU numbers (busy seconds, calls, leases, quarantine) and how many calls wait."""
    stats: Any = ray.get(ray.get_actor(pool.dispatcher).stats.remote())
    return dict(stats)


def forget_shot(pool: GpuPool, shot: str) -> None:
    """Tell the dispatcher that ``shot``'s task died: the GPU leases it held are free again."""
    ray.get(ray.get_actor(pool.dispatcher).forget.remote(shot))


class ActorModel:
    """One VOID pass of a ``GpuPool``, called like ``VoidModel`` (``void_ops.void.backend.PassModel``) so the
    backend cannot tell the two apart: each call leases a GPU from the dispatcher, runs there, and hands the lease
    back with its outcome."""

    def __init__(self, pool: GpuPool, name: str, *, shot: str = "", priority: int = 0, frames: int = 0) -> None:
        self.pool = pool
        self.name = name
        self.shot = shot
        self.priority = priority
        self.frames = frames
        self.runs: list[dict[str, object]] = []  # how each call ran, for the stage's provenance
        self._dispatcher = ray.get_actor(pool.dispatcher)

    def params(self) -> dict[str, object]:
        """The pass recipe, placement and weight hashes."""
        return dict(self.pool.params[self.name])

    def _request(self, clip: ModelClip) -> Request:
        footprint = Footprint(**self.pool.footprints[self.name])
        frames, height, width = clip.quadmask.shape
        need = estimate_gb(footprint, frames, height, width, RECIPES[-1])
        recipe = self.pool.params[self.name]
        steps = int(str(recipe["steps"]))
        forwards = 2 if float(str(recipe["guidance"])) > 1 else 1
        return Request(self.shot, need, float(frames * steps * forwards), self.priority, self.frames)

    def __call__(self, call: PassInput) -> np.ndarray:
        """Lease a GPU, run the pass there and wait for its frames.

        Raises:
            NoDeviceFits: no usable GPU can take the clip (too large, or every GPU quarantined).
            StageTimeout: the call ran past the pool's timeout; its worker is killed and its GPU quarantined.
            WorkerLost: the worker died (its process was killed or its node lost); its GPU is quarantined.
            GpuOutOfMemory: no memory recipe fitted on the leased GPU.
        """
        answer: Any = ray.get(self._dispatcher.acquire.remote(self._request(call.clip)))
        if not isinstance(answer, Grant):
            raise NoDeviceFits(answer.reason)
        worker = ray.get_actor(answer.gpu)
        label = f"{self.shot} {self.name} on {answer.gpu}"
        pending = worker.run.remote(self.name, call, label)
        outcome: Outcome = "failed"
        busy = 0.0
        try:
            frames, facts = ray.get(pending, timeout=self.pool.timeout_s)
            outcome, busy = "ok", float(str(facts["seconds"]))
            self.runs.append({**facts, "gpu": answer.gpu})
            return np.asarray(frames)
        except ray.exceptions.GetTimeoutError:
            outcome = "stuck"
            ray.kill(worker, no_restart=True)
            raise StageTimeout(
                f"shot '{self.shot}': {self.name} on {answer.gpu} ran past its {self.pool.timeout_s:g} s timeout"
            ) from None
        except ray.exceptions.RayActorError as error:
            outcome = "lost"
            raise WorkerLost(f"VOID worker {answer.gpu} died: {str(error).splitlines()[0]}") from None
        except ray.exceptions.RayTaskError as error:
            cause = error.cause
            outcome = "bad_input" if isinstance(cause, PermanentError) else "failed"
            if isinstance(cause, (GpuOutOfMemory, PermanentError)):
                raise cause from None
            raise
        finally:
            note = ray.get(self._dispatcher.release.remote(answer.lease, outcome, busy))
            if note:
                print(note, flush=True)


@dataclass(frozen=True)
class Pool:
    """Running actors of one kind: their names (for shot tasks) and handles (which keep them alive)."""

    names: tuple[str, ...]
    handles: tuple[Any, ...]


@ray.remote(max_restarts=0, max_task_retries=0)
class Sam2Actor:
    """SAM2's video predictor resident on this actor's device (Hydra's global state stays in this process)."""

    def __init__(self, settings: Sam2Settings, device: str) -> None:
        from voidflow.void_ops.masking.sam2_video import Sam2VideoMasker

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
        small_height, small_width = fit_size(height, width, self.max_side)
        scale = min(1.0, self.max_side / max(height, width))  # the prompts' scale (fit_size rounds the sides)
        small = (
            frames
            if scale == 1.0
            else np.stack([cv2.resize(f, (small_width, small_height), interpolation=cv2.INTER_AREA) for f in frames])
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
