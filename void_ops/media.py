"""Frame-accurate media I/O through ffmpeg: probe, read frames and mattes, write movies, sequences and masks.

Every call runs the ``ffmpeg``/``ffprobe`` binaries with list arguments (built by ffmpeg-python, never a shell) and
moves pixels through pipes as raw video. Frame ``k`` is always the ``k``-th frame of a movie (0-based) or the file
``first_number + k`` of a sequence; reads return exactly the frames asked for or raise ``MediaInvalid``.

Writers are atomic: a movie is encoded into a hidden temporary file beside the final name and renamed onto it; a
sequence is encoded into a hidden sibling folder that is renamed onto the final folder. Outputs are never
overwritten.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

import ffmpeg
import numpy as np

from void_ops.exceptions import ConfigurationError, InvalidInput, MediaInvalid, StorageUnavailable
from void_ops.hashing import sha256_file
from void_ops.shots import MediaSource, rate_fraction

__all__ = [
    "MediaInfo",
    "ensure_writable_folder",
    "probe",
    "read_frames",
    "read_mask",
    "read_matte",
    "sha256_file",
    "sha256_source",
    "write_mask",
    "write_movie",
    "write_sequence",
]

_GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error")
_STORAGE_ERRORS = ("No space left on device", "Permission denied", "Read-only file system", "Disk quota exceeded")
_TIMECODE = re.compile(r"\d\d:\d\d:\d\d[:;]\d\d")
_ALPHA_FORMATS = re.compile(r"(yuva|gbrap|ya\d|rgba|bgra|argb|abgr)")
_MOVIE_SUFFIXES = {"prores": (".mov",), "h264": (".mov", ".mp4"), "ffv1": (".mov", ".mkv")}
_MUXERS = {".mov": "mov", ".mp4": "mp4", ".mkv": "matroska"}
_BLOCK = 1 << 20
_Decoder = Callable[[str, int, np.dtype[Any]], np.ndarray]
# FFV1 version 3, intra only, with slice CRCs so that damaged bytes are reported instead of decoded silently.
_FFV1 = {"c:v": "ffv1", "level": "3", "g": "1", "slicecrc": "1"}


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe says about a movie or an image sequence.

    Attributes:
        width: frame width in pixels.
        height: frame height in pixels.
        rate: exact frame rate (``Fraction(30000, 1001)`` for 29.97).
        frames: number of frames (movie: the video stream's; sequence: consecutive files from the first).
        codec: ffmpeg codec name (``prores``, ``h264``, ``ffv1``, ``png``, ``exr``).
        pix_fmt: ffmpeg pixel format of the stored frames (``yuv422p10le``, ``rgb48be``, ``gbrpf32le``).
        bit_depth: bits per component: 8, 10, 12, 16, or 32 for float.
        timecode: the movie's start timecode tag (``"01:00:00:00"``), or None.
    """

    width: int
    height: int
    rate: Fraction
    frames: int
    codec: str
    pix_fmt: str
    bit_depth: int
    timecode: str | None


def probe(source: MediaSource) -> MediaInfo:
    """Describe a movie, or a sequence from its first file.

    Args:
        source: the media; for a sequence ``source.rate`` gives ``rate`` and the files from ``first_number`` on,
            up to the first gap, give ``frames``.

    Returns:
        The media's size, rate, frame count, codec, pixel format, bit depth and timecode.

    Raises:
        MediaInvalid: the file is missing, not media, or has no video stream.
    """
    if source.kind == "movie":
        return _probe_movie(Path(source.path))[0]
    first = source.file_for_index(0)
    stream = _video_stream(first, _ffprobe(first, "not found (first frame of the sequence)"))
    frames = 0
    while source.file_for_index(frames).is_file():
        frames += 1
    return _info(stream, _sequence_rate(source), frames, None)


