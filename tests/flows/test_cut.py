"""Cut diffing and the next night's batch: only the changed shots are processed, the rest keep their versions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import opentimelineio as otio
import pytest
import yaml

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops.cutdiff import diff_shots
from voidflow.void_ops.intake import named_clips, plan_shots, read_edit
from voidflow.void_ops.pipeline import QcReport
from voidflow.void_ops.shots import MediaSource, Shot, ShotInstructions


def _shot(
    name: str, start: int = 100, duration: int = 20, media: str = "/a.mov", record: int = 0, **kw: object
) -> Shot:
    return Shot(
        name,
        "V1",
        0,
        name,
        "clip",
        MediaSource(media, "movie", 24.0),
        24.0,
        start,
        duration,
        (8, 8),
        record,
        "ready",
        instructions=ShotInstructions(**kw),
    )  # type: ignore[arg-type]


def test_diff_names_every_kind_of_change() -> None:
    old = [_shot("a"), _shot("b"), _shot("c"), _shot("d"), _shot("e"), _shot("f"), _shot("g"), _shot("gone")]
    new = [
        _shot("a"),
        _shot("b", start=104, duration=12),
        _shot("c", start=96, duration=30),
        _shot("d", start=120),
        _shot("e", media="/b.mov"),
        _shot("f", remove="the boom"),
        _shot("g", record=48),
        _shot("new"),
    ]
    found = {change.shot: change for change in diff_shots(old, new)}
    assert {name: change.kinds for name, change in found.items()} == {
        "a": (),
        "b": ("trimmed",),
        "c": ("extended",),
        "d": ("slipped",),
        "e": ("re-sourced",),
        "f": ("re-instructed",),
        "g": ("moved",),
        "new": ("added",),
        "gone": ("removed",),
    }
    assert found["b"].detail == "100-119 → 104-115"
    assert [name for name, change in found.items() if change.needs_work] == ["b", "c", "d", "e", "f", "new"]


def test_qc_fails_on_flicker_and_count() -> None:
    good = QcReport(0, 0.001, 44, 44, 24.0, 24.0)
    assert good.passed
    assert not dataclasses.replace(good, flicker=0.2).passed
    assert not dataclasses.replace(good, frames=43).passed
    assert not dataclasses.replace(good, changed_outside=1).passed
    assert good.summary().startswith("passed — 0 px changed outside the matte")


def test_a_failed_qc_line_says_which_check_failed_and_its_limit() -> None:
    flickers = QcReport(0, 0.0638, 44, 44, 24.0, 24.0)
    assert flickers.failures == ("flicker +0.0638 over 0.02",)
    assert flickers.summary().startswith("FAILED on flicker +0.0638 over 0.02 — 0 px changed outside the matte")
    short = dataclasses.replace(flickers, flicker=0.001, frames=43, codec_p999=5 / 255, tolerance_max=4 / 255)
    assert short.failures == ("codec p99.9 5/255 over 4", "43 frames, the plate has 44")


@pytest.mark.usefixtures("ray_cluster")
def test_next_night_processes_only_the_trimmed_and_added_shots(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    first = run_batch(BatchRequest(edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=out, db_url=db_url))
    assert first.done == ("sh010", "sh020", "sh030")

    # Tonight's cut: sh020 trimmed by four frames at its head, and a new shot sh040 cut from later in the plate.
    timeline = read_edit(small_demo.edit).timeline.deepcopy()
    clips = dict(named_clips(timeline))
    trimmed = clips["sh020"].source_range
    clips["sh020"].source_range = otio.opentime.TimeRange(
        trimmed.start_time + otio.opentime.RationalTime(4, 24), trimmed.duration - otio.opentime.RationalTime(4, 24)
    )
    added = clips["sh030"].deepcopy()
    added.metadata["voidflow"] = {"shot": "sh040"}
    added.source_range = otio.opentime.TimeRange(
        otio.opentime.from_timecode("01:00:02:20", 24), otio.opentime.RationalTime(16, 24)
    )
    timeline.video_tracks()[0].append(added)
    tonight = tmp_path / "tonight.otio"
    otio.adapters.write_to_file(timeline, str(tonight))
    entries = yaml.safe_load(small_demo.sidecar.read_text())
    entries["shots"]["sh040"] = dict(entries["shots"]["sh030"])
    for entry in entries["shots"].values():
        entry["matte"] = small_demo.matte
    sidecar = tmp_path / "tonight.yaml"
    sidecar.write_text(yaml.safe_dump(entries))
    old_sidecar = tmp_path / "last-night.yaml"
    old_sidecar.write_text(yaml.safe_dump({"shots": {k: v for k, v in entries["shots"].items() if k != "sh040"}}))

    changes = {
        c.shot: c.kinds
        for c in diff_shots(
            plan_shots(read_edit(small_demo.edit), sidecar=None), plan_shots(read_edit(tonight), sidecar=None)
        )
    }
    assert changes["sh020"] == ("trimmed",) and changes["sh040"] == ("added",) and changes["sh010"] == ()

    second = run_batch(
        BatchRequest(
            edit=tonight,
            sidecar=sidecar,
            out_dir=out,
            db_url=db_url,
            previous_edit=small_demo.edit,
            previous_sidecar=old_sidecar,
        )
    )
    assert (second.state, second.done) == ("done", ("sh020", "sh040"))
    (batch,) = Ledger(db_url).batches(second.batch_id)
    worked = {row.name for row in batch.shots if row.stage_runs}
    assert worked == {"sh020", "sh040"}
    reasons = {row.name: row.reason for row in batch.shots}
    assert reasons["sh010"].startswith("unchanged since the previous edit")
    conformed = dict(named_clips(read_edit(second.conformed).timeline))
    keys = {name: conformed[name].active_media_reference_key for name in ("sh010", "sh020", "sh030", "sh040")}
    assert keys == {
        "sh010": "voidflow_v001",
        "sh020": "voidflow_v002",
        "sh030": "voidflow_v001",
        "sh040": "voidflow_v001",
    }
