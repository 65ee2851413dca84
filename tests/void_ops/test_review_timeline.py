"""The review timeline builder on every sample timeline, against golden baselines (as conform's are kept): plates
below, versions above, at each clip's record position with its source range; the edit itself is never changed.

Regenerate after an intended change with ``VOIDFLOW_UPDATE_BASELINES=1 pytest tests/void_ops/test_review_timeline.py``
and review the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import opentimelineio as otio
import pytest

from tests.conftest import timeline_files
from voidflow.void_ops.exceptions import ConformError
from voidflow.void_ops.intake import Selection, named_clips, plan_shots, read_edit
from voidflow.void_ops.review_timeline import ReviewShot, review_timeline
from voidflow.void_ops.shots import Delivery, MediaSource, Shot

BASELINES = Path(__file__).resolve().parents[1] / "baselines" / "review_timeline"
UPDATE = os.environ.get("VOIDFLOW_UPDATE_BASELINES") == "1"
BATCH = "b" * 32


def _plate(shot: Shot, *, sequence: bool) -> MediaSource:
    """A plate at a fixed path (the baseline names no machine's paths): a movie or a 1001-based DPX sequence."""
    if sequence:
        pattern = f"/plates/{shot.name}/{shot.name}.%04d.dpx"
        return MediaSource(pattern, "sequence", shot.rate, shot.first, shot.frames, first_number=1001)
    return MediaSource(f"/plates/{shot.name}.mov", "movie", shot.rate, shot.first, shot.frames)


def _delivery(shot: Shot) -> Delivery:
    folder = f"/out/shots/{shot.name}/v003"
    media = MediaSource(f"{folder}/{shot.name}_voidclean_v003.mov", "movie", shot.rate, shot.first, shot.frames)
    matte = MediaSource(f"{folder}/matte/m.%04d.png", "sequence", shot.rate, shot.first, shot.frames, 1001)
    return Delivery(shot.name, "v003", media, matte, 1920, 1080)


def _review_shots(path: Path) -> tuple[otio.schema.Timeline, list[ReviewShot]]:
    edit = read_edit(path)
    shots = [
        shot
        for shot in plan_shots(edit, selection=Selection(everything=True))
        if shot.duration > 0 and "nested" not in shot.reason and "time effect" not in shot.reason
    ]
    review = [
        ReviewShot(shot.name, BATCH, "done", "", _plate(shot, sequence=index % 3 == 1), _delivery(shot))
        if index % 2 == 0
        else ReviewShot(shot.name, BATCH, "failed", "shot failed", _plate(shot, sequence=index % 3 == 1))
        for index, shot in enumerate(shots)
    ]
    before = otio.adapters.write_to_string(edit.timeline, "otio_json")
    timeline = review_timeline(edit, review, name="review")
    assert otio.adapters.write_to_string(edit.timeline, "otio_json") == before  # the edit is untouched
    return timeline, review


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_review_timeline_matches_its_baseline(path: Path) -> None:
    timeline, _ = _review_shots(path)
    baseline = BASELINES / f"{path.name}.otio"
    text: str = otio.adapters.write_to_string(timeline, "otio_json", indent=1)
    text = text.replace(str(path.resolve()), f"$TIMELINES/{path.name}")
    if UPDATE:
        baseline.parent.mkdir(parents=True, exist_ok=True)
        baseline.write_text(text)
    assert baseline.is_file(), f"no baseline {baseline.name}: run with VOIDFLOW_UPDATE_BASELINES=1 and review it"
    assert text == baseline.read_text(), f"{path.name}'s review timeline differs from {baseline.name}"


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_plates_below_versions_above_at_the_cut(path: Path) -> None:
    timeline, review = _review_shots(path)
    edit = read_edit(path)  # held: a timeline freed early leaves its clips without a parent
    clips = dict(named_clips(edit.timeline))
    pairs = list(zip(timeline.tracks[::2], timeline.tracks[1::2], strict=True))
    tracks = list(edit.timeline.video_tracks())
    holding = sorted({tracks.index(clips[shot.name].parent()) for shot in review})
    if len(holding) == 1:  # one edit track: plate below, version above
        assert [track.name for track in timeline.tracks] == ["plate", "version"]
    else:  # a pair per edit track holding shots, bottom to top, named as planning names tracks
        names = [tracks[index].name or f"V{index + 1}" for index in holding]
        assert [(p.name, v.name) for p, v in pairs] == [(f"plate {name}", f"version {name}") for name in names]
    plates = {clip.name: clip for plate_track, _ in pairs for clip in plate_track.find_clips()}
    versions = {clip.metadata["voidflow"]["shot"]: clip for _, track in pairs for clip in track.find_clips()}
    for plate_track, version_track in pairs:
        for clip in version_track.find_clips():  # each version stacked on its own plate's pair
            assert clip.metadata["voidflow"]["shot"] in {plate.name for plate in plate_track.find_clips()}
    assert set(plates) == {shot.name for shot in review}
    assert set(versions) == {shot.name for shot in review if shot.delivery}
    for shot in review:
        cut = clips[shot.name]
        for clip in (plates[shot.name], versions.get(shot.name)):
            if clip is None:
                continue
            assert clip.source_range == cut.source_range
            assert clip.range_in_parent() == cut.range_in_parent()
            assert clip.metadata["voidflow"] == shot.metadata()
        assert plates[shot.name].media_reference.available_range.start_time.value == shot.plate.start  # type: ignore[union-attr]
    assert all(clip.metadata["voidflow"]["version"] is None for name, clip in plates.items() if name not in versions)


def test_a_shot_not_in_the_edit_is_refused() -> None:
    edit = read_edit(timeline_files()[0])
    with pytest.raises(ConformError, match=r": no clip for shots nowhere$"):
        review_timeline(edit, [ReviewShot("nowhere", BATCH, "done")], name="review")


def test_shots_nested_in_a_stack_are_left_out() -> None:
    edit = read_edit(next(path for path in timeline_files() if path.name == "nested_example.otio"))
    shots = {shot.name: shot for shot in plan_shots(edit, selection=Selection(everything=True))}
    review = [ReviewShot(name, BATCH, "skipped", plate=_plate(shots[name], sequence=False)) for name in shots]
    timeline = review_timeline(edit, review, name="review")
    shown = [clip.name for clip in timeline.tracks[0].find_clips()]
    assert shown == ["Normal_Clip_1", "Normal_Clip_2", "Normal_Clip_3", "Normal_Clip_4"]
    assert [track.name for track in timeline.tracks] == ["plate", "version"] and not timeline.tracks[1].find_clips()