def read_frames(source: MediaSource, first_index: int, count: int) -> np.ndarray:
    """Decode ``count`` frames from media index ``first_index`` on, as RGB.

    Args:
        source: a movie or an image sequence.
        first_index: media index of the first frame (0-based; sequences: file ``first_number + first_index``).
        count: number of frames, at least 1.

    Returns:
        Array of shape ``(count, H, W, 3)``: uint8 for 8-bit media, uint16 (full 0..65535 range) for deeper
        integer media, float32 (scene-linear, unclipped) for float media such as EXR.

    Raises:
        InvalidInput: ``first_index`` is negative or ``count`` is not positive.
        MediaInvalid: the media is missing or corrupt, a sequence file is missing, or the range passes its end.
    """
    source_fmt, width, height, decode = _prepare(source, first_index, count)
    depth = _bit_depth(source_fmt)
    if depth == 32:
        planes = decode("gbrpf32le", 3, np.dtype("<f4")).reshape(count, 3, height, width)
        return np.stack([planes[:, 2], planes[:, 0], planes[:, 1]], axis=-1)  # planes are G, B, R
    if depth > 8:
        return decode("rgb48le", 3, np.dtype("<u2")).reshape(count, height, width, 3)
    return decode("rgb24", 3, np.dtype(np.uint8)).reshape(count, height, width, 3)


def read_matte(source: MediaSource, first_index: int, count: int) -> np.ndarray:
    """Decode ``count`` matte frames: the alpha channel when the media has one, else luma.

    Args:
        source: a movie or an image sequence (RGBA PNG, ProRes 4444 with alpha, gray FFV1, any RGB media).
        first_index: media index of the first frame.
        count: number of frames, at least 1.

    Returns:
        uint8 array of shape ``(count, H, W)``, 0..255.

    Raises:
        InvalidInput: ``first_index`` is negative or ``count`` is not positive.
        MediaInvalid: as for ``read_frames``.
    """
    source_fmt, width, height, decode = _prepare(source, first_index, count)
    if _ALPHA_FORMATS.match(source_fmt):
        return np.ascontiguousarray(decode("rgba", 4, np.dtype(np.uint8)).reshape(count, height, width, 4)[..., 3])
    return decode("gray", 1, np.dtype(np.uint8)).reshape(count, height, width)


def write_movie(
    frames: np.ndarray,
    path: Path,
    rate: Fraction,
    *,
    codec: Literal["prores", "h264", "ffv1"] = "prores",
    timecode: str | None = None,
) -> MediaSource:
    """Encode RGB frames into a new movie, atomically.

    ``prores`` is ProRes 422 HQ (prores_ks profile 3, yuv422p10le, vendor apl0) in .mov; ``h264`` is libx264
    crf 16 yuv420p in .mov or .mp4; ``ffv1`` is lossless FFV1 (bgr0 for uint8, rgb48le otherwise) in .mov or .mkv.

    Args:
        frames: ``(T, H, W, 3)`` uint8, uint16, or float32 in [0, 1].
        path: the movie to create; its folder must exist and the file must not.
        rate: frame rate; the movie holds exactly ``T`` frames at this rate.
        codec: ``"prores"``, ``"h264"`` or ``"ffv1"``.
        timecode: start timecode written into the movie (``"01:00:00:00"``; ``;`` for drop frame), or None.

    Returns:
        ``MediaSource(kind="movie", start=0, frames=T)`` for the resolved path; set ``start`` with
        ``dataclasses.replace``.

    Raises:
        InvalidInput: bad frames, rate, timecode, codec/suffix pair, odd size for h264, or ``path`` exists.
        StorageUnavailable: the folder is missing or not writable, or the disk is full.
        MediaInvalid: ffmpeg failed to encode (the message carries its error).
    """
    count, height, width = _check_frames(frames)
    rate = _check_rate(rate)
    if path.suffix.lower() not in _MOVIE_SUFFIXES[codec]:
        raise InvalidInput(f"{path}: codec {codec} needs suffix {' or '.join(_MOVIE_SUFFIXES[codec])}")
    if codec == "h264" and (width % 2 or height % 2):
        raise InvalidInput(f"{path}: h264 needs an even width and height, got {width}x{height}")
    if timecode is not None and not _TIMECODE.fullmatch(timecode):
        raise InvalidInput(f"{path}: timecode must look like HH:MM:SS:FF, got {timecode!r}")
    if frames.dtype == np.float32 and not (float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0):
        raise InvalidInput(f"{path}: float frames must lie in [0, 1], got {frames.min()}..{frames.max()}")
    options: dict[str, Any] = {
        "prores": {"c:v": "prores_ks", "profile:v": "3", "vendor": "apl0", "pix_fmt": "yuv422p10le"},
        "h264": {"c:v": "libx264", "crf": "16", "pix_fmt": "yuv420p"},
        "ffv1": {**_FFV1, "pix_fmt": "bgr0" if frames.dtype == np.uint8 else "rgb48le"},
    }[codec]
    if timecode is not None:
        options["timecode"] = timecode
    data, pipe_fmt = _pipe_layout(frames)
    with _atomic_file(path) as temp:
        _encode(data, pipe_fmt, width, height, rate, temp, count, options)
    return MediaSource(path=str(path.resolve()), kind="movie", rate=float(rate), start=0, frames=count)


