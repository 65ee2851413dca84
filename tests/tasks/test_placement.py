"""Placement of VOID calls on GPUs: fit, balance, priority, strikes and quarantine (issues 8 and 9)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from voidflow.tasks.placement import Dispatcher, GpuQueue, Grant, Refusal, Request
from voidflow.tasks.progress import Progress, kernel_busy_fraction, occupancy_fraction
from voidflow.tasks.scheduler import scheduling_order
from voidflow.void_ops.shots import ShotInstructions


def _request(shot: str, need: float = 10.0, cost: float = 1.0, priority: int = 0, frames: int = 0) -> Request:
    return Request(shot, need, cost, priority, frames)


def test_a_lease_goes_to_the_least_loaded_gpu_that_fits_and_never_past_the_depth() -> None:
    queue = GpuQueue({"gpu0": 80.0, "gpu1": 40.0}, depth=2)
    big = queue.grant(_request("sh010", need=60.0, cost=5.0))
    assert big is not None and big.gpu == "gpu0"  # only the 80 GB card fits it
    small = queue.grant(_request("sh020", need=20.0, cost=1.0))
    assert small is not None and small.gpu == "gpu1"  # the less loaded card
    assert queue.grant(_request("sh030", need=20.0)).gpu == "gpu1"  # type: ignore[union-attr]
    assert queue.grant(_request("sh040", need=20.0)).gpu == "gpu0"  # type: ignore[union-attr]
    assert queue.grant(_request("sh050", need=20.0)) is None  # both cards hold their two leases
    queue.release(small.lease, "ok", busy_s=3.0, kernel_s=2.5)
    assert queue.grant(_request("sh050", need=20.0)).gpu == "gpu1"  # type: ignore[union-attr]
    assert queue.stats()["gpu1"] == {"busy_s": 3.0, "kernel_s": 2.5, "calls": 1, "leased": 2, "quarantined": ""}


def test_a_shot_too_large_for_every_card_is_refused_with_the_numbers() -> None:
    queue = GpuQueue({"gpu0": 80.0, "gpu1": 40.0})
    refusal = queue.refusal(_request("sh090", need=95.5))
    assert refusal is not None
    assert (
        refusal.reason.startswith("shot 'sh090': needs ~95.5 GB") and "largest usable GPU has 80.0 GB" in refusal.reason
    )
    assert queue.refusal(_request("sh010", need=60.0)) is None
    assert GpuQueue({"cpu": None}).refusal(_request("sh090", need=1e6)) is None  # no limit off the GPU


def test_a_gpu_that_keeps_failing_is_quarantined_and_work_goes_elsewhere() -> None:
    queue = GpuQueue({"gpu0": 80.0, "gpu1": 80.0}, depth=1, strikes=2)
    first = queue.grant(_request("sh010"))
    assert first is not None and first.gpu == "gpu0"
    assert queue.release(first.lease, "failed") is None  # one strike
    again = queue.grant(_request("sh020"))
    assert again is not None and again.gpu == "gpu0"
    assert queue.release(again.lease, "bad_input") is None  # the shot's fault: no strike
    third = queue.grant(_request("sh030"))
    assert third is not None and third.gpu == "gpu0"
    note = queue.release(third.lease, "failed")
    assert (
        note == "GPU gpu0 quarantined until a batch starts its worker again: 2 failures in a row (last: shot 'sh030')"
    )
    after = queue.grant(_request("sh040"))
    assert after is not None and after.gpu == "gpu1"
    hung = GpuQueue({"gpu0": 80.0}, depth=1)
    lease = hung.grant(_request("sh010"))
    assert lease is not None
    assert "a call hung past its timeout" in str(hung.release(lease.lease, "stuck"))
    refusal = hung.refusal(_request("sh020"))
    assert refusal is not None and "every GPU of the service is quarantined (gpu0: a call hung" in refusal.reason


def test_a_dead_shot_task_gives_its_leases_back() -> None:
    queue = GpuQueue({"gpu0": 80.0}, depth=1)
    assert queue.grant(_request("sh010")) is not None
    assert queue.grant(_request("sh020")) is None
    queue.forget("sh010")
    assert queue.grant(_request("sh020")) is not None


def test_waiting_calls_are_served_by_priority_then_length() -> None:
    async def scenario() -> list[str]:
        dispatcher = Dispatcher({"gpu0": 80.0}, depth=1)
        first = await dispatcher.acquire(_request("running"))
        assert isinstance(first, Grant)
        order: list[str] = []

        async def wait(request: Request) -> None:
            answer = await dispatcher.acquire(request)
            assert isinstance(answer, Grant)
            order.append(request.shot)
            await asyncio.sleep(0)
            dispatcher.release(answer.lease, "ok")

        waiters = [
            asyncio.create_task(wait(_request("short", frames=20))),
            asyncio.create_task(wait(_request("long", frames=200))),
            asyncio.create_task(wait(_request("urgent", frames=10, priority=5))),
        ]
        await asyncio.sleep(0)
        assert dispatcher.stats()["waiting"] == 3
        dispatcher.release(first.lease, "ok")
        await asyncio.gather(*waiters)
        too_big = await Dispatcher({"gpu0": 8.0}).acquire(_request("huge", need=9.0))
        assert isinstance(too_big, Refusal)
        return order

    assert asyncio.run(scenario()) == ["urgent", "long", "short"]


def test_shots_start_by_priority_then_longest_first(small_demo) -> None:  # type: ignore[no-untyped-def]
    from voidflow.void_ops.intake import Selection, plan_shots, read_edit

    shots = plan_shots(read_edit(small_demo.edit), selection=Selection(everything=True))
    assert len(shots) >= 3
    lengths = [shot.frames for shot in scheduling_order(shots)]
    assert lengths == sorted(lengths, reverse=True)
    urgent = dataclasses.replace(shots[-1], instructions=ShotInstructions(priority=1))
    assert scheduling_order([*shots[:-1], urgent])[0] is urgent


def test_progress_line_occupancy_and_kernel_busy() -> None:
    progress = Progress(total=10, done=4, failed=1, running=3, gpu_occupancy=0.974, gpu_kernels=0.8)
    line = progress.line()
    assert line.startswith("5/10 · 4 done · 3 running · 1 failed · 2 queued · GPU occupied 97% (kernels 80%) · 0m0")
    assert "(kernels" not in Progress(total=1, gpu_occupancy=0.5).line()  # CPU workers time no kernels
    stats = {"gpus": {"gpu0": {"busy_s": 90.0, "kernel_s": 80.0}, "gpu1": {"busy_s": 60.0, "kernel_s": 40.0}}}
    assert occupancy_fraction(stats, since=0.0, now=100.0) == pytest.approx(0.75)
    assert kernel_busy_fraction(stats, since=0.0, now=100.0) == pytest.approx(0.6)
    cpu = {"gpus": {"gpu0": {"busy_s": 90.0, "kernel_s": 0.0}}}
    assert occupancy_fraction(cpu, since=0.0, now=100.0) == pytest.approx(0.9)
    assert kernel_busy_fraction(cpu, since=0.0, now=100.0) is None
    assert occupancy_fraction({"gpus": {}}, since=0.0, now=100.0) is None
