"""Resident models on Ray actors (VOID passes and SAM2): each loads its weights once and serves many shots.

VOID runs on a GPU service shared by every batch of the cluster that asks for the same models: one ``GpuWorker`` per
GPU holding every pass (pass 1, and pass 2 beside it), so one card runs one call at a time, and one ``GpuService``
(``tasks.placement.Dispatcher``) in front of them. They are detached named actors in the ``voidflow`` Ray namespace,
named by a hash of the model specs (``service_key``): a batch looks them up and starts only the missing ones
(``start_gpu_service``) and never stops them. Shot tasks ask the service for a lease before each call: it picks the
GPU, queues by priority (the batch's, then the shot's), and quarantines a GPU that keeps failing. A worker idle for
``VOIDFLOW_GPU_IDLE_S`` seconds is retired, so an autoscaled GPU group shrinks to zero; the next batch (or a shot
that finds none left) starts the workers again. With ``--device cpu`` a single worker runs on the CPU in float32
(tests, tiny models). Shot tasks send workers only model-resolution clips, and
pass 2's warped noise made before the lease (``void_ops.void.backend.pass2_noise``), so a lease covers GPU work.

A GPU worker is an entry point of its own process: it reads its node's settings once for the compile cache folder
(``VOIDFLOW_COMPILE_CACHE``, loaded before its first compile and saved after each compile that made something new).
Each call reports its occupancy of the GPU (the call's seconds) and the GPU time of its kernels (``kernel_s``), which
the dispatcher adds up per GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray

from voidflow.infra.settings import Settings
from voidflow.tasks.placement import Dispatcher, Grant, Outcome, Refusal, Request
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
from voidflow.void_ops.void.compile_cache import CompileCache, device_key
from voidflow.void_ops.void.memory import RECIPES, Footprint, estimate_gb
from voidflow.void_ops.void.values import latent_frames

__all__ = [
    "NAMESPACE",
    "ActorModel",
    "ActorSegmenter",
    "GpuPool",
    "GpuService",
    "GpuWorker",
    "Pool",
    "Sam2Actor",
    "forget_shot",
    "gpu_stats",
    "service_key",
    "start_gpu_service",
    "start_sam2_pool",
    "stop_gpu_service",
    "stop_pool",
    "worker_compile_cache",
]

#: The Ray namespace of the shared GPU services (every batch's job finds them there).
NAMESPACE = "voidflow"


def worker_compile_cache(specs: Mapping[str, ModelSpec], root: Path | None) -> CompileCache | None:
    """The compile cache a worker holding ``specs`` shares between its passes: one under ``root`` (the settings'
    ``compile_cache``) keyed by this process's torch, Triton and GPU, when a pass compiles on CUDA; else None."""
    compiled = [spec for spec in specs.values() if spec.compile and spec.device.startswith("cuda")]
    if root is None or not compiled:
        return None
    return CompileCache(root, device_key(compiled[0].device))


