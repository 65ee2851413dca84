"""Movies through PyAV (FFmpeg's libraries in-process): probe, frame-accurate decode, tagged encode.

Private to ``void_ops.media``, the one door for media I/O. Colour conversion between YUV and RGB always runs
through swscale with the file's (or the NLE-convention) matrix and range, ``accurate_rnd`` and full chroma
interpolation, into 16-bit RGB: the same conversion an independent ``ffmpeg -vf scale=...`` oracle applies.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import av.filter
import av.logging
import numpy as np

from voidflow.void_ops.colour import ColourTags, video_tags_for
from voidflow.void_ops.exceptions import InvalidInput, MediaInvalid, StorageUnavailable
from voidflow.void_ops.frames import from_unit

__all__ = [
    "FFV1",
    "SWS_FLAGS",
    "Encoding",
    "MovieProbe",
    "chroma_reference",
    "decode",
    "encode",
    "has_alpha",
    "probe",
]

#: swscale flags for every YUV <-> RGB conversion (what the colour doc measured as codec-precision round trips).
SWS_FLAGS = "accurate_rnd+full_chroma_int"

# AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace / AVColorRange codes and ffmpeg's names.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020", 11: "smpte431",
              12: "smpte432"}  # fmt: skip
_TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}  # fmt: skip
_MATRICES = {0: "rgb", 1: "bt709", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
_RANGES = {1: "tv", 2: "pc"}
# swscale's names for a matrix (scale filter's in_color_matrix / out_color_matrix).
_SWS_MATRIX = {"bt709": "bt709", "smpte170m": "bt601", "bt470bg": "bt601", "smpte240m": "smpte240m",
               "bt2020nc": "bt2020", "bt2020c": "bt2020"}  # fmt: skip
_ALPHA = ("yuva", "gbrap", "rgba", "bgra", "argb", "abgr", "ya8", "ya16")


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a movie is encoded: codec, options, stored pixel format, and whether it holds YUV."""

    codec: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...] = ()
    yuv: bool = True


@dataclass(frozen=True, slots=True)
class MovieProbe:
    """A movie's stream as PyAV reports it."""

    width: int
    height: int
    rate: Fraction
    frames: int
    codec: str
    pix_fmt: str
    timecode: str | None
    tags: ColourTags
    pixel_aspect: Fraction


def _name(table: dict[int, str], code: Any) -> str | None:
    return table.get(int(code)) if code is not None else None


def _code(table: dict[int, str], name: str | None) -> int:
    if name is None:
        return 2 if table is not _RANGES else 0  # unspecified
    for code, known in table.items():
        if known == name:
            return code
    raise InvalidInput(f"colour tag {name!r} is not one of {sorted(table.values())}")


def _timecode_tag(metadata: Mapping[str, str]) -> str | None:
    """A stream's or container's start timecode tag: ``timecode`` in QuickTime/MP4, ``TIMECODE`` in Matroska."""
    return next((value for key, value in metadata.items() if key.lower() == "timecode" and value), None)


def probe(path: Path) -> MovieProbe:
    """Probe a movie, cached per process by path, size and modification time (a shot reads a plate many times)."""
    try:
        stat = path.stat()
    except OSError:
        raise MediaInvalid(f"{path}: not found") from None
    return _probe_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _probe_cached(name: str, size: int, mtime_ns: int) -> MovieProbe:
    path = Path(name)
    with _open(path) as container:
        stream = _video(container, path)
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise MediaInvalid(f"{path}: video stream has no frame rate")
        frames = int(stream.frames or 0)
        if frames <= 0:  # Matroska stores no count: count the packets (no decoding)
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        timecode = _timecode_tag(stream.metadata) or _timecode_tag(container.metadata)
        if timecode is None:
            for other in container.streams:
                timecode = _timecode_tag(other.metadata) or timecode
        tags = ColourTags(
            primaries=_name(_PRIMARIES, context.color_primaries),
            transfer=_name(_TRANSFERS, context.color_trc),
            matrix=_name(_MATRICES, context.colorspace),
            range=_name(_RANGES, context.color_range),
        )
        aspect = stream.sample_aspect_ratio or context.sample_aspect_ratio
        return MovieProbe(
            width=context.width,
            height=context.height,
            rate=Fraction(rate),
            frames=frames,
            codec=context.name,
            pix_fmt=context.format.name if context.format else "",
            timecode=str(timecode) if timecode else None,
            tags=tags,
            pixel_aspect=Fraction(aspect) if aspect else Fraction(1),
        )


def has_alpha(pix_fmt: str) -> bool:
    """True when an ffmpeg pixel format carries alpha (``yuva444p10le``, ``rgba``, ``gbrap16le``)."""
    return pix_fmt.startswith(_ALPHA)


