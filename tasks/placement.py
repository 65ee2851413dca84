"""Which GPU runs the next VOID call: a priority queue of requests over a GPU service's workers.

Shot tasks of every batch that shares the service ask for a lease before each model call and hand it back after. A
lease goes to the highest-priority waiting request (the batch's priority, then the sidecar's, then the longest shot,
then arrival) that fits a GPU with a free place: each GPU takes up to
``depth`` leases, one running and the rest queued on its worker, so the next clip is already there when the card
finishes the current one. Among the GPUs that fit, the one with the least work leased wins; a request that needs
more memory than a card has never goes to it.

A GPU whose calls keep failing (``strikes`` failures in a row, not counting bad input) or that hangs or dies is
quarantined until a batch starts its worker again (the dispatcher retires it once its leases are back); requests that
no usable GPU can take are refused with the reason.

Workers join the queue as batches start them and leave it when they are retired: quarantined, or idle (no lease and
nothing waiting) for ``idle_s`` seconds, so an autoscaled GPU group can shrink to zero. A request that finds no worker
at all is refused as ``vacant``; its caller starts the workers again and asks once more.

``GpuQueue`` is the bookkeeping (plain Python); ``Dispatcher`` serves it to concurrent callers with asyncio and runs
as one long-lived Ray actor per GPU service (``tasks.void_actors.GpuService``), which kills the workers it retires.
"""

from __future__ import annotations

import asyncio
import itertools
import time
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
        priority: the sidecar's shot priority, higher first (after ``batch_priority``); then ``frames``, longer first.
        frames: the shot's frame count.
        batch_priority: the batch's priority (``--priority``), higher first, before everything else.
        batch: the batch's ID (a shot name may be in two batches at once).
    """

    shot: str
    need_gb: float
    cost: float
    priority: int = 0
    frames: int = 0
    batch_priority: int = 0
    batch: str = ""


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease on one GPU worker."""

    lease: int
    gpu: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """No usable GPU can take the request; ``reason`` says why. ``vacant``: the service has no worker left (they
    were retired), so starting them again would serve it."""

    reason: str
    vacant: bool = False


@dataclass(slots=True)
class _Gpu:
    name: str
    memory_gb: float | None
    leased: dict[int, Request] = field(default_factory=dict)
    strikes: int = 0
    quarantined: str = ""
    busy_s: float = 0.0
    kernel_s: float = 0.0
    calls: int = 0