def write_sequence(
    frames: np.ndarray,
    pattern: Path,
    rate: Fraction,
    *,
    first_number: int = 1001,
    fmt: Literal["png", "exr"] = "png",
) -> MediaSource:
    """Write RGB frames as a new image sequence in a new folder, atomically.

    PNG stores uint8 as 8-bit and uint16 as 16-bit, bit-exact; float32 is clipped to [0, 1] and stored 16-bit.
    EXR stores 32-bit float RGB (ZIP16): uint8 as ``x / 255``, uint16 as ``x / 65535``, float32 unchanged.

    Args:
        frames: ``(T, H, W, 3)`` uint8, uint16 or float32.
        pattern: printf pattern of the files, e.g. ``/out/sh010_v001/sh010_v001.%04d.png``; its folder must not
            exist yet (it is created) and its suffix must match ``fmt``.
        rate: frame rate recorded in the returned source.
        first_number: number of the first file; files are ``first_number .. first_number + T - 1``.
        fmt: ``"png"`` or ``"exr"``.

    Returns:
        ``MediaSource(kind="sequence", start=0, frames=T, first_number=first_number)`` for the resolved pattern.

    Raises:
        InvalidInput: bad frames, rate, pattern, suffix or ``first_number``, or the folder exists.
        StorageUnavailable: the folder cannot be created or written, or the disk is full.
        MediaInvalid: ffmpeg failed to encode.
    """
    count, height, width = _check_frames(frames)
    rate = _check_rate(rate)
    if pattern.suffix.lower() != f".{fmt}":
        raise InvalidInput(f"{pattern}: format {fmt} needs suffix .{fmt}, got {pattern.suffix!r}")
    if pattern.name.count("%") != 1 or not re.search(r"%(0\d+)?d", pattern.name):
        raise InvalidInput(f"{pattern}: the file name needs exactly one frame placeholder like %04d")
    if first_number < 0:
        raise InvalidInput(f"{pattern}: first_number must be >= 0, got {first_number}")
    folder = pattern.parent
    if folder.exists():
        raise InvalidInput(f"{folder}: exists; outputs are never overwritten")
    if fmt == "exr":
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(frames.dtype, 1.0)
        frames = frames.astype(np.float32) / np.float32(scale) if scale != 1.0 else frames
        options = {"c:v": "exr", "pix_fmt": "gbrpf32le", "compression": "zip16", "format:v": "float"}
    else:
        if frames.dtype == np.float32:
            frames = np.rint(np.clip(frames, 0.0, 1.0) * 65535.0).astype(np.uint16)
        pix_fmt = "rgb24" if frames.dtype == np.uint8 else "rgb48be"
        options = {"c:v": "png", "pix_fmt": pix_fmt, "compression_level": "1"}  # lossless at any level; 1 is fast
    data, pipe_fmt = _pipe_layout(frames)
    temp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex}")
    try:
        temp.mkdir()
    except OSError as error:
        raise StorageUnavailable(f"{folder}: cannot create it in {folder.parent} ({error.strerror})") from error
    try:
        options["start_number"] = str(first_number)
        _encode(data, pipe_fmt, width, height, rate, temp / pattern.name, count, {**options, "format": "image2"})
        written = len(list(temp.iterdir()))
        if written != count or not (temp / (pattern.name % (first_number + count - 1))).is_file():
            raise MediaInvalid(f"{pattern}: ffmpeg wrote {written} files, expected {count}")
        os.rename(temp, folder)
    except OSError as error:
        shutil.rmtree(temp, ignore_errors=True)
        raise StorageUnavailable(f"{folder}: {error.strerror}") from error
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    resolved = str(folder.resolve() / pattern.name)
    return MediaSource(path=resolved, kind="sequence", rate=float(rate), frames=count, first_number=first_number)


