"""One GPU service per cluster (issue 17, items 1 and 2): batches that ask for the same models share its workers, on
one Ray and one PostgreSQL ledger; its workers outlive a batch, leave when idle and come back for the next one.

VOID runs on the CPU here (``--device cpu``) with tiny random-weight models, as in ``tests/void_ops/test_void.py``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from voidflow.void_ops.void.tiny import TinyVoid, build_tiny_void

pytestmark = pytest.mark.usefixtures("ray_cluster")

#: Tiny clips: one shot window (the demo's shots are 44 frames with handles), two steps, 4-latent windows.
_GEOMETRY = {"height": 64, "width": 96, "min_frames": 13, "max_frames": 45, "window": 4, "overlap": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyVoid:
    return build_tiny_void(tmp_path_factory.mktemp("tiny-void-shared"))


def _options(tiny: TinyVoid, steps: int = 2) -> Any:
    from voidflow.flows.params import VoidOptions

    return VoidOptions(base=tiny.base, pass1_weights=tiny.pass1, pass1_steps=steps, device="cpu", **_GEOMETRY)


def _request(small_demo, db_url: str, out: Path, **fields: Any) -> Any:  # type: ignore[no-untyped-def]
    from voidflow.flows.params import BatchRequest

    return BatchRequest(
        edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=out, db_url=db_url, output="png", **fields
    )


@pytest.mark.parametrize("any_db_url", ["postgresql"], indirect=True)
def test_two_batches_and_a_rerun_at_once_share_one_worker_and_no_version_is_doubled(  # type: ignore[no-untyped-def]
    small_demo, tiny: TinyVoid, any_db_url: str, tmp_path: Path
) -> None:
    from voidflow.flows.batch import run_batch
    from voidflow.tasks.ledger import Ledger
    from voidflow.tasks.void_actors import NAMESPACE, GpuPool, stop_gpu_service

    parent = run_batch(_request(small_demo, any_db_url, tmp_path / "p", backend="passthrough", only_shots=("sh010",)))
    assert parent.done == ("sh010",)
    void = {"backend": "void", "void": _options(tiny)}
    requests = [  # two nightly-like batches (different seeds, so nothing is cached) and an artist's rerun
        _request(small_demo, any_db_url, tmp_path / "a", **void, seed=1, only_shots=("sh010", "sh020")),
        _request(small_demo, any_db_url, tmp_path / "b", **void, seed=2, only_shots=("sh010", "sh030")),
        _request(
            small_demo, any_db_url, tmp_path / "r", **void, only_shots=("sh010",),
            parent_batch=parent.batch_id, force_from="pass1", priority=10,
        ),
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run_batch, requests))
    assert [result.done for result in results] == [("sh010", "sh020"), ("sh010", "sh030"), ("sh010",)], results
    assert all(result.state == "done" for result in results)

    ledger = Ledger(any_db_url)
    workers: set[str] = set()
    for result in results:
        (batch,) = ledger.batches(result.batch_id)
        for shot in (shot for shot in batch.shots if shot.name in result.done):
            (pass1,) = [run for run in shot.stage_runs if run.stage == "pass1" and run.state == "done"]
            workers |= {str(run["gpu"]) for run in pass1.params["gpu_runs"]}
    (worker,) = workers  # every call of the three batches ran on the service's one (CPU) worker
    assert worker.startswith("voidflow-void-") and worker.endswith("-gpu0")
    priorities = [ledger.batches(result.batch_id)[0].params["priority"] for result in results]
    assert priorities == [0, 0, 10]  # recorded with each batch

    versions = ledger.versions_of(["sh010", "sh020", "sh030"])
    sh010 = [(v.number, v.batch_id) for v in versions if v.shot_name == "sh010"]
    assert [number for number, _ in sh010] == [1, 2, 3, 4]  # one each: the parent, both batches, the rerun
    assert {batch for _, batch in sh010} == {parent.batch_id, *(result.batch_id for result in results)}
    assert sorted((v.shot_name, v.number) for v in versions if v.shot_name != "sh010") == [("sh020", 1), ("sh030", 1)]

    # The service outlived the three batches; stop it so it holds nothing for the tests after this one.
    import ray

    assert _alive(worker)
    stop_gpu_service(GpuPool(worker.replace("-gpu0", "-dispatcher"), (worker,), {}, {}, 1.0, namespace=NAMESPACE))
    with pytest.raises(ValueError):
        ray.get_actor(worker.replace("-gpu0", "-dispatcher"), namespace=NAMESPACE)


def test_an_idle_worker_leaves_and_a_shot_or_the_next_batch_starts_it_again(tiny: TinyVoid) -> None:
    """Scale to zero: with ``idle_s`` 0.5 the service's worker is retired once idle (its GPU could go back to the
    autoscaler). A shot's model call that finds the service empty starts the worker again and runs on it; starting
    the service again (the next batch, whose idle setting then applies) brings a fresh worker under the same name,
    and the dispatcher knows it."""
    import numpy as np
    import ray

    from voidflow.tasks.void_actors import NAMESPACE, ActorModel, start_gpu_service, stop_gpu_service
    from voidflow.void_ops.void.backend import PassInput, VoidSettings, prepare_clip

    specs = {"pass1": _options(tiny, steps=1).config(pass2=False).pass1}
    pool = start_gpu_service(specs, timeout_s=60.0, on_cpu=True, idle_s=0.5)
    (name,) = pool.workers
    first = ray.get_actor(name, namespace=NAMESPACE)
    try:
        deadline = time.monotonic() + 120.0  # a bounded wait for the retirement, not a timing assertion
        while _alive(name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(name), f"{name} still running after 120 s with idle_s 0.5"
        stats = ray.get(ray.get_actor(pool.dispatcher, namespace=NAMESPACE).stats.remote())
        assert stats["gpus"] == {}  # the dispatcher dropped it

        frames = np.random.default_rng(0).integers(0, 255, (20, 90, 160, 3), dtype=np.uint8)
        quadmask = np.full((20, 90, 160), 255, np.uint8)
        quadmask[:, 30:60, 40:80] = 0
        clip = prepare_clip(frames, quadmask, VoidSettings(height=64, width=96, min_frames=13, max_frames=45))
        model = ActorModel(pool, "pass1", shot="sh010", frames=20)
        filled = model(PassInput(clip, seed=0, prompt="a quiet street"))
        assert filled.shape[1:] == (64, 96, 3) and [run["gpu"] for run in model.runs] == [name]

        again = start_gpu_service(specs, timeout_s=60.0, on_cpu=True, idle_s=600.0)
        assert again.workers == (name,) and again.params == pool.params
        assert ray.get_actor(name, namespace=NAMESPACE)._actor_id != first._actor_id  # a new process
        stats = ray.get(ray.get_actor(pool.dispatcher, namespace=NAMESPACE).stats.remote())
        assert list(stats["gpus"]) == [name]
    finally:
        stop_gpu_service(pool)


def _alive(name: str) -> bool:
    import ray

    from voidflow.tasks.void_actors import NAMESPACE

    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True
