"""Every edit format the README claims, read from a real sample: FCPX XML and AAF (adapter samples vendored in
``tests/media``), and OTIOD / OTIOZ bundles written from the demo edit with its media inside."""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
import pytest

from voidflow.void_ops.exceptions import EditUnreadable
from voidflow.void_ops.intake import Selection, plan_shots, read_edit

MEDIA = Path(__file__).resolve().parents[1] / "media"


def test_an_fcpx_project_plans_its_clips() -> None:
    edit = read_edit(MEDIA / "fcpx" / "fcpx_project.fcpxml")
    assert edit.rate == 30.0 and edit.timeline.name == "OpenTimeline_Project"
    shots = plan_shots(edit, selection=Selection(everything=True))
    assert len(shots) == 20
    first = shots[0]
    assert (first.name, first.rate, first.duration, first.record_start) == ("IMG_0715", 30.0, 300, 0)
    assert first.reason == "media not found: /Volumes/Media/otio/IMG_0715.MOV"  # the editor's drive, not here
    nested = [shot for shot in shots if "nested" in shot.reason]
    assert nested and all(shot.status == "skipped" for shot in nested)  # compound clips: flatten first


def test_an_fcpx_library_with_two_projects_is_refused_naming_them() -> None:
    path = MEDIA / "fcpx" / "fcpx_example.fcpxml"
    with pytest.raises(EditUnreadable) as refused:
        read_edit(path)
    assert str(refused.value) == (
        f"{path}: the file holds 2 timelines ('OpenTimeline_Project', 'OpenTimeline_Project 1'); "
        "export the one sequence or project to process"
    )


def test_an_avid_aaf_plans_with_source_timecode() -> None:
    edit = read_edit(MEDIA / "aaf" / "timecode_test.aaf")
    assert edit.rate == 24.0
    shots = plan_shots(edit, selection=Selection(everything=True))
    # Two one-second clips of the same Avid media, one cut from its start, one from 01:00:01:00 (86424 at 24 fps).
    assert [(shot.name, shot.source_start, shot.duration) for shot in shots] == [
        ("Frame_Debugger_0h", 24, 24),
        ("Frame_Debugger_1h", 86424, 24),
    ]
    simple = plan_shots(read_edit(MEDIA / "aaf" / "simple.aaf"), selection=Selection(everything=True))
    assert len(simple) == 5 and simple[0].duration == 720 and simple[0].source_start == 86400


@pytest.mark.parametrize("suffix", [".otiod", ".otioz"])
def test_bundles_carry_their_media(small_demo, suffix: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    timeline = read_edit(small_demo.edit).timeline
    bundle = tmp_path / f"demo{suffix}"
    otio.adapters.write_to_file(timeline, str(bundle))
    if suffix == ".otioz":  # a zip: its media are not files here, and the plan says so, naming the bundle
        edit = read_edit(bundle)
        assert edit.warnings == (f"{bundle.name}: media inside an .otioz are not read in place; unzip it to a folder "
                                 "(an .otiod) to process",)  # fmt: skip
        shots = plan_shots(edit, selection=Selection(everything=True))
        assert shots[0].reason == f"media not found: {bundle}/media/demo_plate.mov"
        return
    edit = read_edit(bundle)
    shots = plan_shots(edit, selection=Selection(everything=True))
    original = plan_shots(read_edit(small_demo.edit), selection=Selection(everything=True))
    assert [(s.name, s.source_start, s.duration) for s in shots] == [
        (s.name, s.source_start, s.duration) for s in original
    ]
    ready = [shot for shot in shots if shot.media is not None and shot.status == "ready"]
    assert ready and all(Path(shot.media.path).is_relative_to(bundle) for shot in ready)  # inside the bundle
