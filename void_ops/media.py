"""The one door for media I/O, in-process: movies through PyAV, image sequences through OpenImageIO.

Frame ``k`` is always the ``k``-th frame of a movie (0-based) or the file ``first_number + k`` of a sequence; reads
return exactly the frames asked for or raise ``MediaInvalid``.

Colour: YUV movies decode with the matrix and range they declare (untagged: BT.709 for HD and larger, BT.601 for
SD, video range), through swscale with accurate rounding and full chroma interpolation, into 16-bit RGB; they are
encoded the same way and carry explicit primaries, transfer, matrix and range tags. Image files keep their stored
type: half EXR reads as float32 and writes back as half, bit for bit.

Writers are atomic: a movie is encoded into a hidden temporary file beside the final name and renamed onto it; a
sequence is written into a hidden sibling folder that is renamed onto the final folder. Outputs are never
overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from voidflow.void_ops import _images, _movie
from voidflow.void_ops.colour import ColourTags, video_tags_for
from voidflow.void_ops.exceptions import InvalidInput, MediaInvalid, StorageUnavailable
from voidflow.void_ops.files import atomic_write, missing_or_empty
from voidflow.void_ops.frames import from_unit
from voidflow.void_ops.hashing import content_hash, sha256_file
from voidflow.void_ops.shots import MediaSource, MissingFrames, rate_fraction

__all__ = [
    "EXR_COMPRESSIONS",
    "MOVIE_CODECS",
    "SEQUENCE_FORMATS",
    "ExrCompression",
    "MediaInfo",
    "MovieCodec",
    "SequenceFormat",
    "codec_reference",
    "ensure_writable_folder",
    "probe",
    "read_frames",
    "read_mask",
    "read_matte",
    "sequence_gaps",
    "sha256_file",
    "sha256_source",
    "timecode_from_bcd",
    "timecode_plus",
    "write_mask",
    "write_movie",
    "write_sequence",
]

MovieCodec = Literal["prores", "prores_4444", "prores_4444xq", "dnxhr_hqx", "h264", "ffv1"]
SequenceFormat = Literal["png", "exr", "dpx", "tiff"]
_TIMECODE = re.compile(r"(\d\d):(\d\d):(\d\d)[:;](\d\d)")
_YUV422 = "yuv422p10le"
#: Encodings by codec name: ProRes (prores_ks, vendor apl0), DNxHR HQX, H.264 for previews, FFV1 lossless RGB.
_ENCODINGS: dict[str, _movie.Encoding] = {
    "prores": _movie.Encoding("prores_ks", _YUV422, (("profile", "3"), ("vendor", "apl0"))),
    "prores_4444": _movie.Encoding("prores_ks", "yuv444p10le", (("profile", "4"), ("vendor", "apl0"))),
    "prores_4444xq": _movie.Encoding("prores_ks", "yuv444p10le", (("profile", "5"), ("vendor", "apl0"))),
    "dnxhr_hqx": _movie.Encoding("dnxhd", _YUV422, (("profile", "dnxhr_hqx"),)),
    "h264": _movie.Encoding("libx264", "yuv420p", (("crf", "16"),)),
    "ffv1": _movie.Encoding("ffv1", "gbrp16le", tuple(_movie.FFV1.items()), yuv=False),
}
MOVIE_CODECS: tuple[str, ...] = tuple(_ENCODINGS)
_MASKS = dataclasses.replace(_ENCODINGS["ffv1"], pix_fmt="gray")  # quadmasks: FFV1 gray, lossless
SEQUENCE_FORMATS: tuple[str, ...] = ("png", "exr", "dpx", "tiff")
_MOVIE_SUFFIXES = {"prores": (".mov",), "prores_4444": (".mov",), "prores_4444xq": (".mov",),
                   "dnxhr_hqx": (".mov", ".mxf"), "h264": (".mov", ".mp4"), "ffv1": (".mkv",)}  # fmt: skip
#: EXR compressions a sequence may be written with (PIZ is the default: lossless, fast to read in Nuke).
ExrCompression = Literal["piz", "zip", "zips", "dwaa", "dwab", "none"]
EXR_COMPRESSIONS: tuple[ExrCompression, ...] = get_args(ExrCompression)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a movie or an image sequence holds.

    Attributes:
        width: frame width in pixels (stored, before any pixel aspect).
        height: frame height in pixels.
        rate: exact frame rate (``Fraction(30000, 1001)`` for 29.97).
        frames: number of frames (movie: the video stream's; sequence: consecutive files from the first).
        codec: codec or file format (``prores``, ``h264``, ``ffv1``, ``dnxhd``, ``openexr``, ``dpx``, ``png``).
        pix_fmt: movies: ffmpeg's pixel format (``yuv422p10le``); sequences: ``"<type> <channels>"`` (``half RGB``).
        bit_depth: bits per component as stored: 8, 10, 12, 16; 16 for half and 32 for float samples.
        timecode: start timecode (movie tag, or the first file's ``smpte:TimeCode``), or None.
        colour: the movie's colour tags as stored (fields None where the file says nothing); empty for sequences.
        pixel_aspect: pixel aspect ratio (2 for a 2x anamorphic squeeze).
        alpha: the media carries an alpha channel.
        sample: how samples are stored: ``"int"``, ``"half"`` or ``"float"``.
        attributes: image header attributes kept for provenance (``chromaticities``, ``oiio:ColorSpace``,
            ``dpx:Transfer``, ...), as text.
    """

    width: int
    height: int
    rate: Fraction
    frames: int
    codec: str
    pix_fmt: str
    bit_depth: int
    timecode: str | None
    colour: ColourTags = field(default_factory=ColourTags)
    pixel_aspect: Fraction = Fraction(1)
    alpha: bool = False
    sample: Literal["int", "half", "float"] = "int"
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def is_float(self) -> bool:
        """True for half or float samples (scene-linear EXR and the like)."""
        return self.sample != "int"

    def attribute(self, name: str) -> str | None:
        """A kept header attribute as text, or None."""
        return dict(self.attributes).get(name)

    def decoding_tags(self) -> ColourTags:
        """The tags this media decodes with: its own, with NLE conventions filling the gaps."""
        return video_tags_for(self.height, self.colour)


