"""A VOID pass that sleeps as long as the real one takes on an H100, for cluster tests and simulations.

Calibration (``call_seconds``), from the measurements under ``benchmarks/results/``:

- denoising: ``windows_h100.json`` ``denoise_s_by_padded_frames`` (30 steps, eager, cuDNN attention, one H100) over
  its ``steps``: seconds per step at 85, 125 and 197 padded frames, linear between them (and through 0 below 85);
- the rest of a call (VAE encode and decode): ``void_profile_h100.json`` ``vae_85.default`` encode + decode seconds
  at 85 padded frames, in proportion to the padded length.

A call is one run of at most 197 frames; a shot's frame count is padded as VOID pads it (``void.values.
padded_length``: at least 85 frames, 4k+1 with an even latent length), so an 85-frame pass 1 of 30 steps is
14.9 + 5.6 = 20.5 s (the throughput benchmark measured 22-23 s per such call through the whole flow, T5 and
transfers included). Longer shots run in windows (``void_ops.windows.frame_windows``), one call each.

``SleepWorker`` stands where ``tasks.void_actors.GpuWorker`` stands (the same ``describe`` and ``run``), sleeping
``call_seconds x scale`` and returning the fitted clip it was given as the pass's output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voidflow.void_ops.void.values import padded_length
from voidflow.void_ops.windows import frame_windows

__all__ = ["SleepWorker", "calibration", "call_seconds", "shot_seconds"]

RESULTS = Path(__file__).resolve().parent / "results"
MAX_FRAMES, MIN_FRAMES = 197, 85


def calibration() -> dict[str, Any]:
    """The numbers the sleep is made of, from the H100 result files: seconds per denoising step by padded frames,
    and VAE seconds at 85 frames."""
    windows = json.loads((RESULTS / "windows_h100.json").read_text())
    profile = json.loads((RESULTS / "void_profile_h100.json").read_text())
    steps = int(windows["steps"])
    per_step = {int(frames): seconds / steps for frames, seconds in windows["denoise_s_by_padded_frames"].items()}
    vae = profile["vae_85"]["default"]
    return {
        "card": windows["card"],
        "step_s_by_padded_frames": dict(sorted(per_step.items())),
        "vae_s_at_85": round(float(vae["encode_s"]) + float(vae["decode_s"]), 3),
        "sources": ["benchmarks/results/windows_h100.json", "benchmarks/results/void_profile_h100.json"],
    }


def call_seconds(frames: int, steps: int, *, numbers: Mapping[str, Any] | None = None) -> float:
    """Seconds one VOID call over a run of ``frames`` (at most 197) takes on an H100 with ``steps`` steps."""
    numbers = numbers or calibration()
    padded = padded_length(frames, min_length=MIN_FRAMES, max_length=MAX_FRAMES)
    table: dict[int, float] = dict(numbers["step_s_by_padded_frames"])
    points = sorted(table)
    if padded <= points[0]:
        step = table[points[0]] * padded / points[0]
    else:
        low = max(p for p in points if p <= padded)
        high = min((p for p in points if p >= padded), default=low)
        share = 0.0 if high == low else (padded - low) / (high - low)
        step = table[low] + share * (table[high] - table[low])
    return steps * step + float(numbers["vae_s_at_85"]) * padded / MIN_FRAMES


def shot_seconds(frames: int, steps: int, *, numbers: Mapping[str, Any] | None = None) -> float:
    """Seconds a shot of ``frames`` spends in VOID calls: one call per window of at most 197 frames."""
    numbers = numbers or calibration()
    windows = frame_windows(frames, MAX_FRAMES, shortest=MIN_FRAMES)
    return sum(call_seconds(stop - start, steps, numbers=numbers) for start, stop in windows)


class SleepWorker:
    """A GPU worker that sleeps as long as VOID would on an H100 (``call_seconds`` x ``scale``) and returns the fitted
    clip it was given as the pass's output (``tasks.void_actors.GpuWorker``'s ``describe`` and ``run``)."""

    def __init__(self, passes: Mapping[str, Mapping[str, object]], footprint: Mapping[str, object], scale: float):
        self._passes = {name: dict(params) for name, params in passes.items()}
        self._footprint = dict(footprint)
        self._scale = scale
        self._numbers = calibration()

    def describe(self) -> dict[str, Any]:
        """What ``GpuWorker.describe`` says: each pass's recipe, footprint and latent geometry; no memory limit."""
        return {
            "passes": self._passes,
            "footprints": {name: self._footprint for name in self._passes},
            "latents": {name: (16, 8) for name in self._passes},
            "memory_gb": 80.0,
            "compile_cache": None,
        }

    def run(self, name: str, call: Any, label: str) -> tuple[Any, dict[str, object]]:
        """Sleep for the call's calibrated time; return the clip's video and how the call ran."""
        steps = int(str(self._passes[name]["steps"]))
        planned = call_seconds(call.clip.frames, steps, numbers=self._numbers) * self._scale
        started = time.time()
        time.sleep(planned)
        finished = time.time()
        facts = {
            "started": started,
            "finished": finished,
            "seconds": round(finished - started, 3),
            "kernel_s": None,
            "sleep": {"h100_s": round(planned / self._scale, 3), "scale": self._scale},
        }
        return call.clip.video, facts
