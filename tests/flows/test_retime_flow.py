"""Retimes end to end (issue 15, "done when"): a frame-counter movie, an edit with a 2x speed-up, a reverse and a
freeze frame, run through the real batch (plan, mask, passthrough fill, PNG delivery, conform), and the delivered
frames' counters read back: each shot delivers its source segment plus handles at the source rate, and the
conformed clip, its retime kept, shows the same frames from the new media as from the plate."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest, plan
from voidflow.void_ops import media
from voidflow.void_ops.intake import named_clips, read_edit
from voidflow.void_ops.shots import MediaSource

pytestmark = pytest.mark.usefixtures("ray_cluster")

START = 86400  # the movie starts at 01:00:00:00 at 24 fps
FRAMES = 100
STEP = 500  # counter n is the 16-bit grey level n * STEP: FFV1 and 16-bit PNG keep it exactly


def _counter_movie(folder: Path) -> Path:
    """A movie whose frame n is grey level n * STEP everywhere, and a matte movie with a small box."""
    levels = (np.arange(FRAMES, dtype=np.uint16) * STEP)[:, None, None, None]
    frames = np.broadcast_to(levels, (FRAMES, 32, 64, 3)).copy()
    path = folder / "counter.mkv"
    media.write_movie(frames, path, Fraction(24), codec="ffv1", timecode="01:00:00:00")
    box = np.zeros((FRAMES, 32, 64, 3), np.uint8)
    box[:, 8:16, 16:32] = 255
    media.write_movie(box, folder / "matte.mkv", Fraction(24), codec="ffv1")
    return path


def _counters(frames: np.ndarray) -> list[int]:
    """The counter of each frame, checked to be uniform (no blend, no resample)."""
    assert frames.dtype == np.uint16
    values = frames.reshape(len(frames), -1)
    assert (values == values[:, :1]).all()
    assert (values[:, 0] % STEP == 0).all()
    return [int(value) // STEP for value in values[:, 0]]


def _clip(name: str, movie: Path, matte: Path, start: int, effect: otio.schema.Effect) -> otio.schema.Clip:
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url=movie.as_uri(),
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(START, 24), otio.opentime.RationalTime(FRAMES, 24)
            ),
        ),
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(START + start, 24), otio.opentime.RationalTime(10, 24)
        ),
        metadata={"voidflow": {"remove": "the box", "matte": str(matte)}},
    )
    clip.effects.append(effect)
    return clip


def _delivered(clip: otio.schema.Clip) -> MediaSource:
    ref = clip.media_reference
    assert isinstance(ref, otio.schema.ImageSequenceReference)
    available = ref.available_range
    pattern = ref.target_url_for_image_number(0).replace("file://", "").replace(".1001.", ".%04d.")
    return MediaSource(
        pattern,
        "sequence",
        available.start_time.rate,
        round(available.start_time.value),
        round(available.duration.value),
        first_number=ref.start_frame,
    )


def test_retimed_shots_deliver_their_source_segment(db_url: str, tmp_path: Path) -> None:
    movie = _counter_movie(tmp_path)
    matte = tmp_path / "matte.mkv"
    track = otio.schema.Track(name="V1")
    track.append(_clip("fast", movie, matte, 20, otio.schema.LinearTimeWarp(time_scalar=2.0)))
    track.append(_clip("back", movie, matte, 50, otio.schema.LinearTimeWarp(time_scalar=-1.0)))
    track.append(_clip("hold", movie, matte, 70, otio.schema.FreezeFrame()))
    edit_path = tmp_path / "retimes.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(name="retimes", tracks=[track]), str(edit_path))
    request = BatchRequest(
        edit=edit_path, out_dir=tmp_path / "out", db_url=db_url, backend="passthrough", output="png", handles=8
    )

    # What `voidflow plan --json` prints: the retime and the pulled source range.
    _, shots = plan(request)
    planned = {shot.name: shot.to_json() for shot in shots}
    assert {name: (doc["status"], doc["source_start"], doc["duration"]) for name, doc in planned.items()} == {
        "fast": ("ready", START + 20, 20),  # 2x: twice its 10-frame cut
        "back": ("ready", START + 50, 10),
        "hold": ("ready", START + 70, 1),  # a freeze: one frame
    }
    assert planned["fast"]["retime"] == {
        "kind": "speed",
        "scalar": 2.0,
        "record_frames": 10,
        "source_first": START + 20,
        "source_last": START + 39,
    }
    assert planned["back"]["retime"]["kind"] == "reverse" and planned["hold"]["retime"]["kind"] == "freeze"
    assert planned["fast"]["pulled"] == [START + 12, START + 47]
    assert planned["back"]["pulled"] == [START + 42, START + 67]
    assert planned["hold"]["pulled"] == [START + 62, START + 78]  # one frame plus 8 handles each side

    result = run_batch(request)
    assert (result.state, sorted(result.done)) == ("done", ["back", "fast", "hold"])
    assert result.conformed is not None
    original = dict(named_clips(read_edit(edit_path).timeline))
    conformed = dict(named_clips(read_edit(result.conformed).timeline))
    by_name = {shot.name: shot for shot in shots}
    shown = {"fast": list(range(20, 40, 2)), "back": list(range(59, 49, -1)), "hold": [70] * 10}
    for name, clip in conformed.items():
        assert clip.active_media_reference_key == "voidflow_v001"
        # Conform keeps the retime and the source range: the NLE applies the retime to the new media.
        assert clip.source_range == original[name].source_range
        assert [otio.adapters.write_to_string(e, "otio_json") for e in clip.effects] == [
            otio.adapters.write_to_string(e, "otio_json") for e in original[name].effects
        ]
        delivered = _delivered(clip)
        shot = by_name[name]
        assert (delivered.start, delivered.frames) == (shot.first, shot.frames)
        # The delivery holds the pulled source frames, in source order, at the source rate.
        counters = _counters(media.read_frames(delivered, 0, shot.frames))
        assert counters == list(range(shot.first - START, shot.first - START + shot.frames))
        assert media.probe(delivered).rate == 24
        # What the timeline shows, read from the new media the way the NLE maps each record frame.
        retime = shot.retime
        assert retime is not None and [frame - START for frame in retime.shown()] == shown[name]
        read = [_counters(media.read_frames(delivered, delivered.index_of(t), 1))[0] for t in retime.shown()]
        assert read == shown[name]
