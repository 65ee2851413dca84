"""Which GPU runs the next VOID call: a priority queue of requests over the batch's GPU workers.

Shot tasks ask for a lease before each model call and hand it back after. A lease goes to the highest-priority
waiting request (sidecar priority, then the longest shot) that fits a GPU with a free place: each GPU takes up to
``depth`` leases, one running and the rest queued on its worker, so the next clip is already there when the card
finishes the current one. Among the GPUs that fit, the one with the least work leased wins; a request that needs
more memory than a card has never goes to it.

A GPU whose calls keep failing (``strikes`` failures in a row, not counting bad input) or that hangs or dies is
quarantined for the rest of the batch; requests that no usable GPU can take are refused with the reason.

``GpuQueue`` is the bookkeeping (plain Python); ``Dispatcher`` serves it to concurrent callers with asyncio and runs
as one Ray actor per batch (``tasks.void_actors.start_gpu_pool``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Dispatcher", "GpuQueue", "Grant", "Outcome", "Refusal", "Request"]

Outcome = Literal["ok", "failed", "lost", "stuck", "bad_input"]


@dataclass(frozen=True, slots=True)
class Request:
    """One model call waiting for a GPU.

    Attributes:
        shot: the shot's name (for messages and for ``forget``).
        need_gb: the call's memory estimate with its cheapest recipe.
        cost: relative work (frames x steps x forwards per step), for balancing.
        priority: higher first; then ``frames``, longer first.
        frames: the shot's frame count.
    """

    shot: str
    need_gb: float
    cost: float
    priority: int = 0
    frames: int = 0


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease on one GPU worker."""

    lease: int
    gpu: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """No usable GPU can ever take the request; ``reason`` says why."""

    reason: str


@dataclass(slots=True)
class _Gpu:
    name: str
    memory_gb: float | None
    leased: dict[int, Request] = field(default_factory=dict)
    strikes: int = 0
    quarantined: str = ""
    busy_s: float = 0.0
    calls: int = 0


