"""Building VLM requests: prompt texts, rendered images and clips, and the canonical summary that is hashed.

Private to ``void_ops.masking.vlm``. Each image or video part is described by a *recipe* (source pixels'
SHA-256, sizes, grid, overlay, encoding) and rendered only for live calls, so a replay hashes the same request
without rendering anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.frames import fit_size
from voidflow.void_ops.masking._vlm_settings import VlmSettings
from voidflow.void_ops.shots import rate_fraction

__all__ = ["MediaPart", "Request", "keyframe_indices", "locate_request", "make_request", "reason_request"]

_FORMAT = "voidflow-vlm-request/1"  # bump when prompts or rendering change in a way the recipe does not show
_JPEG_QUALITY = 90
_VIDEO_CRF = 28
_OVERLAY_ALPHA = 0.4
_YELLOW, _RED = (255, 255, 0), (255, 0, 0)


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An image or video part: the recipe (hashed) and how to render its bytes (live calls only)."""

    mime_type: str
    recipe: dict[str, object]
    render: Callable[[], bytes]


@dataclass(frozen=True, slots=True)
class Request:
    """A request ready to send or to look up: its parts, response schema, canonical summary and that summary's hash."""

    kind: Literal["locate", "reason"]
    parts: tuple[str | MediaPart, ...]
    schema: type[BaseModel]
    summary: str
    sha256: str


def keyframe_indices(count: int, wanted: int) -> list[int]:
    """Return up to ``wanted`` indices spread evenly over ``0..count-1``, first and last included.

    Example: ``keyframe_indices(48, 4) == [0, 16, 31, 47]``; ``keyframe_indices(3, 10) == [0, 1, 2]``.
    """
    if count < 1 or wanted < 1:
        raise InvalidInput(f"keyframe_indices needs count and wanted of at least 1, got {count}, {wanted}")
    if wanted == 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


_LOCATE_TEXT = """You are locating one object in frames of a film shot, for a visual-effects object removal.
Object: {description}
{count} frames follow; each image is preceded by its frame number.
For every given frame on which the object is visible, return one tight box around all of its visible pixels as
box_2d = [ymin, xmin, ymax, xmax], integers normalised to 0..1000 over the image height (y) and width (x).
Use the frame numbers exactly as given. Leave out frames on which the object is not visible.
Answer with JSON only, following the response schema."""

_REASON_TEXT = """You are preparing the mask for removing an object from a video shot, with everything it causes.
The clip has {count} frames (numbered 0 to {last}) at {fps:g} frames per second.
Gridded keyframes follow: frames {keyframes}, with a yellow grid of {rows} rows by {cols} columns, cells labelled
"row,col", and the frame number printed in the corner. Then frame {overlay} with the object to remove in red.
{video}Then the artist's instruction.

Answer in JSON, following the response schema:
1. integral_belongings (at most 3): things attached to or carried by the object that disappear with it (a hat, a
   bike being ridden, a surfboard under the surfer); noun and why.
2. affected_objects (at most 5): what would look different if the object had never been there.
   - "visual_artifact": shadows, reflections, ripples, light or dents caused by the object; they vanish with it.
   - "physical": other objects the object acts on. If the object only stands near something or rests on it, and it
     would look the same without the object, leave it out. If the object pushes, pulls, carries, throws, hits or
     holds it, include it; will_move is true when, without the object, it would move differently from the clip
     (for example stay where it started).
   For each: noun, category, why, will_move, first_appears_frame (first frame on which it is visible, or null when
   visible from frame 0), and boxes: on each gridded keyframe where it is visible, box_2d = [ymin, xmin, ymax,
   xmax] as integers normalised to 0..1000, tight around it, with the frame numbers above.
   Do not list the object itself or its integral belongings here.
3. scene_description: one or two sentences describing the scene as it looks without the object and without
   everything it affects (this becomes the prompt for generating the background).
4. edit_instruction: one sentence stating the edit; confidence: 0 to 1, how sure you are about the affected
   objects."""


def make_request(
    kind: Literal["locate", "reason"], parts: list[str | MediaPart], schema: type[BaseModel], settings: VlmSettings
) -> Request:
    """Freeze ``parts`` into a request whose summary is canonical JSON and whose key is that JSON's SHA-256."""
    schema_json = json.dumps(schema.model_json_schema(), sort_keys=True)
    canonical = {
        "format": _FORMAT,
        "kind": kind,
        "model": settings.model,
        "settings": asdict(settings),
        "response_mime_type": "application/json",
        "response_schema": {"name": schema.__name__, "sha256": hashlib.sha256(schema_json.encode()).hexdigest()},
        "parts": [
            {"text": part} if isinstance(part, str) else {"mime_type": part.mime_type, **part.recipe} for part in parts
        ],
    }
    summary = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Request(kind, tuple(parts), schema, summary, hashlib.sha256(summary.encode()).hexdigest())


