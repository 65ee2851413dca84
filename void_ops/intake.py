"""Edit intake: read an edit with the OTIO adapters and plan one ``Shot`` per clip of its video tracks.

Shot names follow one policy, first match wins:

1. ``clip.metadata["voidflow"]["shot"]``;
2. ``marker.metadata["voidflow"]["shot"]`` on a marker of the clip;
3. the clip's name, with a media extension dropped (``sc01_sh010_anim.mov`` → ``sc01_sh010_anim``).

Names are made file-safe (anything but letters, digits, ``_``, ``-`` and ``.`` becomes ``_``) and unique within
the edit: a repeated name gets ``_001``, ``_002`` … in timeline order (tracks bottom to top, clips left to right),
so ``ZZ100_501 (LAY3)`` becomes ``ZZ100_501_LAY3`` and a second ``clip1`` becomes ``clip1_001``.

Which clips are processed (``Selection``): all clips of one named video track, or (the default) clips that carry a
marker, ``voidflow`` metadata, or a sidecar entry. Every clip of every video track is planned either way; those not
processed come back ``skipped`` with the reason, and so do clips that cannot be processed (missing media, time
effects with no constant speed, generators, clips inside nested stacks, ranges beyond the media).

Ranges: ``source_start``/``duration`` are the clip's ``visible_range()`` (frames shown, including those a
transition borrows) rescaled to the media rate; handles are clipped to the media's ``available_range``, or to the
probed length of the media file when the edit gives none.

Retimes: a clip with one ``LinearTimeWarp`` (any scalar, reverse included) or ``FreezeFrame`` pulls the source
segment it consumes (``clip_retime``, ``shots.Retime``): twice the cut for 2x, one frame for a freeze, handles
around it at the source rate. Any other time effect (a speed ramp, a vendor time remap with no scalar) skips the
shot, named.

Source timecode: where the edit gives the media no ``available_range`` (EDL ``* FROM CLIP`` references, some XML
and AAF), the media's own start timecode, read by ``probe``, is media time of its first frame, so source timecode
01:00:10:00 in a movie starting at 01:00:00:00 is its frame 240 at 24 fps; a sequence without one starts at its
first frame number. Where the edit gives a range and the file's timecode disagrees, the edit's range is used (the
clip's ``source_range`` counts in it) and the shot says so in ``warnings``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import opentimelineio as otio

from voidflow.void_ops import media
from voidflow.void_ops.edl_rate import EdlRate, check_edl_rate, infer_edl_rate
from voidflow.void_ops.exceptions import EditUnreadable, InvalidInput, MediaInvalid, PathNotAllowed, SidecarInvalid
from voidflow.void_ops.hashing import sha256_path
from voidflow.void_ops.shots import MediaProbe, MediaSource, NameSource, Retime, Shot, ShotInstructions
from voidflow.void_ops.sidecar import entry_to_instructions, validate_entry

__all__ = [
    "ADAPTERS",
    "Edit",
    "Selection",
    "clip_retime",
    "named_clips",
    "plan_shots",
    "read_edit",
    "safe_name",
    "shot_name_sources",
    "timeline_rate",
]

#: File suffix → OTIO adapter name, and the package that provides the adapter.
ADAPTERS: Mapping[str, tuple[str, str]] = {
    ".otio": ("otio_json", "opentimelineio"),
    ".otioz": ("otioz", "opentimelineio"),
    ".otiod": ("otiod", "opentimelineio"),
    ".edl": ("cmx_3600", "otio-cmx3600-adapter"),
    ".xml": ("fcp_xml", "otio-fcp-adapter"),
    ".fcpxml": ("fcpx_xml", "otio-fcpx-xml-adapter"),
    ".aaf": ("AAF", "otio-aaf-adapter"),
}
_MEDIA_SUFFIXES = {".mov", ".mp4", ".mxf", ".avi", ".mkv", ".exr", ".dpx", ".png", ".tif", ".tiff", ".jpg", ".r3d"}
_NAMESPACE = "voidflow"
#: Effect names that mean a change of timing, however a vendor spells it (FCP7's "Time Remap", Avid's "Motion
#: Control", "timewarp", "speed", "retime", "freeze").
_TIME_WORDS = re.compile(r"time\s*(warp|remap)|speed|retime|freeze|motion control", re.IGNORECASE)
_FRAME_EPSILON = 1e-6  # float scalars such as 0.3333333333333333 must still consume whole frames


@dataclass(frozen=True, slots=True)
class Edit:
    """An edit as read from disk.

    Attributes:
        path: the edit file, absolute.
        timeline: the OTIO timeline; treat it as read-only (``conform`` works on a copy).
        rate: the timeline's frame rate (record frames are counted at it).
        sha256: hash of the edit file's bytes.
        warnings: what intake had to assume, e.g. an EDL rate that several standard rates fit.
        rate_evidence: why the edit is read at ``rate`` (for an EDL: given, or inferred and from what).
    """

    path: Path
    timeline: otio.schema.Timeline
    rate: float
    sha256: str
    warnings: tuple[str, ...] = ()
    rate_evidence: str = ""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which clips to process: all clips of ``track``, or (``track`` None) clips that are marked.

    A clip is marked when it carries a marker, ``voidflow`` metadata or a sidecar entry; ``everything=True``
    processes every clip of every video track.
    """

    track: str | None = None
    everything: bool = False