class GpuQueue:
    """Leases on GPUs: fit, balance, strikes and quarantine."""

    def __init__(self, gpus: Mapping[str, float | None], *, depth: int = 2, strikes: int = 2) -> None:
        self._gpus = {name: _Gpu(name, memory) for name, memory in gpus.items()}
        self.depth = depth
        self.strikes = strikes
        self._ids = itertools.count(1)
        self._owner: dict[int, str] = {}

    def refusal(self, request: Request) -> Refusal | None:
        """Why no usable GPU can take ``request``, or None when one can."""
        if not self._gpus:
            return Refusal(f"shot '{request.shot}': the GPU service has no worker (they left idle)", vacant=True)
        usable = [gpu for gpu in self._gpus.values() if not gpu.quarantined]
        if not usable:
            reasons = "; ".join(f"{gpu.name}: {gpu.quarantined}" for gpu in self._gpus.values())
            return Refusal(f"shot '{request.shot}': every GPU of the service is quarantined ({reasons})")
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

    def release(self, lease: int, outcome: Outcome, busy_s: float = 0.0, kernel_s: float = 0.0) -> str | None:
        """Hand a lease back with how the call went (``busy_s``: the seconds it occupied the GPU's worker;
        ``kernel_s``: the GPU seconds of its kernels); returns a note when this quarantined its GPU.

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
        gpu.kernel_s += kernel_s
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
            return f"GPU {name} quarantined until a batch starts its worker again: {gpu.quarantined}"
        return None

    def forget(self, shot: str, batch: str = "") -> None:
        """Drop the leases of a shot (of ``batch``, when given) whose task died without handing them back."""
        for lease, name in list(self._owner.items()):
            request = self._gpus[name].leased[lease]
            if request.shot == shot and (not batch or request.batch == batch):
                del self._gpus[name].leased[lease]
                del self._owner[lease]

    def join(self, name: str, memory_gb: float | None) -> bool:
        """Add a worker, or give a quarantined one with no lease a fresh start; False when it is already serving."""
        gpu = self._gpus.get(name)
        if gpu is not None and (not gpu.quarantined or gpu.leased):
            return False
        self._gpus[name] = _Gpu(name, memory_gb)
        return True

    def drop(self, name: str) -> None:
        """Take a worker out of the queue (its outstanding leases, if any, are released as unknown)."""
        gpu = self._gpus.pop(name, None)
        if gpu is not None:
            for lease in gpu.leased:
                del self._owner[lease]

    def owner(self, lease: int) -> str | None:
        """The worker that holds ``lease``, or None when it is not (or no longer) held."""
        return self._owner.get(lease)

    def members(self) -> dict[str, float | None]:
        """The workers in the queue, quarantined included, with their memory."""
        return {gpu.name: gpu.memory_gb for gpu in self._gpus.values()}

    def free(self, name: str) -> bool:
        """Whether worker ``name`` holds no lease."""
        return not self._gpus[name].leased

    def quarantined(self, name: str) -> bool:
        """Whether worker ``name`` is quarantined."""
        return bool(self._gpus[name].quarantined)

    def stats(self) -> dict[str, dict[str, object]]:
        """Per GPU: seconds occupied by finished calls, their kernels' GPU seconds, calls done, leases held,
        quarantine reason."""
        return {
            gpu.name: {
                "busy_s": round(gpu.busy_s, 3),
                "kernel_s": round(gpu.kernel_s, 3),
                "calls": gpu.calls,
                "leased": len(gpu.leased),
                "quarantined": gpu.quarantined,
            }
            for gpu in self._gpus.values()
        }


_Waiter = tuple[tuple[int, int, int, int], Request, "asyncio.Future[Grant | Refusal]"]


class Dispatcher:
    """A ``GpuQueue`` for concurrent callers: ``acquire`` waits, in priority order, until a lease is granted.

    With ``idle_s``, a watch retires workers that held no lease for that long while nothing waited
    (``retire_idle``); a quarantined worker is retired once its leases are back, but stays in the queue, quarantined,
    until a batch joins it again. ``_retire`` is told each name (``tasks.void_actors.GpuService`` kills it).
    """

    def __init__(
        self, gpus: Mapping[str, float | None], *, depth: int = 2, strikes: int = 2, idle_s: float | None = None
    ) -> None:
        self._queue = GpuQueue(gpus, depth=depth, strikes=strikes)
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()
        self._idle_s = idle_s
        self._used = dict.fromkeys(gpus, time.monotonic())
        self._about: dict[str, object] = {}
        self._watch: asyncio.Task[None] | None = None

    async def acquire(self, request: Request) -> Grant | Refusal:
        """Wait for a lease on a GPU that fits ``request``, or a refusal when none can take it."""
        self._start_watch()
        future: asyncio.Future[Grant | Refusal] = asyncio.get_running_loop().create_future()
        key = (-request.batch_priority, -request.priority, -request.frames, next(self._order))
        self._waiting.append((key, request, future))
        self._dispatch()
        return await future

    def release(self, lease: int, outcome: Outcome, busy_s: float = 0.0, kernel_s: float = 0.0) -> str | None:
        """Hand a lease back (see ``GpuQueue.release``) and serve the waiting requests."""
        name = self._queue.owner(lease)
        note = self._queue.release(lease, outcome, busy_s, kernel_s)
        if name is not None:
            self._used[name] = time.monotonic()
            if self._queue.quarantined(name) and self._queue.free(name):
                self._retire(name)  # its process goes (freeing the GPU); it stays quarantined until a batch rejoins it
        self._dispatch()
        return note

    def forget(self, shot: str, batch: str = "") -> None:
        """Drop a dead shot task's leases and serve the waiting requests."""
        self._queue.forget(shot, batch)
        self._dispatch()

    async def join(self, gpus: Mapping[str, float | None], about: Mapping[str, object]) -> list[str]:
        """Add workers a batch started (or found), with what they hold (``about``: the same on every worker of the
        service); returns the names that were new or given a fresh start."""
        self._start_watch()
        joined = [name for name, memory in gpus.items() if self._queue.join(name, memory)]
        now = time.monotonic()
        self._used.update(dict.fromkeys(gpus, now))
        self._about = dict(about)
        self._dispatch()
        return joined

    def hold(self) -> tuple[dict[str, float | None], dict[str, object]]:
        """The workers in the queue and what they hold; none of them retires idle for the next ``idle_s`` seconds
        (a starting batch calls this before it looks its workers up, so none leaves under it)."""
        members = self._queue.members()
        self._used.update(dict.fromkeys(members, time.monotonic()))
        return members, dict(self._about)

    def stats(self) -> dict[str, object]:
        """Per-GPU numbers and how many requests wait."""
        return {"gpus": self._queue.stats(), "waiting": len(self._waiting)}

    def set_idle(self, idle_s: float | None) -> None:
        """Retire workers idle for ``idle_s`` seconds from now on (None: never)."""
        self._idle_s = idle_s

    def retire_idle(self, now: float) -> list[str]:
        """Take out of the queue, and return, the workers to retire at ``now`` (``time.monotonic``): while nothing
        waits, those with no lease since ``idle_s`` seconds."""
        idle_s = self._idle_s if self._idle_s is not None else float("inf")
        if self._waiting:
            return []
        gone = [name for name in self._queue.members() if self._queue.free(name) and now - self._used[name] >= idle_s]
        for name in gone:
            self._queue.drop(name)
            self._used.pop(name, None)
        return gone

    def _retire(self, name: str) -> None:
        """Hook: worker ``name`` is retired (idle, or quarantined with no lease): its process may go."""

    async def _watch_idle(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            for name in self.retire_idle(time.monotonic()):
                self._retire(name)

    def _start_watch(self) -> None:
        if self._idle_s is not None and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_idle(min(self._idle_s / 2, 30.0)))

    def _dispatch(self) -> None:
        self._waiting.sort(key=lambda waiter: waiter[0])
        still: list[_Waiter] = []
        for key, request, future in self._waiting:
            answer = self._queue.refusal(request) or self._queue.grant(request)
            if answer is None:
                still.append((key, request, future))
            elif not future.done():
                if isinstance(answer, Grant):
                    self._used[answer.gpu] = time.monotonic()
                future.set_result(answer)
        self._waiting = still
