"""Edit intake: every sample timeline plans, ranges agree with OTIO, names and selection follow the policy."""

from __future__ import annotations

import json
from pathlib import Path

import opentimelineio as otio
import pytest

from tests.conftest import TIMELINES, timeline_files
from voidflow.void_ops.exceptions import EditUnreadable, InvalidInput, SidecarInvalid
from voidflow.void_ops.intake import Selection, named_clips, plan_shots, read_edit, safe_name
from voidflow.void_ops.shots import ShotInstructions


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_every_sample_timeline_plans_with_otio_ranges(path: Path) -> None:
    edit = read_edit(path)
    shots = plan_shots(edit, selection=Selection(everything=True))
    clips = dict(named_clips(edit.timeline))
    assert shots and len({shot.name for shot in shots}) == len(shots)
    for shot in shots:
        clip = clips[shot.name]
        shown = clip.visible_range()
        rate = shot.rate
        if shot.retime is None:
            assert shot.source_start == round(shown.start_time.value_rescaled_to(rate))
            assert shot.duration == round(shown.duration.value_rescaled_to(rate))
        else:  # a retime pulls the source segment it consumes, from the clip's own source_range start
            assert shot.retime.record_frames == round(clip.trimmed_range().duration.value_rescaled_to(rate))
            assert shot.source_start == round(clip.trimmed_range().start_time.value_rescaled_to(rate))
            assert shot.duration == shot.retime.source_frames
        assert shot.status in ("ready", "skipped")
        assert shot.status == "ready" or shot.reason
        json.dumps(shot.to_json())


def test_known_ranges_and_handles() -> None:
    simple = {s.name: s for s in plan_shots(read_edit(TIMELINES / "otio/simple_cut.otio"))}
    # Clip-001 shows frames 3..5 of an 8-frame media: head handle 3, tail 2.
    assert (simple["Clip-001"].source_start, simple["Clip-001"].duration, simple["Clip-001"].handles) == (3, 3, (3, 2))
    assert simple["Clip-001"].media is not None and simple["Clip-001"].media.path == "/folder/titles.mov"
    assert simple["Clip-001"].reason == "media not found: /folder/titles.mov"

    premiere = {s.name: s for s in plan_shots(read_edit(TIMELINES / "fcp7xml/premiere_example.xml"))}
    # A clip cut at 15 fps from 30 fps media: 50 frames at 15 are 100 media frames at 30.
    first = premiere["sc01_sh010_anim"]
    assert (first.rate, first.source_start, first.duration, first.record_start) == (30.0, 0, 100, 536)
    # A transition borrows 13 frames beyond the clip's own out point: visible_range includes them.
    borrowed = premiere["sc01_master_layerA_sh030_temp"]
    assert (borrowed.source_start, borrowed.duration) == (133, 221)
    assert "generator" in premiere["test_title"].reason

    dropframe = read_edit(TIMELINES / "edl/edl-genius/cmx3600.edl")
    assert dropframe.rate == pytest.approx(30000 / 1001)
    assert "DROP FRAME" in dropframe.rate_evidence
    shots = plan_shots(dropframe, selection=Selection(everything=True))
    assert (shots[0].source_start, shots[0].duration) == (197401, 197)  # 01:49:40;01 drop frame
    # The three M2 events: 59.6 fps into 29.97 (153 record frames consume 305 source frames, exactly the span of
    # the event's source timecodes 00:02:18:05-00:02:28:10) and two at 24 fps.
    warped = [(s.retime.scalar, s.retime.record_frames, s.source_start, s.duration) for s in shots if s.retime]
    assert warped == [
        (pytest.approx(59.6 / (30000 / 1001)), 153, 4145, 305),
        (pytest.approx(24 / (30000 / 1001)), 239, 1005313, 192),
        (pytest.approx(24 / (30000 / 1001)), 200, 110564, 161),
    ]


def test_nested_stacks_are_skipped_with_a_reason() -> None:
    shots = plan_shots(read_edit(TIMELINES / "otio/nested_example.otio"), selection=Selection(everything=True))
    nested = [shot.name for shot in shots if "nested" in shot.reason]
    assert nested == ["Clip_Inside_A_Stack_1", "Clip_Inside_A_Stack_2", "Clip_Inside_A_Track"]


def test_reel_edl_plans_every_event() -> None:
    edit = read_edit(TIMELINES / "edl/pycmx/ToD_R4_LOCK3.1_030618_Video.edl")
    shots = plan_shots(edit, selection=Selection(everything=True))
    assert len(shots) == 376
    assert any("timecode mismatch" in warning for warning in edit.warnings)


def _timeline(*clips: otio.schema.Clip, track: str = "V1") -> otio.schema.Timeline:
    return otio.schema.Timeline(tracks=[otio.schema.Track(name=track, children=list(clips))])


def _clip(name: str, start: int = 10, length: int = 20, **metadata: object) -> otio.schema.Clip:
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url="file:///nowhere/plate.mov",
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(100, 24)
            ),
        ),
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(start, 24), otio.opentime.RationalTime(length, 24)
        ),
    )
    clip.metadata.update(metadata)
    return clip


