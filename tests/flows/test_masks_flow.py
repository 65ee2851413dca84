"""Automatic quadmasks through the flow: text → VLM boxes → SAM2 both ways → VLM affected objects → quadmask;
replayed offline from the stored exchanges; a review gate; and the API key written nowhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PLANTED_KEY
from tests.vlm_stub import VlmStub, answer, start_stub
from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest, MaskOptions
from voidflow.flows.rerun import prepare_rerun
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops import media
from voidflow.void_ops.masking.vlm import keyframe_indices

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
def stub() -> Iterator[VlmStub]:
    running = start_stub()
    yield running
    running.stop()


def _box(frame: int, width: int, height: int, shot_first: int) -> dict[str, object]:
    """The demo ball's box on shot array index ``frame``, in Gemini's 0..1000 (y, x) convention."""
    plate_index = shot_first + frame
    x = width / 16 + (width - width / 8) * plate_index / 119
    y, radius = height * 0.61, 36 * width / 1280
    return {
        "frame": frame,
        "box_2d": [
            round(1000 * (y - radius) / height),
            round(1000 * (x - radius) / width),
            round(1000 * (y + radius * 3) / height),
            round(1000 * (x + radius) / width),
        ],
    }


def _masks(stub: VlmStub) -> MaskOptions:
    return MaskOptions(
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        sam2_random_weights=True,
        sam2_image_size=128,
        sam2_max_side=128,
        sam2_threshold=-1e6,  # random weights: every pixel tracked, so the mask is never empty
        vlm="auto",
        vlm_model="gemini-2.5-pro",
        vlm_base_url=stub.base_url,
    )


def test_text_to_quadmask_then_offline_replay(small_demo, db_url: str, tmp_path: Path, stub: VlmStub) -> None:  # type: ignore[no-untyped-def]
    sidecar = tmp_path / "sidecar.yaml"
    sidecar.write_text("shots:\n  sh010:\n    remove: the red ball\n")
    # sh010: 28 cut frames with 8-frame handles; plate index 4 is its first frame (head handle).
    keys = [8 + k for k in keyframe_indices(28, 4)]
    stub.push(
        answer(json.dumps({"boxes": [_box(frame, 320, 180, 4) for frame in keys]})),
        answer(
            json.dumps(
                {
                    "integral_belongings": [],
                    "affected_objects": [
                        {
                            "noun": "shadow",
                            "category": "visual_artifact",
                            "why": "cast by the ball",
                            "will_move": False,
                            "first_appears_frame": None,
                            "boxes": [_box(10, 320, 180, 4)],
                        }
                    ],
                    "scene_description": "An empty tiled floor in soft daylight.",
                    "edit_instruction": "remove the red ball and its shadow",
                    "confidence": 0.9,
                }
            )
        ),
    )
    request = BatchRequest(
        edit=small_demo.edit,
        sidecar=sidecar,
        out_dir=tmp_path / "out",
        db_url=db_url,
        output="png",
        only_shots=("sh010",),
        masks=_masks(stub),
    )
    first = run_batch(request)
    assert (first.state, first.done) == ("done", ("sh010",)), first
    assert [r.model for r in stub.requests] == ["gemini-2.5-pro", "gemini-2.5-pro"]
    config = stub.requests[0].body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["temperature"] == 0.0
    (batch,) = Ledger(db_url).batches(first.batch_id)
    mask_run = batch.shots[0].stage_runs[0]
    assert mask_run.params["vlm_prompt"] == "An empty tiled floor in soft daylight."
    assert mask_run.params["segmenter"]["propagation"] == "forward+reverse"
    assert len(mask_run.params["vlm_requests"]) == 2 and len(Ledger(db_url).exchanges()) == 2
    assert batch.shots[0].stage_runs[1].params["prompt"] == "An empty tiled floor in soft daylight."
    quadmask_file = next(a for a in mask_run.artifacts if a.kind == "quadmask")
    quadmask = media.read_mask(Path(quadmask_file.path))
    assert quadmask.shape == (44, 180, 320) and set(np.unique(quadmask)) <= {0, 63, 127, 255}
    assert all((frame <= 63).any() for frame in quadmask)  # every frame, before and after the prompts, has a mask
    assert {a.kind for a in mask_run.artifacts} == {"quadmask", "overlay", "preview", "plate_proxy"}

    # The VLM switched off: the same shot, its mask forced to run again, replays the stored answers.
    stub.stop()
    replay, _ = prepare_rerun(db_url, first.batch_id, failed=False, shots=["sh010"], force_from="mask")
    assert replay is not None
    second = run_batch(replay)
    assert second.done == ("sh010",)
    (rerun,) = Ledger(db_url).batches(second.batch_id)
    again = next(a for a in rerun.shots[0].stage_runs[0].artifacts if a.kind == "quadmask")
    assert again.sha256 == quadmask_file.sha256 and again.path != quadmask_file.path

    # The planted API key is nowhere: not in the database, the outputs, the report, the timeline or Ray's logs.
    places = [Path(db_url.removeprefix("sqlite:///")), *Path(tmp_path / "out").rglob("*")]
    places += list(Path("/tmp/ray/session_latest/logs").glob("*"))
    leaks = [p for p in places if p.is_file() and PLANTED_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_no_prompts_and_no_vlm_fails_the_shot_before_gpu_work(
    small_demo, db_url: str, tmp_path: Path, stub: VlmStub
) -> None:  # type: ignore[no-untyped-def]
    sidecar = tmp_path / "sidecar.yaml"
    sidecar.write_text("shots:\n  sh010:\n    remove: the red ball\n")
    masks = _masks(stub).model_copy(update={"vlm": "off"})
    request = BatchRequest(
        edit=small_demo.edit,
        sidecar=sidecar,
        out_dir=tmp_path / "out",
        db_url=db_url,
        only_shots=("sh010",),
        masks=masks,
    )
    result = run_batch(request)
    assert result.failed == ("sh010",)
    (batch,) = Ledger(db_url).batches(result.batch_id)
    assert "no VLM to find 'the red ball'" in batch.shots[0].reason
    assert [run.stage for run in batch.shots[0].stage_runs] == ["mask"]  # nothing after the mask ran
    assert stub.requests == []


def test_review_gate_stops_after_masks_until_approved(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    request = BatchRequest(
        edit=small_demo.edit,
        sidecar=small_demo.sidecar,
        out_dir=tmp_path / "out",
        db_url=db_url,
        masks=MaskOptions(gate=True),
    )
    gated = run_batch(request)
    assert (gated.state, gated.done, gated.waiting) == ("awaiting_review", (), ("sh010", "sh020", "sh030"))
    assert "mask awaits review" in (tmp_path / "out" / "report.html").read_text()
    ledger = Ledger(db_url)
    ledger.decide(gated.batch_id, "sh010", decision="approved", reviewer="anna")
    ledger.decide(gated.batch_id, "sh020", decision="approved", reviewer="anna")
    ledger.decide(gated.batch_id, "sh030", decision="rejected", reviewer="anna", note="shadow missing")
    resumed, plans = prepare_rerun(db_url, gated.batch_id, failed=True)
    assert resumed is not None and [plan.shot for plan in plans] == ["sh010", "sh020", "sh030"]
    after = run_batch(resumed)
    assert after.done == ("sh010", "sh020")
    (batch,) = ledger.batches(after.batch_id)
    rejected = next(row for row in batch.shots if row.name == "sh030")
    assert rejected.state == "rejected" and "rejected by anna: shadow missing" in rejected.reason