def decode(path: Path, first: int, count: int, out_fmt: str) -> np.ndarray:
    """Decode ``count`` frames from index ``first`` into ``out_fmt`` (``rgb48le``, ``rgb24``, ``rgba``, ``gray``),
    converting YUV with the file's matrix and range (NLE conventions where untagged).

    Returns:
        ``(count, H, W, C)`` for packed formats; ``(count, H, W)`` for ``gray``.

    Raises:
        MediaInvalid: the range passes the end, or a frame is damaged or cannot be decoded.
    """
    info = probe(path)
    if first + count > info.frames:
        raise MediaInvalid(
            f"{path}: asked for frames {first}..{first + count - 1} ({count}) but the media ends at frame "
            f"{info.frames - 1}"
        )
    tags = video_tags_for(info.height, info.tags)
    scale = f"in_range={tags.range}:flags={SWS_FLAGS}"
    if tags.matrix in _SWS_MATRIX:
        scale = f"in_color_matrix={_SWS_MATRIX[tags.matrix]}:{scale}"
    out: np.ndarray | None = None  # decoded into one array: never a list of frames and its stacked copy
    done = 0
    with _open(path) as container:
        stream = _video(container, path)
        graph = _graph(info.width, info.height, info.pix_fmt, stream.time_base, f"scale={scale}", out_fmt)
        for index, frame in _frames_from(container, stream, info, first):
            if index >= first + count:
                break
            if frame.is_corrupt:
                raise MediaInvalid(f"{path}: damaged data in frame {index}")
            graph.push(frame)
            pixels = graph.vpull().to_ndarray(format=out_fmt)
            if out is None:
                out = np.empty((count, *pixels.shape), pixels.dtype)
            out[done] = pixels
            done += 1
    if out is None or done < count:  # the probe counted enough frames: the missing ones did not decode
        raise MediaInvalid(
            f"{path}: damaged data: frames {first + done}..{first + count - 1} do not decode "
            f"(the file lists {info.frames} frames)"
        )
    return out


def _frames_from(container: Any, stream: Any, info: MovieProbe, first: int) -> Iterator[tuple[int, Any]]:
    """Yield (index, frame) from frame ``first`` on (seeking to the keyframe before it), indexed by timestamp."""
    base = stream.time_base
    start = Fraction(stream.start_time or 0)
    if first > 0:
        target = start + (Fraction(first) - Fraction(1, 2)) / info.rate / base
        container.seek(max(int(target), 0), stream=stream, backward=True, any_frame=False)
    with _ffmpeg_log() as lines:
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    if frame.pts is None:
                        raise MediaInvalid(f"{container.name}: a frame has no timestamp")
                    if lines:  # the decoder reported damage (e.g. an FFV1 slice CRC mismatch) but went on
                        raise MediaInvalid(f"{container.name}: damaged data ({_reason(ValueError(), lines)})")
                    index = round((Fraction(frame.pts) - start) * base * info.rate)
                    if index >= first:
                        yield index, frame
        except av.error.FFmpegError as error:
            raise MediaInvalid(f"{container.name}: damaged data ({_reason(error, lines)})") from None


