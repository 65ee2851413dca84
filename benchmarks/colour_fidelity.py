"""Colour fidelity of deliveries, measured through ``voidflow run`` with independent decoders.

1. A real BT.709 plate: Avid's DNxHD 1080p clip from the OTIO AAF adapter's samples (Apache-2.0, vendored in
   ``tests/media``), a box matte, the ``cleanplate`` backend and the default ProRes 422 HQ
   delivery. The plate and the delivery are both decoded by the ffmpeg CLI as an NLE does (BT.709, video range,
   accurate rounding, full chroma interpolation, 16-bit RGB, then rounded to 8 bits) and compared outside the grown
   matte. Target: max <= 4/255, mean <= 0.5/255, with the colour tags present.
2. A scene-linear ACEScg half-float EXR plate with highlights up to 6.0 (the demo's), delivered as EXR (half,
   bit-identical outside the matte, highlights included; read back with OpenImageIO) and as ProRes (which must
   succeed and record its encoding).

Prints one JSON object as its last line and writes it to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)

ROOT = Path(__file__).resolve().parents[1]
PLATE = ROOT / "tests" / "media" / "picchu_seq0100_snippet_dnx.mov"
NLE_DECODE = "scale=in_color_matrix=bt709:in_range=tv:flags=accurate_rnd+full_chroma_int,format=rgb48le"


def _decode(path: Path, width: int, height: int) -> np.ndarray:
    """Decode a movie with the ffmpeg CLI the way an NLE does; 8-bit values as int16."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", NLE_DECODE, "-f", "rawvideo", "-"],
        capture_output=True,
        check=True,
    ).stdout
    frames = np.frombuffer(raw, "<u2").reshape(-1, height, width, 3)
    return np.rint(frames / 257.0).astype(np.int16)


