"""The editorial review timeline: each shot's plate with its newest delivered version stacked above it, at the
shot's place in the cut, for OpenRV or any OTIO-aware player.

Two video tracks: ``plate`` (below) and ``version`` (above). Every clip sits at its edit clip's record position
(gaps between), with the edit clip's ``source_range`` (the cut, handles excluded) and retime, so plate and version
play the same frames as the edit. Shots on several tracks of the edit (which may overlap in time) get a pair of
tracks per edit track, bottom to top as in the edit: ``plate V1``, ``version V1``, ``plate V2`` … (a track's own
name where it has one). Shots inside nested stacks are left out: they have no record position of their own.

Plates point at the real plate files (as planned on this host) and versions at the delivered files, by absolute
``file://`` targets; image sequences are ``ImageSequenceReference``. Each clip's ``metadata["voidflow"]`` says the
shot, the batch, the version (None on a plate without one) and the shot's state, so a shot that has no delivery
(failed, awaiting review) shows its plate alone and says why.

Like ``conform``, building never touches the edit: it reads the edit's clips and returns a new timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import opentimelineio as otio

from voidflow.void_ops.conform import media_reference, record_track
from voidflow.void_ops.exceptions import ConformError
from voidflow.void_ops.intake import Edit, named_clips
from voidflow.void_ops.shots import Delivery, MediaSource

__all__ = ["PLATE_TRACK", "VERSION_TRACK", "ReviewShot", "review_timeline"]

#: The review timeline's track names, bottom to top (followed by the edit track's name when there are several).
PLATE_TRACK = "plate"
VERSION_TRACK = "version"

_Placed = dict[str, tuple[str, otio.core.MediaReference, dict[str, object]]]


@dataclass(frozen=True, slots=True)
class ReviewShot:
    """One shot on the review timeline.

    Attributes:
        name: the shot's name (its clip in the edit is found by the planning's naming policy).
        batch: the batch whose state is shown: the newest one in the rerun chain that processed the shot.
        state: the shot's state there (``done``, ``failed``, ``awaiting_review`` …, or ``qc_failed`` for a done
            shot whose version failed QC and is left off).
        reason: why it is in that state ("" when done).
        plate: the plate as planned (``Shot.media``), or None when the clip has no usable media.
        delivery: the newest delivered version, or None.
    """

    name: str
    batch: str
    state: str
    reason: str = ""
    plate: MediaSource | None = None
    delivery: Delivery | None = None

    def metadata(self) -> dict[str, object]:
        """The clips' ``voidflow`` metadata: shot, batch, version (None without a delivery), state, reason."""
        version = self.delivery.version if self.delivery else None
        return {"shot": self.name, "batch": self.batch, "version": version, "state": self.state, "reason": self.reason}


def review_timeline(edit: Edit, shots: Sequence[ReviewShot], *, name: str) -> otio.schema.Timeline:
    """Return a new timeline with each shot's plate, and its version above it where there is one.

    Args:
        edit: the edit the shots were planned from (its clips give record positions, ranges and retimes; it is not
            changed).
        shots: the shots to show; one without a plate and without a delivery adds nothing.
        name: the timeline's name.

    Returns:
        A timeline with the edit's global start time and two video tracks, ``plate`` then ``version`` (a pair per
        edit track holding shots, when there are several).
        For example, a shot ``sh020`` delivered as ``v002`` at record 00:00:04:00 gives a ``sh020`` plate clip on
        ``plate`` and a ``sh020_voidclean_v002`` clip on ``version``, both starting at 4 s and showing the same
        media frames; a failed ``sh030`` gives only its plate clip, its metadata ``state`` ``failed``.

    Raises:
        ConformError: a shot has no clip in the edit.
    """
    clips = dict(named_clips(edit.timeline))
    missing = sorted(shot.name for shot in shots if shot.name not in clips)
    if missing:
        raise ConformError(f"{edit.path.name}: no clip for shots {', '.join(missing)}")
    tracks = list(edit.timeline.video_tracks())
    groups: dict[int, tuple[_Placed, _Placed]] = {}  # by edit track (its index): (plates, versions)
    for shot in shots:
        parent = clips[shot.name].parent()
        index = next((i for i, track in enumerate(tracks) if track is parent), None)
        if index is None:  # nested in a stack: no record position on the timeline
            continue
        plates, versions = groups.setdefault(index, ({}, {}))
        about: dict[str, object] = {"voidflow": shot.metadata()}
        if shot.plate is not None:
            plates[shot.name] = (shot.name, media_reference(shot.plate, {}), about)
        if shot.delivery is not None:
            delivery = shot.delivery
            label = f"{shot.name}_voidclean_{delivery.version}"
            files = {"voidflow": {"shot": shot.name, "version": delivery.version, "matte": delivery.matte.path}}
            versions[shot.name] = (label, media_reference(delivery.media, files), about)
    timeline = otio.schema.Timeline(name=name, global_start_time=edit.timeline.global_start_time)
    timeline.metadata["voidflow"] = {"edit": str(edit.path), "edit_sha256": edit.sha256}
    for index in sorted(groups) or [0]:
        plates, versions = groups.get(index, ({}, {}))
        suffix = f" {tracks[index].name or f'V{index + 1}'}" if len(groups) > 1 else ""
        timeline.tracks.append(record_track(PLATE_TRACK + suffix, clips, plates))
        timeline.tracks.append(record_track(VERSION_TRACK + suffix, clips, versions))
    return timeline
