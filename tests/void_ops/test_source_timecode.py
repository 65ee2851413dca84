"""Source timecode (issue 15, item 3): an edit's source timecode is matched to the media's own timecode, read at
plan time by the same probe that counts its frames (``flows.params.plan``)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio

from voidflow.flows.params import BatchRequest, plan
from voidflow.void_ops import media
from voidflow.void_ops.intake import Selection, plan_shots, read_edit
from voidflow.void_ops.pipeline import plate_frames

FRAMES = 300
STEP = 200  # frame n is 16-bit grey n * STEP: ProRes 4444 keeps it well within STEP / 2


def _counter_movie(path: Path, timecode: str | None) -> Path:
    levels = (np.arange(FRAMES, dtype=np.uint16) * STEP)[:, None, None, None]
    media.write_movie(
        np.broadcast_to(levels, (FRAMES, 8, 16, 3)).copy(), path, Fraction(24), codec="prores_4444", timecode=timecode
    )
    return path


def _edl(path: Path, movie: Path, events: list[tuple[str, str, str]]) -> Path:
    lines = ["TITLE: source timecode", "FCM: NON-DROP FRAME", ""]
    record = 86400
    for number, (name, source_in, source_out) in enumerate(events, start=1):
        length = otio.opentime.from_timecode(source_out, 24) - otio.opentime.from_timecode(source_in, 24)
        rec_in = otio.opentime.to_timecode(otio.opentime.RationalTime(record, 24), 24)
        rec_out = otio.opentime.to_timecode(otio.opentime.RationalTime(record + length.value, 24), 24)
        record += int(length.value)
        lines += [
            f"{number:03d}  AX       V     C        {source_in} {source_out} {rec_in} {rec_out}",
            f"* FROM CLIP NAME: {name}",
            f"* FROM CLIP: {movie}",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def _counter(frames: np.ndarray) -> list[int]:
    return [round(int(frame[0, 0, 0]) / STEP) for frame in frames]


def test_edl_source_timecode_is_matched_to_the_movies_own_timecode(tmp_path: Path) -> None:
    movie = _counter_movie(tmp_path / "A001C003.mov", "01:00:00:00")
    edl = _edl(
        tmp_path / "cut.edl",
        movie,
        [("inside", "01:00:10:00", "01:00:11:00"), ("outside", "02:00:00:00", "02:00:01:00")],
    )
    request = BatchRequest(edit=edl, out_dir=tmp_path / "out", db_url="sqlite://", edl_rate=24, select_all=True)
    _, shots = plan(request)
    inside, outside = shots
    assert inside.status == "ready" and inside.media is not None
    assert (inside.media.start, inside.media.frames) == (86400, FRAMES)
    # Source 01:00:10:00 in media starting at 01:00:00:00 is media frame 240 at 24 fps.
    assert inside.media.index_of(inside.source_start) == 240
    assert (inside.handles, inside.warnings) == ((8, 8), ())
    assert _counter(plate_frames(inside)) == list(range(232, 232 + 40))  # the cut and 8 handles each side
    assert outside.status == "skipped"
    assert outside.reason == (
        "source range 172800-172823 (02:00:00:00-02:00:00:23) lies outside the media's available range "
        "86400-86699 (01:00:00:00-01:00:12:11, from the file's own timecode)"
    )


def test_a_movie_without_timecode_starts_at_frame_0(tmp_path: Path) -> None:
    movie = _counter_movie(tmp_path / "notc.mov", None)
    edl = _edl(
        tmp_path / "cut.edl", movie, [("early", "00:00:02:00", "00:00:03:00"), ("late", "01:00:00:00", "01:00:01:00")]
    )
    _, (early, late) = plan(
        BatchRequest(edit=edl, out_dir=tmp_path / "o", db_url="sqlite://", edl_rate=24, select_all=True)
    )
    assert early.status == "ready" and early.media is not None and early.media.start == 0
    assert _counter(plate_frames(early))[8] == 48
    assert late.reason.endswith("(00:00:00:00-00:00:12:11, from frame 0, the file has no timecode)")


def test_the_edits_range_wins_over_the_files_timecode_with_a_warning(tmp_path: Path) -> None:
    movie = _counter_movie(tmp_path / "plate.mov", "01:00:00:00")
    clip = otio.schema.Clip(
        name="sh010",
        media_reference=otio.schema.ExternalReference(
            target_url=movie.as_uri(),
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(FRAMES, 24)
            ),
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(100, 24), otio.opentime.RationalTime(10, 24)),
    )
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(tracks=[otio.schema.Track(children=[clip])]), str(path))
    _, (shot,) = plan(BatchRequest(edit=path, out_dir=tmp_path / "o", db_url="sqlite://", select_all=True))
    assert shot.status == "ready" and shot.media is not None and shot.media.start == 0
    assert shot.warnings == (
        "the edit's available range starts at 00:00:00:00 but the file's own timecode is 01:00:00:00; the edit's "
        "range is used (the clip's source range counts in it)",
    )
    assert shot.to_json()["warnings"] == list(shot.warnings)
    assert _counter(plate_frames(shot))[8] == 100


def test_a_sequence_without_a_range_starts_at_its_first_frame_number(tmp_path: Path) -> None:
    levels = (np.arange(20, dtype=np.uint16) * STEP)[:, None, None, None]
    frames = np.broadcast_to(levels, (20, 8, 16, 3)).copy()
    media.write_sequence(frames, tmp_path / "plates" / "plate.%04d.png", Fraction(24), first_number=1001)
    clip = otio.schema.Clip(
        name="seq",
        media_reference=otio.schema.ImageSequenceReference(
            target_url_base=(tmp_path / "plates").as_uri() + "/",
            name_prefix="plate.",
            name_suffix=".png",
            start_frame=1001,
            rate=24,
            frame_zero_padding=4,
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(1005, 24), otio.opentime.RationalTime(4, 24)),
    )
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(tracks=[otio.schema.Track(children=[clip])]), str(path))
    _, (shot,) = plan(BatchRequest(edit=path, out_dir=tmp_path / "o", db_url="sqlite://", select_all=True))
    assert shot.status == "ready" and shot.media is not None
    assert (shot.media.start, shot.media.frames, shot.handles) == (1001, 20, (4, 8))
    assert _counter(plate_frames(shot)) == list(range(0, 16))
    # Without a probe (no media check), the frame numbers still place it.
    (unprobed,) = plan_shots(read_edit(path), selection=Selection(everything=True))
    assert unprobed.media is not None and unprobed.media.index_of(unprobed.source_start) == 4


def test_a_sequence_with_header_timecode_starts_there(tmp_path: Path) -> None:
    frames = np.broadcast_to(np.linspace(0, 0.5, 12, dtype=np.float32)[:, None, None, None], (12, 8, 16, 3)).copy()
    attributes = {"smpte:TimeCode": "01:00:00:00"}
    pattern = tmp_path / "plates" / "plate.%04d.exr"
    media.write_sequence(frames, pattern, Fraction(24), first_number=1001, fmt="exr", attributes=attributes)
    clip = otio.schema.Clip(
        name="exr",
        media_reference=otio.schema.ImageSequenceReference(
            target_url_base=pattern.parent.as_uri() + "/",
            name_prefix="plate.",
            name_suffix=".exr",
            start_frame=1001,
            rate=24,
            frame_zero_padding=4,
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(86403, 24), otio.opentime.RationalTime(2, 24)),
    )
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(tracks=[otio.schema.Track(children=[clip])]), str(path))
    _, (shot,) = plan(BatchRequest(edit=path, out_dir=tmp_path / "o", db_url="sqlite://", select_all=True))
    assert shot.status == "ready" and shot.media is not None
    assert (shot.media.start, shot.media.index_of(shot.source_start), shot.handles) == (86400, 3, (3, 7))