def read_edit(path: Path, *, edl_rate: float | None = None) -> Edit:
    """Read an edit file with the OTIO adapter its suffix names.

    Args:
        path: ``.otio``, ``.otioz``, ``.otiod``, ``.edl``, ``.xml`` (FCP7), ``.fcpxml`` or ``.aaf``.
        edl_rate: timecode rate of an EDL (EDLs do not say). None: inferred from the EDL itself
            (``void_ops.edl_rate``: the media it names, drop-frame marks, the largest frame field); the evidence is
            ``Edit.rate_evidence``, and an ambiguous choice is also one of ``Edit.warnings``.

    Raises:
        EditUnreadable: the file is missing, of an unsupported type, needs an adapter that is not installed, or
            does not parse; or an EDL's timecodes fit no rate, or not the given one; the message names the file
            and the cause in one line.
    """
    path = Path(path).expanduser().absolute()
    suffix = path.suffix.lower()
    if suffix not in ADAPTERS:
        supported = ", ".join(sorted(ADAPTERS))
        raise EditUnreadable(f"{path}: unsupported edit type '{suffix or path.name}' (supported: {supported})")
    if not path.exists():
        raise EditUnreadable(f"{path}: edit not found")
    adapter, package = ADAPTERS[suffix]
    if adapter not in otio.adapters.available_adapter_names():
        raise EditUnreadable(f"{path}: the OTIO adapter '{adapter}' is not installed (pip install {package})")
    warnings: list[str] = []
    options: dict[str, Any] = {}
    evidence = ""
    if suffix == ".edl":
        choice = _edl_rate(path, edl_rate)
        options["rate"], evidence = choice.rate, choice.evidence
        warnings += [choice.evidence] if choice.ambiguous else []
    if suffix == ".otiod":
        options["absolute_media_reference_paths"] = True  # the bundle's media/, wherever the bundle was moved
    try:
        try:
            result = otio.adapters.read_from_file(str(path), adapter_name=adapter, **options)
        except Exception as error:
            if suffix != ".edl" or ("don't match" not in str(error) and "Overlapping record" not in str(error)):
                raise
            # The cmx_3600 reader's documented recovery: follow source durations where record timecode disagrees.
            warnings.append(f"EDL timecode mismatch ({error}); record positions follow source durations")
            result = otio.adapters.read_from_file(
                str(path), adapter_name=adapter, ignore_timecode_mismatch=True, **options
            )
    except OSError as error:
        raise EditUnreadable(f"{path}: cannot read ({error.strerror or error})") from None
    except Exception as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise EditUnreadable(f"{path}: not a valid {adapter} edit ({message[:300]})") from None
    timeline = result if isinstance(result, otio.schema.Timeline) else None
    if timeline is None and isinstance(result, otio.schema.SerializableCollection):
        timelines = list(result.find_children(descended_from_type=otio.schema.Timeline, shallow_search=True))
        if len(timelines) != 1:  # name every timeline it holds, nested collections included
            found = list(result.find_children(descended_from_type=otio.schema.Timeline))
            held = (
                f"{len(found)} timelines ({', '.join(repr(item.name) for item in found)})" if found else "no timeline"
            )
            raise EditUnreadable(f"{path}: the file holds {held}; export the one sequence or project to process")
        (timeline,) = timelines
    if timeline is None:
        raise EditUnreadable(f"{path}: expected one timeline, got {type(result).__name__}")
    if suffix == ".otioz":
        warnings.append(_inside_the_zip(timeline, path))
    rate = timeline_rate(timeline, options.get("rate"))
    return Edit(path, timeline, rate, sha256_path(path), tuple(warnings), evidence)


