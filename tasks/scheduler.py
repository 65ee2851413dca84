"""The batch's shot scheduler: every ready shot through ``process_shot`` on Ray, and what became of each.

``ShotScheduler.run`` keeps a bounded window of shots handed to Ray (``futures.submission_window``) and gathers them
as they finish (``futures.first_finished``; never ``ray.get`` in a loop). For each finished shot it decides:

- the task completed: the shot is done, or waiting at the review gate when it delivered no version;
- its worker died (killed, out of memory, node lost; Prefect calls the state ``Crashed``): its running stages are
  marked lost in the ledger, so a late report from that worker changes nothing, and the shot runs again, up to
  ``LOST_WORKER_RETRIES`` times (Prefect's own retries cover errors, not lost workers);
- it ran past the batch's shot timeout (``TimedOut``): failed, not retried;
- otherwise it failed with its error.

Each shot task asks Ray for the host memory its stages need at their worst (``memory=``, from
``void_ops.host_memory``: the plate's size, sample type and the backend), so a node never takes more shots than its
memory holds. A shot that needs more than the largest live node with a CPU has is not handed to Ray (it would wait
for a node that never comes): it fails with one line naming its estimate and the largest node, and the others go on.
With no CPU node at all yet (an autoscaled group at zero) shots are handed over and wait for the autoscaler.

A shot that died or was stopped gives back the GPU leases it held. Each finished shot prints one line with the
batch's numbers (``progress.Progress``), which the batch's Prefect progress artifact shows too.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import ray
from prefect.artifacts import create_progress_artifact
from prefect_ray.context import remote_options

from voidflow.tasks.futures import first_finished, submission_window
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.progress import Progress, kernel_busy_fraction, occupancy_fraction
from voidflow.tasks.shots import ShotJob, process_shot
from voidflow.tasks.void_actors import forget_shot, gpu_stats
from voidflow.void_ops import media
from voidflow.void_ops.exceptions import VoidflowError
from voidflow.void_ops.host_memory import ShotMemory, decoded_sample, shot_memory
from voidflow.void_ops.shots import Shot

__all__ = [
    "LOST_WORKER_RETRIES",
    "Outcome",
    "ShotScheduler",
    "Tally",
    "largest_node_memory",
    "memory_of",
    "scheduling_order",
]

#: How many times a shot whose worker died is run again (Prefect's retries cover errors; this covers lost workers).
LOST_WORKER_RETRIES = 2

#: A finished shot's outcome: delivered, failed, or stopped at the review gate.
Outcome = Literal["done", "failed", "waiting"]


@dataclass(frozen=True, slots=True)
class Tally:
    """What became of the scheduled shots: names by outcome, each in the order the shots were given (edit order)."""

    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()  # stopped at the review gate, masks awaiting approval


@dataclass(frozen=True, slots=True)
class _Submission:
    """A shot handed to Ray: its actor slot, and how many times its worker was lost before."""

    shot: Shot
    slot: int
    lost: int = 0


def memory_of(shot: Shot, job: ShotJob) -> ShotMemory | None:
    """The host memory ``shot``'s task needs (``void_ops.host_memory``), from a probe of its plate; None when the
    plate cannot be probed (the shot's task then fails naming the cause)."""
    if shot.media is None:
        return None
    try:
        info = media.probe(shot.media)
    except (VoidflowError, OSError):
        return None
    sample = decoded_sample(info)
    return shot_memory(
        shot.name, shot.frames, info.height, info.width, sample, backend=job.backend, pass2=job.runs_pass2(shot)
    )


def largest_node_memory() -> int:
    """The largest ``memory`` resource of the Ray cluster's live nodes that can run a shot task (at least one CPU:
    a head started with ``--num-cpus 0`` takes none), in bytes; 0 without any."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    return max((int(res.get("memory", 0)) for res in nodes if res.get("CPU", 0) >= 1), default=0)


def scheduling_order(shots: Sequence[Shot]) -> list[Shot]:
    """Shots in the order they start: higher sidecar priority first, then the longest first (so the long tail of a
    night is short shots filling the GPUs, not one long shot running alone)."""
    return sorted(shots, key=lambda shot: (-shot.instructions.priority, -shot.frames))


class ShotScheduler:
    """Runs a batch's ready shots on Ray and tallies them; see the module docstring for what it decides.

    Made before the batch's workers start, so the progress artifact and the batch's clock (elapsed time and GPU
    busy share in the progress line) count their loading too.
    """

    def __init__(self, shots: Sequence[Shot], *, ledger: Ledger, batch_id: str) -> None:
        """Open the batch's progress artifact at 0 %.

        Args:
            shots: the ready shots, in edit order (the tally keeps it).
            ledger: where lost and timed-out shots are recorded.
            batch_id: the batch the shots belong to.
        """
        self._shots = tuple(shots)
        self._ledger = ledger
        self._batch_id = batch_id
        artifact = create_progress_artifact(0.0, key="voidflow-batch-progress", description=f"batch {batch_id}")
        assert isinstance(artifact, UUID)  # sync context: the artifact id, not a coroutine
        self._artifact = artifact
        self._progress = Progress(total=len(self._shots))

    def run(self, job: ShotJob) -> Tally:
        """Run every shot through ``process_shot`` with ``job`` (which names the batch's workers); return the tally.

        A failed shot never stops the others: this returns once every shot has a final outcome.
        """
        task = process_shot  # its shot timeout (job.shot_timeout_s) is checked between stages, not by Prefect
        queue = deque(_Submission(shot, slot) for slot, shot in enumerate(scheduling_order(self._shots)))
        window = submission_window()  # shots handed to Ray at once: bounded memory on edits of hundreds of shots
        pending: dict[Any, _Submission] = {}
        outcomes: dict[str, Outcome] = {}
        largest = largest_node_memory()

        def submit(entry: _Submission) -> None:
            nonlocal largest
            options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}  # Prefect owns retries; Ray's would stack
            need = memory_of(entry.shot, job)
            if need is not None:
                if need.peak_bytes > largest:
                    largest = largest_node_memory()  # a node may have joined since
                if 0 < largest < need.peak_bytes:  # no CPU node at all (a group at zero): the autoscaler decides
                    outcomes[entry.shot.name] = "failed"
                    reason = self._refuse(entry.shot.name, need, largest)
                    self._show(entry.shot.name, f"FAILED: {reason}", outcomes, running=len(pending), job=job)
                    return
                options["memory"] = need.peak_bytes
            with remote_options(**options):
                pending[task.submit(entry.shot, job, entry.slot, entry.lost * 10)] = entry

        while queue or pending:
            while queue and len(pending) < window:
                submit(queue.popleft())
            if not pending:
                break
            future = first_finished(list(pending))
            entry = pending.pop(future)
            name, state = entry.shot.name, future.state
            if (state.is_crashed() or state.name == "TimedOut") and job.gpus is not None:
                forget_shot(job.gpus, name)  # its task died or was stopped holding GPU leases
            if state.is_crashed() and entry.lost < LOST_WORKER_RETRIES:
                self._ledger.mark_lost(self._batch_id, name, state.message or "worker lost")
                print(f"{name}: worker lost ({state.message}); running it again")
                submit(dataclasses.replace(entry, lost=entry.lost + 1))
                continue
            outcomes[name], note = self._settle(name, future, job)
            self._show(name, note, outcomes, running=len(pending), job=job)
        named = self._named
        return Tally(named(outcomes, "done"), named(outcomes, "failed"), named(outcomes, "waiting"))

    def _refuse(self, name: str, need: ShotMemory, largest: int) -> str:
        """Record as failed a shot that no node can hold, before it reaches Ray; return the reason (one line with
        its estimate and the largest node)."""
        gb = 1024**3
        reason = (
            f"shot '{name}': needs ~{need.peak_bytes / gb:.1f} GB of host memory ({need.line()}); the largest Ray "
            f"node has {largest / gb:.1f} GB"
        )
        self._ledger.finish_shot(self._batch_id, name, state="failed", reason=reason)
        return reason

    def _settle(self, name: str, future: Any, job: ShotJob) -> tuple[Outcome, str]:
        """The final outcome of a finished shot task, and its note for the progress line; records lost stages."""
        state = future.state
        if state.is_completed():
            outcome = future.result()
            if outcome.version is None:
                return "waiting", outcome.qc
            reused = f", cached: {' '.join(outcome.cached)}" if outcome.cached else ""
            return "done", f"{outcome.version} in {outcome.seconds:.1f}s{reused}"
        reason = state.message or "worker lost"
        if state.name == "TimedOut":  # the shot stopped at its shot timeout (process_shot): not retried
            reason = f"shot '{name}': ran past its {job.shot_timeout_s or 0:g} s shot timeout (not retried)"
            self._ledger.mark_lost(self._batch_id, name, reason, cause="ShotTimedOut")
        elif state.is_crashed():  # its worker was lost once too often
            self._ledger.mark_lost(self._batch_id, name, reason)
        return "failed", f"FAILED: {reason}"

    def _show(self, name: str, note: str, outcomes: dict[str, Outcome], *, running: int, job: ShotJob) -> None:
        """Print the shot's line with the batch's numbers, and publish them on the progress artifact."""
        progress = self._progress
        counts = list(outcomes.values())
        progress.done, progress.failed = counts.count("done"), counts.count("failed")
        progress.waiting, progress.running = counts.count("waiting"), running
        if job.gpus is not None:
            stats, now = gpu_stats(job.gpus), time.monotonic()
            progress.gpu_occupancy = occupancy_fraction(stats, progress.started, now)
            progress.gpu_kernels = kernel_busy_fraction(stats, progress.started, now)
        print(f"{name}: {note}  [{progress.line()}]")
        progress.publish(self._artifact)

    def _named(self, outcomes: dict[str, Outcome], outcome: Outcome) -> tuple[str, ...]:
        """The names of the shots with ``outcome``, in the order they were given."""
        return tuple(shot.name for shot in self._shots if outcomes.get(shot.name) == outcome)