def write_mask(masks: np.ndarray, path: Path) -> None:
    """Store masks losslessly as FFV1 gray in a new Matroska file, atomically.

    Args:
        masks: ``(T, H, W)`` uint8, any values (quadmasks use 0, 63, 127, 255).
        path: the ``.mkv`` file to create; its folder must exist and the file must not.

    Raises:
        InvalidInput: ``masks`` is not ``(T, H, W)`` uint8, the suffix is not .mkv, or ``path`` exists.
        StorageUnavailable: the folder is missing or not writable, or the disk is full.
        MediaInvalid: ffmpeg failed to encode.
    """
    if masks.ndim != 3 or masks.dtype != np.uint8 or min(masks.shape) == 0:
        raise InvalidInput(f"{path}: masks must be a non-empty (T, H, W) uint8 array, got {masks.shape} {masks.dtype}")
    if path.suffix.lower() != ".mkv":
        raise InvalidInput(f"{path}: masks are written as .mkv, got {path.suffix!r}")
    count, height, width = masks.shape
    with _atomic_file(path) as temp:
        data = np.ascontiguousarray(masks)
        _encode(data, "gray", width, height, Fraction(24), temp, count, {**_FFV1, "pix_fmt": "gray"})


def read_mask(path: Path) -> np.ndarray:
    """Read masks written by ``write_mask``, bit-exact.

    Args:
        path: an FFV1 gray ``.mkv``.

    Returns:
        uint8 array of shape ``(T, H, W)``.

    Raises:
        MediaInvalid: the file is missing, corrupt, or not FFV1 gray.
    """
    source = MediaSource(path=str(path), kind="movie", rate=24.0)
    info = probe(source)
    if (info.codec, info.pix_fmt) != ("ffv1", "gray"):
        raise MediaInvalid(f"{path}: masks must be ffv1 gray, got {info.codec} {info.pix_fmt}")
    return read_matte(source, 0, info.frames)


def sha256_source(source: MediaSource, first_index: int | None = None, count: int | None = None) -> str:
    """Return a content hash of a movie file, or of a sequence's files in order.

    A movie hashes its whole file, whatever the range: any byte may affect any frame. A sequence hashes the lines
    ``"<file number>:<sha256 of the file>"`` of the files asked for: from ``first_index`` (default 0) for ``count``
    files (default: up to the first missing file).

    Raises:
        InvalidInput: ``first_index`` is negative or ``count`` is not positive.
        MediaInvalid: the movie or a sequence file in the range is missing.
        StorageUnavailable: a file cannot be read.
    """
    if source.kind == "movie":
        return sha256_file(Path(source.path))
    first = 0 if first_index is None else first_index
    if count is None:
        count = 0
        while source.file_for_index(first + count).is_file():
            count += 1
        count = max(count, 1)  # an empty range fails below, naming the first missing file
    _check_range_args(source, first, count)
    _check_sequence_files(source, first, count)
    digest = hashlib.sha256()
    for index in range(first, first + count):
        line = f"{source.first_number + index}:{sha256_file(source.file_for_index(index))}\n"
        digest.update(line.encode())
    return digest.hexdigest()


def _ffprobe(path: Path, missing: str = "not found", **options: Any) -> dict[str, Any]:
    if not path.is_file():
        raise MediaInvalid(f"{path}: {missing}")
    try:
        result: dict[str, Any] = ffmpeg.probe(os.path.abspath(path), hide_banner=None, v="error", **options)
    except ffmpeg.Error as error:
        raise MediaInvalid(f"{path}: unreadable or not media (ffprobe: {_last_error(error.stderr)})") from None
    except FileNotFoundError:
        raise ConfigurationError("ffprobe: not found on PATH; install ffmpeg") from None
    return result