class GpuQueue:
    """Leases on GPUs: fit, balance, strikes and quarantine."""

    def __init__(self, gpus: Mapping[str, float | None], *, depth: int = 2, strikes: int = 2) -> None:
        if not gpus:
            raise ValueError("a GPU queue needs at least one GPU")
        self._gpus = {name: _Gpu(name, memory) for name, memory in gpus.items()}
        self.depth = depth
        self.strikes = strikes
        self._ids = itertools.count(1)
        self._owner: dict[int, str] = {}

    def refusal(self, request: Request) -> Refusal | None:
        """Why no usable GPU can ever take ``request``, or None when one can."""
        usable = [gpu for gpu in self._gpus.values() if not gpu.quarantined]
        if not usable:
            reasons = "; ".join(f"{gpu.name}: {gpu.quarantined}" for gpu in self._gpus.values())
            return Refusal(f"shot '{request.shot}': every GPU of the batch is quarantined ({reasons})")
        sized = [gpu.memory_gb for gpu in usable if gpu.memory_gb is not None]
        if len(sized) == len(usable) and max(sized) < request.need_gb:
            return Refusal(
                f"shot '{request.shot}': needs ~{request.need_gb:.1f} GB even with the cheapest memory recipe; "
                f"the largest usable GPU has {max(sized):.1f} GB (shorten the shot or lower max_frames)"
            )
        return None

    def grant(self, request: Request) -> Grant | None:
        """Lease the least-loaded GPU with a free place that fits ``request``; None when all such are full."""
        free = [
            gpu
            for gpu in self._gpus.values()
            if not gpu.quarantined
            and len(gpu.leased) < self.depth
            and (gpu.memory_gb is None or gpu.memory_gb >= request.need_gb)
        ]
        if not free:
            return None
        gpu = min(free, key=lambda g: (sum(r.cost for r in g.leased.values()), g.name))
        lease = next(self._ids)
        gpu.leased[lease] = request
        self._owner[lease] = gpu.name
        return Grant(lease, gpu.name)

    def release(self, lease: int, outcome: Outcome, busy_s: float = 0.0) -> str | None:
        """Hand a lease back with how the call went; returns a note when this quarantined its GPU.

        ``ok`` clears the GPU's strikes; ``failed`` (out of memory with every recipe, an unexpected error) adds one;
        ``lost`` (the worker died) and ``stuck`` (it ran past its timeout and was killed) quarantine at once;
        ``bad_input`` is the shot's fault and changes nothing.
        """
        name = self._owner.pop(lease, None)
        if name is None:
            return None
        gpu = self._gpus[name]
        request = gpu.leased.pop(lease)
        gpu.busy_s += busy_s
        gpu.calls += outcome == "ok"
        if outcome == "ok":
            gpu.strikes = 0
        if gpu.quarantined or outcome in ("ok", "bad_input"):
            return None
        gpu.strikes += 1
        if outcome in ("lost", "stuck") or gpu.strikes >= self.strikes:
            what = {"lost": "its worker died", "stuck": "a call hung past its timeout"}.get(
                outcome, f"{gpu.strikes} failures in a row"
            )
            gpu.quarantined = f"{what} (last: shot '{request.shot}')"
            return f"GPU {name} quarantined for the rest of the batch: {gpu.quarantined}"
        return None

    def forget(self, shot: str) -> None:
        """Drop the leases of a shot whose task died without handing them back."""
        for lease, name in list(self._owner.items()):
            if self._gpus[name].leased[lease].shot == shot:
                del self._gpus[name].leased[lease]
                del self._owner[lease]

    def stats(self) -> dict[str, dict[str, object]]:
        """Per GPU: seconds busy in finished calls, calls done, leases held, quarantine reason."""
        return {
            gpu.name: {
                "busy_s": round(gpu.busy_s, 3),
                "calls": gpu.calls,
                "leased": len(gpu.leased),
                "quarantined": gpu.quarantined,
            }
            for gpu in self._gpus.values()
        }


class Dispatcher:
    """A ``GpuQueue`` for concurrent callers: ``acquire`` waits, in priority order, until a lease is granted."""

    def __init__(self, gpus: Mapping[str, float | None], *, depth: int = 2, strikes: int = 2) -> None:
        self._queue = GpuQueue(gpus, depth=depth, strikes=strikes)
        self._waiting: list[tuple[tuple[int, int, int], Request, asyncio.Future[Grant | Refusal]]] = []
        self._order = itertools.count()

    async def acquire(self, request: Request) -> Grant | Refusal:
        """Wait for a lease on a GPU that fits ``request``, or a refusal when none ever will."""
        future: asyncio.Future[Grant | Refusal] = asyncio.get_running_loop().create_future()
        self._waiting.append(((-request.priority, -request.frames, next(self._order)), request, future))
        self._dispatch()
        return await future

    def release(self, lease: int, outcome: Outcome, busy_s: float = 0.0) -> str | None:
        """Hand a lease back (see ``GpuQueue.release``) and serve the waiting requests."""
        note = self._queue.release(lease, outcome, busy_s)
        self._dispatch()
        return note

    def forget(self, shot: str) -> None:
        """Drop a dead shot task's leases and serve the waiting requests."""
        self._queue.forget(shot)
        self._dispatch()

    def stats(self) -> dict[str, object]:
        """Per-GPU numbers and how many requests wait."""
        return {"gpus": self._queue.stats(), "waiting": len(self._waiting)}

    def _dispatch(self) -> None:
        self._waiting.sort(key=lambda waiter: waiter[0])
        still: list[tuple[tuple[int, int, int], Request, asyncio.Future[Grant | Refusal]]] = []
        for key, request, future in self._waiting:
            answer = self._queue.refusal(request) or self._queue.grant(request)
            if answer is None:
                still.append((key, request, future))
            elif not future.done():
                future.set_result(answer)
        self._waiting = still
