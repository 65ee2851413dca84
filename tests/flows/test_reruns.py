"""Cache hits and reruns through the real flow, on SQLite and on PostgreSQL: nothing is redone or overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
import yaml

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.flows.rerun import prepare_rerun
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops import media
from voidflow.void_ops.intake import named_clips, read_edit
from voidflow.void_ops.shots import MediaSource

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _stages(db_url: str, batch_id: str) -> dict[str, list[tuple[str, str]]]:
    (batch,) = Ledger(db_url).batches(batch_id)
    return {row.name: [(run.stage, run.state) for run in row.stage_runs] for row in batch.shots}


def _sidecar(small_demo, folder: Path, sh020_matte: str) -> Path:  # type: ignore[no-untyped-def]
    entries = yaml.safe_load(small_demo.sidecar.read_text())
    for entry in entries["shots"].values():
        entry["matte"] = small_demo.matte
    entries["shots"]["sh020"]["matte"] = sh020_matte
    path = folder / "sidecar.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def test_cache_hits_then_rerun_of_a_failed_shot(small_demo, any_db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    request = BatchRequest(edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=out, db_url=any_db_url)
    first = run_batch(request)
    assert first.state == "done"

    # The same edit again: every stage is a cache hit and every shot keeps its version.
    second = run_batch(request)
    assert (second.state, second.done) == ("done", ("sh010", "sh020", "sh030"))
    cached = [("mask", "cached"), ("pass1", "cached"), ("deliver", "cached")]
    assert all(_stages(any_db_url, second.batch_id)[name] == cached for name in second.done)
    ledger = Ledger(any_db_url)
    assert [v.label for v in ledger.history("sh020")[1]] == ["v001"]

    # New roto for sh020 (a slightly wider matte), delivered incomplete: that shot fails, the others are cache hits.
    matte = MediaSource(small_demo.matte, "sequence", 24.0, first_number=1001)
    pixels = media.read_frames(matte, 0, 120)
    grown = np.maximum(pixels, np.roll(pixels, 2, axis=2))
    complete = media.write_sequence(grown, tmp_path / "roto_full" / "roto.%04d.png", 24, first_number=1001)
    staged = tmp_path / "roto2"
    staged.mkdir()
    full = sorted(Path(complete.path).parent.iterdir())
    for frame in full[:60]:
        shutil.copy(frame, staged / frame.name)
    pattern = str(staged / "roto.%04d.png")
    third = run_batch(request.model_copy(update={"sidecar": _sidecar(small_demo, tmp_path, pattern)}))
    assert (third.state, third.failed) == ("failed", ("sh020",))
    assert _stages(any_db_url, third.batch_id)["sh010"] == cached

    # The dry run names exactly the failed shot, and why.
    rerun, plans = prepare_rerun(any_db_url, third.batch_id, failed=True)
    assert rerun is not None and [plan.shot for plan in plans] == ["sh020"]
    mask = plans[0].stages[0]
    assert (mask.stage, mask.action) == ("mask", "run") and "failed last time: MatteInvalid" in mask.reason
    assert [s.reason for s in plans[0].stages[1:]] == [
        "mask reruns → pass1 reruns",
        "mask reruns → deliver makes a new version if the output changes, else keeps it",
    ]

    # Complete the roto and rerun the failed shots: sh020 becomes a new version, nothing else is touched.
    for frame in full[60:]:
        shutil.copy(frame, staged / frame.name)
    fixed = run_batch(rerun)
    assert (fixed.state, fixed.done) == ("done", ("sh020",))
    stages = _stages(any_db_url, fixed.batch_id)
    assert stages["sh020"] == [("mask", "done"), ("pass1", "done"), ("deliver", "done")]
    assert stages["sh010"] == stages["sh030"] == []
    assert [v.label for v in ledger.history("sh020")[1]] == ["v001", "v002"]
    assert [v.label for v in ledger.history("sh010")[1]] == ["v001"]
    conformed = dict(named_clips(read_edit(fixed.conformed).timeline))
    keys = {name: conformed[name].active_media_reference_key for name in ("sh010", "sh020", "sh030")}
    assert keys == {"sh010": "voidflow_v001", "sh020": "voidflow_v002", "sh030": "voidflow_v001"}
    assert isinstance(conformed["slate"].media_reference, otio.schema.ExternalReference)

    # Forcing pass 1 again reruns it; its output is identical, so the delivery (and its version) is kept.
    forced, plans = prepare_rerun(any_db_url, fixed.batch_id, failed=False, shots=["sh020"], force_from="pass1")
    assert [s.reason for s in plans[0].stages] == [
        f"cached (done in batch {fixed.batch_id[:8]})",
        "forced by --from pass1",
        "pass1 reruns → deliver makes a new version if the output changes, else keeps it",
    ]
    assert forced is not None
    again = run_batch(forced)
    assert _stages(any_db_url, again.batch_id)["sh020"] == [
        ("mask", "cached"),
        ("pass1", "done"),
        ("deliver", "cached"),
    ]
    assert [v.label for v in ledger.history("sh020")[1]] == ["v001", "v002"]


def test_a_rejected_version_is_not_made_again_from_the_same_inputs(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A supervisor rejects sh010's v001; rerunning it unchanged would give the same pixels back under the same name,
    so the shot fails with the reason and what to change, and the other shots and versions are untouched."""
    request = BatchRequest(edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=tmp_path / "out", db_url=db_url)
    first = run_batch(request)
    ledger = Ledger(db_url)
    ledger.decide_version("sh010", "v001", decision="rejected", reviewer="anna", note="edge chatter")

    rerun, _ = prepare_rerun(db_url, first.batch_id, failed=False, shots=["sh010", "sh020"], force_from="pass1")
    assert rerun is not None
    again = run_batch(rerun)
    assert (again.done, again.failed) == (("sh020",), ("sh010",))
    (batch,) = ledger.batches(again.batch_id)
    reason = next(row.reason for row in batch.shots if row.name == "sh010")
    assert reason == (
        "shot 'sh010': v001 was rejected, and this run would make it again (the plate, mask, prompts, seed and "
        "settings it was made from are unchanged); change the prompt, the seed (sidecar 'seed') or the mask, then rerun"
    )
    assert [v.label for v in ledger.history("sh010")[1]] == ["v001"]  # no new version, the rejected one kept
    assert [v.label for v in ledger.history("sh020")[1]] == ["v001"]  # an unreviewed shot keeps its version

    # Forcing deliver is the explicit way to make a new version anyway.
    forced, _ = prepare_rerun(db_url, again.batch_id, failed=True, force_from="deliver")
    assert forced is not None and (run_batch(forced).done, [v.label for v in ledger.history("sh010")[1]]) == (
        ("sh010",),
        ["v001", "v002"],
    )
