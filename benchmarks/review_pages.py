"""How fast the review room answers on a night's batch: 200 shots, each with a mask and a delivered, QC'd version
(stage runs, artifacts and versions written through the ledger as a batch writes them; the pictures are small
real PNG files), served by uvicorn on loopback.

Measured: the server's answer time for the overview, its cards, the batch JSON, a shot page and the batch list
(median and worst of ``--repeat`` requests), and, where Debian's Chromium is installed, a real browser's load of the
overview and the shot page (navigation start to the ``load`` event, pictures included).

    python benchmarks/review_pages.py --out benchmarks/results/review_pages_cpu.json
    python benchmarks/review_pages.py --smoke          # 10 shots, 2 requests: the test suite runs this
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import httpx
import numpy as np
import uvicorn
from PIL import Image

from benchmarks import _checkout  # noqa: F401  (maps ``voidflow`` to this checkout on a bare host)
from voidflow.deployments.review import ReviewConfig, create_app
from voidflow.infra.database import ensure_schema
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops.pipeline import QcReport, StageFile
from voidflow.void_ops.shots import MediaSource, Shot

BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _picture(path: Path, seed: int) -> StageFile:
    pixels = np.random.default_rng(seed).integers(0, 255, (90, 240 * 6 // 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return StageFile(path.stem, path, "0" * 64, path.stat().st_size)


def build_batch(folder: Path, shots: int) -> tuple[str, str]:
    """A ledger holding one finished batch of ``shots`` shots; returns (ledger URL, batch ID)."""
    db_url = f"sqlite:///{folder / 'ledger.db'}"
    ensure_schema(db_url)
    ledger = Ledger(db_url)
    edit = ledger.record_edit(folder / "cut.otio", "0" * 64, 24.0, [])
    out = folder / "out"
    batch = ledger.create_batch(
        edit_id=edit, edit_path=folder / "cut.otio", edit_sha256="0" * 64, out_dir=out, backend="void", params={}
    )
    names = [f"sh{10 * (n + 1):04d}" for n in range(shots)]
    source = MediaSource(str(folder / "plate.mov"), "movie", 24.0)
    shot_rows = [
        Shot(name, "V1", i, name, "clip", source, 24.0, 86400 + 100 * i, 96, (8, 8), 100 * i, "ready")
        for i, name in enumerate(names)
    ]
    ledger.add_shots(batch, shot_rows)
    qc = {**dataclasses.asdict(QcReport(0, 0.004, 112, 112, 24.0, 24.0)), "passed": True}
    for index, name in enumerate(names):
        work = out / "shots" / name
        work.mkdir(parents=True)
        with ledger.stage(batch, name, "mask", {"masker": "matte", "points": [], "boxes": []}, key=f"m{index}") as run:
            overlay = _picture(work / "overlay.png", index)
            run.add(StageFile("overlay", overlay.path, overlay.sha256, overlay.bytes))
        with ledger.stage(batch, name, "pass1", {"steps": 30, "seed": index}, key=f"p{index}", seed=index):
            pass
        label = ledger.allocate_version(batch, name, {})
        with ledger.stage(batch, name, "deliver", {"version": label, "qc": qc}, key=f"d{index}") as run:
            sheet = _picture(work / "contact_sheet.png", 1000 + index)
            run.add(StageFile("contact_sheet", sheet.path, sheet.sha256, sheet.bytes))
        deliver_id = ledger.batches(batch)[0].shots[index].stage_runs[-1].id
        ledger.finish_version(name, label, status="delivered", deliver_run_id=deliver_id)
        ledger.finish_shot(batch, name, state="done", version=label)
    ledger.finish_batch(batch)
    return db_url, batch


def _serve(db_url: str, home: Path) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    settings = Settings(home=home, db_url=db_url, user="bench")
    server = uvicorn.Server(
        uvicorn.Config(create_app(ReviewConfig(settings, port=port)), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def _timed(client: httpx.Client, url: str, repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = client.get(url)
        seconds.append(time.perf_counter() - start)
        answer.raise_for_status()
    return {"median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4)}


def _browser_loads(base: str, batch: str, shot: str, repeat: int) -> dict[str, dict[str, float]] | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    found: dict[str, dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for label, url in (
            ("overview", f"{base}/batches/{batch}"),
            ("shot_page", f"{base}/batches/{batch}/shots/{shot}"),
        ):
            seconds = []
            for _ in range(repeat):
                page.goto(url, wait_until="load")
                timing = page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
                seconds.append((timing["loadEventEnd"] - timing["startTime"]) / 1000)
            found[label] = {"median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4)}
        browser.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="10 shots, 2 requests each")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    shots, repeat = (10, 2) if args.smoke else (args.shots, args.repeat)
    with tempfile.TemporaryDirectory(prefix="voidflow-review-bench-") as scratch:
        folder = Path(scratch)
        start = time.perf_counter()
        db_url, batch = build_batch(folder, shots)
        built = time.perf_counter() - start
        server, base = _serve(db_url, folder / "home")
        shot = f"sh{10 * (shots // 2):04d}"
        with httpx.Client(base_url=base, timeout=60) as client:
            server_times = {
                "overview": _timed(client, f"/batches/{batch}", repeat),
                "cards": _timed(client, f"/batches/{batch}/cards", repeat),
                "batch_json": _timed(client, f"/api/batches/{batch}", repeat),
                "shot_page": _timed(client, f"/batches/{batch}/shots/{shot}", repeat),
                "batch_list_json": _timed(client, "/api/batches", repeat),
            }
        browser = _browser_loads(base, batch, shot, repeat)
        server.should_exit = True
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (CPU only)",
        "shots": shots,
        "repeat": repeat,
        "ledger": "SQLite",
        "ledger_build_s": round(built, 2),
        "server_answer": server_times,
        "browser_load": browser,
        "target": "every page under 1 s on a 200-shot batch",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    worst = max([t["max_s"] for t in server_times.values()] + [t["median_s"] for t in (browser or {}).values()])
    return 0 if args.smoke or worst < 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