def _voidflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOIDFLOW_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [sys.executable, "-m", "voidflow.deployments.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)


def _tags(path: Path) -> dict[str, str]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    return {key: stream.get(key, "") for key in ("color_space", "color_primaries", "color_transfer", "color_range")}


def _edit(folder: Path, plate: Path, frames: int, rate: int, first: int, kind: str) -> Path:
    import opentimelineio as otio

    folder.mkdir(parents=True, exist_ok=True)
    available = otio.opentime.TimeRange(
        otio.opentime.RationalTime(first, rate), otio.opentime.RationalTime(frames, rate)
    )
    if kind == "movie":
        reference: otio.core.MediaReference = otio.schema.ExternalReference(
            target_url=plate.resolve().as_uri(), available_range=available
        )
    else:
        prefix, _, suffix = plate.name.partition("%04d")
        reference = otio.schema.ImageSequenceReference(
            target_url_base=plate.parent.resolve().as_uri() + "/",
            name_prefix=prefix,
            name_suffix=suffix,
            start_frame=first,
            frame_zero_padding=4,
            rate=rate,
            available_range=available,
        )
    clip = otio.schema.Clip(
        name="plate",
        media_reference=reference,
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(first + 4, rate), otio.opentime.RationalTime(frames - 8, rate)
        ),
    )
    clip.metadata["voidflow"] = {"shot": "plate010"}
    track = otio.schema.Track(name="VFX", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    edit = folder / "edit.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(tracks=[track]), str(edit))
    return edit


def _box_matte(folder: Path, frames: int, height: int, width: int) -> str:
    from fractions import Fraction

    from voidflow.void_ops import media

    matte = np.zeros((frames, height, width, 3), np.uint8)
    matte[:, height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = 255
    media.write_sequence(matte, folder / "matte" / "matte.%04d.png", Fraction(24))
    return str(folder / "matte" / "matte.%04d.png")


def real_plate(folder: Path) -> dict[str, object]:
    """Measure the ProRes delivery of the Avid DNxHD plate against the plate, outside the grown matte."""
    from fractions import Fraction

    from voidflow.void_ops import media
    from voidflow.void_ops.shots import MediaSource

    info = media.probe(MediaSource(str(PLATE), "movie", 24.0))
    edit = _edit(folder, PLATE, info.frames, round(info.rate), 0, "movie")
    matte = _box_matte(folder, info.frames, info.height, info.width)
    sidecar = folder / "sidecar.yaml"
    sidecar.write_text(json.dumps({"shots": {"plate010": {"matte": matte}}}))
    run = _voidflow(folder / "home", "run", str(edit), "--sidecar", str(sidecar), "--out", str(folder / "out"))
    if run.returncode != 0:
        raise SystemExit(f"voidflow run failed ({run.returncode}): {run.stderr[-2000:]}")
    version = folder / "out" / "shots" / "plate010" / "v001"
    delivery = version / "plate010_voidclean_v001.mov"
    plate = _decode(PLATE, info.width, info.height)
    delivered = _decode(delivery, info.width, info.height)
    alpha = media.read_matte(MediaSource(str(version / "matte" / "plate010_voidclean_v001_matte.%04d.png"),
                                         "sequence", 24.0, first_number=1001), 0, len(delivered))  # fmt: skip
    outside = alpha == 0
    error = np.abs(delivered - plate[: len(delivered)])[outside]
    return {
        "plate": str(PLATE.relative_to(ROOT)),
        "plate_codec": f"{info.codec} {info.pix_fmt} {info.width}x{info.height} {info.rate} fps",
        "plate_tags": _tags(PLATE),
        "delivery_tags": _tags(delivery),
        "frames": len(delivered),
        "outside_max_8bit": int(error.max()),
        "outside_mean_8bit": round(float(error.mean()), 4),
        "outside_p999_8bit": float(np.percentile(error, 99.9)),
        "target": {"max": 4, "mean": 0.5},
        "rate": str(Fraction(info.rate)),
    }


def linear_plate(folder: Path) -> dict[str, object]:
    """Deliver the demo's ACEScg half EXR plate as EXR and as ProRes; check EXR bit-identity and highlights."""
    import OpenImageIO as oiio

    from voidflow.void_ops import media
    from voidflow.void_ops.demo import make_demo
    from voidflow.void_ops.shots import MediaSource

    shoot = make_demo(folder / "demo", frames=116, width=320, height=180, linear_shot=True)
    assert shoot.linear_plate is not None
    source = MediaSource(shoot.linear_plate, "sequence", 24.0, first_number=1001)
    info = media.probe(source)
    plate = media.read_frames(source, 0, info.frames)
    edit = _edit(folder, Path(shoot.linear_plate), info.frames, 24, 1001, "sequence")
    sidecar = folder / "linear.yaml"
    matte = str(Path(shoot.linear_plate).parents[1] / "linear_matte" / "demo_linear_matte.%04d.png")
    sidecar.write_text(json.dumps({"shots": {"plate010": {"matte": matte}}}))
    results: dict[str, object] = {"plate_max": float(plate.max()), "plate_sample": info.sample}
    for output in ("exr", "prores"):
        out = folder / f"out-{output}"
        run = _voidflow(folder / "home", "run", str(edit), "--sidecar", str(sidecar), "--out", str(out),
                        "--output", output)  # fmt: skip
        version = sorted((out / "shots" / "plate010").glob("v0*"))[-1]  # versions count across both batches
        entry: dict[str, object] = {"exit": run.returncode, "version": version.name}
        if output == "exr":
            files = sorted((version / "plate010_voidclean_v001").glob("*.exr"))
            image = oiio.ImageInput.open(str(files[0]))
            entry["pixel_type"] = str(image.spec().format)
            entry["compression"] = image.spec().get_string_attribute("compression")
            image.close()
            delivered = media.read_frames(MediaSource(str(files[0].parent / "plate010_voidclean_v001.%04d.exr"),
                                                      "sequence", 24.0, first_number=1001), 0, len(files))  # fmt: skip
            alpha = media.read_matte(MediaSource(str(version / "matte" / "plate010_voidclean_v001_matte.%04d.png"),
                                                 "sequence", 24.0, first_number=1001), 0, len(files))  # fmt: skip
            outside = alpha == 0
            entry["outside_bit_identical"] = bool(np.array_equal(delivered[outside], plate[: len(files)][outside]))
            entry["highlights_outside_kept"] = int((delivered[outside] > 1.0).sum())
            entry["delivery_max"] = float(delivered.max())
        else:
            entry["delivery_tags"] = _tags(version / f"plate010_voidclean_{version.name}.mov")
        deliver = _last_deliver(folder / "home" / "voidflow.db")
        entry["qc"] = deliver["qc"]
        entry["delivery_encoding"] = deliver["delivery_encoding"]
        entry["plate_colour"] = {
            key: deliver["colour"][key] for key in ("plate_space", "plate_space_source", "evidence")
        }
        results[output] = entry
    return results


def _last_deliver(database: Path) -> dict[str, Any]:
    """The newest deliver stage's recorded parameters (QC, encoding, colour), read straight from the ledger."""
    with sqlite3.connect(database) as connection:
        row = connection.execute("select params from stage_runs where stage = 'deliver' order by id desc").fetchone()
    return dict(json.loads(row[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voidflow-colour-") as folder:
        result = {
            "benchmark": "colour_fidelity",
            "real_bt709_plate": real_plate(Path(folder) / "real"),
            "acescg_half_exr": linear_plate(Path(folder) / "linear"),
        }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
