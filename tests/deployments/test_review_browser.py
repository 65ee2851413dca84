"""The review room in a real browser: Debian's Chromium, driven by Playwright, against ``voidflow review``'s app served
by uvicorn over a gated batch of the demo shoot. A supervisor approves one shot, rejects another with a note, gives a
third a new point (only its mask stage reruns, with that prompt), then resumes: only the approved shot is inpainted.
Scrubbing lands on the exact frame, checked against the proxy's own pixels. The tests share one gated batch and run
in order: the scrubbing test only reads it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from voidflow.deployments.review import ReviewConfig, create_app
from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest, MaskOptions
from voidflow.infra.database import ensure_schema
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger

pytestmark = pytest.mark.usefixtures("ray_cluster")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless as root, and quiet on a closed network (no background connections, no component updates).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
JOB_TIMEOUT_MS = 300_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def room(small_demo: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A gated batch (SAM2 with random weights for shots given points) and the review room serving it; yields
    (base URL, batch ID, ledger URL). The room's jobs run ``voidflow`` in child processes that inherit this
    environment: the ledger, this test's Prefect server and its Ray."""
    import ray

    tmp_path = tmp_path_factory.mktemp("room")
    monkeypatch = pytest.MonkeyPatch()
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ensure_schema(db_url)
    monkeypatch.setenv("VOIDFLOW_DB_URL", db_url)
    monkeypatch.setenv("VOIDFLOW_RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    masks = MaskOptions(
        gate=True,
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        sam2_random_weights=True,
        sam2_image_size=128,
        sam2_max_side=128,
        sam2_threshold=-1e6,  # random weights: every pixel tracked, so the mask is never empty
        vlm="off",
    )
    request = BatchRequest(
        edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=tmp_path / "out", db_url=db_url, masks=masks
    )
    batch = run_batch(request).batch_id
    port = _free_port()
    settings = Settings.from_env()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ReviewConfig(settings, port=port)), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", batch, db_url
    server.should_exit = True
    thread.join(timeout=10)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _decide(page: Page, decision: str, note: str = "") -> None:
    page.fill("#reviewer", "anna")
    page.dispatch_event("#reviewer", "change")
    if note:
        page.fill("#mask-note", note)
    with page.expect_navigation():
        page.click(f"button[data-decide=mask][data-decision={decision}]")


def _mask_review(ledger: Ledger, batch: str, shot: str) -> Any:
    (row,) = [r for r in ledger.batches(batch)[0].shots if r.name == shot]
    return ledger.review(next(run.key for run in row.stage_runs if run.stage == "mask"))


def _wait_for_job(page: Page) -> None:
    page.wait_for_function(
        "() => { const job = document.querySelector('#job'); return job.classList.contains('error') || "
        "/: done/.test(job.textContent); }",
        timeout=JOB_TIMEOUT_MS,
    )
    assert ": done" in page.text_content("#job"), page.text_content("#job")


def _proxy_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_scrubbing_shows_exactly_the_frame_the_readout_names(room: tuple[str, str, str], browser: Browser) -> None:
    base, batch, db_url = room
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{base}/batches/{batch}/shots/sh010")
    page.wait_for_function("() => document.querySelector('#v-plate').readyState >= 2")
    (row,) = [r for r in Ledger(db_url).batches(batch)[0].shots if r.name == "sh010"]
    proxy = next(a for run in row.stage_runs for a in run.artifacts if a.kind == "plate_proxy")
    frames = _proxy_frames(Path(proxy.path))
    for key, expected in (("ArrowRight", row.head + 1), ("ArrowRight", row.head + 2), ("ArrowLeft", row.head + 1)):
        page.keyboard.press(key)
        page.wait_for_function("() => !document.querySelector('#v-plate').seeking")
        assert page.locator("#readout").get_attribute("data-frame") == str(expected)
        png = page.evaluate(
            """() => { const v = document.querySelector('#v-plate'); const c = document.createElement('canvas');
                       c.width = v.videoWidth; c.height = v.videoHeight; c.getContext('2d').drawImage(v, 0, 0);
                       return c.toDataURL('image/png'); }"""
        )
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1]))).convert("RGB"), np.float32)
        distance = [float(np.abs(shown - frame.astype(np.float32)).mean()) for frame in frames]
        assert int(np.argmin(distance)) == expected, distance[expected - 2 : expected + 3]
    page.keyboard.press("f")  # A/B flip has nothing to flip before a delivery, and must not break the player
    assert page.locator("#readout").get_attribute("data-frame") == str(row.head + 1)