def _inside_the_zip(timeline: otio.schema.Timeline, bundle: Path) -> str:
    """Point the relative media of an ``.otioz`` at the bundle itself (so a shot's reason names it), and say why
    they cannot be read in place."""
    for clip in timeline.find_clips():
        ref = clip.media_reference
        relative = isinstance(ref, otio.schema.ExternalReference) and not urlparse(ref.target_url).scheme
        if relative and not Path(ref.target_url).is_absolute():
            ref.target_url = (bundle / ref.target_url).as_uri()
    return f"{bundle.name}: media inside an .otioz are not read in place; unzip it to a folder (an .otiod) to process"


def _edl_rate(path: Path, given: float | None) -> EdlRate:
    """The rate an EDL is read at: ``given`` (checked against its timecodes), else inferred from the EDL and the
    media its comments name beside it."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if given:
        check_edl_rate(text, given, name=str(path))
        return EdlRate(given, f"EDL rate {given:g} fps: given (--edl-rate)")

    def media_rate(named: str) -> float | None:
        candidate = Path(named) if Path(named).is_absolute() else path.parent / named
        try:
            movie = MediaSource(str(candidate), "movie", 24.0)  # the file's own rate is what is read
            return float(media.probe(movie).rate) if candidate.is_file() else None
        except (MediaInvalid, OSError):
            return None  # unreadable media is no evidence; planning reports it per shot

    return infer_edl_rate(text, name=str(path), media_rate=media_rate)


def timeline_rate(timeline: otio.schema.Timeline, given: float | None = None) -> float:
    """Return the rate record frames are counted at: the global start time's, else ``given``, else the first
    video item's, else 24."""
    if timeline.global_start_time is not None:
        return float(timeline.global_start_time.rate)
    if given:
        return float(given)
    for track in timeline.video_tracks():
        for item in track:
            return float(item.range_in_parent().duration.rate)
    return 24.0


def safe_name(name: str) -> str:
    """Return a file-safe shot name: letters, digits, ``_``, ``-`` and ``.``; no leading dot; never empty.

    Example: ``safe_name("ZZ100_501 (LAY3)") == "ZZ100_501_LAY3"``, ``safe_name("../x") == "x"``.
    """
    name = unicodedata.normalize("NFC", name).strip()
    if Path(name).suffix.lower() in _MEDIA_SUFFIXES:
        name = name[: -len(Path(name).suffix)]
    cleaned = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in name)
    cleaned = re.sub(r"_+", "_", cleaned).strip("_.-")
    return cleaned or "clip"


def _namespace(metadata: Any) -> dict[str, Any]:
    value = metadata.get(_NAMESPACE) if metadata is not None else None
    return dict(value) if isinstance(value, Mapping) else {}


def shot_name_sources(clip: otio.schema.Clip) -> tuple[str, NameSource]:
    """Return the unsanitised name the naming policy picks for ``clip`` and where it came from."""
    own = _namespace(clip.metadata).get("shot")
    if own:
        return str(own), "metadata"
    for marker in clip.markers:
        marked = _namespace(marker.metadata).get("shot")
        if marked:
            return str(marked), "marker"
    return clip.name or "clip", "clip"


