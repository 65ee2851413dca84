"""Multi-node for real: Ray's own test cluster on this machine (a head and two nodes with a fake GPU each), a batch
of the ``void`` backend whose GPU workers sleep as long as VOID takes on an H100 (scaled down), one node removed
mid-batch. Its shots run again on the other node, nothing is lost or doubled, and the ledger tells the story; a shot
too large for any node's memory is refused with the numbers while the others go on.

The batch is ``run_batch``'s composition (plan, record, the shot scheduler, finish) around a GPU pool of
``benchmarks._fake_void.SleepWorker`` actors instead of ``GpuWorker``: everything else is the product's own (the
dispatcher, ``process_shot`` on Prefect's Ray task runner, VOID's clip preparation, the ledger).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest
import yaml

from benchmarks import _fake_void
from benchmarks.throughput import make_edit
from voidflow.flows.params import BatchRequest, plan
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.scheduler import ShotScheduler, memory_of
from voidflow.tasks.shots import ShotJob
from voidflow.tasks.void_actors import GpuPool
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.demo import make_demo
from voidflow.void_ops.void.backend import ModelSpec, VoidConfig, VoidSettings
from voidflow.void_ops.void.values import PASS1

SCALE = 0.1  # the fake VOID sleeps a tenth of an H100's time: an 85-frame call ~2 s
LENGTHS = [40, 20, 36, 24, 32, 28]  # frames per small shot, without handles
GIB = 1024**3


@pytest.fixture
def cluster(prefect_api: str) -> Iterator[Any]:
    """A Ray test cluster whose head holds no CPU (shot tasks go to the nodes) and a ``head`` resource (the batch's
    dispatcher stays there). The session's local Ray, when running, is stopped for it and started again after."""
    import ray
    from ray.cluster_utils import Cluster

    restart = ray.is_initialized()
    if restart:
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"head": 1}})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if restart:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def _edit(folder: Path) -> tuple[Path, Path]:
    """Six small shots of a 320x180 plate, and ``big``: 40 frames of a 960x540 plate (three times the pixels)."""
    edit, sidecar = make_edit(folder / "small", LENGTHS, 320, 180)
    big = make_demo(folder / "big", frames=116, width=960, height=540)
    timeline = otio.adapters.read_from_file(str(edit))
    reference = next(iter(otio.adapters.read_from_file(str(big.edit)).find_clips())).media_reference
    start = reference.available_range.start_time
    clip = otio.schema.Clip(
        name="big", media_reference=reference.clone(),
        source_range=otio.opentime.TimeRange(start + otio.opentime.RationalTime(8, start.rate),
                                             otio.opentime.RationalTime(40, start.rate)),
    )  # fmt: skip
    clip.metadata["voidflow"] = {"shot": "big"}
    timeline.tracks[0].append(clip)
    otio.adapters.write_to_file(timeline, str(edit))
    entries = yaml.safe_load(sidecar.read_text())["shots"]
    matte = Path(big.sidecar).parent / yaml.safe_load(big.sidecar.read_text())["shots"]["sh010"]["matte"]
    entries["big"] = {**entries["sh0010"], "matte": str(matte), "priority": 1}  # starts first
    sidecar.write_text(yaml.safe_dump({"shots": entries}))
    return edit, sidecar


def _pool(prefix: str, gpus: int) -> tuple[GpuPool, list[Any]]:
    """The batch's GPU pool as ``start_gpu_pool`` makes it, one sleeping worker per (fake) GPU."""
    import ray
    import ray.cloudpickle

    from voidflow.tasks.placement import Dispatcher

    ray.cloudpickle.register_pickle_by_value(_fake_void)  # the nodes' workers need not import ``benchmarks``
    footprint = {"transformer_gb": 11.1, "vae_gb": 0.4, "text_encoder_gb": 9.5, "vae_channels": 128,
                 "dtype_bytes": 2, "text_encoder_resident": False}  # fmt: skip
    passes = {"pass1": {**PASS1.as_dict(), "device": "fake-gpu", "sleep_scale": SCALE}}
    remote: Any = ray.remote(max_restarts=0, max_task_retries=0)(_fake_void.SleepWorker)
    names = tuple(f"{prefix}-gpu{index}" for index in range(gpus))
    workers = [remote.options(name=name, num_gpus=0.9, num_cpus=0).remote(passes, footprint, SCALE) for name in names]
    described = ray.get([worker.describe.remote() for worker in workers])
    dispatcher = (
        ray.remote(Dispatcher)
        .options(name=f"{prefix}-dispatcher", num_cpus=0, max_restarts=0, resources={"head": 0.01})
        .remote({name: info["memory_gb"] for name, info in zip(names, described, strict=True)}, depth=2, strikes=2)
    )
    first = described[0]
    latents = {name: tuple(value) for name, value in first["latents"].items()}
    pool = GpuPool(f"{prefix}-dispatcher", names, first["passes"], first["footprints"], 120.0, latents)
    return pool, [*workers, dispatcher]


