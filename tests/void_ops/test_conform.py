"""Conform: one processed clip changes only its own media references, on every sample timeline."""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
import pytest

from tests.conftest import timeline_files
from voidflow.void_ops.conform import conform, write_edit
from voidflow.void_ops.exceptions import ConformError, InvalidInput
from voidflow.void_ops.intake import Selection, named_clips, plan_shots, read_edit
from voidflow.void_ops.shots import Delivery, MediaSource, Shot


def _delivery(shot: Shot, folder: Path, *, sequence: bool = False) -> Delivery:
    if sequence:
        path = str(folder / shot.name / f"{shot.name}_voidclean_v003.%04d.png")
        media = MediaSource(path, "sequence", shot.rate, shot.first, shot.frames, first_number=1001)
    else:
        media = MediaSource(
            str(folder / f"{shot.name}_voidclean_v003.mov"), "movie", shot.rate, shot.first, shot.frames
        )
    matte = MediaSource(
        str(folder / "matte.%04d.png"), "sequence", shot.rate, shot.first, shot.frames, first_number=1001
    )
    return Delivery(shot.name, "v003", media, matte, 64, 48)


def _first_conformable(path: Path) -> Shot:
    shots = plan_shots(read_edit(path), selection=Selection(everything=True))
    return next(s for s in shots if s.duration > 0 and "nested" not in s.reason and "time effect" not in s.reason)


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
@pytest.mark.parametrize("sequence", [False, True], ids=["movie", "sequence"])
def test_one_clip_changes_only_its_media_references(path: Path, sequence: bool, tmp_path: Path) -> None:
    edit = read_edit(path)
    before = otio.adapters.write_to_string(edit.timeline)
    shot = _first_conformable(path)
    result = conform(edit, {shot.name: _delivery(shot, tmp_path, sequence=sequence)})
    assert otio.adapters.write_to_string(edit.timeline) == before  # the input is never touched

    clip = dict(named_clips(result))[shot.name]
    assert clip.active_media_reference_key == "voidflow_v003"
    plate_key = dict(named_clips(edit.timeline))[shot.name].active_media_reference_key
    assert set(clip.media_references()) == {plate_key, "voidflow_v003"}
    new = clip.media_reference
    assert new.metadata["voidflow"]["version"] == "v003"
    assert new.available_range.start_time.value == shot.first
    assert new.available_range.duration.value == shot.frames
    if sequence:
        assert isinstance(new, otio.schema.ImageSequenceReference) and new.start_frame == 1001
        assert new.target_url_for_image_number(0).endswith(f"{shot.name}_voidclean_v003.1001.png")
    assert clip.metadata["voidflow"]["shot"] == shot.name

    # Undo exactly those changes and the whole timeline is byte-identical to the input.
    original = dict(named_clips(edit.timeline))[shot.name]
    clip.set_media_references(dict(original.media_references()), plate_key)
    if "voidflow" in original.metadata:
        clip.metadata["voidflow"] = original.metadata["voidflow"]
    else:
        del clip.metadata["voidflow"]
    assert otio.adapters.write_to_string(result) == before


# Which exports the adapters can write *and read back*; the others must be refused with a reason, never written.
REFUSED = {
    ("cmx3600.edl", ".edl"): "could not write and re-read",  # its writer emits M2 lines its own reader rejects
    ("premiere_example.xml", ".edl"): "could not write and re-read",  # CMX 3600 holds one video track
    ("premiere_example.otio", ".edl"): "could not write and re-read",
    ("nested_example.otio", ".edl"): "wrote 7 clips but 4 read back",  # nested stacks flatten away
    ("nested_example.otio", ".xml"): "could not write and re-read",
    ("simple_cut.otio", ".edl"): "could not write and re-read",  # a clip without a source range
    ("simple_cut.otio", ".xml"): "could not write and re-read",
}


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_exports_reread_with_the_same_cut(path: Path, tmp_path: Path) -> None:
    edit = read_edit(path)
    shot = _first_conformable(path)
    result = conform(edit, {shot.name: _delivery(shot, tmp_path)})

    def cut(timeline: otio.schema.Timeline) -> list[int]:
        return [
            round(clip.visible_range().duration.value_rescaled_to(edit.rate))
            for track in timeline.video_tracks()
            for clip in track.find_clips()
        ]

    written = write_edit(result, tmp_path / "conformed.otio")
    assert cut(read_edit(written).timeline) == cut(result)
    for suffix in (".xml", ".edl"):
        target = tmp_path / f"conformed{suffix}"
        if (path.name, suffix) in REFUSED:
            with pytest.raises(ConformError, match=REFUSED[path.name, suffix]):
                write_edit(result, target)
            assert not target.exists()
        else:
            write_edit(result, target)
            assert cut(read_edit(target, edl_rate=edit.rate).timeline) == cut(result)
    assert not list(tmp_path.glob(".*tmp*"))


def test_refusals(tmp_path: Path) -> None:
    path = next(p for p in timeline_files() if p.name == "simple_cut.otio")
    edit = read_edit(path)
    shot = _first_conformable(path)
    short = _delivery(shot, tmp_path)
    short = Delivery(
        shot.name,
        "v003",
        MediaSource(short.media.path, "movie", shot.rate, shot.source_start + 1, shot.frames),
        short.matte,
        64,
        48,
    )
    with pytest.raises(ConformError, match=f"shot '{shot.name}': v003 covers media frames"):
        conform(edit, {shot.name: short})
    with pytest.raises(ConformError, match="no clip for delivered shots ghost"):
        conform(edit, {"ghost": _delivery(shot, tmp_path)})
    with pytest.raises(InvalidInput, match="cannot write '.aaf'"):
        write_edit(edit.timeline, tmp_path / "out.aaf")


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_track_mode_adds_versions_above_and_touches_nothing(path: Path, tmp_path: Path) -> None:
    edit = read_edit(path)
    shot = _first_conformable(path)
    result = conform(edit, {shot.name: _delivery(shot, tmp_path)}, mode="track")
    original = [otio.adapters.write_to_string(track) for track in edit.timeline.tracks]
    assert [otio.adapters.write_to_string(track) for track in result.tracks[:-1]] == original
    added = result.tracks[-1]
    assert added.name == "voidflow" and added.kind == otio.schema.TrackKind.Video
    (clip,) = added.find_clips()
    source = dict(named_clips(edit.timeline))[shot.name]
    assert clip.range_in_parent().start_time.to_seconds() == pytest.approx(
        source.range_in_parent().start_time.to_seconds()
    )
    assert clip.source_range == source.source_range and clip.metadata["voidflow"]["version"] == "v003"