def encode(
    frames: np.ndarray,
    path: Path,
    rate: Fraction,
    encoding: Encoding,
    *,
    tags: ColourTags,
    timecode: str | None,
    pixel_aspect: Fraction,
    alpha: np.ndarray | None = None,
) -> None:
    """Encode RGB ``frames`` (T, H, W, 3) uint8, uint16 or float32 in [0, 1] (made 16-bit one frame at a time, so
    no 16-bit copy of the whole shot is held), or gray (T, H, W) uint8, into ``path`` (which the caller made atomic).

    YUV encodings convert with ``tags``' matrix and range and carry ``tags`` in the stream; the muxer is bit-exact
    (no encoder string or creation time), so the same frames give the same bytes. An ``.mp4`` is written with its
    index first (faststart), so a browser can start playing and seeking before the whole file has arrived.
    """
    count, height, width = frames.shape[:3]
    container_format = {".mov": "mov", ".mp4": "mp4", ".mkv": "matroska", ".mxf": "mxf"}[path.suffix.lower()]
    options = {"fflags": "+bitexact", **({"movflags": "+faststart"} if container_format == "mp4" else {})}
    try:
        container = av.open(str(path), "w", format=container_format, options=options)
    except OSError as error:
        raise _storage(path, error) from None
    lines: list[tuple[int, str, str]] = []
    try:
        stream: Any = container.add_stream(encoding.codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, encoding.pix_fmt
        context = stream.codec_context
        context.time_base = Fraction(1) / rate
        if encoding.yuv:
            context.color_primaries = _code(_PRIMARIES, tags.primaries)
            context.color_trc = _code(_TRANSFERS, tags.transfer)
            context.colorspace = _code(_MATRICES, tags.matrix)
            context.color_range = _code(_RANGES, tags.range)
        if pixel_aspect != 1:
            context.sample_aspect_ratio = pixel_aspect
        context.options = {"flags": "+bitexact", **dict(encoding.options)}
        if timecode is not None:
            stream.metadata["timecode"] = timecode
        with_alpha = alpha is not None
        deep = frames.dtype != np.uint8
        source_fmt = ("rgba64le" if deep else "rgba") if with_alpha else ("rgb48le" if deep else "rgb24")
        source_fmt = "gray" if frames.ndim == 3 else source_fmt
        if encoding.yuv:
            scale = f"out_color_matrix={_SWS_MATRIX.get(tags.matrix or 'bt709', 'bt709')}:out_range={tags.range}"
            filters = f"scale={scale}:flags={SWS_FLAGS}"
        else:
            filters = f"scale=flags={SWS_FLAGS}"
        graph = _graph(width, height, source_fmt, Fraction(1) / rate, filters, encoding.pix_fmt)
        with _ffmpeg_log() as lines:
            _encode_frames(container, stream, graph, frames, alpha, source_fmt, rate)
        container.close()
    except OSError as error:
        container.close()
        raise _storage(path, error) from None
    except av.error.FFmpegError as error:
        container.close()
        raise MediaInvalid(f"{path}: encoding failed ({_reason(error, lines)})") from None
    written = probe(path).frames
    if written != count:
        raise MediaInvalid(f"{path}: wrote {written} frames, expected {count}")


def _encode_frames(
    container: Any,
    stream: Any,
    graph: Any,
    frames: np.ndarray,
    alpha: np.ndarray | None,
    source_fmt: str,
    rate: Fraction,
) -> None:
    context = stream.codec_context
    for index in range(len(frames)):
        pixels = frames[index] if frames.dtype.kind != "f" else from_unit(frames[index], np.uint16)
        if alpha is not None:
            pixels = np.concatenate([pixels, alpha[index][..., None]], axis=-1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=source_fmt)
        frame.pts, frame.time_base = index, Fraction(1) / rate
        graph.push(frame)
        out = graph.vpull()
        out.pts = index
        out.color_primaries, out.color_trc = context.color_primaries, context.color_trc
        out.colorspace, out.color_range = context.colorspace, context.color_range
        for packet in stream.encode(out):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def chroma_reference(frames: np.ndarray, encoding: Encoding, tags: ColourTags) -> np.ndarray:
    """What a lossless codec of ``encoding``'s pixel format gives back for 16-bit RGB ``frames``: converted to its
    YUV (matrix and range from ``tags``, chroma subsampled) and back to 16-bit RGB through swscale, no compression.

    The reference a movie's codec precision is measured against: only the codec's own loss remains.
    """
    count, height, width, _ = frames.shape
    matrix = _SWS_MATRIX.get(tags.matrix or "bt709", "bt709")
    there = f"scale=out_color_matrix={matrix}:out_range={tags.range}:flags={SWS_FLAGS},format={encoding.pix_fmt}"
    back = f"scale=in_color_matrix={matrix}:in_range={tags.range}:flags={SWS_FLAGS}"
    graph = _graph(width, height, "rgb48le", Fraction(1, 24), f"{there},{back}", "rgb48le")
    out = np.empty_like(frames)
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb48le")
        frame.pts = index
        graph.push(frame)
        out[index] = graph.vpull().to_ndarray(format="rgb48le")
    return out


#: FFV1 version 3, intra only, with slice CRCs so that damaged bytes are reported instead of decoded silently.
FFV1 = {"level": "3", "g": "1", "slicecrc": "1"}


def _graph(width: int, height: int, pix_fmt: str, time_base: Any, filters: str, out_fmt: str) -> Any:
    graph: Any = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=time_base)
    chain = [source]
    for spec in filters.split(","):
        name, _, args = spec.partition("=")
        chain.append(graph.add(name, args))
    chain.append(graph.add("format", out_fmt))
    chain.append(graph.add("buffersink"))
    for upstream, downstream in itertools.pairwise(chain):
        upstream.link_to(downstream)
    graph.configure()
    return graph


@contextlib.contextmanager
def _ffmpeg_log() -> Iterator[list[tuple[int, str, str]]]:
    """Capture FFmpeg's error lines for this thread while the block runs (PyAV keeps them off by default)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as lines:
            yield lines
    finally:
        av.logging.set_level(level)


def _reason(error: Exception, lines: list[tuple[int, str, str]]) -> str:
    """``ffmpeg: [component] message`` from the last error FFmpeg logged, else PyAV's error text."""
    for _level, name, message in reversed(lines):
        if message.strip():
            component = (name or "").rsplit(".", 1)[-1]
            return f"ffmpeg: [{component}] {message.strip()}" if component else f"ffmpeg: {message.strip()}"
    return f"ffmpeg: {getattr(error, 'strerror', None) or error}"


def _open(path: Path) -> Any:
    if not path.is_file():
        raise MediaInvalid(f"{path}: not found")
    with _ffmpeg_log() as lines:
        try:
            return av.open(str(path))
        except av.error.FFmpegError as error:
            raise MediaInvalid(f"{path}: unreadable or not media ({_reason(error, lines)})") from None
        except OSError as error:
            raise StorageUnavailable(f"{path}: {error.strerror}") from None


def _video(container: Any, path: Path) -> Any:
    if not container.streams.video:
        container.close()
        raise MediaInvalid(f"{path}: no video stream")
    return container.streams.video[0]


def _storage(path: Path, error: OSError) -> StorageUnavailable:
    reason = error.strerror or (errno.errorcode.get(error.errno or 0, "") if error.errno else str(error))
    return StorageUnavailable(f"{path}: {reason}")