def test_a_supervisor_reviews_fixes_and_resumes_in_the_browser(room: tuple[str, str, str], browser: Browser) -> None:
    base, batch, db_url = room
    ledger = Ledger(db_url)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{base}/batches/{batch}")
    expect(page.locator(".card[data-state=awaiting_review]")).to_have_count(3)
    page.click("button[data-filter=awaiting_review]")
    expect(page.locator(".card[data-shot=slate]")).to_be_hidden()

    page.click(".card[data-shot=sh010] h2 a")
    _decide(page, "approved")
    page.goto(f"{base}/batches/{batch}/shots/sh030")
    _decide(page, "rejected", note="the shadow stays")
    approved, rejected = _mask_review(ledger, batch, "sh010"), _mask_review(ledger, batch, "sh030")
    assert approved is not None and (approved.decision, approved.reviewer) == ("approved", "anna")
    assert rejected is not None and (rejected.decision, rejected.note) == ("rejected", "the shadow stays")
    expect(
        page.locator("button[data-decide=mask][data-decision=approved]")
    ).to_be_disabled()  # decided: no second decision

    # a new point on sh020, where the ball is on the first cut frame: only its mask stage reruns, with that prompt
    page.goto(f"{base}/batches/{batch}/shots/sh020")
    page.check("input[name=tool][value=positive]")
    box = page.locator("#stage").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.60)
    expect(page.locator("#prompt-list li")).to_have_count(1)
    with page.expect_navigation(timeout=JOB_TIMEOUT_MS):  # the page reloads when the rerun ends
        page.click("#apply-prompts")
    (job,) = page.request.get(f"{base}/api/jobs").json()
    assert (job["state"], job["label"]) == ("done", "rerun sh020 from mask"), job
    rerun = next(b for b in ledger.batches() if b.parent_id == batch)
    (row,) = [r for r in rerun.shots if r.state != "skipped"]  # the rest of the edit: "not in this rerun"
    assert row.name == "sh020" and row.state == "awaiting_review"
    assert [run.stage for run in row.stage_runs] == ["mask"]
    ((frame, x, y, positive),) = row.stage_runs[0].params["points"]  # as the masker records a PointPrompt
    assert (frame, positive) == (0, True)
    assert abs(x - 96) <= 2 and abs(y - 108) <= 2  # 30 % and 60 % of the 320x180 plate
    assert row.stage_runs[0].params["masker"] == "segment"

    # resume: the approved shot is inpainted, the rejected one closed, the re-masked one still waits
    page.goto(f"{base}/batches/{batch}")
    page.fill("#reviewer", "anna")
    page.click("#resume")
    _wait_for_job(page)
    expect(page.locator(".card[data-shot=sh010]")).to_have_attribute("data-state", "done", timeout=15_000)  # live
    inpainted = {
        row.name for b in ledger.batches() for row in b.shots for run in row.stage_runs if run.stage == "pass1"
    }
    assert inpainted == {"sh010"}
    states = {card.get_attribute("data-shot"): card.get_attribute("data-state") for card in page.locator(".card").all()}
    assert states["sh030"] == "rejected" and states["sh020"] == "awaiting_review"

    # the delivered version plays as the result, and is approved from its row
    page.goto(f"{base}/batches/{batch}/shots/sh010")
    expect(page.locator("#version-a option")).to_have_text(["v001"])
    page.click("button[data-mode=wipe]")
    expect(page.locator("#v-a")).to_have_attribute("src", re.compile(r"^/media/\d+$"))
    page.fill("#reviewer", "anna")
    page.fill(".version-row[data-label=v001] .version-note", "clean")
    with page.expect_navigation():
        page.click("button[data-decide=version][data-label=v001][data-decision=approved]")
    (version,) = ledger.versions_of(["sh010"])
    assert version.review_state == "approved"
    assert [(d.reviewer, d.note) for d in ledger.version_reviews("sh010")["v001"]] == [("anna", "clean")]
    assert errors == []
