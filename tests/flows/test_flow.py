"""The batch flow end to end on Prefect and local Ray: deliver, conform, report; a failed shot stops nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import opentimelineio as otio
import pytest
import yaml

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops import media
from voidflow.void_ops.conform import write_edit
from voidflow.void_ops.intake import named_clips, plan_shots, read_edit
from voidflow.void_ops.pipeline import plate_frames
from voidflow.void_ops.shots import MediaSource
from voidflow.void_ops.sidecar import load_sidecar

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _delivered(clip: otio.schema.Clip) -> MediaSource:
    ref = clip.media_reference
    start = round(ref.available_range.start_time.value)
    frames = round(ref.available_range.duration.value)
    rate = ref.available_range.start_time.rate
    if isinstance(ref, otio.schema.ImageSequenceReference):
        pattern = (
            ref.target_url_for_image_number(0)
            .replace("file://", "")
            .replace(".1001.", f".%0{ref.frame_zero_padding}d.")
        )
        return MediaSource(pattern, "sequence", rate, start, frames, first_number=ref.start_frame)
    return MediaSource(ref.target_url.replace("file://", ""), "movie", rate, start, frames)


def test_batch_delivers_conforms_and_reports(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    request = BatchRequest(edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=out, db_url=db_url, output="png")
    result = run_batch(request)
    assert (result.state, result.done, result.failed, result.skipped) == (
        "done",
        ("sh010", "sh020", "sh030"),
        (),
        ("slate",),
    )
    assert result.conformed == out / "conformed.otio"

    edit = read_edit(small_demo.edit)
    shots = {s.name: s for s in plan_shots(edit, sidecar=load_sidecar(small_demo.sidecar))}
    conformed = dict(named_clips(read_edit(result.conformed).timeline))
    assert conformed["slate"].active_media_reference_key == "DEFAULT_MEDIA"
    for name in result.done:
        shot, clip = shots[name], conformed[name]
        assert clip.active_media_reference_key == "voidflow_v001"
        assert clip.source_range == dict(named_clips(edit.timeline))[name].source_range
        delivered = _delivered(clip)
        info = media.probe(delivered)
        assert (info.frames, info.rate, info.width, info.height) == (shot.frames, 24, 320, 180)
        assert delivered.start == shot.first and delivered.first_number == 1001
        output = media.read_frames(delivered, 0, shot.frames)
        plate = plate_frames(shot)
        matte_path = clip.media_reference.metadata["voidflow"]["matte"]
        alpha = media.read_matte(MediaSource(matte_path, "sequence", 24.0, first_number=1001), 0, shot.frames)
        # The plate is 10-bit ProRes; the PNG delivery keeps its 16-bit values exactly wherever the matte is 0.
        assert np.array_equal(output[alpha == 0], plate[alpha == 0])
        assert np.abs(output[alpha == 255].astype(int) - plate[alpha == 255]).max() > 10000  # the ball is gone

    ledger = Ledger(db_url)
    (batch,) = ledger.batches(result.batch_id)
    for row in batch.shots[:3]:
        assert [(run.stage, run.state) for run in row.stage_runs] == [
            ("mask", "done"),
            ("pass1", "done"),
            ("deliver", "done"),
        ]
        deliver = row.stage_runs[-1]
        assert deliver.params["qc"]["changed_outside"] == 0 and deliver.params["qc"]["passed"]
        assert {a.kind for a in deliver.artifacts} == {"delivery", "matte", "contact_sheet", "overlay", "review"}
    assert batch.prefect_flow_run_id
    report = (out / "report.html").read_text()
    for name in result.done:
        sheet = out / "shots" / name / "v001" / "contact_sheet.png"
        assert sheet.is_file() and f"shots/{name}/v001/contact_sheet.png" in report
    assert "not selected" in report


def test_a_failed_shot_does_not_stop_the_others(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    entries = yaml.safe_load(small_demo.sidecar.read_text())
    for entry in entries["shots"].values():
        entry["matte"] = str(Path(small_demo.matte))
    entries["shots"]["sh020"]["matte"] = str(tmp_path / "lost" / "roto.%04d.png")
    sidecar = tmp_path / "sidecar.yaml"
    sidecar.write_text(yaml.safe_dump(entries))
    request = BatchRequest(edit=small_demo.edit, sidecar=sidecar, out_dir=tmp_path / "out", db_url=db_url)
    result = run_batch(request)
    assert (result.state, result.done, result.failed) == ("failed", ("sh010", "sh030"), ("sh020",))

    (batch,) = Ledger(db_url).batches(result.batch_id)
    failed = next(row for row in batch.shots if row.name == "sh020")
    assert failed.state == "failed" and "roto.%04d.png: no matte frames found" in failed.reason
    assert failed.stage_runs[-1].error_class == "MatteInvalid"
    assert not (tmp_path / "out" / "shots" / "sh020" / "v001").exists()

    conformed = dict(named_clips(read_edit(result.conformed).timeline))
    assert conformed["sh020"].active_media_reference_key == "DEFAULT_MEDIA"
    bundle = write_edit(read_edit(result.conformed).timeline, tmp_path / "conformed.otioz")  # media travels inside
    assert len(list(read_edit(bundle).timeline.find_clips())) == 4
    shots = {s.name: s for s in plan_shots(read_edit(small_demo.edit), sidecar=load_sidecar(sidecar))}
    for name in ("sh010", "sh030"):
        delivered = _delivered(conformed[name])
        info = media.probe(delivered)
        assert (info.codec, info.pix_fmt, info.frames, info.rate) == ("prores", "yuv422p10le", shots[name].frames, 24)
        # Timecode of the first delivered frame: the plate starts at 01:00:00:00, the shot at its head handle.
        assert info.timecode == otio.opentime.to_timecode(otio.opentime.RationalTime(shots[name].first, 24), 24)
        plate = plate_frames(shots[name]).astype(np.int64)
        output = media.read_frames(delivered, 0, shots[name].frames).astype(np.int64)
        matte_path = conformed[name].media_reference.metadata["voidflow"]["matte"]
        alpha = media.read_matte(MediaSource(matte_path, "sequence", 24.0, first_number=1001), 0, shots[name].frames)
        # ProRes is lossy: outside the matte (and 8 px clear of it, one DCT block) the delivery stays within
        # re-encoding error of the plate, far below the change inside.
        far = np.stack([cv2.dilate((a > 0).astype(np.uint8), np.ones((17, 17), np.uint8)) == 0 for a in alpha])
        error = np.abs(output - plate)[far]
        assert error.mean() < 131 and np.percentile(error, 99.9) < 1024  # 16-bit scale: < 0.2 % and < 1.6 %


def test_batch_summary_goes_to_prefect_and_the_webhook(small_demo, db_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("VOIDFLOW_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hook")
    try:
        request = BatchRequest(
            edit=small_demo.edit,
            sidecar=small_demo.sidecar,
            out_dir=tmp_path / "out",
            db_url=db_url,
            only_shots=("sh030",),
        )
        result = run_batch(request)
    finally:
        server.shutdown()
    (posted,) = received
    summary = posted["summary"]
    assert summary["batch"] == result.batch_id and summary["shots"] == {"done": 1, "skipped": 3}  # type: ignore[index]
    assert summary["new_versions"] == ["sh030 v001"]  # type: ignore[index]
    assert str(posted["text"]).startswith(f"**voidflow batch {result.batch_id[:8]}: done**")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["voidflow-batch-summary"]))
        )
    assert any(result.batch_id[:8] in str(artifact.data) for artifact in artifacts)


def test_plate_colour_spaces_by_track_and_shot_and_a_bad_one_fails_only_its_shot(  # type: ignore[no-untyped-def]
    small_demo, db_url: str, tmp_path: Path
) -> None:
    edit = read_edit(small_demo.edit).timeline
    edit.video_tracks()[0].metadata["voidflow"] = {"colourspace": "rec.1886 rec.709 - display"}  # any case
    edit_path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(edit, str(edit_path))
    entries = yaml.safe_load(small_demo.sidecar.read_text())
    for entry in entries["shots"].values():
        entry["matte"] = str(Path(small_demo.matte))
    entries["shots"]["sh020"]["colourspace"] = "ACEScgg"
    sidecar = tmp_path / "sidecar.yaml"
    sidecar.write_text(yaml.safe_dump(entries))
    request = BatchRequest(edit=edit_path, sidecar=sidecar, out_dir=tmp_path / "out", db_url=db_url, output="png")
    result = run_batch(request)
    assert (result.state, result.done, result.failed) == ("failed", ("sh010", "sh030"), ("sh020",))
    (batch,) = Ledger(db_url).batches(result.batch_id)
    rows = {row.name: row for row in batch.shots}
    failed = rows["sh020"]
    assert "\n" not in failed.reason and "sh020" in failed.reason and "'ACEScgg'" in failed.reason
    assert [run.stage for run in failed.stage_runs] == ["mask"]  # stopped before any pass ran
    for name in ("sh010", "sh030"):
        deliver = next(run for run in rows[name].stage_runs if run.stage == "deliver")
        colour = deliver.params["colour"]
        assert colour["plate_space"] == "Rec.1886 Rec.709 - Display" and colour["plate_space_source"] == "declared"
        assert deliver.params["qc"]["passed"]