def probe(source: MediaSource) -> MediaInfo:
    """Describe a movie, or a sequence from its first file.

    Args:
        source: the media; for a sequence ``source.rate`` gives ``rate`` and the files from ``first_number`` on,
            to the last file of the pattern in its folder, give ``frames`` (gaps included: ``sequence_gaps``).

    Returns:
        The media's size, rate, frame count, codec, pixel format, bit depth, timecode, colour tags, pixel aspect,
        alpha and header attributes.

    Raises:
        MediaInvalid: the file is missing, not media, or has no video stream.
    """
    if source.kind == "movie":
        movie = _movie.probe(Path(source.path))
        return MediaInfo(
            width=movie.width,
            height=movie.height,
            rate=movie.rate,
            frames=movie.frames,
            codec=movie.codec,
            pix_fmt=movie.pix_fmt,
            bit_depth=_bit_depth(movie.pix_fmt),
            timecode=movie.timecode,
            colour=movie.tags,
            pixel_aspect=movie.pixel_aspect,
            alpha=_movie.has_alpha(movie.pix_fmt),
        )
    first = source.file_for_index(0)
    if not first.is_file():
        raise MediaInvalid(f"{first}: not found (first frame of the sequence)")
    image = _images.probe(first)
    frames = _sequence_span(source)
    attributes = dict(image.attributes)
    timecode = attributes.get("smpte:TimeCode")
    sample: Literal["int", "half", "float"] = "int"
    if image.pixel_type in ("half", "float"):
        sample = "half" if image.pixel_type == "half" else "float"
    return MediaInfo(
        width=image.width,
        height=image.height,
        rate=_sequence_rate(source),
        frames=frames,
        codec={"openexr": "exr"}.get(image.format_name, image.format_name),
        pix_fmt=f"{image.pixel_type} {''.join(image.channels) if len(image.channels) < 5 else len(image.channels)}",
        bit_depth=image.bits,
        timecode=timecode_from_bcd(timecode) if timecode else None,
        pixel_aspect=Fraction(attributes.get("PixelAspectRatio", "1")).limit_denominator(1000),
        alpha=image.alpha is not None,
        sample=sample,
        attributes=image.attributes,
    )


