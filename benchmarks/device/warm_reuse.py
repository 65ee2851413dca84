"""Does a warm-up spare later processes their compile on this GPU? A tiny VOID on CUDA, compiled for real.

Three processes share one compile cache (voidflow's folder, Inductor's and Triton's): the warm-up
(``warm_passes``, as ``voidflow models warm`` and ``throughput.py --warm`` run it), then a plain process and a GPU
worker of the batch's own Ray service (``start_gpu_service``), each making one real call per pass at a length the
warm-up compiled. Two more share a second cache: a GPU worker that warms up inside itself, then a fresh worker
making the calls (``ROLES``). Every process counts the graphs it compiled and found (``GraphCounts``) and logs its
cache keys; the JSON says, per later process, how many of its keys were new to its warm-up's, which parts of them,
and which fields of those parts (``cache_keys.compare``), with each process's facts (``_fingerprint``). The tiny
model compiles in seconds, so the question costs a few minutes of GPU time, not the full model's ten.

    python3 benchmarks/device/warm_reuse.py [--out result.json] [--folder DIR] [--smoke]

``--smoke`` runs the same on the CPU, where nothing compiles (the plumbing only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)

GEOMETRY = {"height": 64, "width": 96, "min_frames": 13, "max_frames": 29}
WINDOWS = {"window": 4, "overlap": 2}
SHOT = 21  # frames: a padded run of 29, two multidiffusion windows of 4 latent frames
STEPS = 3
#: Each process, and the warm-up whose keys its keys are compared with. ``ray-warm`` warms inside a GPU worker of
#: the service (its own caches, not the first warm-up's); ``ray-after`` is a fresh worker after it: does warming
#: where the batch runs spare the batch's worker its compile?
ROLES = {"warm": None, "plain": "warm", "ray": "warm", "ray-warm": None, "ray-after": "ray-warm"}
_SECOND = ("ray-warm", "ray-after")  # these two share a second set of caches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--folder", type=Path, help="work here (default: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="on the CPU: nothing compiles, the plumbing runs")
    parser.add_argument("--role", choices=list(ROLES), help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="warm-reuse-"))
    if args.role:
        print(json.dumps(child(args.role, folder, smoke=args.smoke)), flush=True)
        return 0
    document = parent(folder, smoke=args.smoke, out=args.out)
    print(json.dumps(document), flush=True)  # one line, the output's last
    return 0


def parent(folder: Path, *, smoke: bool, out: Path | None = None) -> dict[str, Any]:
    """Build the tiny VOID, run the processes of ``ROLES`` in turn, and compare their keys with their warm-up's;
    ``out`` is rewritten after each process, so a run cut off at its time limit still tells what it found."""
    from benchmarks.device.cache_keys import TORCH_LOGS, compare, read
    from voidflow.void_ops.void.tiny import build_tiny_void

    folder.mkdir(parents=True, exist_ok=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
    models = build_tiny_void(folder / "models")
    (folder / "models.json").write_text(json.dumps({"base": str(models.base), "pass1": str(models.pass1)}))
    env = {
        **os.environ,
        "VOIDFLOW_HOME": str(folder / "home"),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TORCH_LOGS": TORCH_LOGS,
    }
    document: dict[str, Any] = {"benchmark": "warm_reuse", "shot_frames": SHOT, "steps": STEPS, "processes": {}}
    for role, warmed_by in ROLES.items():
        log = folder / f"keys-{role}.log"
        caches = folder / ("second" if role in _SECOND else "first")
        role_env = {
            **env,
            "TORCH_LOGS_OUT": str(log),
            "VOIDFLOW_COMPILE_CACHE": str(caches / "compile-cache"),
            "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
            "TRITON_CACHE_DIR": str(caches / "triton"),
        }
        command = [sys.executable, __file__, "--role", role, "--folder", str(folder), *(["--smoke"] * smoke)]
        result = subprocess.run(command, env=role_env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            document["processes"][role] = {"error": result.stderr.strip().splitlines()[-1:]}
            print(result.stderr[-4000:], file=sys.stderr)
            continue
        document["processes"][role] = json.loads(result.stdout.strip().splitlines()[-1])
        if warmed_by is not None:
            keys = compare(read(folder / f"keys-{warmed_by}.log"), read(log))
            document["processes"][role]["keys"] = {"warmed_by": warmed_by, **keys}
        if out:
            out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"{role}: done", file=sys.stderr, flush=True)
    return document


def child(role: str, folder: Path, *, smoke: bool) -> dict[str, Any]:
    """One process of ``ROLES``: warm up, or make one call per pass (in this process, or on a Ray GPU worker)."""
    import dataclasses

    import torch

    from voidflow.void_ops.void.backend import ModelSpec, VoidSettings, warm_lengths, warm_passes
    from voidflow.void_ops.void.compile_cache import CompileCache, device_key
    from voidflow.void_ops.void.values import PASS1, PASS2

    paths = json.loads((folder / "models.json").read_text())
    device, dtype = ("cpu", "float32") if smoke else ("cuda", "bfloat16")
    settings = VoidSettings(**GEOMETRY)
    recipes = {
        name: dataclasses.replace(recipe, **WINDOWS, steps=STEPS)
        for name, recipe in (("pass1", PASS1), ("pass2", PASS2))
    }
    specs = {
        name: ModelSpec(paths["base"], paths["pass1"], recipe, device=device, dtype=dtype)
        for name, recipe in recipes.items()
    }
    cache_root = Path(os.environ["VOIDFLOW_COMPILE_CACHE"])
    cache = None if smoke else CompileCache(cache_root, device_key(device))
    lengths = warm_lengths([SHOT], settings, window=WINDOWS["window"], overlap=WINDOWS["overlap"])
    calls: list[dict[str, Any]] = []
    if role == "warm":

        def report(name: str, length: int, run: Any) -> None:
            calls.append(_call(name, length, run.finished - run.started, run.facts()))

        warm_passes(specs, lengths, settings, cache, report)
        process = _fingerprint(None)
    elif role == "plain":
        from voidflow.void_ops.void.backend import VoidModel

        held = {name: VoidModel(spec, cache) for name, spec in specs.items()}  # both resident, as on a worker
        for name, model in held.items():
            model(_input(name, settings, model.latent_shape))
            assert model.last_run is not None
            facts = model.last_run.facts()
            calls.append(_call(name, SHOT, facts["seconds"], facts))
        process = _fingerprint(held)
    else:
        calls, process = _on_ray(specs, settings, smoke=smoke, warm=lengths if role == "ray-warm" else None)
    return {"role": role, "pid": os.getpid(), "torch": torch.__version__, "calls": calls, "process": process}


def _fingerprint(models: dict[str, Any] | None) -> dict[str, Any]:
    """What about this process can change a cache key's tensor parts while their printed values stay the same:
    the reducers pickling uses (``copyreg``, which Inductor's key pickler starts from), torch's modes, the thread
    count and visible GPUs, whether the models' parameters are inference tensors, and how Inductor's key pickler
    hashes one parameter's metadata and its parts (``pickled``: a pickling-only difference shows there)."""
    import copyreg

    import torch

    reducers = sorted(f"{kind.__module__}.{kind.__qualname__}" for kind in copyreg.dispatch_table)
    params = {
        name: {part: next(getattr(model.models, part).parameters()).is_inference() for part in ("vae", "transformer")}
        for name, model in (models or {}).items()
    }
    return {
        "copyreg": reducers,
        "inference_mode": torch.is_inference_mode_enabled(),
        "grad": torch.is_grad_enabled(),
        "threads": torch.get_num_threads(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "parameters_are_inference_tensors": params,
        "pickled": _pickled(next(iter(models.values())).models.transformer if models else None),
    }


def _pickled(module: Any) -> dict[str, str]:
    """Inductor's cache-key hash of ``module``'s first parameter's metadata, field by field and whole (with its
    printed form), as the key pickler computes them in this process; empty without a module."""
    import torch
    from torch._inductor.codecache import FxGraphCachePickler, extract_tensor_metadata_for_cache_key

    if module is None:
        return {}
    pickler = FxGraphCachePickler(torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph()))
    metadata = extract_tensor_metadata_for_cache_key(next(module.parameters()))
    fields = {field: pickler.get_hash(getattr(metadata, field)) for field in metadata.__dataclass_fields__}
    return {**fields, "whole": pickler.get_hash(metadata), "printed": str(metadata)}


def _on_ray(
    specs: dict[str, Any], settings: Any, *, smoke: bool, warm: list[int] | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The calls on a GPU worker of the batch's own service, started as a batch starts it (with ``warm``, the
    warm-up's blank calls at those lengths instead, made inside the worker), and the worker process's fingerprint
    (``_fingerprint``, taken in the worker)."""
    import ray

    from voidflow.tasks.void_actors import ActorModel, start_gpu_service, stop_gpu_service

    ray.init(num_cpus=4, num_gpus=0 if smoke else 1, include_dashboard=False, log_to_driver=False)
    try:
        pool = start_gpu_service(specs, timeout_s=600, on_cpu=smoke, gpu_wait_s=60)
        worker = ray.get_actor(pool.workers[0], namespace=pool.namespace)
        calls: list[dict[str, Any]] = []
        if warm is not None:
            calls = ray.get(worker.__ray_call__.remote(_warm_in_worker, warm, settings.height, settings.width))
        else:
            for name in specs:
                call = _input(name, settings, ActorModel(pool, name).latent_shape)
                _, facts = ray.get(worker.run.remote(name, call, f"warm_reuse {name}"))
                calls.append(_call(name, SHOT, facts["seconds"], facts))
        process = ray.get(worker.__ray_call__.remote(_worker_fingerprint))
        stop_gpu_service(pool)
        return calls, process
    finally:
        ray.shutdown()


def _warm_in_worker(worker: Any, lengths: list[int], height: int, width: int) -> list[dict[str, Any]]:
    """``VoidModel.warm`` of each pass a GPU worker holds, at each length, saved to its cache (run there by Ray's
    ``__ray_call__``)."""
    calls = []
    for name, model in worker._models.items():
        for length in lengths:
            run = model.warm(length, height, width)
            calls.append(_call(name, length, run.finished - run.started, run.facts()))
    return calls


def _worker_fingerprint(worker: Any) -> dict[str, Any]:
    """``_fingerprint`` of a GPU worker's process (run there by Ray's ``__ray_call__``)."""
    return _fingerprint(worker._models)


def _input(name: str, settings: Any, latent_shape: Callable[[int, int, int], tuple[int, ...]]) -> Any:
    """A shot of ``SHOT`` frames prepared as a batch prepares one: random plate, a square to remove with an
    affected ring around it; pass 2 gets warped noise of the clip's ``latent_shape`` (here plain noise)."""
    import numpy as np

    from voidflow.void_ops.void.backend import PassInput, prepare_clip

    rng = np.random.default_rng(0)
    frames = rng.random((SHOT, settings.height, settings.width, 3), dtype=np.float32)
    quadmask = np.full((SHOT, settings.height, settings.width), 255, np.uint8)
    quadmask[:, 12:52, 20:76] = 127
    quadmask[:, 20:44, 32:64] = 0
    clip = prepare_clip(frames, quadmask, settings)
    noise = None
    if name == "pass2":
        shape = latent_shape(len(clip.video), settings.height, settings.width)
        noise = rng.standard_normal((1, *shape), dtype=np.float32)
    return PassInput(clip, 0, "a quiet street", noise)


def _call(name: str, frames: int, seconds: float, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "pass": name,
        "frames": frames,
        "seconds": round(float(seconds), 2),
        "compile_cache": facts.get("compile_cache"),
        "graphs": facts.get("compile_graphs"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