def _media_source(
    clip: otio.schema.Clip, edit_dir: Path, fallback_rate: float, resolve: Callable[[str], str]
) -> tuple[MediaSource | None, str]:
    """Return the clip's media (its path passed through ``resolve``) and, when it cannot be used, why."""
    ref = clip.media_reference
    available = ref.available_range if ref is not None else None
    rate = float(available.start_time.rate) if available is not None else fallback_rate
    start = round(available.start_time.value_rescaled_to(rate)) if available is not None else 0
    frames = round(available.duration.value_rescaled_to(rate)) if available is not None else None
    if isinstance(ref, otio.schema.ExternalReference):
        path = _url_to_path(ref.target_url, edit_dir)
        if path is None:
            return None, f"media is not a local file: {ref.target_url}"
        return MediaSource(resolve(str(path)), "movie", rate, start, frames), ""
    if isinstance(ref, otio.schema.ImageSequenceReference):
        if ref.frame_step != 1:
            return None, f"image sequence with frame step {ref.frame_step} is not supported"
        base = _url_to_path(ref.target_url_base, edit_dir)
        if base is None:
            return None, f"media is not a local file: {ref.target_url_base}"
        rate = float(ref.rate)
        pattern = resolve(str(base / f"{ref.name_prefix}%0{ref.frame_zero_padding}d{ref.name_suffix}"))
        start = start if available is not None else ref.start_frame  # no range: frame numbers are media time
        return MediaSource(pattern, "sequence", rate, start, frames, first_number=ref.start_frame), ""
    if isinstance(ref, otio.schema.GeneratorReference):
        return None, f"generator clip ({ref.generator_kind or 'unknown kind'}) has no media"
    return None, "no media reference in the edit"


def _url_to_path(url: str, edit_dir: Path) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme in ("", "file") and parsed.netloc in ("", "localhost"):
        raw = unquote(parsed.path if parsed.scheme else url)
        if re.match(r"^/?[A-Za-z]:[/\\]", raw):
            return Path(raw.lstrip("/"))  # a Windows drive path: never exists here, reported as not found
        path = Path(raw)
        return path if path.is_absolute() else (edit_dir / path).resolve()
    return None


def _media_exists(media: MediaSource, first_index: int) -> bool:
    if media.kind == "movie":
        return Path(media.path).is_file()
    return media.file_for_index(max(first_index, 0)).is_file()


def _clip_instructions(clip: otio.schema.Clip, where: str, edit_dir: Path) -> ShotInstructions | None:
    data = {**_first_marker_namespace(clip), **_namespace(clip.metadata)}
    if not data:
        return None
    entry = validate_entry(data, where=where)
    return entry_to_instructions(entry, base=edit_dir)


def _first_marker_namespace(clip: otio.schema.Clip) -> dict[str, Any]:
    for marker in clip.markers:
        data = _namespace(marker.metadata)
        if data:
            return data
    return {}


def _is_time_effect(effect: otio.schema.Effect) -> bool:
    """True for an OTIO time effect, or any effect whose name or vendor metadata says it changes timing."""
    if isinstance(effect, otio.schema.TimeEffect):
        return True
    aaf = effect.metadata.get("AAF")
    operation = aaf.get("Operation") if isinstance(aaf, Mapping) else None
    if isinstance(operation, Mapping) and operation.get("IsTimeWarp"):
        return True
    fcp = effect.metadata.get("fcp_xml")
    effect_id = fcp.get("effectid") if isinstance(fcp, Mapping) else None
    words = " ".join(str(part) for part in (effect.name, effect.effect_name, effect_id) if part)
    return bool(_TIME_WORDS.search(words))


def _effect_label(effect: otio.schema.Effect) -> str:
    names = [name for name in (effect.name, effect.effect_name) if name]
    label = " / ".join(dict.fromkeys(names)) or "unnamed"
    return f"'{label}' ({type(effect).__name__})"


def clip_retime(clip: otio.schema.Clip, rate: float) -> Retime | None:
    """Resolve the clip's time warp to the source segment it consumes, counted at ``rate`` (the media's).

    Uses the clip's ``source_range`` (``trimmed_range``): its start is the segment's first frame and its duration
    the frames the clip lasts on the timeline (OTIO: a time effect does not change an item's duration). See
    ``shots.Retime`` for which frame each record frame shows.

    Returns:
        The retime, or None when the clip has no time effect.

    Raises:
        InvalidInput: the clip's timing cannot be mapped to frames: a time effect with no constant speed (a speed
            ramp, a vendor time remap given only as metadata), more than one time effect, or a scalar that is not a
            finite number; the message names the effect.
    """
    effects = [effect for effect in clip.effects if _is_time_effect(effect)]
    if not effects:
        return None
    if len(effects) > 1:
        labels = ", ".join(_effect_label(effect) for effect in effects)
        raise InvalidInput(f"{len(effects)} time effects on one clip ({labels}) are not supported; nest or render them")
    (effect,) = effects
    if not isinstance(effect, otio.schema.LinearTimeWarp):
        raise InvalidInput(
            f"time effect {_effect_label(effect)} has no constant speed (a speed ramp or a vendor time remap), so "
            "the source frames it shows are unknown; render it in the NLE, or use a constant speed or freeze frame"
        )
    scalar = 0.0 if isinstance(effect, otio.schema.FreezeFrame) else float(effect.time_scalar)
    if not math.isfinite(scalar):
        raise InvalidInput(f"time effect {_effect_label(effect)} has time_scalar {scalar}, not a finite number")
    trimmed = clip.trimmed_range()
    start = round(trimmed.start_time.value_rescaled_to(rate))
    record = round(trimmed.duration.value_rescaled_to(rate))
    if scalar == 0:
        return Retime("freeze", 0.0, record, start, start)
    consumed = max(math.ceil(abs(scalar) * record - _FRAME_EPSILON), 0)
    return Retime("speed" if scalar > 0 else "reverse", scalar, record, start, start + consumed - 1)


