"""Typed records that travel between the stages: media, shots, instructions, deliveries.

Frame conventions used everywhere in voidflow:

* **Media time** is OTIO's: integer frames at the media's rate, in the coordinate of the clip's ``source_range``.
  A movie with timecode 01:00:00:00 at 24 fps starts at media time 86400.
* **Media index** is the 0-based position of a frame inside its file (movie) or sequence (index 0 is the first
  file). ``MediaSource.index_of(t) = t - MediaSource.start``.
* **Shot frame** is 0-based from the shot's first *cut* frame (``Shot.source_start``); head handles have negative
  shot frames. Point and box prompts use shot frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

__all__ = [
    "PLATE_ALPHA",
    "BoxPrompt",
    "Delivery",
    "MediaKind",
    "MediaProbe",
    "MediaSource",
    "MissingFrames",
    "NameSource",
    "PointPrompt",
    "Retime",
    "RetimeKind",
    "Shot",
    "ShotInstructions",
    "ShotStatus",
    "rate_fraction",
]

#: The ``matte`` instruction that means "the plate's own alpha channel" (an RGBA EXR, ProRes 4444 with alpha).
PLATE_ALPHA = "plate-alpha"

MediaKind = Literal["movie", "sequence"]
ShotStatus = Literal["ready", "skipped"]
NameSource = Literal["metadata", "marker", "clip"]
#: A clip's constant-speed time effect: ``speed`` (forward at any rate), ``reverse`` or ``freeze`` (one frame held).
RetimeKind = Literal["speed", "reverse", "freeze"]
#: What to do with missing or empty frames of an image-sequence plate: skip the shot, hold the previous frame, or
#: fill with black (``ShotInstructions.missing_frames``).
MissingFrames = Literal["skip", "hold", "black"]

_NTSC_RATES = {24000: 1001, 30000: 1001, 48000: 1001, 60000: 1001}
#: Slack for float time scalars such as 1/3 written as 0.3333333333333333 (3 record frames must reach frame 1).
_FRAME_EPSILON = 1e-6


def rate_fraction(rate: float) -> Fraction:
    """Return the exact rational frame rate for a float rate.

    NTSC rates come back exact, e.g. ``rate_fraction(23.976) == Fraction(24000, 1001)``; integer rates stay integer.

    Raises:
        ValueError: ``rate`` is not a positive finite number.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"frame rate must be positive and finite, got {rate!r}")
    for numerator, denominator in _NTSC_RATES.items():
        if abs(rate - numerator / denominator) < 5e-3:
            return Fraction(numerator, denominator)
    return Fraction(rate).limit_denominator(1001)


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Where a clip's frames live.

    Attributes:
        path: absolute path of a movie file, or the printf pattern of an image sequence
            (``/plates/sh010.%04d.exr``).
        kind: ``"movie"`` or ``"sequence"``.
        rate: frames per second of the media.
        start: media time of the media's first frame (frames at ``rate``).
        frames: number of frames the media holds, or None when unknown.
        first_number: for sequences, the file number of the first frame; 0 for movies.
    """

    path: str
    kind: MediaKind
    rate: float
    start: int = 0
    frames: int | None = None
    first_number: int = 0

    def index_of(self, media_time: int) -> int:
        """Return the media index (0-based position in the file) of a media time."""
        return media_time - self.start

    def file_for_index(self, index: int) -> Path:
        """Return the file holding frame ``index`` of a sequence (the movie itself for movies)."""
        if self.kind == "movie":
            return Path(self.path)
        return Path(self.path % (self.first_number + index))


@dataclass(frozen=True, slots=True)
class MediaProbe:
    """What planning reads from the media file itself (one probe per clip, at plan time).

    Attributes:
        frames: frames the media holds (a sequence: consecutive files from its first number).
        timecode: the media's own start timecode (a movie's tag, a sequence's first ``smpte:TimeCode``) as
            ``HH:MM:SS:FF`` (``;`` before the frames for drop frame), or None when it carries none.
    """

    frames: int
    timecode: str | None = None


@dataclass(frozen=True, slots=True)
class Retime:
    """A clip's linear time warp or freeze frame, resolved to the source frames the timeline shows.

    OTIO semantics (``LinearTimeWarp.time_scalar``): the effect does not change how long the clip lasts on the
    timeline (``record_frames``, its ``source_range`` duration); it plays the media at ``scalar`` source frames per
    record frame from the ``source_range`` start. Record frame ``i`` shows media time ``start + i * scalar``
    (rounded down, as Avid renders it); a freeze frame holds ``start``. For a reverse (negative ``scalar``) the
    ``source_range`` start is the *lowest* frame of the segment, played from its end backwards: the convention the
    AAF adapter writes (Avid's source clip under its Motion Control effect) and Avid renders.

    The clip consumes the source segment ``[start, start + |scalar| * record_frames)`` (one frame for a freeze):
    ``source_first``..``source_last``, both inclusive. That segment, not only the frames sampled from it, is what
    voidflow pulls, so an NLE that blends neighbouring frames finds them in the new media too.

    Attributes:
        kind: ``speed``, ``reverse`` or ``freeze``.
        scalar: OTIO's ``time_scalar``: 2.0 double speed, 0.5 half speed, -1.0 reverse, 0.0 freeze.
        record_frames: frames the clip occupies on the timeline (counted at the media rate).
        source_first: first media time of the segment (its lowest frame).
        source_last: last media time of the segment (inclusive).
    """

    kind: RetimeKind
    scalar: float
    record_frames: int
    source_first: int
    source_last: int

    @property
    def source_frames(self) -> int:
        """Frames of the source segment: ``source_last - source_first + 1``."""
        return self.source_last - self.source_first + 1

    def frame_at(self, record_frame: int) -> int:
        """The media time the timeline shows at ``record_frame`` (0-based from the clip's first record frame)."""
        if self.kind == "freeze":
            return self.source_first
        step = abs(self.scalar)
        # A reverse plays its segment from the top: record frame 0 shows the frame just below its exclusive end.
        offset = record_frame * step if self.kind == "speed" else step * (self.record_frames - record_frame - 1)
        return self.source_first + math.floor(offset + _FRAME_EPSILON)

    def shown(self) -> tuple[int, ...]:
        """The media time shown at each record frame of the clip, in timeline order."""
        return tuple(self.frame_at(index) for index in range(self.record_frames))

    def to_json(self) -> dict[str, object]:
        """The retime as ``voidflow plan --json`` prints it."""
        return {
            "kind": self.kind,
            "scalar": self.scalar,
            "record_frames": self.record_frames,
            "source_first": self.source_first,
            "source_last": self.source_last,
        }


@dataclass(frozen=True, slots=True)
class PointPrompt:
    """A click on the object to remove, in plate pixels, on a shot frame."""

    frame: int
    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True, slots=True)
class BoxPrompt:
    """A box around the object to remove, in plate pixels (x0, y0) to (x1, y1), on a shot frame."""

    frame: int
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, slots=True)
class ShotInstructions:
    """What to do with one shot, from clip or marker metadata and the sidecar.

    Attributes:
        remove: what to remove, as text ("the man holding the guitar").
        prompt: the background prompt: the scene *after* removal.
        points: point prompts for the object.
        boxes: box prompts for the object.
        matte: path of an existing matte (white or alpha = object): a movie, or an image sequence as a printf
            pattern (``/roto/sh010.%04d.png``); indexed like the plate (matte index k is plate index k).
        affected_ring: width in plate pixels of the "affected" (127) ring grown around the object; 0 for none.
        affected_matte: path of a roto of the *affected* region (shadow, reflection, what falls), same forms as
            ``matte``: it becomes the 127 class, 63 where it overlaps the object; needs ``matte``.
        quadmask: path of a finished VOID quadmask (0 remove, 63 overlap, 127 affected, 255 keep), a movie or a
            printf sequence indexed like the plate; used as is, instead of any matte or segmentation.
        missing_frames: what to do with missing or empty frames of an image-sequence plate: ``skip`` the shot,
            ``hold`` the previous frame, or fill with ``black``.
        seed: the shot's seed, or None to use the batch seed.
        pass2: run VOID's pass 2 on this shot (True/False), or None to follow the batch.
        priority: scheduling order: higher runs first; equal priorities run the longest shot first.
        colourspace: the plate's colour space (a name in the show's OCIO config), or None to use the batch's
            choice or infer it from the file.
    """

    remove: str = ""
    prompt: str = ""
    points: tuple[PointPrompt, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    matte: str | None = None
    affected_ring: int = 0
    affected_matte: str | None = None
    quadmask: str | None = None
    missing_frames: MissingFrames = "skip"
    seed: int | None = None
    pass2: bool | None = None
    priority: int = 0
    colourspace: str | None = None


@dataclass(frozen=True, slots=True)
class Shot:
    """One clip of the edit, as voidflow will process it.

    Attributes:
        name: the shot's unique, file-safe name (see ``void_ops.intake`` for the naming policy); also its ID.
        track: name of the video track (or ``"V<n>"`` when the track has no name).
        index: position of the clip among the clips of its track, from 0.
        clip_name: the clip's name in the edit.
        name_source: where ``name`` came from: clip ``metadata``, a ``marker``, or the ``clip`` name.
        media: the clip's media, or None when the edit has no usable reference.
        rate: media frame rate.
        source_start: first frame of the media the edit shows (media time, frames at ``rate``); for a retimed
            clip, the first frame of the source segment it consumes (``retime.source_first``).
        duration: source frames the edit shows, without handles: the cut's length, or for a retimed clip the
            length of its source segment (twice the cut for 2x, one frame for a freeze).
        handles: (head, tail) frames beyond the cut, clipped to the media's available range.
        record_start: where the clip starts on the timeline, in frames at the timeline's rate from its start.
        status: ``"ready"`` when it will be processed, else ``"skipped"``.
        reason: why it is skipped ("" when ready).
        instructions: what to remove and how.
        retime: the clip's time warp or freeze frame resolved to source frames, or None for a clip at speed.
        warnings: what planning had to choose for this shot (e.g. the edit's range over the file's timecode).
    """

    name: str
    track: str
    index: int
    clip_name: str
    name_source: NameSource
    media: MediaSource | None
    rate: float
    source_start: int
    duration: int
    handles: tuple[int, int]
    record_start: int
    status: ShotStatus
    reason: str = ""
    instructions: ShotInstructions = field(default_factory=ShotInstructions)
    retime: Retime | None = None
    warnings: tuple[str, ...] = ()

    @property
    def first(self) -> int:
        """Media time of the first processed frame (head handle included)."""
        return self.source_start - self.handles[0]

    @property
    def frames(self) -> int:
        """Number of processed frames: head handle, cut and tail handle."""
        return self.handles[0] + self.duration + self.handles[1]

    def to_json(self) -> dict[str, object]:
        """Return the shot as the JSON object ``voidflow plan --json`` prints."""
        return {
            "name": self.name,
            "track": self.track,
            "index": self.index,
            "clip_name": self.clip_name,
            "name_source": self.name_source,
            "media": self.media.path if self.media else None,
            "rate": self.rate,
            "source_start": self.source_start,
            "duration": self.duration,
            "handles": list(self.handles),
            "pulled": [self.first, self.first + self.frames - 1],
            "record_start": self.record_start,
            "retime": self.retime.to_json() if self.retime else None,
            "status": self.status,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """A finished result for one shot, ready to conform.

    Attributes:
        shot: the shot's name.
        version: the version label, ``v001`` and up.
        media: the delivered movie or sequence; ``media.start`` equals the plate range's first media time so
            the clip's ``source_range`` indexes it unchanged.
        matte: the matte actually used for compositing (same frames as ``media``).
        width: frame width in pixels.
        height: frame height in pixels.
    """

    shot: str
    version: str
    media: MediaSource
    matte: MediaSource
    width: int
    height: int