def read_frames(source: MediaSource, first_index: int, count: int, *, gaps: MissingFrames = "skip") -> np.ndarray:
    """Decode ``count`` frames from media index ``first_index`` on, as RGB.

    Args:
        source: a movie or an image sequence.
        first_index: media index of the first frame (0-based; sequences: file ``first_number + first_index``).
        count: number of frames, at least 1.
        gaps: a sequence's missing or empty files (``sequence_gaps``): refused (``skip``), or stood in for by the
            nearest earlier frame of the range (``hold``) or by black (``black``). A range with no frame at all is
            refused whatever the policy.

    Returns:
        Array of shape ``(count, H, W, 3)``: uint8 for 8-bit RGB media (PNG, FFV1 RGB), uint16 (full 0..65535
        range) for YUV movies of any depth and for deeper integer files, float32 (scene-linear, unclipped; exact
        for half) for EXR and other float files.

    Raises:
        InvalidInput: ``first_index`` is negative or ``count`` is not positive.
        MediaInvalid: the media is missing or corrupt, a sequence file is missing, or the range passes its end.
    """
    _check_range_args(source, first_index, count)
    if source.kind == "movie":
        path = Path(source.path)
        info = _movie.probe(path)
        rgb8 = _bit_depth(info.pix_fmt) == 8 and not info.pix_fmt.startswith(("yuv", "nv", "gray"))
        return _movie.decode(path, first_index, count, "rgb24" if rgb8 else "rgb48le")
    indices = range(first_index, first_index + count)
    found = sequence_gaps(source, first_index, count)
    if gaps == "skip" or len(found) == count:
        _refuse_gaps(source, first_index, count, found)
    missing = set(found)
    present = [i for i in indices if source.first_number + i not in missing]
    frames: np.ndarray | None = None  # decoded into one array: a shot never holds two copies of its plate
    for index in present:
        pixels = _rgb(_images.read(source.file_for_index(index))[1])
        if frames is None:
            frames = np.empty((count, *pixels.shape), pixels.dtype)
        elif pixels.shape != frames.shape[1:]:
            raise MediaInvalid(
                f"{source.path}: frame size changes inside the range ({frames.shape[1:]} and {pixels.shape})"
            )
        frames[index - first_index] = pixels
    assert frames is not None  # a range with no frame at all was refused above
    for index in sorted(set(indices) - set(present)):
        nearest = max((i for i in present if i < index), default=present[0])
        frames[index - first_index] = frames[nearest - first_index] if gaps == "hold" else 0
    return frames


def _sequence_span(source: MediaSource) -> int:
    """Frames from a sequence's first number to the highest-numbered file of its pattern in its folder."""
    pattern = Path(source.path)
    prefix, _, rest = pattern.name.partition("%")
    digits, _, suffix = rest.partition("d")
    width = int(digits or 0)
    number = re.compile(rf"{re.escape(prefix)}(\d{{{max(width, 1)},}}){re.escape(suffix)}$")
    found = [int(match.group(1)) for child in pattern.parent.iterdir() if (match := number.match(child.name))]
    return max((value for value in found if value >= source.first_number), default=source.first_number) - (
        source.first_number - 1
    )


def sequence_gaps(source: MediaSource, first_index: int, count: int) -> tuple[int, ...]:
    """File numbers of a sequence range that are missing or empty (zero bytes), in order; () for movies.

    Example: ``sh010.%04d.exr`` from file 1001, frames 0..9, with 1004 absent and 1007 empty → ``(1004, 1007)``.
    """
    if source.kind == "movie":
        return ()
    indices = range(first_index, first_index + count)
    return tuple(source.first_number + i for i in indices if missing_or_empty(source.file_for_index(i)))