def _walk_video_clips(
    timeline: otio.schema.Timeline,
) -> list[tuple[str, int, otio.schema.Clip, otio.core.Item]]:
    """Return (track name, clip index, clip, top-level item holding it) for every clip of every video track.

    The top-level item is the clip itself unless the clip sits inside a nested stack or track.
    """
    found = []
    for number, track in enumerate(timeline.video_tracks(), start=1):
        track_name = track.name or f"V{number}"
        index = 0
        for item in track:
            if isinstance(item, otio.schema.Clip):
                found.append((track_name, index, item, item))
                index += 1
            elif isinstance(item, otio.core.Composition):
                for inner in item.find_clips():
                    found.append((track_name, index, inner, item))
                    index += 1
    return found


def plan_shots(
    edit: Edit,
    *,
    selection: Selection = Selection(),
    handles: int = 8,
    sidecar: Mapping[str, ShotInstructions] | None = None,
    probe: Callable[[MediaSource], MediaProbe] | None = None,
    resolve: Callable[[str], str] = str,
) -> list[Shot]:
    """Plan one shot per clip of the edit's video tracks.

    Args:
        edit: the edit from ``read_edit``.
        selection: which clips to process.
        handles: frames wanted beyond each end of the cut (clipped to the media).
        sidecar: instructions by shot name; an entry selects its shot and overrides the edit's own metadata.
        probe: returns the frame count and start timecode of existing media (``MediaProbe``), raising
            ``MediaInvalid`` when the media cannot be read (the shot is then skipped with that reason); where the
            edit gives no ``available_range`` they place the media (its timecode is its first frame's media time).
            None: no check, such media starts at 0 (a sequence at its first frame number) and keeps unclipped
            handles.
        resolve: maps a media path written in the edit to the path on this host (shared storage mounted
            elsewhere); identity by default.

    Returns:
        The shots in timeline order, each ``ready`` or ``skipped`` with a reason.

    Raises:
        SidecarInvalid: a sidecar entry names a shot that is not in the edit, or edit metadata breaks the schema.
        InvalidInput: ``handles`` is negative, or ``selection.track`` names no video track.
    """
    if handles < 0:
        raise InvalidInput(f"handles must be >= 0, got {handles}")
    sidecar = dict(sidecar or {})
    clips = _walk_video_clips(edit.timeline)
    tracks = {track for track, _, _, _ in clips}
    if selection.track is not None and selection.track not in tracks:
        raise InvalidInput(f"{edit.path}: no video track named '{selection.track}' (tracks: {sorted(tracks)})")
    names = _unique_names([shot_name_sources(clip)[0] for _, _, clip, _ in clips])
    unknown = sorted(set(sidecar) - set(names))
    if unknown:
        raise SidecarInvalid(f"sidecar names shots that are not in {edit.path.name}: {', '.join(unknown)}")
    edit_dir = edit.path.parent
    track_colours = _track_colourspaces(edit.timeline)
    shots = []
    for (track, index, clip, top_level), name in zip(clips, names, strict=True):
        where = f"{edit.path.name}: shot '{name}'"
        instructions = _clip_instructions(clip, where, edit_dir)
        marked = bool(clip.markers) or instructions is not None or name in sidecar
        if name in sidecar:
            instructions = sidecar[name]
        shot = _plan_one(
            edit, clip, top_level, name, track, index, handles, instructions or ShotInstructions(), probe, resolve
        )
        skip = _skip_reason(clip, top_level is not clip, shot)
        if not skip:
            if selection.everything:
                pass
            elif selection.track is not None and track != selection.track:
                skip = f"not selected (only track '{selection.track}' is processed)"
            elif selection.track is None and not marked:
                skip = "not selected (no marker, voidflow metadata or sidecar entry)"
        if not skip:
            shot, skip = _with_gaps(shot)
        if skip:
            shot = replace(shot, status="skipped", reason=skip)
        if shot.instructions.colourspace is None and track in track_colours:
            shot = replace(shot, instructions=replace(shot.instructions, colourspace=track_colours[track]))
        shots.append(shot)
    return shots