def _write(tmp_path: Path, timeline: otio.schema.Timeline) -> Path:
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def test_naming_policy_metadata_then_marker_then_clip_name(tmp_path: Path) -> None:
    marked = _clip("A001_C002.mov")
    marked.markers.append(otio.schema.Marker(name="fix", metadata={"voidflow": {"shot": "sq01_sh020"}}))
    timeline = _timeline(
        _clip("anything", voidflow={"shot": "sq01_sh010"}), marked, _clip("A001_C002.mov"), _clip("A001_C002.mov")
    )
    shots = plan_shots(read_edit(_write(tmp_path, timeline)), selection=Selection(everything=True))
    assert [(s.name, s.name_source) for s in shots] == [
        ("sq01_sh010", "metadata"),
        ("sq01_sh020", "marker"),
        ("A001_C002", "clip"),
        ("A001_C002_001", "clip"),
    ]


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("ZZ100_501 (LAY3)", "ZZ100_501_LAY3"),
        ("../../etc/passwd", "etc_passwd"),
        ("", "clip"),
        ("Café 010", "Café_010"),
    ],
)
def test_safe_names(raw: str, safe: str) -> None:
    assert safe_name(raw) == safe


def test_selection_modes(tmp_path: Path) -> None:
    marked = _clip("b")
    marked.markers.append(otio.schema.Marker(name="remove the boom"))
    timeline = _timeline(_clip("a"), marked, _clip("c", voidflow={"remove": "the sign"}))
    plate = tmp_path / "plate.mov"
    plate.write_bytes(b"plan does not decode media")
    for clip in timeline.find_clips():
        clip.media_reference.target_url = plate.as_uri()
    edit = read_edit(_write(tmp_path, timeline))

    def reasons(**kwargs: object) -> dict[str, str]:
        return {s.name: s.reason for s in plan_shots(edit, **kwargs)}  # type: ignore[arg-type]

    default = reasons()
    assert default["a"].startswith("not selected")
    assert not default["b"].startswith("not selected") and not default["c"].startswith("not selected")
    assert all(not r.startswith("not selected") for r in reasons(selection=Selection(track="V1")).values())
    sidecar = {"a": ShotInstructions(remove="the cable")}
    assert not reasons(sidecar=sidecar)["a"].startswith("not selected")
    with pytest.raises(SidecarInvalid, match="not in cut.otio: zz"):
        plan_shots(edit, sidecar={"zz": ShotInstructions()})
    with pytest.raises(InvalidInput, match="no video track named 'V9'"):
        plan_shots(edit, selection=Selection(track="V9"))


def test_ready_shot_with_real_media_and_bad_ranges(tmp_path: Path) -> None:
    plate = tmp_path / "plate.mov"
    plate.write_bytes(b"not checked at plan time")
    good = _clip("good", start=2, length=10)
    beyond = _clip("beyond", start=95, length=10)
    empty = _clip("empty", start=5, length=0)
    disabled = _clip("disabled")
    disabled.enabled = False
    for clip in (good, beyond, empty, disabled):
        clip.media_reference.target_url = plate.as_uri()
    shots = {
        s.name: s
        for s in plan_shots(
            read_edit(_write(tmp_path, _timeline(good, beyond, empty, disabled))), selection=Selection(everything=True)
        )
    }
    assert shots["good"].status == "ready" and shots["good"].handles == (2, 8)
    assert shots["good"].first == 0 and shots["good"].frames == 20
    assert "outside the media's available range 0-99" in shots["beyond"].reason
    assert shots["empty"].reason == "zero-length clip"
    assert shots["disabled"].reason == "clip is disabled in the edit"


def test_bad_edits_fail_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(EditUnreadable, match="edit not found"):
        read_edit(tmp_path / "missing.otio")
    with pytest.raises(EditUnreadable, match="unsupported edit type '.txt'"):
        read_edit(tmp_path / "cut.txt")
    broken = tmp_path / "broken.otio"
    broken.write_text("{ this is not json")
    with pytest.raises(EditUnreadable, match="not a valid otio_json edit") as caught:
        read_edit(broken)
    assert "\n" not in str(caught.value)
    garbage = tmp_path / "garbage.edl"
    garbage.write_text("TITLE: x\n001  AX V C 01:00:00:00 nonsense\n")
    with pytest.raises(EditUnreadable, match="garbage.edl: not a valid cmx_3600 edit"):
        read_edit(garbage)


def test_media_paths_follow_the_host_path_map(tmp_path: Path) -> None:
    mounted = tmp_path / "mnt" / "show"
    mounted.mkdir(parents=True)
    (mounted / "plate.mov").write_bytes(b"plan does not decode media")
    clip = _clip("a")
    clip.media_reference.target_url = "file:///Volumes/show/plate.mov"  # where editorial's machine mounts it
    edit = read_edit(_write(tmp_path, _timeline(clip)))
    (shot,) = plan_shots(
        edit,
        selection=Selection(everything=True),
        resolve=lambda path: path.replace("/Volumes/show", str(mounted)),
    )
    assert shot.media is not None and shot.media.path == str(mounted / "plate.mov") and shot.status == "ready"
