"""Batch throughput on GPUs: mixed-length shots through the real flow with VOID at full size (random weights).

What runs: a full-size VOID (CogVideoX-Fun 5B transformer with 48 input channels, its VAE, a T5-XXL encoder, random
bf16 weights written in the real on-disk layout; the base transformer's own weights, which a run from a VOID
checkpoint never reads, are left out; pass 2 runs from the same file: the same FLOPs) and a 1920x1080 ProRes 422 HQ
plate with its roto matte; an edit of ``--shots`` clips of mixed lengths (25 to 181 frames plus 8-frame handles, so
the longest is a full 197-frame run of three multidiffusion windows; each with its own background prompt), VOID's
pass 2 on every third shot (``--pass2-every``, through the sidecar); then ``flows.batch.run_batch`` with the
``void`` backend and the product's defaults (30 and 50 steps, letterbox, the compiled fast path on CUDA), a
temporary Prefect server, a local Ray using every visible GPU, and an SQLite ledger. Nothing is mocked; the FLOPs
are those of the trained model. The compile cache starts empty (``--compile-cache DIR`` to start from a warm one),
and so do Inductor's and Triton's own caches, so the numbers include the compiling a fresh node pays.

Measured (from the ledger: every pass-1 and pass-2 call records its GPU worker, when it started and finished, and
the GPU time of its kernels):

- ``occupancy_fraction``: the share of the GPUs' time held by VOID calls (the worker busy with a call: VAE encode,
  T5, denoising, decode, and the host work between them) from the end of warm-up (each GPU's first call: CUDA
  start-up and the first compile) to the end of the last call, summed over GPUs; ``occupancy_fraction_flow``: the
  same share over the whole flow after warm-up (conform and report included);
- ``kernel_busy_fraction``: over the same span, the share the GPUs spent working inside those calls (each call's
  ``kernel_s``: CUDA events around its device phases, less the host seconds it spent compiling inside them, spread
  evenly over the call);
- ``shots_per_hour``: shots delivered / flow wall time; ``shots_per_hour_after_warmup``: shots all of whose calls
  began after warm-up / (last call end - end of warm-up);
- per shot: frames, padded runs, GPU, each pass's call seconds, kernel seconds, compile seconds, compile-cache
  states, pass 2's noise time on the CPU before its lease.

Run on a CUDA machine: ``python benchmarks/throughput.py --out benchmarks/results/throughput_h100_x1.json``
(12 shots; ``--shots N`` takes the first N of the same mix, for a shorter run). ``--smoke`` runs the same code on a
CPU with the tiny model and a small plate (the tests use it).

``--warm --keep DIR`` warms a node instead of measuring: it writes the models into ``DIR`` and compiles every shape
the mix's shots meet into ``DIR``'s compile, Inductor and Triton caches, as ``voidflow models warm`` does (one blank
one-step call per length ``warm_lengths`` picks; pass 2 too when some shot asks for it), with the specs the batch's
GPU worker loads; a later ``--keep DIR`` run then starts as a node that kept its caches. It runs no flow and needs
no media libraries (the GPU machine's bundle comes in two parts: benchmarks/device).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)

#: Shot lengths (frames, without handles), cycled: short inserts to long takes, all within one 197-frame run (181 +
#: two 8-frame handles), so every multidiffusion window shape a 197-frame run meets is exercised.
LENGTHS = (121, 45, 85, 25, 97, 61, 141, 33, 73, 49, 181, 57)
HANDLES = 8
PASS2_EVERY = 3  # pass 2 on every third shot (the 3rd, 6th, ...)
#: ``--smoke``'s VOID on the CPU: a tiny geometry, and multidiffusion windows of 4 latent frames overlapping by 2.
SMOKE_GEOMETRY = {"height": 64, "width": 96, "min_frames": 13, "max_frames": 29}
SMOKE_WINDOWS = {"window": 4, "overlap": 2}
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
}


def make_edit(folder: Path, lengths: list[int], width: int, height: int, *, pass2_every: int = 0) -> tuple[Path, Path]:
    """Write the demo shoot at ``width`` x ``height`` and an edit with one clip per length (each from its own start
    frame, with its own background prompt) and its sidecar, which asks for pass 2 on every ``pass2_every``-th shot
    (0: none); return both."""
    import opentimelineio as otio
    import yaml

    from voidflow.void_ops.demo import make_demo

    frames = max(116, max(lengths) + 2 * HANDLES + len(lengths))
    shoot = make_demo(folder / f"{frames}-frames", frames=frames, width=width, height=height)  # a kept one is reused
    reference = next(iter(otio.adapters.read_from_file(str(shoot.edit)).find_clips())).media_reference
    start = reference.available_range.start_time
    track = otio.schema.Track(name="VFX", kind=otio.schema.TrackKind.Video)
    entry = yaml.safe_load(shoot.sidecar.read_text())["shots"]["sh010"]  # the matte path is relative to the sidecar
    entries = {}
    for index, length in enumerate(lengths):
        name = f"sh{(index + 1) * 10:04d}"
        clip = otio.schema.Clip(
            name="demo_plate",
            media_reference=reference.clone(),
            source_range=otio.opentime.TimeRange(
                start + otio.opentime.RationalTime(HANDLES + index, start.rate),
                otio.opentime.RationalTime(length, start.rate),
            ),
        )
        clip.metadata["voidflow"] = {"shot": name}
        track.append(clip)
        entries[name] = {**entry, "prompt": f"An empty wooden floor in a quiet room, take {index + 1}."}
        if pass2_every and (index + 1) % pass2_every == 0:
            entries[name]["pass2"] = True
    edit = shoot.edit.with_name("throughput_cut.otio")
    otio.adapters.write_to_file(otio.schema.Timeline(name="throughput benchmark", tracks=[track]), str(edit))
    sidecar = shoot.sidecar.with_name("throughput_sidecar.yaml")
    sidecar.write_text(yaml.safe_dump({"shots": entries}))
    return edit, sidecar


def build_models(folder: Path, *, smoke: bool) -> tuple[Any, bool]:
    """Write the VOID to run in a child process, so that no GPU memory stays held by this one (the batch's GPU
    worker needs the whole card); return its paths, and whether a kept folder already held them (``--keep``)."""
    import multiprocessing

    from voidflow.void_ops.void.tiny import TinyVoid

    built = folder / "built.json"
    if built.is_file():
        paths = json.loads(built.read_text())
        return TinyVoid(Path(paths["base"]), Path(paths["pass1"]), Path(paths["pass2"])), True
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        models = pool.apply(_build_models, (folder,), {"smoke": smoke})
    built.write_text(json.dumps({"base": str(models.base), "pass1": str(models.pass1), "pass2": str(models.pass2)}))
    return models, False


def _build_models(folder: Path, *, smoke: bool) -> Any:
    """Write the VOID: full size on the GPU (random weights), or the tiny one for ``--smoke``."""
    import torch

    from benchmarks.void_forward import FULL_TRANSFORMER, FULL_VAE
    from voidflow.void_ops.void.tiny import VoidLayout, build_tiny_void, build_void_folder

    if smoke:
        return build_tiny_void(folder)
    base = {**FULL_TRANSFORMER, "in_channels": 2 * 16 + 1}  # the base's 2C+1 for FULL_VAE's 16 latent channels
    layout = VoidLayout(base, dict(FULL_VAE), T5_XXL)
    return build_void_folder(
        folder, layout, device="cuda", base_weights=False, passes=(1,), text_encoder_dtype=torch.bfloat16
    )


def epoch(moment: datetime) -> float:
    """Seconds since the epoch of a ledger time (SQLite gives back naive UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def stage_seconds(batch: Any) -> dict[str, list[float]]:
    """How long each finished stage run of a ledger batch took, by stage."""
    seconds: dict[str, list[float]] = {}
    for shot in batch.shots:
        for run in shot.stage_runs:
            if run.finished_at is not None:
                seconds.setdefault(run.stage, []).append(epoch(run.finished_at) - epoch(run.started_at))
    return seconds


def measure(db_url: str, batch_id: str, called: float, returned: float) -> dict[str, Any]:
    """Occupancy, kernel busy and rates from the ledger's pass-1 and pass-2 calls (see the module docstring)."""
    from voidflow.tasks.ledger import Ledger

    (batch,) = Ledger(db_url).batches(batch_id)
    calls: list[dict[str, Any]] = []
    per_shot = []
    for shot in batch.shots:
        entry: dict[str, Any] = {"shot": shot.name, "state": shot.state}
        for run in shot.stage_runs:
            if run.stage not in ("pass1", "pass2") or run.state != "done":
                continue
            stage_calls = [dict(call, shot=shot.name, stage=run.stage) for call in run.params.get("gpu_runs", [])]
            calls += stage_calls
            if run.stage == "pass1":
                entry |= {
                    "frames": run.params.get("input_frames"),
                    "padded_runs": run.params.get("padded_frames_by_window"),
                    "gpu": stage_calls[0]["gpu"] if stage_calls else None,
                }
            entry[run.stage] = {
                "call_s": round(sum(float(call["seconds"]) for call in stage_calls), 3),
                "kernel_s": _sum(call.get("kernel_s") for call in stage_calls),
                "compile_s": _sum(call.get("compile_s") for call in stage_calls),
                "compile_cache": [call.get("compile_cache") for call in stage_calls],
                "compile_graphs": [call.get("compile_graphs") for call in stage_calls],
                "recipe": stage_calls[0]["recipe"]["name"] if stage_calls else None,
                "peak_gb": stage_calls[0].get("peak_gb") if stage_calls else None,
                **({"noise_cpu_s": _sum(c.get("noise_cpu_s") for c in stage_calls)} if run.stage == "pass2" else {}),
            }
        if "pass1" in entry:
            per_shot.append(entry)
    stages = stage_seconds(batch)
    gpus = sorted({call["gpu"] for call in calls})
    first_end = {gpu: min(float(c["finished"]) for c in calls if c["gpu"] == gpu) for gpu in gpus}
    warm = max(first_end.values())  # every GPU past its first call
    last = max(float(call["finished"]) for call in calls)

    def inside(call: dict[str, Any], since: float, until: float) -> float:
        return max(0.0, min(float(call["finished"]), until) - max(float(call["started"]), since))

    def occupied(since: float, until: float) -> float:
        return sum(inside(c, since, until) for c in calls) / ((until - since) * len(gpus))

    def kernels(since: float, until: float) -> float | None:
        if any(c.get("kernel_s") is None for c in calls):
            return None  # calls on the CPU time no kernels
        share = sum(inside(c, since, until) * float(c["kernel_s"]) / max(float(c["seconds"]), 1e-9) for c in calls)
        return share / ((until - since) * len(gpus))

    by_shot: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        by_shot.setdefault(call["shot"], []).append(call)
    after = [shot for shot, own in by_shot.items() if min(float(c["started"]) for c in own) >= warm]
    delivered = sum(shot.state == "done" for shot in batch.shots)
    busy = kernels(warm, last) if last > warm else None
    return {
        "gpus": len(gpus),
        "shots": delivered,
        "occupancy_fraction": round(occupied(warm, last), 4) if last > warm else None,
        "kernel_busy_fraction": None if busy is None else round(busy, 4),
        "occupancy_fraction_flow": round(occupied(warm, returned), 4),
        "shots_per_hour": round(delivered * 3600 / (returned - called), 2),
        "shots_per_hour_after_warmup": round(len(after) * 3600 / (last - warm), 2) if last > warm else None,
        "shots_after_warmup": len(after),
        "gpu_calls": len(calls),
        "pass2_shots": sum("pass2" in shot for shot in per_shot),
        "wall_s": round(returned - called, 2),
        "warmup_s": round(warm - called, 2),
        "after_last_call_s": round(returned - last, 2),
        "frames": sum(int(shot["frames"] or 0) for shot in per_shot),
        "stage_mean_s": {stage: round(sum(v) / len(v), 2) for stage, v in stages.items()},
        "per_shot": per_shot,
        "batch_recorded_s": round(epoch(batch.created_at) - called, 2),
    }


def _sum(values: Any) -> float | None:
    """The sum of numbers, None when any is None (not measured: calls on the CPU)."""
    values = list(values)
    return None if any(value is None for value in values) else round(sum(float(value) for value in values), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--shots", type=int, default=12, help="shots in the edit: the first N of the mix (12)")
    parser.add_argument(
        "--lengths", help="shot lengths in frames, comma-separated, cycled (default: 25 to 181 mixed)", default=""
    )
    parser.add_argument("--pass2-every", type=int, default=PASS2_EVERY, help="pass 2 on every Nth shot (3; 0: none)")
    parser.add_argument("--no-compile", action="store_true", help="eager diffusers instead of the compiled fast path")
    parser.add_argument("--compile-cache", type=Path, help="start from this compile cache (default: an empty one)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny model and plate on the CPU (for the tests)")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="only write the models and compile every shape the mix meets into --keep's caches (see above)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="work in this folder and keep it (default: a temporary one); a second run in it reuses the models and "
        "the compile caches the first left, as a warmed node does",
    )
    args = parser.parse_args(argv)
    if args.warm and args.keep is None:
        parser.error("--warm fills the caches of a folder a later run keeps: give it --keep DIR")
    root = args.keep or Path(tempfile.mkdtemp(prefix="vf-throughput-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(root / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("PREFECT_API_URL", None)
    # Read by the GPU workers (Ray starts them with this environment): a compile cache, and Inductor's and
    # Triton's own caches, that start empty unless --compile-cache names a warm one.
    os.environ["VOIDFLOW_COMPILE_CACHE"] = str(args.compile_cache or root / "compile-cache")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    try:
        cycle = tuple(int(n) for n in args.lengths.split(",")) if args.lengths else LENGTHS
        lengths = mix(cycle, args.shots, smoke=args.smoke)
        if args.warm:
            document = warm(root, lengths, smoke=args.smoke, pass2_every=args.pass2_every, compile=not args.no_compile)
        else:
            document = run(root, lengths, smoke=args.smoke, pass2_every=args.pass2_every, compile=not args.no_compile)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    emit(document, args.out)
    return 0


def emit(document: dict[str, Any], out: Path | None) -> None:
    """Print ``document`` as one JSON line (the output's last) and, given ``out``, write it there indented."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document), flush=True)


def mix(cycle: tuple[int, ...], shots: int, *, smoke: bool) -> list[int]:
    """The first ``shots`` lengths of ``cycle`` repeated (at most 29 frames on the CPU: the tiny model's longest)."""
    lengths = [cycle[index % len(cycle)] for index in range(shots)]
    return [min(length, 29) for length in lengths] if smoke else lengths


def void_options(models: Any, *, smoke: bool, compile: bool) -> Any:
    """The ``void`` backend's options for the batch: the product's defaults at full size, pass 2 from the same
    random weights as pass 1 (the same FLOPs as a pass-2 checkpoint); a tiny recipe for ``--smoke``."""
    from voidflow.flows.params import VoidOptions

    smoke_recipe = {"pass1_steps": 2, "pass2_steps": 2, **SMOKE_GEOMETRY, **SMOKE_WINDOWS, "device": "cpu"}
    return VoidOptions(
        base=models.base,
        pass1_weights=models.pass1,
        pass2_weights=models.pass1,
        compile=compile,
        **(smoke_recipe if smoke else {}),
    )


def warm(root: Path, lengths: list[int], *, smoke: bool, pass2_every: int, compile: bool) -> dict[str, Any]:
    """Write the models under ``root`` and compile into its caches every shape the batch's shots (handles
    included) meet, as ``voidflow models warm`` does (``warm_passes``, one blank step per length, pass 2 only when
    some shot asks for it), with the specs a GPU worker of the batch loads (``--warm``). Built from ``void_ops``
    alone, as the batch's defaults (``void_options``) resolve: ``flows`` needs the media libraries."""
    import dataclasses

    import torch

    from voidflow.void_ops.void.backend import ModelSpec, PassRun, VoidSettings, warm_lengths, warm_passes
    from voidflow.void_ops.void.compile_cache import CompileCache, device_key
    from voidflow.void_ops.void.values import PASS1, PASS2

    started = time.perf_counter()
    models, kept_models = build_models(root / "models", smoke=smoke)
    build_s = time.perf_counter() - started
    settings = VoidSettings(**SMOKE_GEOMETRY) if smoke else VoidSettings()
    recipes = {"pass1": PASS1, **({"pass2": PASS2} if 0 < pass2_every <= len(lengths) else {})}
    if smoke:
        recipes = {name: dataclasses.replace(recipe, **SMOKE_WINDOWS) for name, recipe in recipes.items()}
    device, dtype = ("cpu", "float32") if smoke else ("cuda", "bfloat16")
    specs = {
        name: ModelSpec(str(models.base), str(models.pass1), recipe, device=device, dtype=dtype, compile=compile)
        for name, recipe in recipes.items()
    }
    window, overlap = recipes["pass1"].window, recipes["pass1"].overlap
    runs = warm_lengths([length + 2 * HANDLES for length in lengths], settings, window=window, overlap=overlap)
    cache = None if smoke else CompileCache(Path(os.environ["VOIDFLOW_COMPILE_CACHE"]), device_key(device))
    print(f"warming {', '.join(specs)} at {', '.join(map(str, runs))} frames", flush=True)
    calls: list[dict[str, Any]] = []

    def report(name: str, length: int, run: PassRun) -> None:
        seconds = round(run.finished - run.started, 2)
        graphs = run.cache.graphs.as_dict() if run.cache.graphs else None
        calls.append(
            {"pass": name, "frames": length, "seconds": seconds, "compile_cache": run.cache.state, "graphs": graphs}
        )
        print(
            f"{name} {length} frames: {seconds} s, cache {run.cache.state}, {run.cache.graphs or 'nothing compiled'}",
            flush=True,
        )

    started = time.perf_counter()
    warm_passes(specs, runs, settings, cache, report)
    return {
        "benchmark": "throughput_warm",
        "card": torch.cuda.get_device_name(0) if not smoke else "cpu",
        "lengths": lengths,
        "calls": calls,
        "warm_s": round(time.perf_counter() - started, 1),
        "cache_key": cache.key if cache else None,
        "cache_mb": cache.size_mb() if cache else 0.0,
        "models_kept": kept_models,
        "build_models_s": round(build_s, 1),
    }


def run(root: Path, lengths: list[int], *, smoke: bool, pass2_every: int, compile: bool) -> dict[str, Any]:
    """Build the models and media under ``root``, run the batch of shots of ``lengths``, and measure it."""
    import torch

    caches = ("compile-cache", "inductor", "triton")
    kept_caches = [name for name in caches if (root / name).is_dir() and any((root / name).iterdir())]
    started = time.perf_counter()
    models, kept_models = build_models(root / "models", smoke=smoke)
    build_s = time.perf_counter() - started
    width, height = (320, 180) if smoke else (1920, 1080)
    started = time.perf_counter()
    edit, sidecar = make_edit(root / "shoot", lengths, width, height, pass2_every=pass2_every)
    media_s = time.perf_counter() - started
    print(f"models in {build_s:.0f}s, media in {media_s:.0f}s", flush=True)

    from voidflow.flows.batch import run_batch
    from voidflow.flows.params import BatchRequest
    from voidflow.infra.cluster import orchestration
    from voidflow.infra.database import ensure_schema
    from voidflow.infra.settings import Settings

    run_dir = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}"  # a run kept beside another starts its own ledger
    home = run_dir / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'voidflow.db'}")
    ensure_schema(settings.db_url)
    void = void_options(models, smoke=smoke, compile=compile)
    request = BatchRequest(
        edit=edit,
        sidecar=sidecar,
        out_dir=run_dir / "out",
        db_url=settings.db_url,
        backend="void",
        void=void,
        conform_qc_failed=True,
    )
    with orchestration(settings):
        called = time.time()
        result = run_batch(request)
        returned = time.time()
    measured = measure(settings.db_url, result.batch_id, called, returned)
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    keys = ("gpus", "shots", "occupancy_fraction", "kernel_busy_fraction", "shots_per_hour")
    return {
        "benchmark": "throughput",
        "card": card,
        **{key: measured.pop(key) for key in keys},
        "failed": list(result.failed),
        "plate": f"{width}x{height} ProRes 422 HQ, {HANDLES}-frame handles",
        "lengths": lengths,
        "pass2_every": pass2_every,
        "recipe": {
            "pass1_steps": void.pass1_steps,
            "pass2_steps": void.pass2_steps,
            "compile": void.compile,
            "memory_mode": void.memory_mode,
            "compile_cache": "given"
            if os.environ["VOIDFLOW_COMPILE_CACHE"] != str(root / "compile-cache")
            else ("kept from an earlier run in --keep" if "compile-cache" in kept_caches else "empty"),
            "caches_kept": kept_caches,  # Inductor's and Triton's too: a node that kept them (README: speed)
        },
        "models_kept": kept_models,
        "build_models_s": round(build_s, 1),
        "media_s": round(media_s, 1),
        **measured,
    }


if __name__ == "__main__":
    sys.exit(main())
