"""Resident VOID models on Ray actors: each GPU loads its weights once and serves many shots.

One pool per pass. With G GPUs in the cluster there is one pass-1 actor per GPU and, when the batch runs pass 2,
one pass-2 actor per GPU beside it (each holds half a GPU: both bf16 transformers fit on one 80 GB card). Without
GPUs a single actor of each pass runs on the CPU in float32 (tests, tiny models). Shot tasks reach an actor by its
name and send it only model-resolution clips.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from void_ops.exceptions import WorkerLost
from void_ops.void.backend import ModelClip, ModelSpec, VoidModel

__all__ = ["ActorModel", "Pool", "VoidActor", "start_pool", "stop_pool"]


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


def stop_pool(pool: Pool) -> None:
    """Kill the pool's actors (their GPU memory is freed with their processes)."""
    for handle in pool.handles:
        ray.kill(handle, no_restart=True)
