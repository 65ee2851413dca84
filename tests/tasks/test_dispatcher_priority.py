"""The shared GPU service's dispatcher (issue 17, items 1 and 2): batch priorities on a real Ray actor, workers that
join and leave, and a vacant service that says so."""

from __future__ import annotations

import asyncio
import time

from voidflow.tasks.placement import Dispatcher, GpuQueue, Grant, Refusal, Request


def _request(shot: str, *, batch: str = "b1", batch_priority: int = 0, frames: int = 10) -> Request:
    return Request(shot, 10.0, 1.0, 0, frames, batch_priority, batch)


def test_a_higher_priority_batch_queued_later_is_granted_first_on_a_ray_actor(ray_cluster) -> None:  # type: ignore[no-untyped-def]
    """Two batches wait for one GPU: the nightly one (priority 0) asked first, with a longer shot; an artist's rerun
    (priority 10) asked after. The rerun's call gets the GPU first; the nightly call waits until it is handed back."""
    import ray

    dispatcher = ray.remote(Dispatcher).options(num_cpus=0).remote({"gpu0": 80.0}, depth=1)
    try:
        running = ray.get(dispatcher.acquire.remote(_request("sh001", batch="nightly")))
        assert isinstance(running, Grant)
        # One caller's calls reach the actor in order: both requests wait before the lease comes back.
        nightly = dispatcher.acquire.remote(_request("sh010", batch="nightly", frames=200))
        rerun = dispatcher.acquire.remote(_request("sh010", batch="rerun", batch_priority=10, frames=20))
        assert ray.get(dispatcher.release.remote(running.lease, "ok")) is None
        first = ray.get(rerun)
        assert isinstance(first, Grant) and first.gpu == "gpu0"
        assert ray.get(dispatcher.stats.remote())["waiting"] == 1  # the nightly call still waits
        ray.get(dispatcher.release.remote(first.lease, "ok"))
        second = ray.get(nightly)
        assert isinstance(second, Grant) and second.lease > first.lease
    finally:
        ray.kill(dispatcher, no_restart=True)


def test_same_priority_is_served_by_shot_priority_then_length_then_arrival() -> None:
    async def scenario() -> list[str]:
        dispatcher = Dispatcher({"gpu0": 80.0}, depth=1)
        first = await dispatcher.acquire(_request("running"))
        assert isinstance(first, Grant)
        order: list[str] = []

        async def wait(request: Request) -> None:
            answer = await dispatcher.acquire(request)
            assert isinstance(answer, Grant)
            order.append(f"{request.batch}/{request.shot}")
            await asyncio.sleep(0)
            dispatcher.release(answer.lease, "ok")

        waiters = [
            asyncio.create_task(wait(_request("sh010", batch="a", frames=50))),
            asyncio.create_task(wait(_request("sh010", batch="b", frames=50))),
            asyncio.create_task(wait(_request("sh020", batch="b", frames=90))),
            asyncio.create_task(wait(_request("sh030", batch="c", batch_priority=1, frames=5))),
        ]
        await asyncio.sleep(0)
        dispatcher.release(first.lease, "ok")
        await asyncio.gather(*waiters)
        return order

    assert asyncio.run(scenario()) == ["c/sh030", "b/sh020", "a/sh010", "b/sh010"]


def test_a_dead_shot_gives_back_only_its_own_batchs_leases() -> None:
    queue = GpuQueue({"gpu0": 80.0}, depth=2)
    assert queue.grant(_request("sh010", batch="nightly")) is not None
    assert queue.grant(_request("sh010", batch="rerun")) is not None
    queue.forget("sh010", "nightly")
    assert queue.stats()["gpu0"]["leased"] == 1
    queue.forget("sh010")  # no batch named: every batch's
    assert queue.stats()["gpu0"]["leased"] == 0


def test_an_idle_worker_retires_and_a_vacant_service_says_so_until_a_batch_joins_it_again() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher({"gpu0": 80.0, "gpu1": 80.0}, depth=1, idle_s=600.0)
        now = time.monotonic()
        busy = await dispatcher.acquire(_request("sh010"))
        assert isinstance(busy, Grant) and busy.gpu == "gpu0"
        assert dispatcher.retire_idle(now + 1.0) == []  # not idle long enough
        assert dispatcher.retire_idle(now + 601.0) == ["gpu1"]  # gpu0 holds a lease
        waiting = asyncio.ensure_future(dispatcher.acquire(_request("sh020")))
        await asyncio.sleep(0)
        assert dispatcher.retire_idle(now + 1e6) == []  # nothing retires while a call waits
        dispatcher.release(busy.lease, "ok")
        granted = await waiting
        assert isinstance(granted, Grant) and granted.gpu == "gpu0"
        dispatcher.release(granted.lease, "ok")
        assert dispatcher.retire_idle(time.monotonic() + 601.0) == ["gpu0"]
        vacant = await dispatcher.acquire(_request("sh030"))
        assert isinstance(vacant, Refusal) and vacant.vacant
        assert vacant.reason == "shot 'sh030': the GPU service has no worker (they left idle)"
        assert await dispatcher.join({"gpu0": 80.0}, {"passes": {}}) == ["gpu0"]
        members, about = dispatcher.hold()
        assert (members, about) == ({"gpu0": 80.0}, {"passes": {}})
        assert isinstance(await dispatcher.acquire(_request("sh030")), Grant)

    asyncio.run(scenario())


def test_a_quarantined_worker_is_retired_and_joins_again_fresh() -> None:
    retired: list[str] = []

    class Recording(Dispatcher):
        def _retire(self, name: str) -> None:
            retired.append(name)

    async def scenario() -> None:
        dispatcher = Recording({"gpu0": 80.0}, depth=1)
        lease = await dispatcher.acquire(_request("sh010"))
        assert isinstance(lease, Grant)
        note = dispatcher.release(lease.lease, "stuck")
        assert note is not None and note.startswith("GPU gpu0 quarantined until a batch starts its worker again")
        assert retired == ["gpu0"]
        refused = await dispatcher.acquire(_request("sh020"))
        assert isinstance(refused, Refusal) and not refused.vacant
        assert "every GPU of the service is quarantined" in refused.reason
        assert await dispatcher.join({"gpu0": 80.0}, {}) == ["gpu0"]  # a batch started it again
        assert await dispatcher.join({"gpu0": 80.0}, {}) == []  # already serving: kept as it is
        assert dispatcher.stats()["gpus"] == {
            "gpu0": {"busy_s": 0.0, "kernel_s": 0.0, "calls": 0, "leased": 0, "quarantined": ""}
        }

    asyncio.run(scenario())


def test_without_idle_s_nothing_ever_retires() -> None:
    dispatcher = Dispatcher({"gpu0": 80.0}, depth=1, idle_s=None)
    assert dispatcher.retire_idle(time.monotonic() + 1e9) == []
