"""What a batch costs beyond its pixel work: a 200-shot edit through the real flow with a backend that does none.

Definition: ``overhead_s_per_shot`` = (wall time of ``flows.batch.run_batch``, from the call to its return) / shots,
with the ``passthrough`` backend (the fill is the plate: no pixel work) on tiny media. Everything else is real and
counted: the flow reads and plans the edit, records the batch in an SQLite ledger, runs one ``process_shot`` Prefect
task per shot on a local Ray (mask from the matte, pass 1, deliver: composite, ProRes encode, QC, contact sheet),
conforms and writes the report, reporting to a temporary local Prefect server, as ``voidflow run`` does. Starting
Prefect and Ray and writing the media are outside it and reported apart (``startup_s``, ``media_s``).

The media is the demo shoot (``void_ops.demo.make_demo``) at 160x90: one ProRes plate a few frames longer than the
shot count and its roto matte; the edit has one 12-frame clip per shot (28 frames with the default 8-frame handles),
each starting one frame later than the one before so that no two shots share a stage key (no cache hits); every
shot takes the demo sidecar's instructions. Everything is written under one temporary folder (Prefect's home,
Ray's session folder, the ledger, the outputs) and removed at the end.

Run ``.venv/bin/python benchmarks/orchestration.py [--shots N] [--out FILE]`` (target: ``overhead_s_per_shot`` at
most 0.5 on a 2-core machine; ``--smoke`` runs 3 shots, for the test suite). Prints one JSON object as its last
line (``--out`` also writes it to FILE):

- ``overhead_s_per_shot``, ``shots``, ``done``, ``failed``, ``wall_s``, ``cpus`` (Ray's), ``card`` ("cpu");
- ``cpu_s_per_shot``: CPU seconds per shot of this process and all it started during the flow; wall time on a
  machine shared with other work stretches, this barely does (``load_avg_1m``: the 1-minute load before and
  after the flow);
- ``startup_s`` (temporary Prefect server and local Ray), ``media_s`` (writing the media);
- ``breakdown``: ``cpu_s_per_shot`` by process kind (see ``tree_cpu_s``); from the ledger, the mean seconds of each
  stage and their sum per shot, and when the batch was recorded, the first stage started and the last finished
  (seconds after the call) and how long the flow took after that (conform, report); from the Prefect server, when
  the flow run started and the mean seconds of the ``process_shot`` task runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)

CLIP_FRAMES = 12
WIDTH, HEIGHT = 160, 90


def make_edit(folder: Path, shots: int) -> tuple[Path, Path]:
    """Write the demo shoot under ``folder/input`` and a ``shots``-clip edit of it with a sidecar; return both."""
    from benchmarks.throughput import make_edit as make_mixed_edit

    return make_mixed_edit(folder, [CLIP_FRAMES] * shots, WIDTH, HEIGHT)


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def tree_cpu_s() -> dict[str, float]:
    """CPU seconds used so far by this process and its live descendants, by kind (Linux ``/proc``).

    Kinds: ``flow`` (this process: the flow run), ``prefect_server`` (the temporary API server), ``shot_workers``
    (Ray workers running the shot tasks, their Python only), ``media_subprocesses`` (the ffmpeg and ffprobe runs
    those workers waited for) and ``ray_system`` (GCS, raylet and Ray's other helpers). Contention on a shared
    machine stretches wall time but barely changes these.
    """
    parents: dict[int, int] = {}
    own: dict[int, float] = {}
    reaped: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            names[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        own[pid] = int(fields[11]) + int(fields[12])  # utime, stime
        reaped[pid] = int(fields[13]) + int(fields[14])  # cutime, cstime: children waited for
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    used = dict.fromkeys(("flow", "prefect_server", "shot_workers", "media_subprocesses", "ray_system"), 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    for pid in tree:
        name = names.get(pid, "")
        if pid == os.getpid():
            used["flow"] += (own[pid] + reaped[pid]) / tick
        elif "uvicorn" in name:
            used["prefect_server"] += (own[pid] + reaped[pid]) / tick
        elif name.startswith("ray::"):
            used["shot_workers"] += own[pid] / tick
            used["media_subprocesses"] += reaped[pid] / tick
        elif name.startswith(("ffmpeg", "ffprobe")) or "/ffmpeg " in name or "/ffprobe " in name:
            used["media_subprocesses"] += (own[pid] + reaped[pid]) / tick
        else:
            used["ray_system"] += (own[pid] + reaped[pid]) / tick
    return used


def ledger_breakdown(db_url: str, batch_id: str, called: float, returned: float) -> dict[str, Any]:
    """Per-stage mean seconds, and when the first stage started and the last finished relative to the flow call."""
    from benchmarks.throughput import epoch, stage_seconds
    from voidflow.tasks.ledger import Ledger

    (batch,) = Ledger(db_url).batches(batch_id)
    runs = [run for shot in batch.shots for run in shot.stage_runs if run.finished_at is not None]
    by_stage = stage_seconds(batch)
    first = min(epoch(run.started_at) for run in runs)
    last = max(epoch(run.finished_at) for run in runs)  # type: ignore[arg-type]
    return {
        "stage_mean_s": {stage: _mean(values) for stage, values in by_stage.items()},
        "stages_per_shot_s": round(sum(sum(values) for values in by_stage.values()) / len(batch.shots), 4),
        "batch_recorded_s": round(epoch(batch.created_at) - called, 3),
        "first_stage_started_s": round(first - called, 3),
        "last_stage_finished_s": round(last - called, 3),
        "after_last_stage_s": round(returned - last, 3),
        "flow_run_id": batch.prefect_flow_run_id,
    }


def prefect_breakdown(flow_run_id: str, called: float) -> dict[str, Any]:
    """When the flow run started and the mean duration of its ``process_shot`` task runs, from the Prefect server."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        only = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        while True:
            page = client.read_task_runs(flow_run_filter=only, limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    shots = [run for run in runs if run.name.startswith("shot-")]
    timed = [run for run in shots if run.start_time and run.end_time]
    return {
        "flow_run_started_s": round(flow_run.start_time.timestamp() - called, 3) if flow_run.start_time else None,
        "shot_task_runs": len(shots),
        "shot_task_run_mean_s": _mean([(run.end_time - run.start_time).total_seconds() for run in timed]),
        "shot_task_run_states": sorted({run.state_name or "" for run in shots}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--shots", type=int, default=200, help="shots in the edit (default 200)")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--smoke", action="store_true", help="3 shots (checks the script)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shots = 3
    if args.shots < 1:
        parser.error(f"--shots must be at least 1, got {args.shots}")

    root = Path(tempfile.mkdtemp(prefix="vf-orch-"))
    try:
        # Before Prefect or Ray is imported: private state under root, no telemetry, a temporary Prefect server.
        os.environ["PREFECT_HOME"] = str(root / "prefect")
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        os.environ["RAY_TMPDIR"] = str(root)
        os.environ["RAY_AUTH_MODE"] = "disabled"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        os.environ.pop("PREFECT_API_URL", None)
        document = _run(root, args.shots)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from benchmarks.throughput import emit

    emit(document, args.out)
    return 0 if document["failed"] == 0 else 1


def _run(root: Path, shots: int) -> dict[str, Any]:
    started = time.perf_counter()
    edit, sidecar = make_edit(root, shots)
    media_s = time.perf_counter() - started

    import ray

    from voidflow.flows.batch import run_batch
    from voidflow.flows.params import BatchRequest
    from voidflow.infra.cluster import orchestration
    from voidflow.infra.database import ensure_schema
    from voidflow.infra.settings import Settings

    home = root / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'voidflow.db'}")
    home.mkdir()
    ensure_schema(settings.db_url)
    request = BatchRequest(
        edit=edit, sidecar=sidecar, out_dir=root / "out", db_url=settings.db_url, backend="passthrough"
    )
    started = time.perf_counter()
    with orchestration(settings):
        startup_s = time.perf_counter() - started
        cpus = int(ray.cluster_resources().get("CPU", 0))
        load_before, cpu_before = os.getloadavg()[0], tree_cpu_s()
        called, started = time.time(), time.perf_counter()
        result = run_batch(request)
        wall_s = time.perf_counter() - started
        returned = time.time()
        load_after, cpu_after = os.getloadavg()[0], tree_cpu_s()
        cpu = {kind: round((cpu_after[kind] - cpu_before[kind]) / shots, 4) for kind in cpu_after}
        breakdown = ledger_breakdown(settings.db_url, result.batch_id, called, returned)
        flow_run_id = breakdown.pop("flow_run_id")
        if flow_run_id:
            breakdown.update(prefect_breakdown(flow_run_id, called))
    if len(result.done) != shots:
        print(f"only {len(result.done)} of {shots} shots delivered; failed: {' '.join(result.failed)}", file=sys.stderr)
    return {
        "benchmark": "orchestration",
        "overhead_s_per_shot": round(wall_s / shots, 4),
        "shots": shots,
        "done": len(result.done),
        "failed": len(result.failed),
        "wall_s": round(wall_s, 3),
        "cpus": cpus,
        "card": "cpu",
        "backend": "passthrough",
        "media": f"{WIDTH}x{HEIGHT} ProRes, {CLIP_FRAMES}-frame clips + 2x{request.handles} handles",
        "cpu_s_per_shot": round(sum(cpu.values()), 4),
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "startup_s": round(startup_s, 3),
        "media_s": round(media_s, 3),
        "breakdown": {"cpu_s_per_shot": cpu, **breakdown},
    }


if __name__ == "__main__":
    sys.exit(main())
