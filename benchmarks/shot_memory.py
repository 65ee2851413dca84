"""Peak host memory of one shot's stages (mask, pass 1, deliver) with the ``passthrough`` backend.

Definition: for each stage, ``peak_gb`` is the peak resident set (``VmHWM``) of a fresh process that builds the
shot, reads the plate's colour (``plates.plate_view``), resets its peak (``/proc/self/clear_refs``), then runs the
stage function of ``void_ops.pipeline`` exactly as a shot task does (``make_mask`` with the roto matte, ``inpaint``
with ``Passthrough``, ``deliver``); ``above_start_gb`` is that peak less the process's resident set just before the
stage (imports, OCIO): what the stage itself held at its worst. ``estimate_gb`` is what
``void_ops.host_memory.shot_memory`` says of the same shot (it includes ``worker_gb``, a shot task's worker before
any stage, so it compares with ``peak_gb``, while ``above_start_gb`` compares with ``estimate_gb - worker_gb``).

The shot is a scene-linear half-float EXR sequence (ACEScg, a smooth gradient with a moving disc) and its PNG roto
matte, written first under a temporary folder (``media_s``; removed at the end). The delivery is ``--output``: an
EXR sequence (bit-identical outside the matte, the usual delivery of an EXR plate) or a ProRes movie (the model
view). Each stage runs in its own process, so the three peaks do not mask each other.

``--code DIR`` runs the stages from another checkout of voidflow (``git archive <commit> | tar -x -C DIR``): the
"before" figures of a change measured against the same media in the same run. ``--smoke`` runs a 320x180 shot of
40 frames (every window path taken) and checks the estimate covers each stage's peak.

Run ``.venv/bin/python benchmarks/shot_memory.py [--width 2048 --height 1080 --frames 100] [--code DIR]
[--out FILE]``. Prints one JSON object as its last line (``--out`` also writes it to FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)

GB = 1024**3
STAGES = ("mask", "pass1", "deliver")
SMOKE = {"width": 640, "height": 360, "frames": 40}
PLATES = {"exr": "half EXR sequence, ACEScg (decoded float32)", "prores": "ProRes 422 HQ, BT.709 (decoded uint16)"}


def _use_code(root: Path) -> None:
    """Import ``voidflow.*`` from the checkout at ``root`` instead of the installed (editable) one."""
    sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")]
    package = types.ModuleType("voidflow")
    package.__path__ = [str(root)]
    sys.modules["voidflow"] = package


def write_shot(folder: Path, width: int, height: int, frames: int, plate: str = "exr") -> dict[str, Any]:
    """Write the plate and its PNG matte; return the shot's spec.

    ``exr``: a half-float EXR sequence with ACEScg chromaticities (scene-linear, decoded float32), written frame by
    frame. ``prores``: a BT.709 ProRes 422 HQ movie (decoded uint16), written in one piece (keep it small).
    """
    from fractions import Fraction

    import numpy as np

    from voidflow.void_ops import _images, media

    ap1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)
    plates, mattes = folder / "plate", folder / "matte"
    plates.mkdir(parents=True)
    mattes.mkdir()
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = max(4, min(width, height) // 8)
    movie = []
    for index in range(frames):
        centre_x = radius + (width - 2 * radius) * index / max(frames - 1, 1)
        disc = (columns - centre_x) ** 2 + (rows - height / 2) ** 2 <= radius**2
        pixels = np.stack([columns / width * 4.0, rows / height, np.full_like(rows, 0.18)], axis=-1)
        pixels[disc] = (0.8, 0.05, 0.05)
        if plate == "exr":
            attributes = {"chromaticities": ("float[8]", ap1)}
            _images.write(plates / f"plate.{1001 + index:04d}.exr", pixels, pixel_type="half",
                          channels=("R", "G", "B"), attributes=attributes)  # fmt: skip
        else:
            movie.append(np.clip(pixels / 4.0, 0.0, 1.0))
        matte = np.repeat((disc * 255).astype(np.uint8)[..., None], 3, axis=-1)
        _images.write(mattes / f"matte.{1001 + index:04d}.png", matte, pixel_type="uint8", channels=("R", "G", "B"))
    if plate == "exr":
        source = {"plate": str(plates / "plate.%04d.exr"), "kind": "sequence", "sample": "float32"}
    else:
        path = plates / "plate.mov"
        media.write_movie(np.stack(movie).astype(np.float32), path, Fraction(24), codec="prores")
        source = {"plate": str(path), "kind": "movie", "sample": "uint16"}
    return {
        **source,
        "matte": str(mattes / "matte.%04d.png"),
        "frames": frames,
        "width": width,
        "height": height,
        "out": str(folder / "out"),
    }


def _shot(spec: dict[str, Any]) -> Any:
    from voidflow.void_ops.shots import MediaSource, Shot, ShotInstructions

    if spec["kind"] == "sequence":
        source = MediaSource(spec["plate"], "sequence", 24.0, start=1001, frames=spec["frames"], first_number=1001)
    else:
        source = MediaSource(spec["plate"], "movie", 24.0, start=1001, frames=spec["frames"])
    return Shot(
        name="sh010", track="V1", index=0, clip_name="sh010", name_source="clip", media=source, rate=24.0,
        source_start=1002, duration=spec["frames"] - 2, handles=(1, 1), record_start=0, status="ready",
        instructions=ShotInstructions(matte=spec["matte"], affected_ring=8),
    )  # fmt: skip


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(stage: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one stage on the shot in this process and measure it (see the module docstring)."""
    from voidflow.void_ops import pipeline
    from voidflow.void_ops.composite import Blend
    from voidflow.void_ops.mattes import MatteMasker
    from voidflow.void_ops.passthrough import Passthrough
    from voidflow.void_ops.plates import ColourSettings, plate_view

    shot = _shot(spec)
    view = plate_view(shot, ColourSettings())
    folder = pipeline.shot_dir(Path(spec["out"]), shot)
    work = folder / "work"
    Path("/proc/self/clear_refs").write_text("5")  # the peak so far (imports) is not the stage's
    start = _status("VmRSS")
    started = time.perf_counter()
    produced: dict[str, str] = {}
    if stage == "mask":
        quadmask, _, _ = pipeline.make_mask(shot, MatteMasker(), work, "bench", view)
        produced["quadmask"] = str(quadmask.path)
    elif stage == "pass1":
        fill = pipeline.inpaint(shot, Passthrough(), Path(spec["quadmask"]), work, "bench", view, seed=0, prompt="")
        produced["fill"] = str(fill.path)
    else:
        delivery_spec = pipeline.DeliverySpec(spec["output"])
        _, qc, _ = pipeline.deliver(
            shot, Path(spec["fill"]), Path(spec["quadmask"]), folder, view,
            version="v001", blend=Blend(), spec=delivery_spec,
        )  # fmt: skip
        produced["qc"] = qc.summary()
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    return {
        "peak_gb": round(peak / GB, 3),
        "above_start_gb": round((peak - start) / GB, 3),
        "start_gb": round(start / GB, 3),
        "seconds": round(seconds, 2),
        "ru_maxrss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 3),
        **produced,
    }


