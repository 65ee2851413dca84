"""Retimes at plan and conform time: which source frames a LinearTimeWarp or FreezeFrame shows, what a shot pulls,
and which time effects stay skipped. Real edits: the AAF adapter's own speed-effect samples (Avid Media Composer)."""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
import pytest

from voidflow.void_ops.conform import conform
from voidflow.void_ops.exceptions import ConformError
from voidflow.void_ops.intake import Selection, clip_retime, plan_shots, read_edit
from voidflow.void_ops.shots import Delivery, MediaSource, Retime, Shot

AAF = Path(__file__).resolve().parents[1] / "media" / "aaf"


def _plan(path: Path) -> list[Shot]:
    return plan_shots(read_edit(path), selection=Selection(everything=True))


def test_misc_speed_effects_pull_exact_source_segments() -> None:
    """Freeze frame, 2x, 0.5x, 3x, 0.375x, 14.375x and reverse from Avid; the media is not here, so every shot is
    skipped for it, but only after its retime and pulled range were computed."""
    shots = _plan(AAF / "misc_speed_effects.aaf")
    assert all(shot.status == "skipped" and shot.reason.startswith("media not found: ") for shot in shots)
    got = [
        (shot.retime.kind, shot.retime.scalar, shot.retime.record_frames, shot.source_start, shot.duration)
        if shot.retime
        else None
        for shot in shots
    ]
    assert got == [
        None,
        ("freeze", 0.0, 8, 32, 1),  # one frame held for 8
        ("speed", 2.0, 8, 0, 16),  # twice the cut
        ("speed", 0.5, 8, 0, 4),
        ("speed", 3.0, 8, 0, 24),
        ("speed", 0.375, 8, 0, 3),
        ("speed", 14.375, 8, 86400, 115),  # 8 x 14.375 = 115 of the 120 frames the 1h movie holds
        ("speed", 0.375, 8, 86420, 3),
        ("reverse", -1.0, 8, 86424, 8),
        ("speed", 1.0, 16, 86432, 16),
    ]
    # Handles at the source rate, clipped to the 120-frame media (0h: 0-119, 1h: 86400-86519).
    assert [shot.handles for shot in shots] == [
        (8, 8), (8, 8), (0, 8), (0, 8), (0, 8), (0, 8), (0, 5), (8, 8), (8, 8), (8, 8)
    ]  # fmt: skip
    freeze, double, reverse = shots[1], shots[2], shots[8]
    assert (freeze.first, freeze.frames) == (24, 17)  # one frame plus 8 handles each side
    assert (double.first, double.frames) == (0, 24)
    assert freeze.retime is not None and freeze.retime.shown() == (32,) * 8
    assert double.retime is not None and double.retime.shown() == (0, 2, 4, 6, 8, 10, 12, 14)
    assert reverse.retime is not None and reverse.retime.shown() == tuple(range(86431, 86423, -1))
    doc = reverse.to_json()
    assert doc["retime"] == {
        "kind": "reverse",
        "scalar": -1.0,
        "record_frames": 8,
        "source_first": 86424,
        "source_last": 86431,
    }
    assert doc["pulled"] == [86416, 86439]


def test_linear_speed_effects_fit_one_to_five_frames_into_one_to_four() -> None:
    """Avid's fit-to-fill grid: source segments of 1..5 frames, each fitted into 1, 2, 3 and 4 record frames."""
    shots = _plan(AAF / "linear_speed_effects.aaf")
    segments = [(shot.retime.record_frames if shot.retime else 1, shot.duration) for shot in shots]
    assert segments == [(record, source) for source in range(1, 6) for record in range(1, 5)]


# Avid Media Composer's render of the OTIO time warp test suite (github.com/jminor/otio-time-warp-test-suite,
# time_warp_test.baseline.ocr_results.txt): the frame counter at the first record frames of a clip whose source
# range starts at media frame `first`, under the time scalar its OTIO file gives.
AVID = [
    (0.5, 0, 120, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
    (0.9, 0, 120, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]),
    (1.1, 0, 120, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]),
    (0.33, 0, 100, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]),
    (3.0303030303030303, 0, 33, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33]),
    (-1.0, 0, 100, [99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 88]),
]  # (the suite's other reverses carry scalars it flags as wrong in the AAF's conversion, so they are left out)


