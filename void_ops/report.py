"""Pictures and pages for people: contact sheets, matte overlays and the batch report.

Contact sheets show sampled frames of the cut (handles left out) in three rows: the plate, the result, and the
result with the blend region tinted, so a supervisor can judge a shot at a glance.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from voidflow.void_ops.files import atomic_write
from voidflow.void_ops.frames import to_uint8

__all__ = ["ShotCard", "contact_sheet", "mask_overlay", "mask_preview", "write_report"]

_THUMB_WIDTH = 240
_TINTS = {0: (255, 40, 40), 63: (255, 160, 0), 127: (40, 160, 255)}  # remove, overlap, affected


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a hidden temporary file beside ``path`` (its folder created), then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        write(temporary)
    return path


def _save_png(image: Image.Image, path: Path) -> Path:
    return _atomic(path, lambda target: image.save(target, format="PNG", compress_level=1))  # fast: pictures for people


def _sample(count: int, first: int, last: int) -> list[int]:
    return sorted({round(x) for x in np.linspace(first, last, num=min(count, last - first + 1))})


def _thumb(frame: np.ndarray) -> Image.Image:
    image = Image.fromarray(frame)
    height = max(1, round(frame.shape[0] * _THUMB_WIDTH / frame.shape[1]))
    return image.resize((_THUMB_WIDTH, height), Image.Resampling.BILINEAR)


def _tint(frame: np.ndarray, quadmask: np.ndarray) -> np.ndarray:
    out = frame.astype(np.float32)
    for value, colour in _TINTS.items():
        hit = (np.abs(quadmask.astype(np.int16) - value) <= 31) if value else quadmask <= 31
        out[hit] = out[hit] * 0.5 + np.array(colour, np.float32) * 0.5
    return out.astype(np.uint8)


def _grid(rows: Sequence[Sequence[np.ndarray]], path: Path) -> Path:
    thumbs = [[_thumb(frame) for frame in row] for row in rows]
    width, height = thumbs[0][0].size
    sheet = Image.new("RGB", (width * len(thumbs[0]) + 4 * (len(thumbs[0]) - 1), (height + 4) * len(thumbs) - 4))
    for r, row in enumerate(thumbs):
        for c, thumb in enumerate(row):
            sheet.paste(thumb, (c * (width + 4), r * (height + 4)))
    return _save_png(sheet, path)


def contact_sheet(
    plate: np.ndarray, result: np.ndarray, quadmask: np.ndarray, path: Path, *, cut: tuple[int, int], samples: int = 6
) -> Path:
    """Write a before/after contact sheet PNG.

    Args:
        plate: (T, H, W, 3) plate frames (any of uint8, uint16, float32).
        result: (T, H, W, 3) delivered frames, same shape.
        quadmask: (T, H, W) uint8 quadmask.
        path: the PNG to write (atomically).
        cut: (first, last) frame indices of the cut inside the arrays, handles excluded; frames are sampled there.
        samples: number of frames across.

    Returns:
        ``path``.
    """
    picks = _sample(samples, *cut)
    before, after = to_uint8(plate[picks]), to_uint8(result[picks])
    tinted = [_tint(frame, mask) for frame, mask in zip(after, quadmask[picks], strict=True)]
    return _grid([list(before), list(after), tinted], path)


def mask_overlay(
    plate: np.ndarray, quadmask: np.ndarray, path: Path, *, cut: tuple[int, int], samples: int = 6
) -> Path:
    """Write a PNG of sampled plate frames with the quadmask classes tinted (red remove, orange overlap, blue
    affected): the picture a supervisor approves before GPU time is spent."""
    picks = _sample(samples, *cut)
    frames = to_uint8(plate[picks])
    return _grid([[_tint(frame, mask) for frame, mask in zip(frames, quadmask[picks], strict=True)]], path)


def mask_preview(plate: np.ndarray, quadmask: np.ndarray, path: Path, rate: Fraction) -> Path:
    """Write the whole shot with its quadmask tinted as a small H.264 movie (640 px wide at most), for review."""
    from voidflow.void_ops import media

    frames = to_uint8(plate)
    scale = min(1.0, 640 / frames.shape[2])
    size = (max(2, round(frames.shape[2] * scale) // 2 * 2), max(2, round(frames.shape[1] * scale) // 2 * 2))
    tinted = np.stack(  # shrink first, then tint: the preview's pixels, not the plate's
        [
            _tint(
                np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR)),
                np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)),
            )
            for frame, mask in zip(frames, quadmask, strict=True)
        ]
    )
    media.write_movie(tinted, path, rate, codec="h264")
    return path


@dataclass(frozen=True, slots=True)
class ShotCard:
    """One shot's entry in the batch report."""

    name: str
    state: str
    reason: str
    stages: tuple[tuple[str, str, float], ...]  # (stage, state, seconds)
    version: str | None = None
    output: str | None = None
    contact_sheet: str | None = None
    overlay: str | None = None
    qc: str = ""


def write_report(path: Path, *, title: str, summary: Sequence[tuple[str, str]], cards: Sequence[ShotCard]) -> Path:
    """Write the batch report as one self-contained HTML page (images linked relative to ``path``).

    Args:
        path: the HTML file to write (atomically).
        title: page title.
        summary: (label, value) rows shown at the top.
        cards: one per shot, in edit order.
    """

    def link(target: str | None) -> str:
        if not target:
            return ""
        relative = os.path.relpath(target, path.parent)
        return f'<a href="{html.escape(relative)}"><img src="{html.escape(relative)}" loading="lazy"></a>'

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary)
    sections = []
    for card in cards:
        stages = ", ".join(f"{stage} {state} {seconds:.1f}s" for stage, state, seconds in card.stages) or "none"
        details = [
            f"<p class='state {html.escape(card.state)}'>{html.escape(card.state)}"
            f"{' ' + html.escape(card.version) if card.version else ''}</p>",
            f"<p>{html.escape(card.reason)}</p>" if card.reason else "",
            f"<p>stages: {html.escape(stages)}</p>",
            f"<p>QC: {html.escape(card.qc)}</p>" if card.qc else "",
            f"<p>output: <code>{html.escape(card.output)}</code></p>" if card.output else "",
            link(card.contact_sheet),
            link(card.overlay),
        ]
        sections.append(f"<section><h2>{html.escape(card.name)}</h2>{''.join(details)}</section>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;background:#111;color:#ddd}img{max-width:100%;display:block;"
        "margin:.5em 0}section{border-top:1px solid #444;padding:1em 0}.done{color:#6c6}.failed{color:#f66}"
        ".skipped{color:#aaa}th{text-align:left;padding-right:1em}code{color:#9cf}"
        f"</style></head><body><h1>{html.escape(title)}</h1><table>{rows}</table>{''.join(sections)}</body></html>"
    )
    return _atomic(path, lambda target: target.write_text(page, encoding="utf-8"))