def _run_stages(spec: dict[str, Any], code: Path | None) -> dict[str, Any]:
    """Each stage in a fresh process (from ``code`` when given), in order; the outputs feed the next stage."""
    results: dict[str, Any] = {}
    spec = dict(spec, out=str(Path(spec["out"]) / ("before" if code else "after")))
    for stage in STAGES:
        command = [sys.executable, __file__, "--child", stage, "--spec", json.dumps(spec)]
        if code is not None:
            command += ["--code", str(code)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{stage} failed ({'code ' + str(code) if code else 'this checkout'}):\n"
                               f"{done.stderr[-3000:]}")  # fmt: skip
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        spec.update({key: measured.pop(key) for key in ("quadmask", "fill") if key in measured})
        results[stage] = measured
    return results


def _estimate(spec: dict[str, Any]) -> dict[str, Any]:
    from voidflow.void_ops.host_memory import shot_memory

    frames, height, width = spec["frames"], spec["height"], spec["width"]
    estimate = shot_memory("sh010", frames, height, width, spec["sample"], backend="passthrough")
    return {
        "line": estimate.line(),
        "worker_gb": round(estimate.worker_bytes / GB, 3),
        "stages_gb": {stage: round(value / GB, 3) for stage, value in estimate.stages},
        "peak_gb": round(estimate.peak_bytes / GB, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--plate", choices=("exr", "prores"), default="exr", help="a float EXR or a ProRes plate")
    parser.add_argument("--output", choices=("exr", "prores"), default="exr", help="the delivery format")
    parser.add_argument("--code", type=Path, help="also run the stages from this checkout (the 'before' figures)")
    parser.add_argument("--smoke", action="store_true", help=f"a {SMOKE['width']}x{SMOKE['height']} shot")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.code:
            _use_code(args.code.resolve())
        print(json.dumps(child(args.child, json.loads(args.spec))), flush=True)
        return 0
    size = SMOKE if args.smoke else {"width": args.width, "height": args.height, "frames": args.frames}
    root = Path(tempfile.mkdtemp(prefix="vf-shotmem-"))
    try:
        started = time.perf_counter()
        spec = {**write_shot(root, **size, plate=args.plate), "output": args.output}
        media_s = time.perf_counter() - started
        after = _run_stages(spec, None)
        before = _run_stages(spec, args.code.resolve()) if args.code else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    estimate = _estimate(spec)
    plate_gb = size["frames"] * size["width"] * size["height"] * 3 * (4 if args.plate == "exr" else 2) / GB
    document: dict[str, Any] = {
        "benchmark": "shot_memory",
        "command": " ".join(["python", *sys.argv]),
        "smoke": args.smoke,
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                                                                / GB, 1)},
        "shot": {**size, "plate": PLATES[args.plate], "delivery": args.output, "backend": "passthrough",
                 "plate_gb": round(plate_gb, 3)},
        "after": after,
        "peak_gb": max(stage["peak_gb"] for stage in after.values()),
        "estimate": estimate,
        "media_s": round(media_s, 1),
    }  # fmt: skip
    if before is not None:
        document["before"] = before
        document["before_code"] = str(args.code)
        document["before_peak_gb"] = max(stage["peak_gb"] for stage in before.values())
    from benchmarks.throughput import emit

    emit(document, args.out)
    covered = all(estimate["stages_gb"][stage] >= after[stage]["above_start_gb"] for stage in STAGES)
    if not covered:
        print("the estimate is below a measured stage peak", file=sys.stderr)
    return 0 if covered else 1


if __name__ == "__main__":
    sys.exit(main())