@pytest.mark.parametrize(("scalar", "first", "record", "rendered"), AVID, ids=[str(a[0]) for a in AVID])
def test_shown_frames_match_avids_render(scalar: float, first: int, record: int, rendered: list[int]) -> None:
    clip = otio.schema.Clip(
        name="c",
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(first, 24), otio.opentime.RationalTime(record, 24)
        ),
    )
    clip.effects.append(otio.schema.LinearTimeWarp(time_scalar=scalar))
    retime = clip_retime(clip, 24.0)
    assert retime is not None
    assert [retime.frame_at(index) for index in range(len(rendered))] == rendered
    shown = retime.shown()
    assert retime.source_first <= min(shown) and max(shown) <= retime.source_last  # the segment holds them all


def test_a_reverse_ends_on_its_lowest_frame() -> None:
    """Avid's reverse at 100% over the whole 100 frames ends on frame 0 (the render's last counters: 2, 1, 0)."""
    retime = Retime("reverse", -1.0, 100, 0, 99)
    assert [retime.frame_at(index) for index in (97, 98, 99)] == [2, 1, 0]


def _clip(name: str, *effects: otio.schema.Effect) -> otio.schema.Clip:
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url="file:///nowhere/plate.mov",
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(100, 24)
            ),
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(10, 24), otio.opentime.RationalTime(20, 24)),
    )
    clip.effects.extend(effects)
    return clip


def _write(tmp_path: Path, *items: otio.core.Item) -> Path:
    path = tmp_path / "cut.otio"
    timeline = otio.schema.Timeline(tracks=[otio.schema.Track(name="V1", children=list(items))])
    otio.adapters.write_to_file(timeline, str(path))
    return path


def test_time_effects_without_a_constant_speed_stay_skipped(tmp_path: Path) -> None:
    ramp = otio.schema.TimeEffect(name="Motion Control", effect_name="Unknown Time Warp Effect")  # the AAF adapter
    remap = otio.schema.Effect(name="Time Remap", metadata={"fcp_xml": {"effectid": "timeremap"}})  # FCP7 XML
    nested = otio.schema.Stack(name="nest", children=[otio.schema.Track(children=[_clip("inner", ramp.clone())])])
    path = _write(
        tmp_path,
        _clip("ramp", ramp),
        _clip("remap", remap),
        _clip("two", otio.schema.LinearTimeWarp(time_scalar=2.0), otio.schema.FreezeFrame()),
        _clip("blur", otio.schema.Effect(name="Blur", effect_name="Blur")),
        nested,
    )
    plate = Path("/nowhere/plate.mov")
    shots = {shot.name: shot for shot in _plan(path)}
    assert shots["ramp"].reason.startswith(
        "time effect 'Motion Control / Unknown Time Warp Effect' (TimeEffect) has no constant speed"
    )
    assert shots["remap"].reason.startswith("time effect 'Time Remap' (Effect) has no constant speed")
    assert shots["two"].reason.startswith("2 time effects on one clip ('LinearTimeWarp' (LinearTimeWarp), ")
    assert shots["ramp"].retime is None and (shots["ramp"].source_start, shots["ramp"].duration) == (10, 20)
    assert shots["blur"].retime is None and shots["blur"].reason == f"media not found: {plate}"  # not a time effect
    assert shots["inner"].reason.startswith("clip is inside a nested stack")


def _delivery(shot: Shot, first: int, frames: int) -> Delivery:
    media = MediaSource(f"/deliveries/{shot.name}.mov", "movie", shot.rate, first, frames)
    return Delivery(shot.name, "v002", media, media, 64, 48)


@pytest.mark.parametrize("mode", ["reference", "track"])
def test_conform_keeps_the_retime_and_needs_the_whole_segment(tmp_path: Path, mode: str) -> None:
    edit = read_edit(_write(tmp_path, _clip("fast", otio.schema.LinearTimeWarp(time_scalar=2.0))))
    (shot,) = plan_shots(edit, selection=Selection(everything=True))
    assert (shot.source_start, shot.duration, shot.first, shot.frames) == (10, 40, 2, 56)
    with pytest.raises(ConformError, match=r"covers media frames 10-29, the clip shows 10-49"):
        conform(edit, {"fast": _delivery(shot, 10, 20)}, mode=mode)  # the cut's length is not enough at 2x
    timeline = conform(edit, {"fast": _delivery(shot, shot.first, shot.frames)}, mode=mode)
    clips = list(timeline.find_clips())
    version = clips[0] if mode == "reference" else clips[-1]
    assert [(type(e).__name__, e.time_scalar) for e in version.effects] == [("LinearTimeWarp", 2.0)]
    assert version.source_range == otio.opentime.TimeRange(
        otio.opentime.RationalTime(10, 24), otio.opentime.RationalTime(20, 24)
    )
    assert version.media_reference.available_range == otio.opentime.TimeRange(
        otio.opentime.RationalTime(2, 24), otio.opentime.RationalTime(56, 24)
    )