def _video_stream(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    for stream in data.get("streams", []):
        if stream.get("codec_type") == "video":
            return dict(stream)
    raise MediaInvalid(f"{path}: no video stream")


def _probe_movie(path: Path) -> tuple[MediaInfo, Fraction]:
    """Return the movie's info and its video start relative to the container start, in seconds.

    Answers are kept per process by path, size and modification time: a shot probes the same plate and
    intermediates many times, and each ffprobe costs a process start.
    """
    try:
        stat = path.stat()
    except OSError:
        return _probe_movie_uncached(str(path))  # reports the missing or unreadable file
    return _probe_movie_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _probe_movie_cached(path: str, size: int, mtime_ns: int) -> tuple[MediaInfo, Fraction]:
    return _probe_movie_uncached(path)


def _probe_movie_uncached(name: str) -> tuple[MediaInfo, Fraction]:
    path = Path(name)
    # Matroska stores no frame count: count the packets in the same run rather than probing twice.
    data = _ffprobe(path, count_packets=None) if path.suffix.lower() == ".mkv" else _ffprobe(path)
    stream = _video_stream(path, data)
    frames = int(stream.get("nb_frames", 0) or stream.get("nb_read_packets", 0))
    if frames <= 0:
        counted = _ffprobe(path, select_streams="v:0", count_packets=None)
        frames = int(counted["streams"][0].get("nb_read_packets", 0))
    rate = Fraction(0)
    for key in ("r_frame_rate", "avg_frame_rate"):
        numerator, _, denominator = str(stream.get(key, "0/0")).partition("/")
        if int(numerator or 0) > 0 and int(denominator or 0) > 0:
            rate = Fraction(int(numerator), int(denominator))
            break
    if rate <= 0:
        raise MediaInvalid(f"{path}: video stream has no frame rate")
    timecode = next(
        (s["tags"]["timecode"] for s in [stream, *data["streams"], data["format"]] if "timecode" in s.get("tags", {})),
        None,
    )
    offset = Fraction(stream.get("start_time", "0")) - Fraction(data["format"].get("start_time", "0"))
    return _info(stream, rate, frames, timecode), offset


def _info(stream: dict[str, Any], rate: Fraction, frames: int, timecode: str | None) -> MediaInfo:
    pix_fmt = str(stream.get("pix_fmt", ""))
    return MediaInfo(
        width=int(stream["width"]),
        height=int(stream["height"]),
        rate=rate,
        frames=frames,
        codec=str(stream.get("codec_name", "")),
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        timecode=timecode,
    )


def _bit_depth(pix_fmt: str) -> int:
    """Bits per component of an ffmpeg pixel format: ``yuv422p10le`` 10, ``rgb48be`` 16, ``gbrpf32le`` 32."""
    if "f32" in pix_fmt or "f16" in pix_fmt:
        return 32
    match = re.search(r"(\d+)[lb]e$", pix_fmt)
    if match is None:
        return 8  # rgb24, rgba, yuv420p, gray, nv12, ...
    bits = int(match.group(1))
    if pix_fmt.startswith(("rgb", "bgr")) and bits in (48, 64):
        return 16
    return bits if bits in (9, 10, 12, 14, 16) else 8


def _sequence_rate(source: MediaSource) -> Fraction:
    try:
        return rate_fraction(source.rate)
    except ValueError as error:
        raise InvalidInput(f"{source.path}: {error}") from None


def _check_range_args(source: MediaSource, first_index: int, count: int) -> None:
    if first_index < 0:
        raise InvalidInput(f"{source.path}: first_index must be >= 0, got {first_index}")
    if count <= 0:
        raise InvalidInput(f"{source.path}: count must be > 0, got {count}")


def _check_sequence_files(source: MediaSource, first_index: int, count: int) -> None:
    for index in range(first_index, first_index + count):
        if not source.file_for_index(index).is_file():
            raise MediaInvalid(
                f"{source.path}: frame {source.first_number + index} missing ({source.file_for_index(index)}); "
                f"asked for frames {first_index}..{first_index + count - 1} ({count})"
            )


def _range_error(label: str, first_index: int, count: int, end: int, why: str = "") -> MediaInvalid:
    return MediaInvalid(
        f"{label}: asked for frames {first_index}..{first_index + count - 1} ({count}) "
        f"but the media ends at frame {end}{why}"
    )


def _prepare(source: MediaSource, first_index: int, count: int) -> tuple[str, int, int, _Decoder]:
    """Check a read and return (source pix_fmt, width, height, decode(pix_fmt, channels, dtype) -> flat array)."""
    _check_range_args(source, first_index, count)
    if source.kind == "movie":
        path = Path(source.path)
        info, offset = _probe_movie(path)
        if first_index + count > info.frames:
            raise _range_error(str(path), first_index, count, info.frames - 1)
        options: dict[str, Any] = {"noautorotate": None}
        if first_index > 0:
            # Seek half a frame early: ffmpeg decodes from the keyframe before and drops frames before the seek
            # time, so frame first_index - 1 goes and frame first_index stays whatever the timestamp rounding.
            # The output keeps every decoded frame (fps_mode passthrough) with the input's time base, so
            # millisecond container timestamps shifted by half a frame cannot collide.
            options["ss"] = _seconds(offset + (first_index - Fraction(1, 2)) / info.rate)
        stream = ffmpeg.input(os.path.abspath(path), **options)
        pix_fmt, width, height = info.pix_fmt, info.width, info.height
    else:
        _check_sequence_files(source, first_index, count)
        file = source.file_for_index(first_index)
        probed = _video_stream(file, _ffprobe(file))
        pix_fmt, width, height = str(probed.get("pix_fmt", "")), int(probed["width"]), int(probed["height"])
        stream = ffmpeg.input(
            os.path.abspath(source.path),
            f="image2",
            start_number=str(source.first_number + first_index),
            framerate=_rate_arg(_sequence_rate(source)),
        )

    def decode(out_fmt: str, channels: int, dtype: np.dtype[Any]) -> np.ndarray:
        output = stream.output(
            "pipe:",
            format="rawvideo",
            pix_fmt=out_fmt,
            vframes=str(count),
            map="0:v:0",
            fps_mode="passthrough",
            enc_time_base="-1",
            an=None,
            sn=None,
        )
        args = output.global_args(*_GLOBAL_ARGS).compile()
        frame_items = width * height * channels
        buffer = np.empty(count * frame_items, dtype=dtype)
        got, extra, returncode, error = _run_decoder(args, buffer.data.cast("B"))
        decoded = got // (frame_items * dtype.itemsize)
        why = f" (ffmpeg: {error})" if error else ""
        if returncode != 0:
            raise MediaInvalid(f"{source.path}: cannot decode frames {first_index}.. (ffmpeg: {error or returncode})")
        if decoded < count:
            raise _range_error(source.path, first_index, count, first_index + decoded - 1, why)
        if error:  # every frame came back, but ffmpeg reported damage (e.g. an FFV1 slice CRC mismatch)
            raise MediaInvalid(f"{source.path}: damaged data in frames {first_index}..{first_index + count - 1}{why}")
        if extra:
            raise MediaInvalid(f"{source.path}: frame size changed inside frames {first_index}..{first_index + count}")
        return buffer

    return pix_fmt, width, height, decode


def _run_decoder(args: list[str], out: memoryview) -> tuple[int, bool, int, str]:
    """Run ffmpeg filling ``out`` from its stdout; return (bytes read, more bytes left, exit code, error line)."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError:
            raise ConfigurationError("ffmpeg: not found on PATH; install ffmpeg") from None
        stdout = cast(io.BufferedReader, process.stdout)
        got = 0
        try:
            while got < len(out) and (n := stdout.readinto(out[got:])):
                got += n
            extra = bool(stdout.read())
        finally:
            stdout.close()
            if process.poll() is None and got < len(out):
                process.kill()
            returncode = process.wait()
        errors.seek(0)
        return got, extra, returncode, _last_error(errors.read())


def _encode(
    data: np.ndarray,
    pipe_fmt: str,
    width: int,
    height: int,
    rate: Fraction,
    target: Path,
    count: int,
    options: dict[str, Any],
) -> None:
    """Pipe raw frames through ffmpeg into ``target``; movies are then checked to hold ``count`` frames."""
    muxer = options.pop("format", _MUXERS.get(target.suffix.lower()))
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=pipe_fmt, s=f"{width}x{height}", r=_rate_arg(rate))
    # Bit-exact muxing: no encoder string or creation time in the file, so the same frames give the same bytes
    # (stage keys hash intermediate files; a rerun with unchanged pixels must hash the same).
    exact = {"fflags": "+bitexact", "flags:v": "+bitexact"}
    output = source.output(
        os.path.abspath(target), format=muxer, r=_rate_arg(rate), vframes=str(count), **exact, **options
    )
    args = output.global_args(*_GLOBAL_ARGS).compile(overwrite_output=True)
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        except FileNotFoundError:
            raise ConfigurationError("ffmpeg: not found on PATH; install ffmpeg") from None
        assert process.stdin is not None
        view = data.data.cast("B")
        try:
            for start in range(0, len(view), _BLOCK):
                process.stdin.write(view[start : start + _BLOCK])
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading; its exit code and stderr say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            returncode = process.wait()
        errors.seek(0)
        error = _last_error(errors.read())
    if returncode != 0:
        if any(reason in error for reason in _STORAGE_ERRORS):
            raise StorageUnavailable(f"{target}: {error}")
        raise MediaInvalid(f"{target}: encoding failed (ffmpeg: {error or f'exit code {returncode}'})")
    if muxer != "image2" and (written := _probe_movie(target)[0].frames) != count:
        raise MediaInvalid(f"{target}: ffmpeg wrote {written} frames, expected {count}")


def ensure_writable_folder(folder: Path, *, what: str = "output folder") -> None:
    """Create ``folder`` if needed and prove a file can be written in it (the probe is removed).

    Raises:
        StorageUnavailable: the folder cannot be created or written (read-only, no permission, full disk).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".voidflow-probe-"):
            pass
    except OSError as error:
        raise StorageUnavailable(f"{what} {folder}: not writable ({error.strerror})") from None


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary file beside ``path``; on success rename it onto ``path``, on failure delete it."""
    if path.exists() or path.is_symlink():
        raise InvalidInput(f"{path}: exists; outputs are never overwritten")
    temp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex}{path.suffix}")
    try:
        temp.touch(exist_ok=False)
    except OSError as error:
        raise StorageUnavailable(f"{path}: cannot write in {path.parent} ({error.strerror})") from error
    try:
        yield temp
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise StorageUnavailable(f"{path}: {error.strerror}") from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _check_frames(frames: np.ndarray) -> tuple[int, int, int]:
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise InvalidInput(f"frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    if frames.dtype not in (np.uint8, np.uint16, np.float32):
        raise InvalidInput(f"frames must be uint8, uint16 or float32, got {frames.dtype}")
    if frames.dtype == np.float32 and not np.isfinite(frames).all():
        raise InvalidInput("frames must be finite, got NaN or infinity")
    count, height, width, _ = frames.shape
    return count, height, width


def _check_rate(rate: Fraction) -> Fraction:
    rate = Fraction(rate)
    if rate <= 0:
        raise InvalidInput(f"rate must be positive, got {rate}")
    return rate


def _pipe_layout(frames: np.ndarray) -> tuple[np.ndarray, str]:
    """Return frames as contiguous raw video and its ffmpeg pixel format (float goes planar G, B, R)."""
    if frames.dtype == np.float32:
        return np.ascontiguousarray(frames.transpose(0, 3, 1, 2)[:, [1, 2, 0]], dtype="<f4"), "gbrpf32le"
    if frames.dtype == np.uint16:
        return np.ascontiguousarray(frames, dtype="<u2"), "rgb48le"
    return np.ascontiguousarray(frames), "rgb24"


def _rate_arg(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"


def _seconds(seconds: Fraction) -> str:
    """Format non-negative seconds as an exact-enough decimal (nanoseconds, far below half a frame)."""
    nanos = round(seconds * 1_000_000_000)
    return f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


def _last_error(stderr: bytes | None) -> str:
    """Return the most telling line of ffmpeg's stderr: the last one naming a component (``[libx264] ...``)."""
    lines = [line.strip() for line in (stderr or b"").decode(errors="replace").splitlines() if line.strip()]
    tagged = [line for line in lines if line.startswith("[")]
    line = (tagged or lines or [""])[-1]
    return re.sub(r" @ 0x[0-9a-f]+\]", "]", line)