def locate_request(
    frames: Mapping[int, np.ndarray], description: str, settings: VlmSettings, schema: type[BaseModel], where: str
) -> tuple[Request, list[int], tuple[int, int]]:
    """The locate request: task text, then up to ``settings.keyframes`` frames, each after its frame number.

    Returns:
        (request, the frame indices sent, (plate height, plate width)).

    Raises:
        InvalidInput: empty description, no frames, frames not uint8 RGB of one size, negative indices.
    """
    if not description.strip():
        raise InvalidInput(f"{where}locate: description is empty")
    if not frames:
        raise InvalidInput(f"{where}locate: no frames given")
    keys = sorted(frames)
    shapes = {np.shape(frames[key]) for key in keys}
    first = frames[keys[0]]
    if len(shapes) != 1 or first.ndim != 3 or first.shape[2] != 3 or any(frames[k].dtype != np.uint8 for k in keys):
        raise InvalidInput(f"{where}locate: frames must all be (H, W, 3) uint8 RGB of one size, got shapes {shapes}")
    if keys[0] < 0:
        raise InvalidInput(f"{where}locate: frame indices must be >= 0, got {keys[0]}")
    chosen = [keys[i] for i in keyframe_indices(len(keys), settings.keyframes)]
    parts: list[str | MediaPart] = [_LOCATE_TEXT.format(description=description.strip(), count=len(chosen))]
    for key in chosen:
        parts += [f"Frame {key}:", _image(frames[key], settings, role="frame", index=key)]
    height, width = first.shape[:2]
    return make_request("locate", parts, schema, settings), chosen, (height, width)


