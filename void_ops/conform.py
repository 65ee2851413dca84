"""Conform: put delivered versions back into the edit as new, active media references.

``conform`` never touches the edit it is given: it works on a deep copy and returns it. For each delivered shot
the clip (found by the same naming policy that planned it) gains a media reference under the key
``voidflow_<version>`` and that key becomes active; the plate stays under its own key, so editorial can switch
back. The delivered media starts at the plate range's first media time, so the clip's ``source_range`` is left
exactly as it was. The clip's ``voidflow`` metadata records the shot name and version; nothing else changes.

A retimed clip keeps its effects (``LinearTimeWarp``, ``FreezeFrame``) and its ``source_range``: the NLE applies
the retime to the new media as it did to the plate, so the new reference's available range must cover the whole
source segment the retime consumes (``intake.clip_retime``), which is what the shot pulled and delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import opentimelineio as otio

from voidflow.void_ops.exceptions import ConformError, InvalidInput
from voidflow.void_ops.files import atomic_write
from voidflow.void_ops.intake import ADAPTERS, Edit, clip_retime, named_clips, timeline_rate
from voidflow.void_ops.shots import Delivery, MediaSource

__all__ = ["WRITERS", "conform", "media_reference", "record_track", "write_edit"]

#: Suffixes ``write_edit`` can write.
WRITERS = (".otio", ".otioz", ".edl", ".xml")


def _reference(source: MediaSource, delivery: Delivery) -> otio.core.MediaReference:
    metadata = {"voidflow": {"shot": delivery.shot, "version": delivery.version, "matte": delivery.matte.path}}
    return media_reference(source, metadata)


def media_reference(source: MediaSource, metadata: Mapping[str, Any]) -> otio.core.MediaReference:
    """An OTIO reference to ``source``: an ``ExternalReference`` to a movie or an ``ImageSequenceReference`` (both
    absolute ``file://`` targets), its available range starting at ``source.start`` (media time), with
    ``metadata``."""
    rate = source.rate
    frames = source.frames or 0
    available = otio.opentime.TimeRange(
        otio.opentime.RationalTime(source.start, rate), otio.opentime.RationalTime(frames, rate)
    )
    if source.kind == "movie":
        return otio.schema.ExternalReference(
            target_url=Path(source.path).as_uri(), available_range=available, metadata=metadata
        )
    folder, name = Path(source.path).parent, Path(source.path).name
    prefix, _, rest = name.partition("%")
    padding = int(rest.split("d", 1)[0] or 0)
    return otio.schema.ImageSequenceReference(
        target_url_base=folder.as_uri() + "/",
        name_prefix=prefix,
        name_suffix=rest.split("d", 1)[1],
        start_frame=source.first_number,
        frame_step=1,
        rate=rate,
        frame_zero_padding=padding,
        available_range=available,
        metadata=metadata,
    )


def conform(
    edit: Edit, deliveries: Mapping[str, Delivery], *, mode: Literal["reference", "track"] = "reference"
) -> otio.schema.Timeline:
    """Return a copy of the edit's timeline with each delivered shot's version conformed in.

    Args:
        edit: the edit the batch was planned from (the same file: its hash must match what was planned).
        deliveries: by shot name.
        mode: ``reference`` makes each version the clip's active media reference (the plate kept under its own
            key); ``track`` leaves every original clip untouched and puts the versions on a new video track named
            ``voidflow`` above the others, each at its clip's record position (gaps between).

    Returns:
        A new timeline; ``edit.timeline`` is unchanged.

    Raises:
        ConformError: a delivery names a shot that is not in the edit, or its media does not cover the frames the
            clip shows.
    """
    timeline = edit.timeline.deepcopy()
    clips = dict(named_clips(timeline))
    missing = sorted(set(deliveries) - set(clips))
    if missing:
        raise ConformError(f"{edit.path.name}: no clip for delivered shots {', '.join(missing)}")
    for name, delivery in deliveries.items():
        clip = clips[name]
        media = delivery.media
        first, last = _shown_span(clip, media.rate)
        if media.frames is None or first < media.start or last > media.start + media.frames:
            raise ConformError(
                f"shot '{name}': {delivery.version} covers media frames {media.start}-"
                f"{media.start + (media.frames or 0) - 1}, the clip shows {first}-{last - 1}"
            )
        if mode == "track":
            continue
        key = f"voidflow_{delivery.version}"
        references = dict(clip.media_references())
        references[key] = _reference(media, delivery)
        clip.set_media_references(references, key)
        clip.metadata["voidflow"] = {
            **dict(clip.metadata.get("voidflow", {})),
            "shot": name,
            "version": delivery.version,
        }
    if mode == "track":
        timeline.tracks.append(_version_track(clips, deliveries))
    return timeline


def _shown_span(clip: otio.schema.Clip, rate: float) -> tuple[int, int]:
    """Media times [first, end) the clip reads at ``rate``: its visible range, or a retime's whole source segment.

    Raises:
        ConformError: the clip's time effect cannot be mapped to frames (such a shot is never delivered).
    """
    try:
        retime = clip_retime(clip, rate)
    except InvalidInput as error:
        raise ConformError(f"clip '{clip.name}': {error}") from None
    if retime is not None:
        return retime.source_first, retime.source_last + 1
    shown = clip.visible_range()
    first = round(shown.start_time.value_rescaled_to(rate))
    return first, first + round(shown.duration.value_rescaled_to(rate))


def _version_track(clips: Mapping[str, otio.schema.Clip], deliveries: Mapping[str, Delivery]) -> otio.schema.Track:
    """A video track holding each delivered version at its clip's record position, gaps between."""
    placed = {
        name: (
            f"{name}_voidclean_{delivery.version}",
            _reference(delivery.media, delivery),
            {"voidflow": {"shot": name, "version": delivery.version}},
        )
        for name, delivery in deliveries.items()
    }
    return record_track("voidflow", clips, placed)


