"""Image-sequence plates with missing or empty frames (issue 15, item 4): found at plan time, the shot skipped with
the first missing frame named, or, with ``missing_frames: hold`` or ``black``, processed with those frames stood in
for, said in the plan, and keyed so a re-rendered frame reruns the shot."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
import yaml

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest, plan
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops import media
from voidflow.void_ops.shots import MediaSource

pytestmark = pytest.mark.usefixtures("ray_cluster")

FRAMES = 30
STEP = 2000  # plate frame n is 16-bit grey n * STEP: 16-bit PNG keeps it exactly


def _plate(folder: Path) -> MediaSource:
    """A 16-bit PNG counter sequence 1001..1030 with 1012 deleted and 1015 left empty, as a farm leaves them."""
    levels = (np.arange(FRAMES, dtype=np.uint16) * STEP)[:, None, None, None]
    source = media.write_sequence(
        np.broadcast_to(levels, (FRAMES, 16, 32, 3)).copy(), folder / "plate" / "plate.%04d.png", Fraction(24)
    )
    (folder / "plate" / "plate.1012.png").unlink()
    (folder / "plate" / "plate.1015.png").write_bytes(b"")
    box = np.zeros((FRAMES, 16, 32, 3), np.uint8)
    box[:, 4:8, 8:16] = 255
    media.write_movie(box, folder / "matte.mkv", Fraction(24), codec="ffv1")
    return source


def _edit(folder: Path, source: MediaSource) -> Path:
    """Two clips of the plate: ``a`` (frames 5-14 of it) and ``b`` (frames 22-24, no gap in reach); with no range
    in the edit, the sequence's media time is its frame number."""
    track = otio.schema.Track(name="V1")
    for name, start, count in (("a", 5, 10), ("b", 22, 3)):
        reference = otio.schema.ImageSequenceReference(
            target_url_base=(folder / "plate").as_uri() + "/",
            name_prefix="plate.",
            name_suffix=".png",
            start_frame=1001,
            frame_zero_padding=4,
            rate=24,
        )
        first = otio.opentime.RationalTime(1001 + start, 24)
        range_ = otio.opentime.TimeRange(first, otio.opentime.RationalTime(count, 24))
        track.append(otio.schema.Clip(name=name, media_reference=reference, source_range=range_))
    path = folder / "gaps.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(name="gaps", tracks=[track]), str(path))
    return path


def _request(folder: Path, db_url: str, edit: Path, policy: str | None) -> BatchRequest:
    entry = {"remove": "the box", "matte": str(folder / "matte.mkv")}
    entries = {"a": {**entry, **({"missing_frames": policy} if policy else {})}, "b": entry}
    sidecar = folder / f"sidecar-{policy}.yaml"
    sidecar.write_text(yaml.safe_dump({"shots": entries}))
    return BatchRequest(
        edit=edit, sidecar=sidecar, out_dir=folder / "out", db_url=db_url, backend="passthrough", output="png",
        handles=2,
    )  # fmt: skip


def test_missing_frames_skip_hold_or_black(db_url: str, tmp_path: Path) -> None:
    source = _plate(tmp_path)
    assert media.probe(source).frames == FRAMES  # the plate's length spans its gaps
    edit = _edit(tmp_path, source)

    _, shots = plan(_request(tmp_path, db_url, edit, None))
    by_name = {shot.name: shot for shot in shots}
    assert by_name["b"].status == "ready"
    assert by_name["a"].status == "skipped" and by_name["a"].reason == (
        f"frame 1012 of {source.path} is missing or empty (2 in the range: 1012, 1015); "
        "set missing_frames: hold or black to process the shot anyway"
    )

    _, shots = plan(_request(tmp_path, db_url, edit, "hold"))
    held = {shot.name: shot for shot in shots}["a"]
    assert held.status == "ready"
    assert held.warnings == (
        "2 missing or empty plate frames (1012, 1015) are held from the frame before (missing_frames: hold)",
    )

    result = run_batch(_request(tmp_path, db_url, edit, "hold"))
    assert (result.state, sorted(result.done)) == ("done", ["a", "b"])
    (batch,) = Ledger(db_url).batches(result.batch_id)
    folder = tmp_path / "out" / "shots" / "a" / "v001"
    assert len(sorted((folder / "a_voidclean_v001").glob("a_voidclean_v001.*.png"))) == 14
    pattern = str(folder / "a_voidclean_v001" / "a_voidclean_v001.%04d.png")
    frames = media.read_frames(MediaSource(pattern, "sequence", 24.0, first_number=1001), 0, 14)
    # plate frames 3..16 (handles 2): 1012 (index 11) holds 1011's picture, 1015 (index 14) holds 1014's
    assert [int(frame[0, 0, 0]) // STEP for frame in frames] == [3, 4, 5, 6, 7, 8, 9, 10, 10, 12, 13, 13, 15, 16]
    shot_a = next(shot for shot in batch.shots if shot.name == "a")
    assert [run.state for run in shot_a.stage_runs] == ["done"] * 3

    # The frame is re-rendered: the plate's key changes, so the shot runs again (a new version), b is reused.
    (tmp_path / "plate" / "plate.1012.png").write_bytes((tmp_path / "plate" / "plate.1011.png").read_bytes())
    again = run_batch(_request(tmp_path, db_url, edit, "hold"))
    assert (again.state, sorted(again.done)) == ("done", ["a", "b"])
    shots_dir = tmp_path / "out" / "shots"
    assert (shots_dir / "a" / "v002").is_dir() and not (shots_dir / "b" / "v002").exists()