def reason_request(
    frames: np.ndarray,
    primary: np.ndarray,
    instruction: str,
    fps: float,
    settings: VlmSettings,
    schema: type[BaseModel],
    where: str,
) -> Request:
    """The reason request: task text, gridded keyframes, the red overlay frame, the clip, the instruction.

    Raises:
        InvalidInput: frames not (T, H, W, 3) uint8, primary not bool of the same (T, H, W) or empty everywhere,
            fps not positive, empty instruction.
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise InvalidInput(f"{where}reason: frames must be (T, H, W, 3) uint8 RGB, got {getattr(frames, 'shape', '?')}")
    if not isinstance(primary, np.ndarray) or primary.dtype != np.bool_ or primary.shape != frames.shape[:3]:
        raise InvalidInput(
            f"{where}reason: primary must be bool {frames.shape[:3]} like the frames, "
            f"got {getattr(primary, 'dtype', '?')} {getattr(primary, 'shape', '?')}"
        )
    if not (math.isfinite(fps) and fps > 0):
        raise InvalidInput(f"{where}reason: fps must be positive, got {fps}")
    if not instruction.strip():
        raise InvalidInput(f"{where}reason: instruction is empty")
    present = np.flatnonzero(primary.reshape(len(primary), -1).any(axis=1))
    if not len(present):
        raise InvalidInput(f"{where}reason: the primary mask is empty on all {len(primary)} frames")
    count, height, width = frames.shape[:3]
    rows, cols = _grid_shape(height, width, settings.grid_rows)
    chosen = keyframe_indices(count, settings.reason_keyframes)
    overlay = int(present[0])
    video = (
        f"Then the whole clip as a video ({count / fps:.1f} s). " if settings.send_video else "No video is attached. "
    )
    text = _REASON_TEXT.format(
        count=count, last=count - 1, fps=fps, keyframes=chosen, rows=rows, cols=cols, overlay=overlay, video=video
    )
    parts: list[str | MediaPart] = [text]
    for index in chosen:
        parts += [f"Frame {index} (gridded):", _image(frames[index], settings, role="gridded", index=index, grid=True)]
    parts += [
        f"Frame {overlay}, the object to remove in red (gridded):",
        _image(frames[overlay], settings, role="overlay", index=overlay, grid=True, mask=primary[overlay]),
    ]
    if settings.send_video:
        parts += ["The whole clip:", _video(frames, fps, settings)]
    parts.append(f"Instruction: {instruction.strip()}")
    return make_request("reason", parts, schema, settings)


def _image(
    pixels: np.ndarray,
    settings: VlmSettings,
    *,
    role: str,
    index: int,
    grid: bool = False,
    mask: np.ndarray | None = None,
) -> MediaPart:
    """One JPEG image part: the plate frame, optionally with the red overlay of ``mask`` and the grid."""
    height, width = pixels.shape[:2]
    size = fit_size(height, width, settings.image_max_side)
    rows, cols = _grid_shape(*size, settings.grid_rows)
    recipe: dict[str, object] = {
        "role": role,
        "frame": index,
        "source_sha256": _sha256_array(pixels),
        "source_size": [height, width],
        "size": list(size),
        "encoding": f"jpeg q{_JPEG_QUALITY}",
        "grid": [rows, cols] if grid else None,
        "overlay": None
        if mask is None
        else {"mask_sha256": _sha256_array(mask), "alpha": _OVERLAY_ALPHA, "rgb": list(_RED)},
    }

    def render() -> bytes:
        image = pixels if mask is None else _overlay(pixels, mask)
        image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA) if size != (height, width) else image
        if grid:
            image = _draw_grid(image, rows, cols, f"frame {index}")
        ok, data = cv2.imencode(
            ".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        )
        if not ok:
            raise InvalidInput(f"could not encode frame {index} as JPEG")
        return data.tobytes()

    return MediaPart("image/jpeg", recipe, render)


def _video(frames: np.ndarray, fps: float, settings: VlmSettings) -> MediaPart:
    """The clip as an H.264 mp4 part, downscaled to ``settings.video_max_side`` (even sides)."""
    count, height, width = frames.shape[:3]
    size = fit_size(height, width, settings.video_max_side, even=True)
    recipe: dict[str, object] = {
        "role": "clip",
        "source_sha256": _sha256_array(frames),
        "frames": count,
        "source_size": [height, width],
        "size": list(size),
        "fps": fps,
        "encoding": f"h264 crf{_VIDEO_CRF} yuv420p mp4",
    }
    return MediaPart("video/mp4", recipe, lambda: _encode_mp4(frames, fps, size))


def _encode_mp4(frames: np.ndarray, fps: float, size: tuple[int, int]) -> bytes:
    """Encode (T, H, W, 3) uint8 RGB at ``size`` (height, width) as H.264 through the media door."""
    from voidflow.void_ops import media

    height, width = size
    if frames.shape[1:3] != size:
        frames = np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames])
    with tempfile.TemporaryDirectory(prefix="voidflow-vlm-") as folder:
        out = Path(folder) / "clip.mp4"
        media.write_movie(frames, out, rate_fraction(fps), codec="h264", crf=_VIDEO_CRF)
        return out.read_bytes()


def _grid_shape(height: int, width: int, rows: int) -> tuple[int, int]:
    """(rows, columns) of the reference's grid: ``rows`` on the short axis, the long axis by aspect."""
    if width >= height:
        return rows, max(1, round(rows * width / height))
    return max(1, round(rows * height / width)), rows


def _overlay(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend red into ``pixels`` where ``mask`` is set (40%, as the reference)."""
    out = pixels.copy()
    blended = pixels[mask].astype(np.float32) * (1 - _OVERLAY_ALPHA) + np.float32(_OVERLAY_ALPHA) * np.array(_RED)
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def _draw_grid(image: np.ndarray, rows: int, cols: int, label: str) -> np.ndarray:
    """Yellow grid lines, "row,col" cell labels and ``label`` in the top-left corner (a new image)."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 400))
    for row in range(1, rows):
        y = round(row * height / rows)
        cv2.line(out, (0, y), (width - 1, y), _YELLOW, thickness)
    for col in range(1, cols):
        x = round(col * width / cols)
        cv2.line(out, (x, 0), (x, height - 1), _YELLOW, thickness)
    scale = max(0.25, min(height / rows, width / cols) / 160)
    (_, text_height), _ = cv2.getTextSize("0,0", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    for row in range(rows):
        for col in range(cols):
            origin = (round(col * width / cols) + 3, round(row * height / rows) + text_height + 4)
            _text(out, f"{row},{col}", origin, scale)
    _text(out, label, (4, height - 6), max(0.4, min(height, width) / 600))
    return out


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """Yellow text with a black outline, readable on any background."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    weight = max(1, round(scale * 1.2))
    cv2.putText(image, text, origin, font, scale, (0, 0, 0), weight + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, font, scale, _YELLOW, weight, cv2.LINE_AA)


def _sha256_array(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-order bytes, streamed frame by frame for videos."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    for item in array if array.ndim >= 4 else (array,):
        digest.update(np.ascontiguousarray(item).tobytes())
    return digest.hexdigest()
