"""Where a VOID pass-1 shot spends its time and memory on one GPU, to steer optimisation.

Measures at the full size with random weights, one process, one card:

* attention alone (one SDPA call at 85 frames, each fused kernel) times 42 layers, against the whole forward,
  which splits the forward into attention and the rest (matmuls, norms, RoPE, modulation);
* how far bf16 outputs are from a float32 forward (49-frame case) for eager and for voidflow's compiled path:
  the yardstick for "within bf16 tolerance";
* the VAE at 85 frames, 384x672: encode (mask and video, as two calls or one batch of two), decode, each with its
  time and peak memory, in the default layout and in channels-last-3d, eager and compiled.

Usage: ``python benchmarks/void_profile.py [--out FILE]`` (``--smoke`` for tiny models on the CPU). Prints one JSON
object as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)
from benchmarks.void_forward import (
    FULL_TRANSFORMER,
    FULL_VAE,
    SMOKE_TRANSFORMER,
    SMOKE_VAE,
    build_transformer,
    inputs,
    sync,
    timed,
)
from voidflow.void_ops.void.loading import VoidModels
from voidflow.void_ops.void.sampler import VoidSampler
from voidflow.void_ops.void.speed import attention_backend, compile_transformer, fuse_qkv


def set_channels_last(module: torch.nn.Module, on: bool) -> None:
    """Store every Conv3d weight channels-last-3d (or back), so cuDNN can pick its NDHWC kernels."""
    layout = torch.channels_last_3d if on else torch.contiguous_format
    for conv in module.modules():
        if isinstance(conv, torch.nn.Conv3d):
            conv.weight.data = conv.weight.data.to(memory_format=layout)


def peak_gb(device: torch.device) -> float:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else 0.0


def reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(f"{((a.float() - b.float()).norm() / b.float().norm()).item():.3e}")


def shot_memory(args: argparse.Namespace) -> None:
    """Peak GPU memory of each phase of a pass-1 shot at 85 frames (eager), without and with VAE tiling."""
    import dataclasses

    import numpy as np
    from diffusers import AutoencoderKLCogVideoX

    from benchmarks.void_forward import SCHEDULER
    from voidflow.void_ops.void.values import PASS1

    device = torch.device("cuda")
    config = dict(FULL_TRANSFORMER)
    transformer = build_transformer(config, device, torch.bfloat16)
    fuse_qkv(transformer)
    with torch.device(device):
        vae = AutoencoderKLCogVideoX(**FULL_VAE)
    vae = vae.to(torch.bfloat16).eval().requires_grad_(False)
    result: dict[str, Any] = {"card": torch.cuda.get_device_name(device)}
    rng = np.random.default_rng(0)
    video = rng.random((85, 384, 672, 3), dtype=np.float32)
    condition = (rng.random((85, 384, 672)) > 0.8).astype(np.float32)
    embeds = torch.randn((1, 226, 4096), device=device, dtype=torch.bfloat16)
    recipe = dataclasses.replace(PASS1, steps=2)
    reference = None
    for tiled in (False, True):
        models = VoidModels(
            transformer=transformer,
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            scheduler_config=SCHEDULER,
            transformer_config=config,
            vae_scaling_factor=0.7,
            weights=(),
            checkpoint=None,
        )
        if not tiled:
            vae.disable_tiling()
        sampler = VoidSampler(models, device=device, dtype=torch.bfloat16, vae_tiling=tiled)
        entry: dict[str, Any] = {"resident_gb": round(torch.cuda.memory_allocated(device) / 2**30, 2)}
        with torch.inference_mode():
            reset(device)
            inpaint = sampler.conditioning(video, condition, recipe, seed=0)
            entry["encode_peak_gb"] = peak_gb(device)
            reset(device)
            latents = sampler.denoise(inpaint, embeds, recipe, generator=torch.Generator().manual_seed(0))
            entry["denoise_peak_gb"] = peak_gb(device)
            reset(device)
            began = time.perf_counter()
            frames = sampler.decode(latents)
            entry["decode_s"] = round(time.perf_counter() - began, 2)
            entry["decode_peak_gb"] = peak_gb(device)
        if reference is None:
            reference = frames
        else:
            entry["decoded_rel_diff_vs_untiled"] = float(
                f"{np.linalg.norm(frames - reference) / np.linalg.norm(reference):.3e}"
            )
        result["tiled" if tiled else "untiled"] = entry
        print("tiled" if tiled else "untiled", entry, flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--shot-memory", action="store_true", help="only the pass-1 shot's peaks, tiled and not")
    args = parser.parse_args()
    if args.shot_memory:
        shot_memory(args)
        return
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    config, vae_config = dict(FULL_TRANSFORMER), dict(FULL_VAE)
    height, width, frames, window, small = 48, 84, 85, 22, 14
    if args.smoke:
        config, vae_config = dict(SMOKE_TRANSFORMER), dict(SMOKE_VAE)
        height, width, frames, window, small = 8, 12, 13, 4, 2
    result: dict[str, Any] = {"card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    iters = 1 if args.smoke else 5

    # Attention alone at one 85-frame window: (1, heads, L, 64).
    heads, head_dim = config["num_attention_heads"], config["attention_head_dim"]
    length = config["max_text_seq_length"] + (window // 2) * (height // 2) * (width // 2)
    q, k, v = (torch.randn(1, heads, length, head_dim, device=device, dtype=dtype) for _ in range(3))
    attention = {}
    for kind in ("cudnn", "flash", "efficient") if device.type == "cuda" else ("default",):
        with attention_backend(kind):  # type: ignore[arg-type]
            seconds = timed(lambda: F.scaled_dot_product_attention(q, k, v), device, warmup=2, iters=20)
        attention[kind] = round(seconds * config["num_layers"], 4)
    result["attention_only_85_s_x_layers"] = attention
    print("attention only (x layers):", attention, flush=True)

    # bf16 against float32 on the 49-frame token count.
    reference = build_transformer(config, device, torch.float32)
    transformer = build_transformer(config, device, dtype)
    models = VoidModels(
        transformer=transformer,
        vae=None,
        text_encoder=None,
        tokenizer=None,
        scheduler_config={},
        transformer_config=config,
        vae_scaling_factor=0.7,
        weights=(),
        checkpoint=None,
    )
    sampler = VoidSampler(models, device=device, dtype=dtype, memory_mode="model_offload")  # only for its RoPE
    case = inputs(sampler, config, small, height, width)
    with torch.inference_mode():
        torch.backends.cuda.matmul.allow_tf32 = False
        exact = reference(
            **{
                **case,
                "hidden_states": case["hidden_states"].float(),
                "encoder_hidden_states": case["encoder_hidden_states"].float(),
            }
        )[0]
        eager = transformer(**case)[0]
    reference = None  # free the float32 copy
    reset(device)
    fuse_qkv(transformer)
    if device.type == "cuda":  # as in VoidModel: nothing is compiled on the CPU (smoke runs)
        compile_transformer(transformer)
    with torch.inference_mode(), attention_backend("cudnn" if device.type == "cuda" else "default"):
        fast = transformer(**case)[0]
        case85 = inputs(sampler, config, window, height, width)
        result["voidflow_forward_85_s"] = round(timed(lambda: transformer(**case85), device, warmup=2, iters=iters), 4)
    result["rel_diff_vs_fp32"] = {"eager_bf16": rel(eager, exact), "voidflow_bf16": rel(fast, exact)}
    result["rel_diff_voidflow_vs_eager"] = rel(fast, eager)
    print(
        {k: result[k] for k in ("voidflow_forward_85_s", "rel_diff_vs_fp32", "rel_diff_voidflow_vs_eager")}, flush=True
    )
    transformer = sampler = models = None  # free the transformer before the VAE runs
    reset(device)

    # The VAE at 85 frames.
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(1)
    with torch.device(device):
        vae = AutoencoderKLCogVideoX(**vae_config)
    vae = vae.to(dtype).eval().requires_grad_(False)
    pixels = torch.rand((1, 3, frames, height * 8, width * 8), device=device, dtype=dtype) * 2 - 1
    mask = (torch.rand((1, 3, frames, height * 8, width * 8), device=device) > 0.8).to(dtype)
    latents = torch.randn(
        (1, vae_config["latent_channels"], (frames - 1) // 4 + 1, height, width), device=device, dtype=dtype
    )
    vae_result: dict[str, Any] = {}

    def run_variant(label: str, batch_encode: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        with torch.inference_mode():

            def encode() -> Any:
                if batch_encode:
                    return vae.encode(torch.cat([mask, pixels])).latent_dist.mode()
                return vae.encode(mask).latent_dist.mode(), vae.encode(pixels).latent_dist.mode()

            encode()
            reset(device)
            entry["encode_s"] = round(timed(encode, device, warmup=0, iters=1 if args.smoke else 2), 3)
            entry["encode_peak_gb"] = peak_gb(device)
            decode = lambda: vae.decode(latents).sample  # noqa: E731
            out = decode()
            reset(device)
            entry["decode_s"] = round(timed(decode, device, warmup=0, iters=1 if args.smoke else 2), 3)
            entry["decode_peak_gb"] = peak_gb(device)
            entry["_decoded"] = out
        print(label, {k: v for k, v in entry.items() if not k.startswith("_")}, flush=True)
        return entry

    base = run_variant("default", batch_encode=False)
    vae_result["default"] = base
    vae_result["batched_encode"] = run_variant("batched", batch_encode=True)
    if device.type == "cuda":
        set_channels_last(vae, True)
        vae_result["channels_last"] = run_variant("channels_last", batch_encode=True)
        set_channels_last(vae, False)
        vae.encoder.compile()
        vae.decoder.compile()
        began = time.perf_counter()
        vae_result["compiled"] = run_variant("compiled", batch_encode=True)
        vae_result["compiled"]["compile_and_first_s"] = round(time.perf_counter() - began, 1)
    reference_frames = base["_decoded"]
    for name, entry in vae_result.items():
        decoded = entry.pop("_decoded")
        if name != "default":
            entry["decode_rel_diff"] = rel(decoded, reference_frames)
    result["vae_85"] = vae_result
    sync(device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
