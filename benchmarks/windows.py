"""What a long shot costs in denoise time: the shot-window planner before and after issue 18, on one GPU.

A shot longer than VOID's 197-frame run is split into shot windows (``void_ops.windows.frame_windows``); each
window is padded to a valid VOID length (``values.padded_length``: 85 to 197) and denoised with temporal
multidiffusion over 22-latent windows (``VoidSampler.denoise``). This script times ``VoidSampler.denoise`` at the
full 5.57B transformer size (random weights: the same FLOPs as the trained ones), pass 1's 30 DDIM steps, 384x672,
once per distinct padded length, and adds up each plan:

* ``denoise_s_by_frames``: the planner as shipped (full windows stepping by max - overlap and the last one only as
  long as what is left, unless that is shorter than VOID's 85-frame run: then the last two windows split the rest),
  for shots of 197, 198 and 300 frames;
* ``denoise_s_by_frames_step_then_short``: the planner the issue asked for first (the same, but a short remainder
  stays one window padded up to 85 frames);
* ``denoise_s_by_frames_equal_windows``: every window of one length, the shortest that covers the shot (tried
  for issue 18 and not shipped);
* ``denoise_s_by_frames_even_windows``: the planner before issue 18 (as few full 197-frame windows as share 16
  frames, spread evenly).

All are measured in the same process on the same card, so each ratio's baseline comes from the same run.

Target (issue 18): a 198-frame shot costs at most 1.25x a 197-frame shot.

Usage: ``python benchmarks/windows.py [--out FILE]`` on a CUDA machine (eager transformer with cuDNN attention);
``--smoke`` runs the same code on a tiny random transformer on the CPU in seconds (used by the test suite). Prints
one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)
from benchmarks.void_forward import (
    FULL_TRANSFORMER,
    FULL_VAE,
    SMOKE_TRANSFORMER,
    SMOKE_VAE,
    build_transformer,
    random_models,
    sync,
)
from voidflow.void_ops.void.sampler import VoidSampler
from voidflow.void_ops.void.speed import attention_backend
from voidflow.void_ops.void.values import PASS1, latent_frames, padded_length
from voidflow.void_ops.windows import WINDOW_OVERLAP, frame_windows

SHOTS = (197, 198, 300)
LONGEST, SHORTEST = 197, 85


def even_windows(frames: int, longest: int, overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """The planner before issue 18, kept here as the baseline: as few full-length windows as share at least
    ``overlap`` frames, spread evenly from the first frame to the last."""
    if frames <= longest:
        return [(0, frames)]
    count = -(-(frames - overlap) // (longest - overlap))
    starts = [round(index * (frames - longest) / (count - 1)) for index in range(count)]
    return [(start, start + longest) for start in starts]


def step_then_short(frames: int, longest: int, shortest: int, overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """The first planner of issue 18, kept here as a baseline: full windows stepping by ``longest - overlap``, and the
    last one only as long as what is left (at least ``shortest``), reaching back to the last frame."""
    if frames <= longest:
        return [(0, frames)]
    step, spans, start = longest - overlap, [], 0
    while start + longest < frames:
        spans.append((start, start + longest))
        start += step
    last = min(max(frames - start, shortest), longest)
    return [*spans, (frames - last, frames)]


def equal_windows(frames: int, longest: int, shortest: int, overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """As few windows as share ``overlap`` frames, all of the shortest length that covers the shot (at least
    ``shortest``); the last ends on the last frame."""
    if frames <= longest:
        return [(0, frames)]
    count = -(-(frames - overlap) // (longest - overlap))
    length = min(max(-(-(frames + (count - 1) * overlap) // count), shortest), longest)
    step = length - overlap
    return [*((index * step, index * step + length) for index in range(count - 1)), (frames - length, frames)]


def padded(span: tuple[int, int], *, shortest: int, longest: int) -> int:
    return padded_length(span[1] - span[0], min_length=shortest, max_length=longest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny transformer on the CPU (checks the script)")
    parser.add_argument("--out", type=Path, help="write the JSON result here too")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    config = SMOKE_TRANSFORMER if args.smoke else FULL_TRANSFORMER
    height, width = (8, 12) if args.smoke else (48, 84)  # latent grid of 384x672
    settings = dataclasses.replace(PASS1, steps=2) if args.smoke else PASS1
    shortest, longest = (13, 29) if args.smoke else (SHORTEST, LONGEST)
    shots = (29, 30, 44) if args.smoke else SHOTS

    from diffusers import AutoencoderKLCogVideoX

    transformer = build_transformer(config, device, dtype)
    with torch.device(device):  # the sampler holds one; denoising never calls it
        vae = AutoencoderKLCogVideoX(**(SMOKE_VAE if args.smoke else FULL_VAE)).to(dtype).eval()
    models = random_models(transformer, vae, config)
    sampler = VoidSampler(models, device=device, dtype=dtype)
    embeds = torch.randn((1, config["max_text_seq_length"], config["text_embed_dim"]), generator=_gen(0))
    embeds = embeds.to(device, dtype)
    channels = config["in_channels"] // 3  # noise C, and the 2C conditioning (mask + masked video latents)
    measured: dict[int, float] = {}

    def denoise_s(length: int) -> float:
        """Seconds of ``denoise`` for one run of ``length`` padded frames (measured once per length)."""
        if length not in measured:
            lat = latent_frames(length)
            inpaint = torch.randn((1, lat, 2 * channels, height, width), generator=_gen(length)).to(device, dtype)
            sampler.denoise(inpaint, embeds, dataclasses.replace(settings, steps=1), generator=_gen(1))  # warm-up
            sync(device)
            began = time.perf_counter()
            sampler.denoise(inpaint, embeds, settings, generator=_gen(1))
            sync(device)
            measured[length] = round(time.perf_counter() - began, 3)
            print(f"{length} frames ({lat} latent): {measured[length]} s for {settings.steps} steps", flush=True)
        return measured[length]

    plans: dict[str, dict[str, Any]] = {}
    with attention_backend("default" if args.smoke else "cudnn"):
        for name, planner in (
            ("shipped", lambda n: frame_windows(n, longest, shortest=shortest)),
            ("step_then_short", lambda n: step_then_short(n, longest, shortest)),
            ("equal_windows", lambda n: equal_windows(n, longest, shortest)),
            ("even_windows", lambda n: even_windows(n, longest)),
        ):
            plans[name] = {}
            for frames in shots:
                spans = planner(frames)
                lengths = [padded(span, shortest=shortest, longest=longest) for span in spans]
                plans[name][str(frames)] = {
                    "windows": [list(span) for span in spans],
                    "padded": lengths,
                    "denoise_s": round(sum(denoise_s(length) for length in lengths), 3),
                }
    by_frames = {key: plan["denoise_s"] for key, plan in plans["shipped"].items()}
    short = {key: plan["denoise_s"] for key, plan in plans["step_then_short"].items()}
    equal = {key: plan["denoise_s"] for key, plan in plans["equal_windows"].items()}
    before = {key: plan["denoise_s"] for key, plan in plans["even_windows"].items()}
    one, two = str(shots[0]), str(shots[1])
    result = {
        "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "steps": settings.steps,
        "attention": "default" if args.smoke else "cudnn",
        "compiled": False,
        "denoise_s_by_padded_frames": {str(key): value for key, value in sorted(measured.items())},
        "denoise_s_by_frames": by_frames,
        "denoise_s_by_frames_step_then_short": short,
        "denoise_s_by_frames_equal_windows": equal,
        "denoise_s_by_frames_even_windows": before,
        "plans": plans,
        "ratio_198_to_197": round(by_frames[two] / by_frames[one], 3),
        "ratio_198_to_197_step_then_short": round(short[two] / short[one], 3),
        "ratio_198_to_197_even_windows": round(before[two] / before[one], 3),
        "target_ratio": 1.25,
    }
    text = json.dumps(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


if __name__ == "__main__":
    main()
