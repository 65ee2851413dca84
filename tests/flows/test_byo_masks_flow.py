"""Bring-your-own masks through the real flow: a lossy (ProRes) quadmask movie (no matte, SAM2 or VLM) delivers with the
plate untouched outside its mask; a changed quadmask reruns the mask and what follows, an unchanged one is a cache
hit; an affected-region roto makes 63 and 127; a quadmask of the wrong size fails only its shot, at the mask."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops import media
from voidflow.void_ops.intake import plan_shots, read_edit
from voidflow.void_ops.mattes import to_levels
from voidflow.void_ops.pipeline import plate_frames
from voidflow.void_ops.quadmask import combine
from voidflow.void_ops.shots import MediaSource
from voidflow.void_ops.sidecar import load_sidecar

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _object(small_demo) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The demo ball on every plate frame, (120, 180, 320) bool, from the demo's own roto."""
    matte = MediaSource(small_demo.matte, "sequence", 24.0, first_number=1001)
    return media.read_matte(matte, 0, 120) >= 128


def _write_quadmask(path: Path, object_mask: np.ndarray, shadow_drop: int) -> np.ndarray:
    """Write a quadmask (ball, and its shadow ``shadow_drop`` px below it) as a ProRes 422 HQ movie (lossy, 10-bit
    4:2:2); return its classes."""
    classes = combine(object_mask, np.roll(object_mask, shadow_drop, axis=1))
    movie = media.write_movie(np.repeat(classes[..., None], 3, -1), path, Fraction(24), codec="prores")
    assert (to_levels(media.read_frames(movie, 0, len(classes))[..., 0]) != classes).any()  # equality would misread
    return classes


def _runs(db_url: str, batch_id: str) -> dict[str, list[tuple[str, str]]]:
    (batch,) = Ledger(db_url).batches(batch_id)
    return {row.name: [(run.stage, run.state) for run in row.stage_runs] for row in batch.shots if row.stage_runs}


def test_byo_quadmask_and_affected_matte_through_the_flow(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ball = _object(small_demo)
    (tmp_path / "masks").mkdir()
    classes = _write_quadmask(tmp_path / "masks" / "sh010.mov", ball, 6)
    wrong = np.full((120, 90, 160, 3), 255, np.uint8)
    media.write_movie(wrong, tmp_path / "masks" / "sh020_half.mkv", Fraction(24), codec="ffv1")
    shadow = np.repeat(np.roll(ball, 6, axis=1)[..., None], 3, -1).astype(np.uint8) * 255
    media.write_sequence(shadow, tmp_path / "shadow" / "shadow.%04d.png", Fraction(24), first_number=1001)
    sidecar = tmp_path / "sidecar.yaml"
    prompt = "A textured floor in soft light."
    sidecar.write_text(
        yaml.safe_dump(
            {
                "shots": {
                    "sh010": {"quadmask": "masks/sh010.mov", "prompt": prompt},
                    "sh020": {"quadmask": "masks/sh020_half.mkv", "prompt": prompt},
                    "sh030": {"matte": small_demo.matte, "affected_matte": "shadow/shadow.####.png", "prompt": prompt},
                }
            }
        )
    )
    request = BatchRequest(edit=small_demo.edit, sidecar=sidecar, out_dir=tmp_path / "out", db_url=db_url, output="png")
    first = run_batch(request)
    assert (first.state, first.done, first.failed) == ("failed", ("sh010", "sh030"), ("sh020",))

    ledger = Ledger(db_url)
    (batch,) = ledger.batches(first.batch_id)
    rows = {row.name: row for row in batch.shots}
    assert rows["sh020"].reason == "shot 'sh020': quadmask is 160x90, the plate is 320x180"
    assert [(run.stage, run.state, run.error_class) for run in rows["sh020"].stage_runs] == [
        ("mask", "failed", "MatteInvalid")
    ]

    shots = {s.name: s for s in plan_shots(read_edit(small_demo.edit), sidecar=load_sidecar(sidecar))}
    sh010 = shots["sh010"]
    assert sh010.media is not None
    start = sh010.media.index_of(sh010.first)
    mask_run, _, deliver_run = rows["sh010"].stage_runs
    assert (mask_run.params["source"], mask_run.params["quadmask"]) == ("quadmask", str(tmp_path / "masks/sh010.mov"))
    assert {a.kind for a in mask_run.artifacts} == {"quadmask", "overlay", "preview", "plate_proxy"}  # review media too
    stored = media.read_mask(Path(next(a.path for a in mask_run.artifacts if a.kind == "quadmask")))
    assert np.array_equal(stored, classes[start : start + sh010.frames])  # the lossy movie read exactly

    # The PNG delivery keeps the plate's values bit for bit wherever its matte is 0 (outside the quadmask's region).
    files = {a.kind: a for a in deliver_run.artifacts}
    output = media.read_frames(
        MediaSource(files["delivery"].path, "sequence", 24.0, first_number=1001), 0, sh010.frames
    )
    alpha = media.read_matte(MediaSource(files["matte"].path, "sequence", 24.0, first_number=1001), 0, sh010.frames)
    plate = plate_frames(sh010)
    assert (alpha == 0).mean() > 0.5 and np.array_equal(output[alpha == 0], plate[alpha == 0])
    assert deliver_run.params["qc"]["changed_outside"] == 0

    sh030_mask = rows["sh030"].stage_runs[0]
    assert sh030_mask.params["source"] == "matte+affected_matte"
    quadmask_030 = media.read_mask(Path(next(a.path for a in sh030_mask.artifacts if a.kind == "quadmask")))
    assert {0, 63, 127, 255} <= set(np.unique(quadmask_030).tolist())

    # Unchanged files: every stage of the delivered shots is a cache hit.
    second = run_batch(request.model_copy(update={"only_shots": ("sh010", "sh030")}))
    cached = [("mask", "cached"), ("pass1", "cached"), ("deliver", "cached")]
    assert second.done == ("sh010", "sh030")
    assert _runs(db_url, second.batch_id) == {"sh010": cached, "sh030": cached}

    # A changed quadmask (a longer shadow) reruns sh010's mask and everything after it; sh030 stays cached.
    (tmp_path / "masks" / "sh010.mov").unlink()
    _write_quadmask(tmp_path / "masks" / "sh010.mov", ball, 12)
    third = run_batch(request.model_copy(update={"only_shots": ("sh010", "sh030")}))
    assert third.done == ("sh010", "sh030")
    assert _runs(db_url, third.batch_id) == {
        "sh010": [("mask", "done"), ("pass1", "done"), ("deliver", "done")],
        "sh030": cached,
    }
    assert [v.label for v in ledger.history("sh010")[1]] == ["v001", "v002"]
