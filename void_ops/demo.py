"""A synthetic shoot for the demo: a plate, its roto matte, an edit cut from it, and a sidecar of instructions.

The plate is a locked-off 1280x720, 24 fps shot of a textured floor with a red ball rolling across it and casting
a soft shadow, as a BT.709-tagged ProRes 422 HQ movie. The matte covers the ball only; the sidecar asks for an
"affected" ring wide enough to take the shadow too, which is what VOID's quadmask is for.

With ``linear_shot``, a second, smaller plate sits beside it: a scene-linear ACEScg half-float EXR sequence of the
same floor under a window whose highlights reach 6.0, with the ball rolling across; its clip (``sh040``) follows
the others on the track. Its colour space is inferred from the EXR's AP1 chromaticities.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import yaml

from voidflow.void_ops import media
from voidflow.void_ops.exceptions import InvalidInput

__all__ = ["DemoShoot", "make_demo"]

_BALL_RADIUS = 36
_START_TC = "01:00:00:00"


@dataclass(frozen=True, slots=True)
class DemoShoot:
    """Where the demo's inputs were written."""

    edit: Path
    sidecar: Path
    plate: Path
    matte: str
    linear_plate: str | None = None


def _floor(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.random((height // 40 + 2, width // 40 + 2, 3)).astype(np.float32)  # 40 px blotches
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 1.2)[..., None]
    base: np.ndarray = np.array([150, 140, 120], np.float32) + 40 * (texture - 0.5) + 30 * (fine - 0.5)
    rows, cols = np.mgrid[0:height, 0:width]
    tile = max(width // 8, 8)
    base[(rows % (tile * 9 // 16) < 3) | (cols % tile < 3)] *= 0.7  # floor tiles
    base *= (0.8 + 0.2 * rows / height)[..., None]
    return base


def _ball_centre(index: int, frames: int, width: int, height: int) -> tuple[float, float]:
    margin = width / 16
    return margin + (width - 2 * margin) * index / max(frames - 1, 1), height * 0.61


def make_demo(
    out: Path, *, frames: int = 120, width: int = 1280, height: int = 720, seed: int = 7, linear_shot: bool = False
) -> DemoShoot:
    """Write the demo shoot under ``out/input``; sizes other than 1280x720 scale the ball, shadow and ring.

    Args:
        out: the demo folder.
        frames: plate length (at least 116, the last clip's range with handles).
        width: plate width in pixels.
        height: plate height in pixels.
        seed: seed of the texture and grain.
        linear_shot: also write the ACEScg EXR plate (at half the size) and its clip ``sh040``.

    Returns:
        The paths of the edit (``demo_cut.otio``), sidecar, plate and matte pattern.

    Raises:
        InvalidInput: fewer than 116 frames, or a size that is not even or smaller than 160x90.
    """
    if frames < 116 or width < 160 or height < 90 or width % 2 or height % 2:
        raise InvalidInput(
            f"demo needs >= 116 frames and an even size of at least 160x90, got {frames} {width}x{height}"
        )
    rate = Fraction(24)
    scale = width / 1280
    radius = _BALL_RADIUS * scale
    folder = out / "input"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    floor = _floor(height, width, rng)
    plate = np.empty((frames, height, width, 3), np.uint8)
    matte = np.zeros((frames, height, width, 3), np.uint8)
    reach = int(3 * radius) + 8
    for index in range(frames):
        x, y = _ball_centre(index, frames, width, height)
        frame = floor + 1.5 * rng.standard_normal(floor.shape, dtype=np.float32)  # film grain
        top, left = max(int(y) - reach, 0), max(int(x) - reach, 0)
        box = (slice(top, min(int(y) + reach, height)), slice(left, min(int(x) + reach, width)))
        rows, cols = np.mgrid[box]
        rows, cols = rows.astype(np.float32), cols.astype(np.float32)
        shadow = np.clip(
            1 - (((cols - x - 8 * scale) / (44 * scale)) ** 2 + ((rows - y - 42 * scale) / (9 * scale)) ** 2), 0, 1
        )
        shadow = cv2.GaussianBlur(shadow, (0, 0), 4 * scale)
        patch = frame[box] * (1 - 0.55 * shadow[..., None])
        distance = np.sqrt((cols - x) ** 2 + (rows - y) ** 2)
        coverage = np.clip(radius + 0.5 - distance, 0, 1)[..., None]
        light = np.clip(
            1.2 - np.sqrt((cols - x + radius / 3) ** 2 + (rows - y + radius / 2.6) ** 2) / (1.6 * radius), 0.35, 1
        )
        ball = np.array([205, 30, 25], np.float32) * light[..., None]
        frame[box] = patch * (1 - coverage) + ball * coverage
        plate[index] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        matte[index][box][distance <= radius + 0.5] = 255
    plate_path = folder / "demo_plate.mov"
    if not plate_path.exists():
        media.write_movie(plate, plate_path, rate, timecode=_START_TC)
    matte_pattern = folder / "matte" / "demo_matte.%04d.png"
    if not matte_pattern.parent.exists():
        media.write_sequence(matte, matte_pattern, rate, first_number=1001)
    entry = {
        "remove": "the red ball rolling across the floor",
        "prompt": "An empty tiled floor in soft daylight.",
        "matte": "matte/demo_matte.%04d.png",
        "affected_ring": max(2, round(30 * scale)),
    }
    shots = {name: dict(entry) for name in ("sh010", "sh020", "sh030")}
    timeline = _timeline(plate_path, frames)
    linear = None
    if linear_shot:
        linear = _write_linear_plate(folder, width // 2 - width // 2 % 2, height // 2 - height // 2 % 2, seed)
        timeline.tracks[0].append(_linear_clip(linear))
        shots["sh040"] = {**entry, "matte": "linear_matte/demo_linear_matte.%04d.png", "affected_ring": 8}
    edit = folder / "demo_cut.otio"
    otio.adapters.write_to_file(timeline, str(edit))
    sidecar = folder / "demo_sidecar.yaml"
    sidecar.write_text(yaml.safe_dump({"shots": shots}))
    return DemoShoot(edit, sidecar, plate_path, str(matte_pattern), linear)


#: The ACEScg plate: 40 frames (a 24-frame cut with 8-frame handles), AP1 primaries, a window up to 6.0.
_LINEAR_FRAMES = 40
_AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)


def _write_linear_plate(folder: Path, width: int, height: int, seed: int) -> str:
    """Write the scene-linear ACEScg half EXR plate and its PNG matte; return the plate's printf pattern."""
    pattern = folder / "linear" / "demo_linear.%04d.exr"
    matte_pattern = folder / "linear_matte" / "demo_linear_matte.%04d.png"
    if pattern.parent.exists() and matte_pattern.parent.exists():
        return str(pattern.resolve())
    rng = np.random.default_rng(seed + 1)
    floor = (_floor(height, width, rng) / 255.0) ** 2.2  # display-ish texture, linearised: 18% grey-ish floor
    rows, cols = np.mgrid[0:height, 0:width]
    window = (rows < height * 0.35) & (cols > width * 0.6) & (cols < width * 0.9)
    glow = np.exp(-(((cols - width * 0.75) / (width * 0.2)) ** 2 + ((rows - height * 0.1) / (height * 0.25)) ** 2))
    base = floor + 0.6 * glow[..., None]
    base[window] = [6.0, 5.6, 4.8]  # daylight through a window: far above display white
    base = cv2.GaussianBlur(base, (0, 0), 1.0)  # a lens, not an aliased step
    radius = _BALL_RADIUS * width / 1280
    plate = np.empty((_LINEAR_FRAMES, height, width, 3), np.float32)
    matte = np.zeros((_LINEAR_FRAMES, height, width, 3), np.uint8)
    for index in range(_LINEAR_FRAMES):
        x, y = _ball_centre(index, _LINEAR_FRAMES, width, height)
        distance = np.sqrt((cols - x) ** 2 + (rows - y) ** 2)
        coverage = np.clip(radius + 0.5 - distance, 0, 1)[..., None]
        frame = base * (1 + 0.004 * rng.standard_normal(base.shape[:2], dtype=np.float32)[..., None])  # luma grain
        frame = frame * (1 - coverage) + np.array([0.55, 0.04, 0.03], np.float32) * coverage
        plate[index] = frame.astype(np.float16).astype(np.float32)
        matte[index][distance <= radius + 0.5] = 255
    header = {"chromaticities": ("float[8]", _AP1), "smpte:TimeCode": "02:00:00:00"}
    media.write_sequence(plate, pattern, Fraction(24), fmt="exr", pixel_type="half", attributes=header)
    media.write_sequence(matte, matte_pattern, Fraction(24))
    return str(pattern.resolve())


def _linear_clip(pattern: str) -> otio.schema.Clip:
    folder, name = Path(pattern).parent, Path(pattern).name
    prefix, _, suffix = name.partition("%04d")
    reference = otio.schema.ImageSequenceReference(
        target_url_base=folder.as_uri() + "/",
        name_prefix=prefix,
        name_suffix=suffix,
        start_frame=1001,
        frame_zero_padding=4,
        rate=24,
        available_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(1001, 24), otio.opentime.RationalTime(_LINEAR_FRAMES, 24)
        ),
    )
    clip = otio.schema.Clip(
        name="demo_linear",
        media_reference=reference,
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(1009, 24), otio.opentime.RationalTime(24, 24)),
    )
    clip.metadata["voidflow"] = {"shot": "sh040"}
    return clip


def _timeline(plate: Path, frames: int) -> otio.schema.Timeline:
    start = otio.opentime.from_timecode(_START_TC, 24)
    available = otio.opentime.TimeRange(start, otio.opentime.RationalTime(frames, 24))
    track = otio.schema.Track(name="VFX", kind=otio.schema.TrackKind.Video)
    cuts = [("sh010", 12, 28), ("sh020", 50, 24), ("sh030", 84, 24), (None, 0, 12)]
    for shot, offset, length in cuts:
        clip = otio.schema.Clip(
            name="demo_plate" if shot else "slate",
            media_reference=otio.schema.ExternalReference(
                target_url=plate.resolve().as_uri(), available_range=available
            ),
            source_range=otio.opentime.TimeRange(
                start + otio.opentime.RationalTime(offset, 24), otio.opentime.RationalTime(length, 24)
            ),
        )
        if shot:
            clip.metadata["voidflow"] = {"shot": shot}
        track.append(clip)
    timeline = otio.schema.Timeline(name="voidflow demo", tracks=[track])
    timeline.global_start_time = otio.opentime.from_timecode("01:00:00:00", 24)
    return timeline