def record_track(
    name: str,
    clips: Mapping[str, otio.schema.Clip],
    placed: Mapping[str, tuple[str, otio.core.MediaReference, Mapping[str, Any]]],
) -> otio.schema.Track:
    """A new video track named ``name`` holding, for each shot in ``placed``, a clip at the record position of the
    shot's clip in ``clips``, gaps between.

    Each new clip gets the edit clip's ``source_range`` and its retime (``LinearTimeWarp`` and ``FreezeFrame``
    effects, copied), so it plays the same frames as the clip: its media must share the clip's media time.

    Args:
        name: the track's name.
        clips: the edit's clips by shot name (``intake.named_clips``).
        placed: by shot name: (the new clip's name, its media reference, its metadata).
    """
    track = otio.schema.Track(name=name, kind=otio.schema.TrackKind.Video)
    order = sorted(
        ((clips[shot].range_in_parent(), shot) for shot in placed),
        key=lambda entry: entry[0].start_time.to_seconds(),
    )
    cursor: otio.opentime.RationalTime | None = None
    for record, shot in order:
        start = record.start_time
        position = cursor if cursor is not None else otio.opentime.RationalTime(0, start.rate)
        if start > position:
            track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(duration=start - position)))
        clip_name, reference, metadata = placed[shot]
        clip = otio.schema.Clip(
            name=clip_name, media_reference=reference, source_range=clips[shot].source_range, metadata=dict(metadata)
        )
        # The retime travels with the clip, so it plays the same frames as the edit's clip.
        clip.effects.extend(
            effect.deepcopy() for effect in clips[shot].effects if isinstance(effect, otio.schema.LinearTimeWarp)
        )
        track.append(clip)
        cursor = start + record.duration
    return track


def _video_clips(timeline: otio.schema.Timeline) -> int:
    return sum(1 for track in timeline.video_tracks() for _ in track.find_clips())


def write_edit(timeline: otio.schema.Timeline, path: Path) -> Path:
    """Write ``timeline`` to ``path`` by its suffix, read it back to prove it parses, then move it into place.

    Args:
        timeline: the timeline to write.
        path: ``.otio``, ``.otioz``, ``.edl`` (CMX 3600, one video track) or ``.xml`` (FCP7).

    Raises:
        InvalidInput: the suffix is not one of ``WRITERS``.
        ConformError: the adapter cannot express the timeline, or the written file does not read back.
    """
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise InvalidInput(f"{path}: cannot write '{suffix}' edits (use one of {', '.join(WRITERS)})")
    adapter = ADAPTERS[suffix][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        try:
            otio.adapters.write_to_file(timeline, str(temporary), adapter_name=adapter)
            options = {"rate": timeline_rate(timeline)} if suffix == ".edl" else {}
            reread = otio.adapters.read_from_file(str(temporary), adapter_name=adapter, **options)
        except Exception as error:
            message = " ".join(str(error).split())[:300] or type(error).__name__
            raise ConformError(
                f"{path}: the {adapter} adapter could not write and re-read this timeline ({message})"
            ) from None
        written, expected = _video_clips(reread), _video_clips(timeline)
        if written != expected:
            raise ConformError(f"{path}: wrote {expected} clips but {written} read back")
    return path