def _with_gaps(shot: Shot) -> tuple[Shot, str]:
    """Check a sequence plate's range for missing or empty files: the reason to skip the shot (its
    ``missing_frames`` is ``skip``), or the shot with a warning naming the frames that will be held or black."""
    media_source = shot.media
    if media_source is None or media_source.kind != "sequence":
        return shot, ""
    gaps = media.sequence_gaps(media_source, media_source.index_of(shot.first), shot.frames)
    if not gaps:
        return shot, ""
    listed = ", ".join(str(number) for number in gaps[:8]) + (f" and {len(gaps) - 8} more" if len(gaps) > 8 else "")
    policy = shot.instructions.missing_frames
    if policy == "skip":
        return shot, (
            f"frame {gaps[0]} of {media_source.path} is missing or empty ({len(gaps)} in the range: {listed}); "
            "set missing_frames: hold or black to process the shot anyway"
        )
    done = "held from the frame before" if policy == "hold" else "filled with black"
    note = f"{len(gaps)} missing or empty plate frames ({listed}) are {done} (missing_frames: {policy})"
    return replace(shot, warnings=(*shot.warnings, note)), ""


def _track_colourspaces(timeline: otio.schema.Timeline) -> dict[str, str]:
    """Plate colour spaces declared per video track (``track.metadata["voidflow"]["colourspace"]``), by track."""
    declared = {}
    for number, track in enumerate(timeline.video_tracks(), start=1):
        value = _namespace(track.metadata).get("colourspace")
        if isinstance(value, str) and value:
            declared[track.name or f"V{number}"] = value
    return declared


def named_clips(timeline: otio.schema.Timeline) -> list[tuple[str, otio.schema.Clip]]:
    """Return (shot name, clip) for every clip of the video tracks, in plan order, named by the policy above.

    ``plan_shots`` and ``conform`` both use it, so a shot name always finds the same clip of the same edit.
    """
    clips = [clip for _, _, clip, _ in _walk_video_clips(timeline)]
    return list(zip(_unique_names([shot_name_sources(clip)[0] for clip in clips]), clips, strict=True))


def _unique_names(raw: list[str]) -> list[str]:
    taken: set[str] = set()
    names = []
    for original in raw:
        name = safe_name(original)
        candidate, counter = name, 0
        while candidate in taken:
            counter += 1
            candidate = f"{name}_{counter:03d}"
        taken.add(candidate)
        names.append(candidate)
    return names


