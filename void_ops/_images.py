"""Image files through OpenImageIO: OpenEXR, DPX, TIFF, PNG (and whatever else OIIO reads), in-process.

Private to ``void_ops.media``. Pixels keep their stored type: 8-bit files read as uint8, deeper integers as uint16
(full 0..65535 range; 10-bit DPX by OIIO's bit replication), half and float as float32 (every half value is exact
in float32, so half in, half out is bit-identical).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voidflow.void_ops.exceptions import InvalidInput, MediaInvalid, StorageUnavailable

__all__ = ["ImageProbe", "probe", "read", "write"]

# Header attributes worth carrying into provenance and back out (the rest is format bookkeeping).
_KEPT = ("oiio:ColorSpace", "chromaticities", "smpte:TimeCode", "FramesPerSecond", "PixelAspectRatio",
         "compression", "dpx:Transfer", "dpx:Colorimetric", "oiio:BitsPerSample", "ImageDescription")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ImageProbe:
    """One image file's header."""

    width: int
    height: int
    channels: tuple[str, ...]
    pixel_type: str  # "uint8", "uint16", "half", "float" (OIIO's names)
    bits: int  # bits per sample as stored (10 for 10-bit DPX)
    format_name: str  # "openexr", "dpx", "png", "tiff"
    attributes: tuple[tuple[str, str], ...]

    @property
    def alpha(self) -> int | None:
        """Index of the alpha channel, or None."""
        for index, name in enumerate(self.channels):
            if name in ("A", "alpha") or name.endswith(".A"):
                return index
        return None


def _oiio() -> Any:
    import OpenImageIO as oiio

    return oiio


def probe(path: Path) -> ImageProbe:
    """Read one image's header.

    Raises:
        MediaInvalid: the file is missing or not an image OIIO reads.
    """
    with _opened(path) as image:
        return _describe(image)


def read(path: Path) -> tuple[ImageProbe, np.ndarray]:
    """Read one image's header and pixels, opening it once: (H, W, C) in its stored type family (uint8, uint16 or
    float32), every channel.

    Raises:
        MediaInvalid: the file is missing, unreadable, or truncated.
    """
    with _opened(path) as image:
        info = _describe(image)
        family = {"uint8": "uint8", "half": "float", "float": "float"}.get(info.pixel_type, "uint16")
        pixels = image.read_image(0, 0, 0, len(info.channels), family)
    if pixels is None or getattr(pixels, "size", 0) == 0:
        raise MediaInvalid(f"{path}: damaged or truncated image ({_last_error(_oiio())})")
    return info, np.asarray(pixels).reshape(info.height, info.width, len(info.channels))


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Any]:
    oiio = _oiio()
    if not path.is_file():
        raise MediaInvalid(f"{path}: not found")
    image = oiio.ImageInput.open(str(path))
    if image is None:
        raise MediaInvalid(f"{path}: unreadable or not an image ({_last_error(oiio)})")
    try:
        yield image
    finally:
        image.close()


def _describe(image: Any) -> ImageProbe:
    spec = image.spec()
    return ImageProbe(
        width=spec.width,
        height=spec.height,
        channels=tuple(spec.channelnames),
        pixel_type=str(spec.format),
        bits=int(spec.get_int_attribute("oiio:BitsPerSample", spec.format.size() * 8)),
        format_name=str(image.format_name()),
        attributes=tuple((p.name, _text(p.value)) for p in spec.extra_attribs if p.name in _KEPT),
    )


def write(
    path: Path,
    pixels: np.ndarray,
    *,
    pixel_type: str,
    channels: tuple[str, ...],
    bits: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Write one image (H, W, C) to ``path`` with OIIO.

    Args:
        pixels: uint8, uint16 or float32 samples; converted to ``pixel_type`` by OIIO (float32 to half rounds).
        pixel_type: "uint8", "uint16", "half" or "float".
        channels: channel names, e.g. ("R", "G", "B", "matte.A").
        bits: bits per sample as stored (10 for 10-bit DPX).
        attributes: header attributes; strings, ints, floats, or ``(TypeDesc name, value)`` pairs.

    Raises:
        StorageUnavailable: the file cannot be written (full disk, no permission).
        MediaInvalid: OIIO refused the image (a format it cannot write with these settings).
    """
    oiio = _oiio()
    height, width, count = pixels.shape
    spec = oiio.ImageSpec(width, height, count, pixel_type)
    spec.channelnames = channels
    spec.attribute("DateTime", "")  # no wall-clock time in the bytes: unchanged pixels hash the same
    if bits is not None:
        spec.attribute("oiio:BitsPerSample", bits)
    for name, value in (attributes or {}).items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            kind = oiio.TypeTimeCode if value[0] == "timecode" else oiio.TypeDesc(value[0])
            spec.attribute(name, kind, value[1])
        else:
            spec.attribute(name, value)
    output = oiio.ImageOutput.create(str(path))
    if output is None:
        raise InvalidInput(f"{path}: no image writer for {path.suffix!r} ({_last_error(oiio)})")
    if not output.open(str(path), spec):
        raise _failure(path, output.geterror())
    ok = output.write_image(np.ascontiguousarray(pixels))
    closed = output.close()
    if not (ok and closed):
        raise _failure(path, output.geterror() or _last_error(oiio))


def _failure(path: Path, message: str) -> Exception:
    storage = ("No space left", "Permission denied", "Read-only file system", "Disk quota", "Could not open")
    if any(reason in message for reason in storage):
        return StorageUnavailable(f"{path}: {message.splitlines()[0] if message else 'write failed'}")
    return MediaInvalid(f"{path}: cannot write ({message.splitlines()[0] if message else 'unknown error'})")


def _last_error(oiio: Any) -> str:
    message = str(oiio.geterror() or "").strip()
    return message.splitlines()[-1] if message else "no reason given"


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