def read_matte(source: MediaSource, first_index: int, count: int) -> np.ndarray:
    """Decode ``count`` matte frames: the alpha channel when the media has one, else luma.

    Args:
        source: a movie or an image sequence (RGBA PNG or EXR, ProRes 4444 with alpha, gray FFV1, any RGB media).
        first_index: media index of the first frame.
        count: number of frames, at least 1.

    Returns:
        uint8 array of shape ``(count, H, W)``, 0..255.

    Raises:
        InvalidInput: ``first_index`` is negative or ``count`` is not positive.
        MediaInvalid: as for ``read_frames``.
    """
    _check_range_args(source, first_index, count)
    if source.kind == "movie":
        path = Path(source.path)
        if _movie.has_alpha(_movie.probe(path).pix_fmt):
            return np.ascontiguousarray(_movie.decode(path, first_index, count, "rgba")[..., 3])
        return _movie.decode(path, first_index, count, "gray")
    _check_sequence_files(source, first_index, count)
    mattes = []
    for index in range(first_index, first_index + count):
        image, pixels = _images.read(source.file_for_index(index))
        alpha = image.alpha
        unit = _unit(pixels)
        if alpha is not None:
            plane = unit[..., alpha]
        elif unit.shape[-1] >= 3:
            plane = unit[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        else:
            plane = unit[..., 0]
        mattes.append(np.rint(np.clip(plane, 0.0, 1.0) * 255).astype(np.uint8))
    return _stack(mattes, source)


def write_movie(
    frames: np.ndarray,
    path: Path,
    rate: Fraction,
    *,
    codec: MovieCodec = "prores",
    timecode: str | None = None,
    colour: ColourTags | None = None,
    pixel_aspect: Fraction = Fraction(1),
    alpha: np.ndarray | None = None,
    crf: int = 16,
    keyframe_interval: int | None = None,
) -> MediaSource:
    """Encode RGB frames into a new movie, atomically, with explicit colour tags.

    ``prores`` is ProRes 422 HQ (prores_ks profile 3, yuv422p10le, vendor apl0); ``prores_4444`` and
    ``prores_4444xq`` are yuv444p10le, or yuva444p10le with ``alpha``; ``dnxhr_hqx`` is DNxHR HQX 10-bit 4:2:2 in
    .mov or .mxf; ``h264`` is libx264 crf 16 yuv420p (review previews); ``ffv1`` is lossless 16-bit RGB (uint8 and
    uint16 frames come back bit-exact).

    Args:
        frames: ``(T, H, W, 3)`` uint8, uint16, or float32 in [0, 1] (display- or log-encoded).
        path: the movie to create; its folder must exist and the file must not.
        rate: frame rate; the movie holds exactly ``T`` frames at this rate.
        codec: one of ``MOVIE_CODECS``.
        timecode: start timecode written into the movie (``"01:00:00:00"``; ``;`` for drop frame), or None.
        colour: primaries, transfer, matrix and range written into the stream and used for the RGB to YUV matrix;
            unset fields follow the NLE convention for the frame height (BT.709 video range for HD).
        pixel_aspect: pixel aspect ratio stored in the stream (2 for a 2x anamorphic squeeze).
        alpha: ``(T, H, W)`` matte for ``prores_4444``/``prores_4444xq`` (uint8, uint16 or float32 in [0, 1]).
        crf: H.264's constant rate factor (lower is better; 16 is visually lossless).
        keyframe_interval: H.264 only: a keyframe every this many frames, exactly (no scene-cut keyframes), and no
            B-frames, so decode order is display order and a seek decodes at most ``keyframe_interval - 1`` frames
            before the one asked for (1: every frame a keyframe); None: x264's defaults.

    Returns:
        ``MediaSource(kind="movie", start=0, frames=T)`` for the resolved path; set ``start`` with
        ``dataclasses.replace``.

    Raises:
        InvalidInput: bad frames, rate, timecode, codec/suffix pair, odd size for 4:2:x codecs, alpha on a codec
            without it, a keyframe interval on a codec other than h264, or ``path`` exists.
        StorageUnavailable: the folder is missing or not writable, or the disk is full.
        MediaInvalid: the encoder failed (the message carries its error).
    """
    count, height, width = _check_frames(frames)
    rate = _check_rate(rate)
    if codec not in _ENCODINGS:
        raise InvalidInput(f"{path}: codec must be one of {', '.join(MOVIE_CODECS)}, got {codec!r}")
    if path.suffix.lower() not in _MOVIE_SUFFIXES[codec]:
        raise InvalidInput(f"{path}: codec {codec} needs suffix {' or '.join(_MOVIE_SUFFIXES[codec])}")
    encoding = _ENCODINGS[codec]
    if codec == "ffv1" and frames.dtype == np.uint8:
        encoding = dataclasses.replace(encoding, pix_fmt="bgr0")  # 8-bit RGB stays 8-bit, bit-exact
    if keyframe_interval is not None and (codec != "h264" or keyframe_interval < 1):
        raise InvalidInput(f"{path}: keyframe_interval is for h264 and at least 1, got {keyframe_interval} ({codec})")
    if codec == "h264":
        gop = str(keyframe_interval)
        fixed = (("g", gop), ("keyint_min", gop), ("sc_threshold", "0"), ("bf", "0")) if keyframe_interval else ()
        encoding = dataclasses.replace(encoding, options=(("crf", str(crf)), *fixed))
    if encoding.yuv and (width % 2 or (codec == "h264" and height % 2)):
        raise InvalidInput(
            f"{path}: {codec} needs an even width{' and height' * (codec == 'h264')}, got {width}x{height}"
        )
    if timecode is not None and not _TIMECODE.fullmatch(timecode):
        raise InvalidInput(f"{path}: timecode must look like HH:MM:SS:FF, got {timecode!r}")
    if frames.dtype == np.float32 and not (float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0):
        raise InvalidInput(
            f"{path}: float frames must lie in [0, 1] for a movie (encode scene-linear plates through a display or "
            f"log transform first), got {frames.min():g}..{frames.max():g}"
        )
    matte = None
    if alpha is not None:
        if not codec.startswith("prores_4444"):
            raise InvalidInput(f"{path}: only prores_4444 and prores_4444xq carry alpha, not {codec}")
        if alpha.shape != frames.shape[:3]:
            raise InvalidInput(f"{path}: alpha must be (T, H, W) = {frames.shape[:3]}, got {alpha.shape}")
        matte = _to_uint16(alpha)
        encoding = dataclasses.replace(encoding, pix_fmt="yuva444p10le")
    tags = video_tags_for(height, colour or ColourTags())
    # Float frames go to the encoder as they are: it makes each frame 16-bit as it goes (no whole-shot copy).
    as_given = frames.dtype == np.float32 or (frames.dtype == np.uint8 and matte is None)
    pixels = frames if as_given else _to_uint16(frames)
    with _atomic_file(path) as temp:
        _movie.encode(
            pixels, temp, rate, encoding, tags=tags, timecode=timecode, pixel_aspect=pixel_aspect, alpha=matte
        )
    return MediaSource(path=str(path.resolve()), kind="movie", rate=float(rate), start=0, frames=count)


def codec_reference(frames: np.ndarray, codec: MovieCodec, colour: ColourTags | None = None) -> np.ndarray:
    """``frames`` as a perfect (uncompressed) encoder of ``codec``'s pixel format would give them back.

    The RGB is converted to the codec's YUV with ``colour``'s matrix and range (NLE conventions filling gaps),
    chroma subsampled as the codec stores it (4:2:2 for ProRes 422 HQ and DNxHR HQX), and converted back, all
    through the same swscale path as ``write_movie`` and ``read_frames``. Comparing a written movie with this
    leaves only the codec's compression loss; comparing it with the plate also counts what 4:2:2 cannot hold.

    Returns:
        uint16 ``(T, H, W, 3)``.
    """
    _, height, _ = _check_frames(frames)
    tags = video_tags_for(height, colour or ColourTags())
    return _movie.chroma_reference(_to_uint16(frames), _ENCODINGS[codec], tags)


def write_sequence(
    frames: np.ndarray,
    pattern: Path,
    rate: Fraction,
    *,
    first_number: int = 1001,
    fmt: SequenceFormat = "png",
    pixel_type: Literal["half", "float"] | None = None,
    compression: str | None = None,
    alpha: np.ndarray | None = None,
    alpha_channel: str = "A",
    attributes: Mapping[str, Any] | None = None,
) -> MediaSource:
    """Write RGB frames as a new image sequence in a new folder, atomically.

    PNG and TIFF store uint8 as 8-bit and uint16 as 16-bit, bit-exact (float32 is clipped to [0, 1] and stored
    16-bit). DPX stores 10-bit RGB (uint16 rounded to 10 bits; a plate read from a 10-bit DPX writes back
    bit-exact). EXR stores ``pixel_type`` (default ``"half"`` for float32 frames that are exactly half values, else
    ``"float"``; uint8 as ``x / 255`` and uint16 as ``x / 65535``), with ``compression`` (default ``"piz"``,
    lossless; ``"dwaa"`` for lossy comp plates), and the frame rate in ``FramesPerSecond``.

    Args:
        frames: ``(T, H, W, 3)`` uint8, uint16 or float32.
        pattern: printf pattern of the files, e.g. ``/out/sh010_v001/sh010_v001.%04d.exr``; its folder must not
            exist yet (it is created) and its suffix must match ``fmt``.
        rate: frame rate recorded in the returned source (and in EXR headers).
        first_number: number of the first file; files are ``first_number .. first_number + T - 1``.
        fmt: one of ``SEQUENCE_FORMATS``.
        pixel_type: EXR sample type.
        compression: EXR compression, one of piz, dwaa, dwab, zip, zips, none.
        alpha: ``(T, H, W)`` matte written as a fourth channel named ``alpha_channel`` (EXR ``"A"`` or a layer such
            as ``"matte.A"``; PNG/TIFF ``"A"``).
        attributes: header attributes for every file (EXR/DPX/TIFF): strings, numbers, ``(type, value)`` pairs;
            ``smpte:TimeCode`` may be given as ``"HH:MM:SS:FF"`` for the first file and counts up per frame.

    Returns:
        ``MediaSource(kind="sequence", start=0, frames=T, first_number=first_number)`` for the resolved pattern.

    Raises:
        InvalidInput: bad frames, rate, pattern, suffix, compression or ``first_number``, or the folder exists.
        StorageUnavailable: the folder cannot be created or written, or the disk is full.
        MediaInvalid: the writer failed.
    """
    count, _height, _width = _check_frames(frames)
    rate = _check_rate(rate)
    if fmt not in SEQUENCE_FORMATS:
        raise InvalidInput(f"{pattern}: format must be one of {', '.join(SEQUENCE_FORMATS)}, got {fmt!r}")
    suffixes = {"tiff": (".tif", ".tiff")}.get(fmt, (f".{fmt}",))
    if pattern.suffix.lower() not in suffixes:
        raise InvalidInput(f"{pattern}: format {fmt} needs suffix {' or '.join(suffixes)}, got {pattern.suffix!r}")
    if pattern.name.count("%") != 1 or not re.search(r"%(0\d+)?d", pattern.name):
        raise InvalidInput(f"{pattern}: the file name needs exactly one frame placeholder like %04d")
    if first_number < 0:
        raise InvalidInput(f"{pattern}: first_number must be >= 0, got {first_number}")
    if compression is not None and (fmt != "exr" or compression not in EXR_COMPRESSIONS):
        raise InvalidInput(f"{pattern}: compression {compression!r} needs fmt exr and one of {EXR_COMPRESSIONS}")
    if alpha is not None and (alpha.shape != frames.shape[:3] or fmt == "dpx"):
        raise InvalidInput(f"{pattern}: alpha must be (T, H, W) = {frames.shape[:3]} and fmt not dpx")
    folder = pattern.parent
    if folder.exists():
        raise InvalidInput(f"{folder}: exists; outputs are never overwritten")
    stored, sample, bits = _stored(frames, fmt, pixel_type)
    header = {**_rate_attributes(fmt, rate), **dict(attributes or {})}
    if fmt == "exr":
        header["compression"] = compression or "piz"
    elif fmt == "png":
        header["png:compressionLevel"] = 1  # lossless at any level; 1 is fast
    first_timecode = header.pop("smpte:TimeCode", None)
    channels = ("R", "G", "B") if alpha is None else ("R", "G", "B", alpha_channel)
    temp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex}")
    try:
        temp.mkdir()
    except OSError as error:
        raise StorageUnavailable(f"{folder}: cannot create it in {folder.parent} ({error.strerror})") from error
    try:
        for index in range(count):
            pixels = stored[index]
            if alpha is not None:
                pixels = np.concatenate([pixels, from_unit(_unit(alpha[index]), stored.dtype)[..., None]], axis=-1)
            frame_header = dict(header)
            if isinstance(first_timecode, str) and fmt in ("exr", "dpx"):
                frame_header["smpte:TimeCode"] = ("timecode", _bcd(first_timecode, index, rate))
            target = temp / (pattern.name % (first_number + index))
            _images.write(target, pixels, pixel_type=sample, channels=channels, bits=bits, attributes=frame_header)
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
        MediaInvalid: the encoder failed.
    """
    if masks.ndim != 3 or masks.dtype != np.uint8 or min(masks.shape) == 0:
        raise InvalidInput(f"{path}: masks must be a non-empty (T, H, W) uint8 array, got {masks.shape} {masks.dtype}")
    if path.suffix.lower() != ".mkv":
        raise InvalidInput(f"{path}: masks are written as .mkv, got {path.suffix!r}")
    with _atomic_file(path) as temp:
        _movie.encode(masks, temp, Fraction(24), _MASKS, tags=ColourTags(), timecode=None, pixel_aspect=Fraction(1))


def read_mask(path: Path) -> np.ndarray:
    """Read masks written by ``write_mask``, bit-exact.

    Args:
        path: an FFV1 gray ``.mkv``.

    Returns:
        uint8 array of shape ``(T, H, W)``.

    Raises:
        MediaInvalid: the file is missing, corrupt, or not FFV1 gray.
    """
    info = _movie.probe(path)
    if (info.codec, info.pix_fmt) != ("ffv1", "gray"):
        raise MediaInvalid(f"{path}: masks must be ffv1 gray, got {info.codec} {info.pix_fmt}")
    return _movie.decode(path, 0, info.frames, "gray")


def sha256_source(source: MediaSource, first_index: int | None = None, count: int | None = None) -> str:
    """Return a content hash of a movie file, or of a sequence's files in order.

    A movie hashes its whole file, whatever the range: any byte may affect any frame. A sequence combines
    (``hashing.content_hash``) the parts ``"<file number>:<sha256 of the file>"`` of the files asked for: from
    ``first_index`` (default 0) for ``count`` files (default: up to the first missing file).

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
    return content_hash(
        f"{source.first_number + index}:{sha256_file(source.file_for_index(index))}"
        for index in range(first, first + count)
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
    _refuse_gaps(source, first_index, count, sequence_gaps(source, first_index, count))


def _refuse_gaps(source: MediaSource, first_index: int, count: int, gaps: tuple[int, ...]) -> None:
    """Raise ``MediaInvalid`` naming the first of a range's ``gaps`` (``sequence_gaps``), if there is one."""
    if gaps:
        index = gaps[0] - source.first_number
        what = "missing" if not source.file_for_index(index).is_file() else "empty (0 bytes)"
        raise MediaInvalid(
            f"{source.path}: frame {gaps[0]} {what} ({source.file_for_index(index)}); "
            f"asked for frames {first_index}..{first_index + count - 1} ({count})"
        )


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
    try:
        with atomic_write(path) as temp:
            try:
                temp.touch(exist_ok=False)
            except OSError as error:
                raise StorageUnavailable(f"{path}: cannot write in {path.parent} ({error.strerror})") from error
            yield temp
    except OSError as error:
        raise StorageUnavailable(f"{path}: {error.strerror}") from error


def _check_frames(frames: np.ndarray) -> tuple[int, int, int]:
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise InvalidInput(f"frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    if frames.dtype not in (np.uint8, np.uint16, np.float32):
        raise InvalidInput(f"frames must be uint8, uint16 or float32, got {frames.dtype}")
    if frames.dtype == np.float32 and not all(np.isfinite(frame).all() for frame in frames):  # no whole-shot mask
        raise InvalidInput("frames must be finite, got NaN or infinity")
    count, height, width, _ = frames.shape
    return count, height, width


def _check_rate(rate: Fraction) -> Fraction:
    rate = Fraction(rate)
    if rate <= 0:
        raise InvalidInput(f"rate must be positive, got {rate}")
    return rate


def timecode_from_bcd(value: str) -> str:
    """Turn an EXR/DPX ``smpte:TimeCode`` as OIIO reports it (``"16777216 0"``: packed BCD and user bits) into
    ``"HH:MM:SS:FF"`` (``;`` before the frames when the drop-frame bit is set); text timecodes pass through."""
    if _TIMECODE.fullmatch(value):
        return value
    packed = int(value.split()[0])

    def digits(shift: int, tens_bits: int) -> int:
        return ((packed >> (shift + 4)) & ((1 << tens_bits) - 1)) * 10 + ((packed >> shift) & 0xF)

    separator = ";" if packed & (1 << 6) else ":"
    return f"{digits(24, 2):02d}:{digits(16, 3):02d}:{digits(8, 3):02d}{separator}{digits(0, 2):02d}"


def timecode_plus(timecode: str, frames: int, rate: Fraction) -> str:
    """``timecode`` counted on by ``frames`` frames at ``rate`` (``;`` keeps drop-frame counting).

    Example: ``timecode_plus("01:00:00:00", 30, Fraction(24)) == "01:00:01:06"``.
    """
    import opentimelineio as otio

    start = otio.opentime.from_timecode(timecode, float(rate))
    later = otio.opentime.RationalTime(start.value + frames, float(rate))
    return str(otio.opentime.to_timecode(later, float(rate), ";" in timecode))


def _bcd(timecode: str, offset: int, rate: Fraction) -> tuple[int, int]:
    """Packed SMPTE BCD time code (OpenEXR's TimeCode layout) of ``timecode`` plus ``offset`` frames."""
    match = _TIMECODE.fullmatch(timecode_plus(timecode, offset, rate))
    assert match is not None
    hours, minutes, seconds, frames = (int(part) for part in match.groups())

    def bcd(value: int, shift: int) -> int:
        return ((value // 10) << (shift + 4)) | ((value % 10) << shift)

    packed = bcd(frames, 0) | bcd(seconds, 8) | bcd(minutes, 16) | bcd(hours, 24) | (int(";" in timecode) << 6)
    return packed, 0


def _rate_attributes(fmt: str, rate: Fraction) -> dict[str, Any]:
    if fmt == "exr":
        return {"FramesPerSecond": ("rational2i", (rate.numerator, rate.denominator))}
    if fmt == "dpx":
        return {"dpx:FrameRate": float(rate)}
    return {}


def _stored(frames: np.ndarray, fmt: str, pixel_type: str | None) -> tuple[np.ndarray, str, int | None]:
    """The samples to hand the writer, their OIIO type, and the stored bit depth (DPX: 10)."""
    if fmt == "exr":
        data = _unit(frames) if frames.dtype != np.float32 else frames
        if pixel_type is None:  # frame by frame: a whole-shot half copy and its float copy would be 1.5 shots
            exact = all(np.array_equal(frame.astype(np.float16).astype(np.float32), frame) for frame in data)
            pixel_type = "half" if exact else "float"
        if pixel_type not in ("half", "float"):
            raise InvalidInput(f"EXR pixel_type must be half or float, got {pixel_type!r}")
        return data, pixel_type, None
    if pixel_type is not None:
        raise InvalidInput(f"pixel_type is for EXR only, got {pixel_type!r} for {fmt}")
    if fmt == "dpx":
        ten = np.rint(_unit(frames).clip(0.0, 1.0) * 1023).astype(np.uint16)
        return (ten << 6) | (ten >> 4), "uint16", 10  # OIIO's 16-bit view of 10-bit samples (bit replication)
    if frames.dtype == np.float32:
        return np.rint(np.clip(frames, 0.0, 1.0) * 65535.0).astype(np.uint16), "uint16", None
    return frames, str(frames.dtype), None


def _unit(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / np.float32(255)
    if frames.dtype == np.uint16:
        return frames.astype(np.float32) / np.float32(65535)
    return frames.astype(np.float32, copy=False)


def _to_uint16(frames: np.ndarray) -> np.ndarray:
    return frames if frames.dtype == np.uint16 else from_unit(_unit(frames), np.uint16)


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """The first three channels (gray replicated), in the reader's type family."""
    if pixels.shape[-1] == 1 or pixels.shape[-1] == 2:
        return np.repeat(pixels[..., :1], 3, axis=-1)
    return pixels[..., :3]


def _stack(frames: list[np.ndarray], source: MediaSource) -> np.ndarray:
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise MediaInvalid(f"{source.path}: frame size changes inside the range ({sorted(shapes)})")
    return np.ascontiguousarray(np.stack(frames))