class GpuWorker:
    """Every VOID pass of the batch resident on one device; Ray runs its calls one at a time.

    The worker is its process's entry point: it reads the settings once, for the compile cache folder.
    """

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        cache = worker_compile_cache(specs, Settings.from_env().compile_cache)
        self._models = {name: VoidModel(spec, cache) for name, spec in specs.items()}
        self._cache = cache

    def describe(self) -> dict[str, Any]:
        """Each pass's recipe, placement, weight hashes, footprint and latent geometry (channels, spatial scale),
        the device's memory (None: no limit), and what the worker loaded from its compile cache (None: none)."""
        first = next(iter(self._models.values()))
        loaded = self._cache.loaded if self._cache is not None else None
        return {
            "passes": {name: model.params() for name, model in self._models.items()},
            "footprints": {name: model.footprint.as_dict() for name, model in self._models.items()},
            "latents": {name: model.latent_geometry for name, model in self._models.items()},
            "memory_gb": first.memory_gb,
            "compile_cache": None if loaded is None else loaded.as_dict(),
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
        graphs = run.cache.graphs  # None only where nothing compiles (and the cache is off)
        if graphs is not None and (run.cache.state == "miss" or graphs.compiled):  # what it compiled, where it went
            note = run.cache.note or "nothing new to save"
            print(f"{label}: {graphs}; compile cache {run.cache.key}: {note}", flush=True)
        return frames, run.facts()


@dataclass(frozen=True, slots=True)
class GpuPool:
    """A batch's view of its GPU service as shot tasks see it: names and plain data, fit for task parameters.

    Attributes:
        dispatcher: the name of the service's ``Dispatcher`` actor.
        workers: GPU worker names.
        params: per pass, the recipe, placement and weight hashes (the same on every worker).
        footprints: per pass, what the model keeps on its device (``void_ops.void.memory.Footprint`` fields).
        timeout_s: longest a model call may take, its wait in the worker's queue included.
        latents: per pass, the VAE's latent channels and spatial compression (pass 2's noise is made to fit).
        namespace: the actors' Ray namespace (None: the job's own).
        specs: what every worker holds, as placed (empty: nobody may start the workers again).
        worker_options: the workers' Ray resources.
        batch_id: the batch whose shots use this view (their leases are its).
        batch_priority: the batch's priority (``--priority``): its calls are served before lower ones.
    """

    dispatcher: str
    workers: tuple[str, ...]
    params: Mapping[str, Mapping[str, object]]
    footprints: Mapping[str, Mapping[str, Any]]
    timeout_s: float
    latents: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    namespace: str | None = None
    specs: Mapping[str, ModelSpec] = dataclasses.field(default_factory=dict)
    worker_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_id: str = ""
    batch_priority: int = 0


class GpuService(Dispatcher):
    """The dispatcher of a shared GPU service, as a Ray actor: it kills the workers it retires."""

    def __init__(self, *, depth: int, strikes: int, idle_s: float, namespace: str) -> None:
        super().__init__({}, depth=depth, strikes=strikes, idle_s=idle_s)
        self._namespace = namespace

    def _retire(self, name: str) -> None:
        try:
            ray.kill(ray.get_actor(name, namespace=self._namespace), no_restart=True)
        except ValueError:  # gone already
            return
        print(f"VOID worker {name} retired (idle or quarantined)", flush=True)


def service_key(specs: Mapping[str, ModelSpec]) -> str:
    """The GPU service's key for workers holding ``specs`` (as placed): batches with the same models share one."""
    text = json.dumps({name: dataclasses.asdict(spec) for name, spec in specs.items()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def start_gpu_service(
    specs: Mapping[str, ModelSpec],
    *,
    timeout_s: float,
    on_cpu: bool = False,
    gpu_wait_s: float = 600.0,
    idle_s: float = 600.0,
    depth: int = 2,
    strikes: int = 2,
) -> GpuPool:
    """Find, or start where missing, the shared service for ``specs``: one worker per GPU (or, with ``on_cpu``, one
    float32 worker on the CPU) and their dispatcher, detached in the ``voidflow`` namespace; wait for the models of
    the workers it started to load.

    Returns the batch's view of the service (fill in ``batch_id`` and ``batch_priority``). The actors outlive the
    batch: a worker leaves after ``idle_s`` seconds idle (``stop_gpu_service`` stops them all).

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
    else:  # no CPU reserved: an idle service must not hold the CPUs later batches' shot tasks need
        specs = {
            k: dataclasses.replace(s, device="cpu", dtype="float32", memory_mode="full")  # nothing compiles there
            for k, s in specs.items()
        }
        options = {"num_cpus": 0}
    prefix = f"voidflow-void-{service_key(specs)}"
    names = tuple(f"{prefix}-gpu{index}" for index in range(max(gpus, 1)))
    service: Any = ray.remote(GpuService).options(
        name=f"{prefix}-dispatcher", namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0
    )
    dispatcher = service.remote(depth=depth, strikes=strikes, idle_s=idle_s, namespace=NAMESPACE)
    dispatcher.set_idle.remote(idle_s)  # a service found running takes the newest batch's setting
    pool = GpuPool(f"{prefix}-dispatcher", names, {}, {}, timeout_s, namespace=NAMESPACE, specs=specs)
    pool = dataclasses.replace(pool, worker_options=options)
    about = _start_workers(pool, dispatcher)
    latents = {name: (int(geometry[0]), int(geometry[1])) for name, geometry in about["latents"].items()}
    return dataclasses.replace(pool, params=about["passes"], footprints=about["footprints"], latents=latents)


def _start_workers(pool: GpuPool, dispatcher: Any) -> dict[str, Any]:
    """Start the pool's workers that are missing (and join them to its service ``dispatcher``); return what the
    workers hold. Workers the service already knows are not asked (a busy one would answer only after its calls).

    Raises:
        ModelLoadError: a worker failed to load its models.
    """
    held: tuple[dict[str, float | None], dict[str, Any]] = ray.get(dispatcher.hold.remote())
    members, about = held
    remote: Any = ray.remote(max_restarts=0, max_task_retries=0)(GpuWorker)
    handles: dict[str, Any] = {}
    for name in pool.workers:
        try:
            found = ray.get_actor(name, namespace=pool.namespace)
        except ValueError:  # never started, retired, or dead: start it
            found = None
        if found is None:
            options = {"name": name, "namespace": pool.namespace, "lifetime": "detached", "get_if_exists": True}
            handles[name] = remote.options(**options, **pool.worker_options).remote(pool.specs)
        elif name not in members or not about:
            handles[name] = found
    try:
        described: list[dict[str, Any]] = ray.get([handle.describe.remote() for handle in handles.values()])
    except ray.exceptions.RayActorError as error:
        for handle in handles.values():
            ray.kill(handle, no_restart=True)
        raise ModelLoadError(f"VOID models failed to load: {_last_error_line(error)}") from None
    for name, info in zip(handles, described, strict=True):
        loaded = info.get("compile_cache")
        if loaded is not None:
            skipped = f"; skipped {'; '.join(loaded['skipped'])}" if loaded["skipped"] else ""
            print(
                f"VOID: {name} loaded {loaded['artifacts']} compiled artifacts from {loaded['files']} file(s) of "
                f"{loaded['folder']} in {loaded['seconds']:g} s{skipped}"
            )
    if described:
        about = {key: described[0][key] for key in ("passes", "footprints", "latents")}
        memory = {name: info["memory_gb"] for name, info in zip(handles, described, strict=True)}
        ray.get(dispatcher.join.remote(memory, about))
    return dict(about)


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


def stop_gpu_service(pool: GpuPool) -> None:
    """Kill the service's workers and dispatcher (GPU memory is freed with their processes); batches using it fail
    their GPU calls. For tests and maintenance: batches never stop the service."""
    dispatcher: Any = ray.get_actor(pool.dispatcher, namespace=pool.namespace)
    held: tuple[dict[str, float | None], dict[str, Any]] = ray.get(dispatcher.hold.remote())
    for name in {*held[0], *pool.workers}:
        try:
            ray.kill(ray.get_actor(name, namespace=pool.namespace), no_restart=True)
        except ValueError:  # gone already
            continue
    ray.kill(dispatcher, no_restart=True)


def gpu_stats(pool: GpuPool) -> dict[str, object]:
    """The service's per-GPU numbers (seconds occupied by calls, their kernels' GPU seconds, calls, leases,
    quarantine) and how many calls wait, over every batch that shares it."""
    stats: Any = ray.get(ray.get_actor(pool.dispatcher, namespace=pool.namespace).stats.remote())
    return dict(stats)


def forget_shot(pool: GpuPool, shot: str) -> None:
    """Tell the service that ``shot``'s task (of the pool's batch) died: the GPU leases it held are free again."""
    ray.get(ray.get_actor(pool.dispatcher, namespace=pool.namespace).forget.remote(shot, pool.batch_id))


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
        self._dispatcher = ray.get_actor(pool.dispatcher, namespace=pool.namespace)

    def params(self) -> dict[str, object]:
        """The pass recipe, placement and weight hashes."""
        return dict(self.pool.params[self.name])

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The latent shape (T_lat, C, h, w) of a padded clip, as the pool's workers compute it."""
        channels, scale = self.pool.latents[self.name]
        return latent_frames(frames), channels, height // scale, width // scale

    def _request(self, clip: ModelClip) -> Request:
        footprint = Footprint(**self.pool.footprints[self.name])
        frames, height, width = clip.quadmask.shape
        need = estimate_gb(footprint, frames, height, width, RECIPES[-1])
        recipe = self.pool.params[self.name]
        steps = int(str(recipe["steps"]))
        forwards = 2 if float(str(recipe["guidance"])) > 1 else 1
        cost = float(frames * steps * forwards)
        pool = self.pool
        return Request(self.shot, need, cost, self.priority, self.frames, pool.batch_priority, pool.batch_id)

    def __call__(self, call: PassInput) -> np.ndarray:
        """Lease a GPU, run the pass there and wait for its frames.

        Raises:
            NoDeviceFits: no usable GPU can take the clip (too large, or every GPU quarantined).
            StageTimeout: the call ran past the pool's timeout; its worker is killed and its GPU quarantined.
            WorkerLost: the worker died (its process was killed or its node lost); its GPU is quarantined.
            GpuOutOfMemory: no memory recipe fitted on the leased GPU.
        """
        request = self._request(call.clip)
        answer: Any = ray.get(self._dispatcher.acquire.remote(request))
        if isinstance(answer, Refusal) and answer.vacant and self.pool.specs:
            print(f"{self.shot}: the GPU workers left idle; starting them again", flush=True)
            _start_workers(self.pool, self._dispatcher)
            answer = ray.get(self._dispatcher.acquire.remote(request))
        if not isinstance(answer, Grant):
            raise NoDeviceFits(answer.reason)
        worker = ray.get_actor(answer.gpu, namespace=self.pool.namespace)
        label = f"{self.shot} {self.name} on {answer.gpu}"
        pending = worker.run.remote(self.name, call, label)
        outcome: Outcome | None = "failed"  # None once the lease is handed back
        busy = kernels = 0.0
        try:
            frames, facts = ray.get(pending, timeout=self.pool.timeout_s)
            outcome, busy, kernels = "ok", float(str(facts["seconds"])), float(facts.get("kernel_s") or 0.0)
            noise = {"noise_cpu_s": round(call.noise_s, 3)} if call.noise is not None else {}
            self.runs.append({**facts, "gpu": answer.gpu, **noise})
            return np.asarray(frames)
        except ray.exceptions.GetTimeoutError:
            # Quarantine before the kill: a call queued on this worker dies with it, and its "lost" must find the
            # GPU already quarantined for the hang, the real cause.
            self._release(answer.lease, "stuck")
            outcome = None
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
            if outcome is not None:
                self._release(answer.lease, outcome, busy, kernels)

    def _release(self, lease: int, outcome: Outcome, busy: float = 0.0, kernels: float = 0.0) -> None:
        """Hand ``lease`` back to the dispatcher with how the call went; print its note when that quarantined a GPU."""
        note: Any = ray.get(self._dispatcher.release.remote(lease, outcome, busy, kernels))
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
