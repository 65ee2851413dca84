"""The review timeline of a real batch and its rerun, written by ``voidflow review-timeline`` and read back with
OpenTimelineIO: plates below, newest versions above, at the cut's record positions and source ranges, pointing at
the real files; a failed shot keeps its plate alone and says why. The mask stage's plate proxy is there for a
cached mask run too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest
import yaml

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.flows.rerun import prepare_rerun
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops.demo import make_demo
from voidflow.void_ops.intake import named_clips, plan_shots, read_edit
from voidflow.void_ops.sidecar import load_sidecar

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _voidflow(*args: str, db_url: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environment |= {"VOIDFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), "VOIDFLOW_DB_URL": db_url}
    command = [sys.executable, "-m", "voidflow.deployments.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment | env, timeout=300, check=False)


def _file(url: str) -> Path:
    assert url.startswith("file:///"), url
    return Path(url.removeprefix("file://"))


def test_review_timeline_of_a_batch_and_its_rerun(db_url: str, tmp_path: Path) -> None:
    shoot = make_demo(tmp_path / "demo", width=320, height=180, linear_shot=True)
    entries = yaml.safe_load(shoot.sidecar.read_text())
    entries["shots"]["sh020"]["matte"] = str(tmp_path / "lost" / "roto.%04d.png")
    sidecar = shoot.sidecar.with_name("sidecar_lost_sh020.yaml")  # beside the demo: its mattes are relative
    sidecar.write_text(yaml.safe_dump(entries))
    request = BatchRequest(
        edit=shoot.edit, sidecar=sidecar, out_dir=tmp_path / "out", db_url=db_url, backend="passthrough", output="png"
    )
    first = run_batch(request)
    assert (first.done, first.failed, first.skipped) == (("sh010", "sh030", "sh040"), ("sh020",), ("slate",))
    assert Ledger(db_url).version_status("sh040", "v001") == "qc_failed"

    # A rerun of sh030 from deliver: a new version in a new batch, its mask a cache hit.
    rerun, _ = prepare_rerun(db_url, first.batch_id, failed=False, shots=["sh030"], force_from="deliver")
    assert rerun is not None
    second = run_batch(rerun)
    assert second.done == ("sh030",)
    ledger = Ledger(db_url)
    (batch,) = ledger.batches(second.batch_id)
    row = next(row for row in batch.shots if row.name == "sh030")
    assert (row.version, [(run.stage, run.state) for run in row.stage_runs]) == (
        "v002",
        [("mask", "cached"), ("pass1", "cached"), ("deliver", "done")],
    )
    origin = ledger.origin(row.stage_runs[0])
    reviews = {artifact.kind: artifact for artifact in origin.artifacts}
    for kind in ("preview", "plate_proxy"):  # the cached mask's review movies are the origin run's, still there
        assert Path(reviews[kind].path).is_file()
        assert (reviews[kind].frames, reviews[kind].fps, reviews[kind].width, reviews[kind].height) == (
            40,
            24.0,
            320,
            180,
        )
    assert Path(reviews["plate_proxy"].path).name == Path(reviews["preview"].path).name.replace("preview", "plate")
    deliver = {artifact.kind: artifact for artifact in row.stage_runs[-1].artifacts}
    assert Path(deliver["review"].path) == tmp_path / "out" / "shots" / "sh030" / "v002" / "review.mp4"

    # The command, on the first batch: the chain's newest versions.
    out = tmp_path / "review" / "review.otio"
    written = _voidflow("review-timeline", "--batch", first.batch_id[:8], "-o", str(out), db_url=db_url, home=tmp_path)
    assert written.returncode == 0, written.stderr
    assert str(out) in written.stdout
    timeline = otio.adapters.read_from_file(str(out))
    plate_track, version_track = timeline.tracks
    assert [(track.name, track.kind) for track in timeline.tracks] == [("plate", "Video"), ("version", "Video")]
    assert timeline.global_start_time == otio.opentime.from_timecode("01:00:00:00", 24)

    edit = read_edit(shoot.edit)
    edit_clips = dict(named_clips(edit.timeline))
    shots = {shot.name: shot for shot in plan_shots(edit, sidecar=load_sidecar(sidecar))}
    plates = {clip.metadata["voidflow"]["shot"]: clip for clip in plate_track.find_clips()}
    versions = {clip.metadata["voidflow"]["shot"]: clip for clip in version_track.find_clips()}
    assert sorted(plates) == ["sh010", "sh020", "sh030", "sh040", "slate"]
    assert {name: clip.name for name, clip in versions.items()} == {
        "sh010": "sh010_voidclean_v001",
        "sh030": "sh030_voidclean_v002",
    }
    for name, clip in plates.items():
        shot, cut = shots[name], edit_clips[name]
        assert clip.range_in_parent() == cut.range_in_parent()  # at the shot's record position
        assert clip.source_range == cut.source_range  # the cut, handles excluded
        reference = clip.media_reference
        assert shot.media is not None and reference.available_range.start_time.value == shot.media.start
        if name == "sh040":  # the EXR plate: an image sequence, its first file at its first frame number
            assert isinstance(reference, otio.schema.ImageSequenceReference)
            assert reference.start_frame == shot.media.first_number
            assert _file(reference.target_url_for_image_number(0)) == shot.media.file_for_index(0)
        else:
            assert isinstance(reference, otio.schema.ExternalReference)
            assert _file(reference.target_url) == shoot.plate.resolve()
    for name, clip in versions.items():
        shot = shots[name]
        assert clip.range_in_parent() == plates[name].range_in_parent()  # stacked over its plate
        assert clip.source_range == plates[name].source_range
        reference = clip.media_reference
        assert isinstance(reference, otio.schema.ImageSequenceReference)  # PNG deliveries
        assert reference.available_range.start_time.value == shot.first
        assert reference.available_range.duration.value == shot.frames
        # The cut's first frame is the delivery's first file after the head handle.
        cut_index = round(clip.source_range.start_time.value - reference.available_range.start_time.value)
        first_cut_file = _file(reference.target_url_for_image_number(cut_index))
        assert first_cut_file.is_file() and first_cut_file.name.endswith(f".{1001 + shot.handles[0]:04d}.png")
    assert versions["sh030"].metadata["voidflow"] == {
        "shot": "sh030",
        "batch": second.batch_id,
        "version": "v002",
        "state": "done",
        "reason": "",
    }
    assert versions["sh010"].metadata["voidflow"]["batch"] == first.batch_id
    failed = plates["sh020"].metadata["voidflow"]
    assert (failed["batch"], failed["version"], failed["state"]) == (first.batch_id, None, "failed")
    assert "roto.%04d.png" in failed["reason"]
    assert plates["slate"].metadata["voidflow"]["state"] == "skipped"
    # sh040's scene-linear plate does not fit a PNG: its v001 failed QC (values above 1.0 clipped), so it is left off.
    assert plates["sh040"].metadata["voidflow"] == {
        "shot": "sh040",
        "batch": first.batch_id,
        "version": None,
        "state": "qc_failed",
        "reason": "v001 failed QC",
    }

    # Outside the allowed roots: one line, exit 2, nothing written.
    elsewhere = tmp_path / "elsewhere" / "review.otio"
    refused = _voidflow(
        "review-timeline",
        *("--batch", second.batch_id, "-o", str(elsewhere)),
        db_url=db_url,
        home=tmp_path,
        VOIDFLOW_ALLOWED_ROOTS=str(tmp_path / "review"),
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert str(elsewhere) in refused.stderr and not elsewhere.parent.exists()
