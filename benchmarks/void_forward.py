"""VOID transformer speed on one GPU: eager diffusers against voidflow's path, at the full 5.57B size.

Random weights at the real size cost the same FLOPs as the trained ones. In one process on one card this measures:

* one forward at 384x672 for 49 (14 latent frames, the token count of the 49-frame case) and 85 frames (one
  22-latent window), and one denoising step of a 197-frame run as VOID runs it: three multidiffusion windows of
  22, 22 and 14 latent frames (``step_197``), with (a) plain eager diffusers and (b) voidflow's path (fused QKV,
  compiled blocks, cuDNN attention), with TFLOP/s by ``void-reference.md``'s formula (42 x (24 L d^2 + 4 L^2 d),
  summed over the windows) and peak memory;
* how far (b) is from (a) on the same inputs: ``rel_l2_diff`` (|b - a| / |a|, L2 norms over the 85-frame output)
  and ``rel_max_abs_diff`` (max |b - a| / max |a|); bf16 rounding is about 0.01;
* a warm pass-1 shot of 85 frames: conditioning (two VAE encodes), 30 steps, VAE decode, through ``VoidSampler``,
  with the prompt's T5 embeddings cached;
* a GPU worker's cold load (page cache dropped): a VOID checkpoint, the VAE and T5-XXL (9.5 GB) from local
  safetensors onto the GPU, every file hashed, through ``VoidModel`` as a worker builds it (``cold_load_s``).

Usage: ``python benchmarks/void_forward.py [--out FILE] [--fp8]`` on a CUDA machine; ``--smoke`` runs the same code
on tiny random models on the CPU in seconds (used by the test suite; it leaves the page cache alone). Prints one
JSON object as its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)
from voidflow.void_ops.void.loading import VoidModels
from voidflow.void_ops.void.sampler import VoidSampler
from voidflow.void_ops.void.speed import attention_backend, compile_transformer, compile_vae, fuse_qkv, to_fp8
from voidflow.void_ops.void.tiny import TINY_SCHEDULER
from voidflow.void_ops.void.values import PASS1, window_spans

#: CogVideoX-Fun-V1.5-5b-InP's transformer with VOID's 48 input channels (void-reference.md section 9).
FULL_TRANSFORMER = {
    "num_attention_heads": 48,
    "attention_head_dim": 64,
    "in_channels": 48,
    "out_channels": 16,
    "time_embed_dim": 512,
    "text_embed_dim": 4096,
    "num_layers": 42,
    "sample_width": 300,
    "sample_height": 300,
    "sample_frames": 81,
    "patch_size": 2,
    "patch_size_t": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 226,
    "use_rotary_positional_embeddings": True,
    "use_learned_positional_embeddings": False,
    "patch_bias": False,
    "norm_eps": 1e-5,
}
FULL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["CogVideoXDownBlock3D"] * 4,
    "up_block_types": ["CogVideoXUpBlock3D"] * 4,
    "block_out_channels": [128, 256, 256, 512],
    "latent_channels": 16,
    "layers_per_block": 3,
    "norm_num_groups": 32,
    "temporal_compression_ratio": 4,
    "scaling_factor": 0.7,
}
#: The same architecture shrunk to run in seconds on a CPU (``--smoke``, used by the tests).
SMOKE_TRANSFORMER = {
    **FULL_TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 12,
    "out_channels": 4,
    "time_embed_dim": 16,
    "text_embed_dim": 32,
    "num_layers": 2,
    "sample_width": 24,
    "sample_height": 16,
    "max_text_seq_length": 16,
}
SMOKE_VAE = {
    **FULL_VAE,
    "block_out_channels": [8, 8, 8, 8],
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 2,
}
SCHEDULER = {"_class_name": "CogVideoXDDIMScheduler", **TINY_SCHEDULER}  # the spec values (section 5)
#: Latent frames per case: 49 frames' token count (14), one 85-frame window (22); ``step_197``: one step of a
#: 197-frame run (50 latent frames), its multidiffusion windows of 22 and overlap 4: 22 + 22 + 14.
CASES = {"49": [14], "85": [22], "step_197": [stop - start for start, stop in window_spans(50, window=22, overlap=4)]}


def tflop(config: dict[str, Any], windows: list[int], height: int, width: int, batch: int = 1) -> float:
    """Forward FLOPs in TFLOP by the spec's formula, summed over windows of these latent frame counts."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    total = 0.0
    for latent_frames in windows:
        tokens = config["max_text_seq_length"] + (latent_frames // 2) * (height // 2) * (width // 2)
        total += batch * config["num_layers"] * (24 * tokens * d * d + 4 * tokens * tokens * d) / 1e12
    return total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, *, warmup: int, iters: int) -> float:
    """Mean seconds per call after ``warmup`` calls (CUDA events on GPUs)."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        stop.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(stop) / 1000 / iters
    began = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - began) / iters


def build_transformer(config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        model = CogVideoXTransformer3DModel(**config)
    return model.to(dtype).eval().requires_grad_(False)


def random_models(transformer: Any, vae: Any, config: dict[str, Any]) -> VoidModels:
    """``VoidModels`` around randomly initialised modules; no text encoder (prompts come as random embeddings)."""
    return VoidModels(
        transformer=transformer,
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        scheduler_config=SCHEDULER,
        transformer_config=dict(config),
        vae_scaling_factor=0.7,
        weights=(),
        checkpoint=None,
    )


def inputs(
    sampler: VoidSampler, config: dict[str, Any], frames: int, height: int, width: int, batch: int = 1
) -> dict[str, Any]:
    """Random transformer inputs for one window of ``frames`` latent frames on an ``height`` x ``width`` grid."""
    generator = torch.Generator("cpu").manual_seed(frames)
    device, dtype = sampler.device, sampler.dtype
    hidden = torch.randn((batch, frames, config["in_channels"], height, width), generator=generator)
    text = torch.randn((batch, config["max_text_seq_length"], config["text_embed_dim"]), generator=generator)
    return {
        "hidden_states": hidden.to(device, dtype),
        "encoder_hidden_states": text.to(device, dtype),
        "timestep": torch.full((batch,), 999, device=device),
        "image_rotary_emb": sampler._rotary(frames, height, width),
        "return_dict": False,
    }


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script itself)")
    parser.add_argument("--fp8", action="store_true", help="also time the optional FP8 path")
    parser.add_argument("--out", type=Path, help="write the JSON result here too")
    args = parser.parse_args()

    smoke = args.smoke
    device = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    if smoke:
        config, vae_config = SMOKE_TRANSFORMER, SMOKE_VAE
        windows = [stop - start for start, stop in window_spans(8, window=4, overlap=2)]
        height, width, cases, steps = 8, 12, {"49": [2], "85": [4], "step_197": windows}, 2
    else:
        config, vae_config = FULL_TRANSFORMER, FULL_VAE
        height, width, cases, steps = 48, 84, CASES, PASS1.steps
    result: dict[str, Any] = {
        "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "smoke": smoke,
    }
    from diffusers import AutoencoderKLCogVideoX

    started = time.perf_counter()
    transformer = build_transformer(config, device, dtype)
    torch.manual_seed(1)
    with torch.device(device):
        vae = AutoencoderKLCogVideoX(**vae_config)
    vae = vae.to(dtype).eval().requires_grad_(False)
    result["build_s"] = round(time.perf_counter() - started, 1)
    result["params_b"] = round(sum(p.numel() for p in transformer.parameters()) / 1e9, 3)
    models = random_models(transformer, vae, config)
    sampler = VoidSampler(models, device=device, dtype=dtype)
    cases_inputs = {
        name: [inputs(sampler, config, frames, height, width) for frames in windows] for name, windows in cases.items()
    }
    iters = 1 if smoke else 5

    def forward(name: str) -> None:
        """The case's forwards: one, or one per window of a multidiffusion step."""
        for window in cases_inputs[name]:
            transformer(**window)

    def measure(label: str) -> tuple[dict[str, float], dict[str, float], dict[str, float], torch.Tensor]:
        seconds, rates, peaks = {}, {}, {}
        output = torch.empty(0)
        for name, windows in cases.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with torch.inference_mode():
                seconds[name] = timed(lambda n=name: forward(n), device, warmup=2, iters=iters)
                if name == "85":
                    output = transformer(**cases_inputs[name][0])[0].float()
            rates[name] = round(tflop(config, windows, height, width) / seconds[name], 1)
            if device.type == "cuda":
                peaks[name] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            seconds[name] = round(seconds[name], 4)
            print(f"{label} {name} frames: {seconds[name]:.4f} s, {rates[name]} TFLOP/s", flush=True)
        return seconds, rates, peaks, output

    result["eager_forward_s"], result["eager_tflops"], result["eager_peak_gb"], eager_out = measure("eager")
    if device.type == "cuda":  # which fused attention kernel is fastest here, on the eager model
        sweep = {}
        for kind in ("flash", "efficient", "cudnn"):
            try:
                with attention_backend(kind), torch.inference_mode():
                    sweep[kind] = round(timed(lambda: forward("85"), device, warmup=1, iters=3), 4)
            except RuntimeError as error:
                sweep[kind] = str(error).splitlines()[0][:120]
        result["eager_85_by_attention_s"] = sweep
        print(f"attention kernels, eager 85 frames: {sweep}", flush=True)
    save(result, args.out)

    fuse_qkv(transformer)
    compiled = device.type == "cuda"  # as in VoidModel: nothing is compiled on the CPU (smoke runs)
    if compiled:
        compile_transformer(transformer)
        compile_vae(vae)
    timings = {k: v for k, v in result.get("eager_85_by_attention_s", {}).items() if isinstance(v, float)}
    backend = min(timings, key=timings.__getitem__) if timings else "default"  # the fastest kernel measured above
    result["voidflow_path"] = {
        "fuse_qkv": True,
        "compile": "transformer blocks (fullgraph) and VAE encoder/decoder, default mode" if compiled else "none (CPU)",
        "attention": backend,
        "vae_encode": "mask and video as one batch of two",
    }
    with attention_backend(backend):
        (result["voidflow_forward_s"], result["voidflow_tflops"], result["voidflow_peak_gb"], fast_out) = measure(
            "voidflow"
        )
        difference = (fast_out - eager_out).norm() / eager_out.norm()
        result["rel_l2_diff"] = float(f"{difference.item():.3e}")
        result["rel_max_abs_diff"] = float(f"{((fast_out - eager_out).abs().max() / eager_out.abs().max()).item():.3e}")

        # A warm pass-1 shot of 85 frames: two VAE encodes, 30 steps, one VAE decode.
        frames = 85 if not smoke else 29
        video = torch.rand((frames, height * 8, width * 8, 3), generator=torch.Generator().manual_seed(3)).numpy()
        condition = (torch.rand((frames, height * 8, width * 8)) > 0.8).float().numpy()
        embeds = torch.randn((1, config["max_text_seq_length"], config["text_embed_dim"])).to(device, dtype)
        recipe = PASS1 if not smoke else dataclasses.replace(PASS1, steps=steps, window=4, overlap=2)

        def shot() -> dict[str, float]:
            marks = [time.perf_counter()]
            inpaint = sampler.conditioning(video, condition, recipe, seed=0)
            sync(device)
            marks.append(time.perf_counter())
            latents = sampler.denoise(inpaint, embeds, recipe, generator=torch.Generator().manual_seed(0))
            sync(device)
            marks.append(time.perf_counter())
            sampler.decode(latents)
            sync(device)
            marks.append(time.perf_counter())
            parts = ("encode_s", "denoise_s", "decode_s")
            return {part: round(b - a, 2) for part, a, b in zip(parts, marks[:-1], marks[1:], strict=True)}

        began = time.perf_counter()
        shot()  # warm: kernels, compiled graphs (the VAE compiles here), allocator
        result["pass1_first_shot_s"] = round(time.perf_counter() - began, 1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        began = time.perf_counter()
        result["pass1_shot_parts"] = shot()
        result["pass1_shot_85_s"] = round(time.perf_counter() - began, 2)
        result["pass1_steps"] = recipe.steps
        if device.type == "cuda":
            result["pass1_peak_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        print(f"pass-1 shot: {result['pass1_shot_85_s']} s", flush=True)

        if args.fp8 and device.type == "cuda":
            torch._dynamo.reset()
            result["fp8_linears"] = to_fp8(transformer)
            compile_transformer(transformer)
            with torch.inference_mode():
                seconds = timed(lambda: forward("85"), device, warmup=2, iters=iters)
                out = transformer(**cases_inputs["85"][0])[0].float()
            result["fp8_forward_85_s"] = round(seconds, 4)
            result["fp8_tflops_85"] = round(tflop(config, cases["85"], height, width) / seconds, 1)
            result["fp8_rel_diff"] = float(f"{((out - eager_out).norm() / eager_out.norm()).item():.3e}")
            print(f"fp8 85 frames: {seconds:.4f} s", flush=True)
    save(result, args.out)

    # Cold load: a real-layout base folder (full-size configs) and a VOID checkpoint written from these weights.
    transformer = sampler = models = None  # free the benchmark's GPU copy before the cold load
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        result.update(cold_load(config, vae_config, device, dtype, smoke=smoke))
    except Exception as error:  # keep the timings above even if this last part fails
        result["cold_load_error"] = f"{type(error).__name__}: {error}"
    save(result, args.out)
    print(json.dumps(result))


def save(result: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def cold_load(
    config: dict[str, Any], vae_config: dict[str, Any], device: torch.device, dtype: torch.dtype, *, smoke: bool
) -> dict[str, Any]:
    """Write a real-layout VOID (base folder with VAE and T5, a VOID checkpoint; random weights), drop the page
    cache (not in smoke runs: a shared machine), and time a GPU worker's load of it (``VoidModel``: weights onto
    the device, every file hashed; compilation itself waits for the first call)."""
    from benchmarks.throughput import T5_XXL
    from voidflow.void_ops.void.backend import ModelSpec, VoidModel
    from voidflow.void_ops.void.tiny import TINY, VoidLayout, build_void_folder

    result: dict[str, Any] = {}
    base_config = {**config, "in_channels": 2 * vae_config["latent_channels"] + 1}  # the Fun-InP base: 33 at full size
    layout = VoidLayout(base_config, dict(vae_config), TINY.text_encoder if smoke else T5_XXL)
    with tempfile.TemporaryDirectory(dir=os.environ.get("VOIDFLOW_BENCH_TMP")) as scratch:
        written = build_void_folder(
            Path(scratch), layout, device=str(device), base_weights=False, passes=(1,), text_encoder_dtype=dtype
        )
        files = [path for path in Path(scratch).rglob("*.safetensors") if "transformer" not in path.parts]
        result["checkpoint_gb"] = round(written.pass1.stat().st_size / 1e9, 2)
        result["cold_load_gb"] = round(sum(path.stat().st_size for path in files) / 1e9, 2)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result["page_cache_dropped"] = False if smoke else drop_page_cache()
        spec = ModelSpec(str(written.base), str(written.pass1), PASS1, device=str(device), dtype=str(dtype)[6:])
        began = time.perf_counter()
        loaded = VoidModel(spec)
        sync(device)
        result["cold_load_s"] = round(time.perf_counter() - began, 2)
        result["cold_load_covers"] = (
            "a GPU worker's VoidModel: VOID checkpoint + VAE + T5 encoder + tokenizer onto the device, sha256 of every "
            "file"
        )
        print(f"cold load: {result['cold_load_s']} s for {result['cold_load_gb']} GB", flush=True)
        del loaded
    if device.type == "cuda":
        result["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return result


if __name__ == "__main__":
    main()