def _plan_one(
    edit: Edit,
    clip: otio.schema.Clip,
    top_level: otio.core.Item,
    name: str,
    track: str,
    index: int,
    handles: int,
    instructions: ShotInstructions,
    probe: Callable[[MediaSource], MediaProbe] | None,
    resolve: Callable[[str], str],
) -> Shot:
    visible = clip.visible_range()
    media, reason = _media_source(clip, edit.path.parent, float(visible.start_time.rate), resolve)
    rate = media.rate if media else float(visible.start_time.rate)
    source_start = round(visible.start_time.value_rescaled_to(rate))
    duration = round(visible.duration.value_rescaled_to(rate))
    record_start = round(top_level.range_in_parent().start_time.value_rescaled_to(edit.rate))
    warnings: list[str] = []
    try:  # before any media check: a skipped shot still shows the frames it would pull
        retime = clip_retime(clip, rate)
    except InvalidInput as error:
        retime, reason = None, str(error)
    if retime is not None:
        source_start, duration = retime.source_first, retime.source_frames
        if visible != clip.trimmed_range():
            warnings.append("a transition overlaps this retimed clip: its frames come from the handles")
    head = tail = handles
    if media is not None:
        placed = _place_media(media, source_start, probe)
        media, reason, warnings = placed.media, reason or placed.problem, warnings + list(placed.warnings)
        if media.frames is not None:
            first, end = media.index_of(source_start), media.index_of(source_start + duration)
            if (first < 0 or end > media.frames) and not reason:
                reason = _outside(media, source_start, duration, placed.origin)
            head, tail = min(handles, max(first, 0)), min(handles, max(media.frames - end, 0))
    _, name_source = shot_name_sources(clip)
    return Shot(
        name=name,
        track=track,
        index=index,
        clip_name=clip.name,
        name_source=name_source,
        media=media,
        rate=rate,
        source_start=source_start,
        duration=duration,
        handles=(head, tail),
        record_start=record_start,
        status="ready",
        reason=reason,
        instructions=instructions,
        retime=retime,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class _Placed:
    """The clip's media placed in media time: ``problem`` says why it cannot be used ("" when it can), ``origin``
    where its range came from, ``warnings`` what was chosen."""

    media: MediaSource
    problem: str = ""
    origin: str = "the edit's available range"
    warnings: tuple[str, ...] = ()


def _place_media(media: MediaSource, source_start: int, probe: Callable[[MediaSource], MediaProbe] | None) -> _Placed:
    """Check the media exists and can be read, and place it in media time: the edit's available range, else the
    file's own start timecode (a sequence without one: its first frame number; a movie without one: 0)."""
    from_edit = media.frames is not None
    index = media.index_of(source_start) if from_edit else 0  # no range yet: the first file must exist
    if not _media_exists(media, index):
        return _Placed(media, f"media not found: {media.file_for_index(max(index, 0))}")
    if probe is None:
        return _Placed(media, origin="the edit's available range" if from_edit else "no range known")
    try:  # also when the edit gives the range: a plate the media layer cannot read skips
        found = probe(media)
    except (MediaInvalid, PathNotAllowed) as error:  # unreadable, or outside the allowed roots (never read)
        return _Placed(media, str(error))
    own_start = _timecode_frames(found.timecode, media.rate)
    if not from_edit:
        if own_start is None:
            origin = (
                "its frame numbers, no timecode" if media.kind == "sequence" else "frame 0, the file has no timecode"
            )
            return _Placed(replace(media, frames=found.frames), origin=origin)
        return _Placed(replace(media, start=own_start, frames=found.frames), origin="the file's own timecode")
    if own_start is not None and own_start != media.start:
        warning = (
            f"the edit's available range starts at {_timecode(media.start, media.rate)} but the file's own timecode "
            f"is {found.timecode}; the edit's range is used (the clip's source range counts in it)"
        )
        return _Placed(media, warnings=(warning,))
    return _Placed(media)


def _outside(media: MediaSource, source_start: int, duration: int, origin: str) -> str:
    """Why the shot's source range does not fit its media, both ranges named in frames and timecode."""
    last, media_last = source_start + duration - 1, media.start + (media.frames or 0) - 1
    return (
        f"source range {source_start}-{last} ({_timecode(source_start, media.rate)}-{_timecode(last, media.rate)}) "
        f"lies outside the media's available range {media.start}-{media_last} "
        f"({_timecode(media.start, media.rate)}-{_timecode(media_last, media.rate)}, from {origin})"
    )


def _timecode_frames(timecode: str | None, rate: float) -> int | None:
    """Media time of a start timecode at ``rate`` (``;`` counts drop frame), or None for none or an unreadable
    one."""
    if not timecode:
        return None
    try:
        return round(float(otio.opentime.from_timecode(timecode, rate).value))
    except (ValueError, TypeError):
        return None


def _timecode(frame: int, rate: float) -> str:
    """``HH:MM:SS:FF`` of a media time (drop frame at 29.97 and 59.94), or the frame number where none exists."""
    try:
        return str(otio.opentime.to_timecode(otio.opentime.RationalTime(frame, rate), rate))
    except (ValueError, TypeError):
        return str(frame)


def _skip_reason(clip: otio.schema.Clip, nested: bool, shot: Shot) -> str:
    if not clip.enabled:
        return "clip is disabled in the edit"
    if nested:
        return "clip is inside a nested stack or track; flatten the edit to process it"
    if shot.duration <= 0:
        return "zero-length clip"
    return shot.reason