def _run(request: BatchRequest, config: VoidConfig, gpus: int, found: list[str]) -> None:
    """``run_batch``'s composition with the sleeping pool; appends the batch's ID to ``found`` once recorded."""
    from prefect import flow
    from prefect_ray import RayTaskRunner

    @flow(name="multinode-batch", task_runner=RayTaskRunner(), persist_result=False)
    def batch() -> None:
        edit, shots = plan(request)
        ledger = Ledger(request.db_url)
        edit_id = ledger.record_edit(edit.path, edit.sha256, edit.rate, edit.warnings)
        batch_id = ledger.create_batch(
            edit_id=edit_id,
            edit_path=edit.path,
            edit_sha256=edit.sha256,
            out_dir=request.out_dir,
            backend="void",
            params={},
        )
        ledger.add_shots(batch_id, shots)
        found.append(batch_id)
        pool, handles = _pool(f"voidflow-{batch_id[:8]}", gpus)
        job = ShotJob(batch_id=batch_id, db_url=request.db_url, out_dir=request.out_dir, backend="void", seed=0,
                      blend=Blend(), void=config, gpus=pool, shot_timeout_s=600)  # fmt: skip
        ready = [shot for shot in shots if shot.status == "ready"]
        ShotScheduler(ready, ledger=ledger, batch_id=batch_id).run(job)
        ledger.finish_batch(batch_id)
        del handles  # the workers and dispatcher live until the shots are settled

    batch()


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat[stat.rfind(")") + 2 :].split()[1])
    return False


def _running_on(ledger: Ledger, batch_id: str, raylet: int) -> list[str]:
    """Shots with a pass-1 run in progress in a worker process of the node whose raylet is ``raylet``."""
    (batch,) = ledger.batches(batch_id)
    running = [(row.name, run.host) for row in batch.shots for run in row.stage_runs
               if run.state == "running" and run.stage == "pass1"]  # fmt: skip
    return [name for name, host in running if _descends_from(int(host.rsplit(":", 1)[1]), raylet)]


def test_a_lost_node_reruns_its_shots_elsewhere_and_a_too_large_shot_is_refused(
    cluster, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import ray

    edit, sidecar = _edit(tmp_path / "media")
    out = tmp_path / "out"
    request = BatchRequest(edit=edit, sidecar=sidecar, out_dir=out, db_url=db_url, backend="void", select_all=True,
                           handles=8)  # fmt: skip
    settings = VoidSettings(height=64, width=112, min_frames=13, max_frames=85)  # the clips sent to the fake GPUs
    config = VoidConfig(settings, ModelSpec(base="fake", checkpoint=None, settings=PASS1, device="fake-gpu"))
    _, shots = plan(request)
    probe = ShotJob(batch_id="", db_url=db_url, out_dir=out, backend="void", seed=0, blend=Blend(), void=config)
    needs = {shot.name: memory_of(shot, probe) for shot in shots}
    small = max(need.peak_bytes for name, need in needs.items() if need is not None and name != "big")
    big = needs["big"]
    assert big is not None and big.peak_bytes > 2.2 * small
    node_memory = (2 * small + big.peak_bytes) // 2  # two small shots fit a node at once, ``big`` fits none
    nodes = [cluster.add_node(num_cpus=2, num_gpus=1, memory=node_memory) for _ in range(2)]
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)

    found: list[str] = []
    runner = threading.Thread(target=_run, args=(request, config, 2, found))
    runner.start()
    victim, removed = nodes[1], []
    raylet = victim.all_processes["raylet"][0].process.pid
    deadline = time.monotonic() + 150
    while not removed and runner.is_alive() and time.monotonic() < deadline:
        removed = _running_on(Ledger(db_url), found[0], raylet) if found else []
        if removed:
            cluster.remove_node(victim)
        time.sleep(0.05)
    runner.join(timeout=300)
    assert removed, "no shot was seen running on the second node before the batch ended"
    assert not runner.is_alive()

    ledger = Ledger(db_url)
    (batch,) = ledger.batches(found[0])
    rows = {row.name: row for row in batch.shots}
    refused = rows.pop("big")
    assert refused.state == "failed" and not refused.stage_runs
    assert refused.reason == (
        f"shot 'big': needs ~{big.peak_bytes / GIB:.1f} GB of host memory ({big.line()}); "
        f"the largest Ray node has {node_memory / GIB:.1f} GB"
    )
    assert batch.state == "failed"  # the refused shot; every other shot was delivered
    assert {row.state for row in rows.values()} == {"done"}, {n: (r.state, r.reason) for n, r in rows.items()}
    for name, row in rows.items():
        delivered = [run for run in row.stage_runs if run.stage == "deliver" and run.state == "done"]
        assert len(delivered) == 1, f"{name}: {len(delivered)} deliveries"
        _, versions = ledger.history(name)
        finished = [version for version in versions if version.status in ("delivered", "qc_failed")]
        assert [version.label for version in finished] == [row.version], f"{name}: {versions}"
    # The story: each removed shot's pass 1 was lost with its worker, then ran again in a new attempt and finished.
    for name in removed:
        runs = [(run.stage, run.state, run.attempt, run.error_class) for run in rows[name].stage_runs]
        lost = [run for run in runs if run[:2] == ("pass1", "lost")]
        assert lost and lost[0][3] == "WorkerLost", runs
        again = [run for run in runs if run[:2] == ("pass1", "done")]
        assert len(again) == 1 and again[0][2] > lost[0][2], runs
    # Every pass-1 call that finished ran on a GPU worker still alive, or before its node went.
    calls = [call for row in rows.values() for run in row.stage_runs if run.stage == "pass1" and run.state == "done"
             for call in run.params.get("gpu_runs", [])]  # fmt: skip
    assert {call["gpu"] for call in calls} <= {f"voidflow-{found[0][:8]}-gpu0", f"voidflow-{found[0][:8]}-gpu1"}
    assert all(call["sleep"]["scale"] == SCALE for call in calls)
