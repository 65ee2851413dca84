"""Golden baselines: the conformed edit of every sample timeline, kept beside the tests the way OTIO keeps
``tests/baselines/``. A change in conform's behaviour shows as a diff of a committed file.

Regenerate after an intended change with ``VOIDFLOW_UPDATE_BASELINES=1 pytest tests/void_ops/test_baselines.py`` and
review the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import opentimelineio as otio
import pytest

from tests.conftest import SHARED, timeline_files
from voidflow.void_ops.conform import conform
from voidflow.void_ops.intake import Selection, plan_shots, read_edit
from voidflow.void_ops.shots import Delivery, MediaSource, Shot

BASELINES = Path(__file__).resolve().parents[1] / "baselines"
UPDATE = os.environ.get("VOIDFLOW_UPDATE_BASELINES") == "1"
DELIVERIES = Path("/deliveries")  # a fixed folder: the baseline names no machine's paths


def _delivery(shot: Shot, *, sequence: bool) -> Delivery:
    """Version v002 of ``shot``: a ProRes movie, or a 1001-based EXR sequence, and its matte."""
    if sequence:
        path = DELIVERIES / shot.name / f"{shot.name}_voidclean_v002.%04d.exr"
        media = MediaSource(str(path), "sequence", shot.rate, shot.first, shot.frames, first_number=1001)
    else:
        path = DELIVERIES / shot.name / f"{shot.name}_voidclean_v002.mov"
        media = MediaSource(str(path), "movie", shot.rate, shot.first, shot.frames)
    matte_path = DELIVERIES / shot.name / "matte.%04d.png"
    matte = MediaSource(str(matte_path), "sequence", shot.rate, shot.first, shot.frames, first_number=1001)
    return Delivery(shot.name, "v002", media, matte, 1920, 1080)


def _conformed(path: Path, mode: str) -> str:
    """The edit with every shot that has frames conformed in (alternately as movie and sequence), as OTIO JSON."""
    edit = read_edit(path)
    shots = [
        shot
        for shot in plan_shots(edit, selection=Selection(everything=True))
        if shot.duration > 0 and "nested" not in shot.reason and "time effect" not in shot.reason
    ]
    deliveries = {shot.name: _delivery(shot, sequence=index % 2 == 1) for index, shot in enumerate(shots)}
    timeline = conform(edit, deliveries, mode=mode)  # type: ignore[arg-type]
    text: str = otio.adapters.write_to_string(timeline, "otio_json", indent=1)
    return text.replace(SHARED.resolve().as_uri(), "file://$SHARED").replace(str(SHARED.resolve()), "$SHARED")


@pytest.mark.parametrize("mode", ["reference", "track"])
@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_conformed_edit_matches_its_baseline(path: Path, mode: str) -> None:
    baseline = BASELINES / "conform" / f"{path.name}.{mode}.otio"
    text = _conformed(path, mode)
    if UPDATE:
        baseline.parent.mkdir(parents=True, exist_ok=True)
        baseline.write_text(text)
    assert baseline.is_file(), f"no baseline {baseline.name}: run with VOIDFLOW_UPDATE_BASELINES=1 and review it"
    assert text == baseline.read_text(), f"{path.name} ({mode}) conforms differently from {baseline.name}"
