"""The nightly batch: plan the edit, process every ready shot on Ray, conform, report.

Composition only: the work is in ``tasks`` (Prefect tasks on Ray) and ``void_ops`` (pure functions). A failed shot
never stops the others; the flow waits for every shot, conforms those that were delivered, and returns a summary.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact
from prefect.runtime import flow_run
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

from voidflow.flows.params import BatchRequest, forced_stages, plan
from voidflow.infra.settings import Settings
from voidflow.tasks.backends import needs_segmenter
from voidflow.tasks.batch import conform_batch, notify_batch, report_batch
from voidflow.tasks.futures import first_finished, submission_window
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.progress import Progress, busy_fraction
from voidflow.tasks.shots import ShotJob, process_shot
from voidflow.tasks.void_actors import (
    Pool,
    forget_shot,
    gpu_stats,
    start_gpu_pool,
    start_sam2_pool,
    stop_gpu_pool,
    stop_pool,
)
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.masking.vlm import VlmSettings
from voidflow.void_ops.media import ensure_writable_folder
from voidflow.void_ops.pipeline import DeliverySpec
from voidflow.void_ops.plates import ColourSettings
from voidflow.void_ops.shots import Shot

__all__ = ["LOST_WORKER_RETRIES", "BatchResult", "run_batch", "scheduling_order"]

#: How many times a shot whose worker died is run again (Prefect's retries cover errors; this covers lost workers).
LOST_WORKER_RETRIES = 2


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch did."""

    batch_id: str
    state: str
    done: tuple[str, ...]
    failed: tuple[str, ...]
    skipped: tuple[str, ...]
    conformed: Path | None
    report: Path
    waiting: tuple[str, ...] = ()


def _start_sam2(job: ShotJob, request: BatchRequest) -> tuple[ShotJob, Pool]:
    """Start the resident SAM2 actors for shots without a matte; return the job that names them and the pool."""
    masks = request.masks
    settings = masks.sam2_settings(request.void.models_dir)
    pool = start_sam2_pool(settings, prefix=f"voidflow-{job.batch_id[:8]}-sam2")
    vlm = VlmSettings(model=masks.vlm_model)
    job = dataclasses.replace(
        job, sam2=settings, sam2_actors=pool.names, vlm_mode=masks.vlm, vlm=vlm, vlm_base_url=masks.vlm_base_url
    )
    print(f"SAM2: loading {len(pool.names)} model(s); VLM {masks.vlm} ({masks.vlm_model})")
    return job, pool


def _start_void(job: ShotJob, request: BatchRequest, ready: list[Shot]) -> tuple[ShotJob, tuple[Any, ...]]:
    """Start the batch's GPU workers (every VOID pass it needs on each GPU) and their dispatcher; return the job
    that names them, and the handles."""
    config = request.void.config(pass2=any(job.runs_pass2(shot) for shot in ready))
    specs = {"pass1": config.pass1, **({"pass2": config.pass2} if config.pass2 is not None else {})}
    print(f"VOID: loading {' and '.join(specs)} on every GPU")
    pool, handles = start_gpu_pool(specs, prefix=f"voidflow-{job.batch_id[:8]}", timeout_s=request.void.gpu_timeout_s)
    print(f"VOID: {len(pool.workers)} GPU worker(s) ready")
    return dataclasses.replace(job, void=config, gpus=pool), handles


def scheduling_order(shots: list[Shot]) -> list[Shot]:
    """Shots in the order they start: higher sidecar priority first, then the longest first (so the long tail of a
    night is short shots filling the GPUs, not one long shot running alone)."""
    return sorted(shots, key=lambda shot: (-shot.instructions.priority, -shot.frames))


@flow(name="voidflow-batch", task_runner=RayTaskRunner(), log_prints=True, persist_result=False)
def run_batch(request: BatchRequest) -> BatchResult:
    """Process every ready shot of the edit, then conform and report.

    Returns:
        The batch's ID, final state, shot names by outcome, and where the conformed edit and report went.
    """
    logger = get_run_logger()
    edit, shots = plan(request)
    ensure_writable_folder(request.out_dir)
    ledger = Ledger(request.db_url)
    edit_id = ledger.record_edit(edit.path, edit.sha256, edit.rate, edit.warnings)
    batch_id = ledger.create_batch(
        edit_id=edit_id,
        edit_path=edit.path,
        edit_sha256=edit.sha256,
        out_dir=request.out_dir,
        backend=request.backend,
        params=request.model_dump(mode="json", exclude={"db_url"}),
        kind="rerun" if request.parent_batch else "run",
        parent_id=request.parent_batch,
    )
    ledger.set_flow_run(batch_id, flow_run.get_id())
    ledger.add_shots(batch_id, shots)
    ready = [shot for shot in shots if shot.status == "ready"]
    skipped = tuple(shot.name for shot in shots if shot.status == "skipped")
    print(f"batch {batch_id}: {len(ready)} shots to process, {len(skipped)} skipped")
    job = ShotJob(
        batch_id=batch_id,
        db_url=request.db_url,
        out_dir=request.out_dir.absolute(),
        backend=request.backend,
        seed=request.seed,
        blend=Blend(grow=request.grow, feather=request.feather),
        delivery=DeliverySpec(request.output, request.first_frame, request.exr_compression),
        colour=ColourSettings(config=request.ocio, plate_space=request.plate_colourspace),
        pass2=request.void.pass2,
        force=forced_stages(request.force_from),
        gate=request.masks.gate,
        allowed_roots=Settings.from_env().allowed_roots,
    )
    handles: tuple[Any, ...] = ()
    sam2: Pool | None = None
    artifact = create_progress_artifact(0.0, key="voidflow-batch-progress", description=f"batch {batch_id}")
    assert isinstance(artifact, UUID)  # sync context: the artifact id, not a coroutine
    progress = Progress(total=len(ready))
    done: list[str] = []
    failed: list[str] = []
    waiting: list[str] = []
    queue = scheduling_order(ready)
    window = submission_window()  # shots handed to Ray at once: bounded memory on edits of hundreds of shots
    pending: dict[Any, tuple[Shot, int, int]] = {}

    shot_task = process_shot.with_options(timeout_seconds=request.shot_timeout_s)

    def submit(shot: Shot, slot: int, lost: int) -> None:
        with remote_options(num_cpus=1, max_retries=0):
            pending[shot_task.submit(shot, job, slot, lost * 10)] = (shot, slot, lost)

    try:
        if request.backend == "void" and ready:
            job, handles = _start_void(job, request, ready)
        if any(needs_segmenter(shot) for shot in ready):
            job, sam2 = _start_sam2(job, request)
        slots = iter(range(len(queue)))
        while queue or pending:
            while queue and len(pending) < window:
                submit(queue.pop(0), next(slots), 0)
            future = first_finished(list(pending))
            shot, slot, lost = pending.pop(future)
            name, state = shot.name, future.state
            if (state.is_crashed() or state.name == "TimedOut") and job.gpus is not None:
                forget_shot(job.gpus, name)  # its task died or was stopped holding GPU leases
            if state.is_crashed() and lost < LOST_WORKER_RETRIES:
                # The worker died (killed, out of memory, node lost): its running stages are marked lost, so a
                # late report from it changes nothing, and the shot runs again.
                ledger.mark_lost(batch_id, name, state.message or "worker lost")
                print(f"{name}: worker lost ({state.message}); running it again")
                submit(shot, slot, lost + 1)
                continue
            if state.is_completed():
                outcome = future.result()
                reused = f", cached: {' '.join(outcome.cached)}" if outcome.cached else ""
                if outcome.version is None:
                    waiting.append(name)
                    note = outcome.qc
                else:
                    done.append(name)
                    note = f"{outcome.version} in {outcome.seconds:.1f}s{reused}"
            else:
                failed.append(name)
                reason = state.message or "worker lost"
                if state.name == "TimedOut":  # Prefect stopped the shot at shot_timeout_s: not retried
                    reason = f"shot '{name}': ran past its {request.shot_timeout_s:g} s shot timeout (not retried)"
                    ledger.mark_lost(batch_id, name, reason, cause="ShotTimedOut")
                elif state.is_crashed():
                    ledger.mark_lost(batch_id, name, reason)
                note = f"FAILED: {reason}"
            progress.done, progress.failed, progress.waiting = len(done), len(failed), len(waiting)
            progress.running = len(pending)
            if job.gpus is not None:
                progress.gpu_busy = busy_fraction(gpu_stats(job.gpus), progress.started, time.monotonic())
            print(f"{name}: {note}  [{progress.line()}]")
            progress.publish(artifact)
    finally:
        stop_gpu_pool(handles)
        if sam2 is not None:
            stop_pool(sam2)
    conformed = None
    if done:
        conformed = conform_batch(
            request.db_url, batch_id, request.out_dir / "conformed.otio", include_qc_failed=request.conform_qc_failed
        )
        print(f"conformed edit: {conformed}")
    report = report_batch(request.db_url, batch_id, request.out_dir / "report.html")
    state = ledger.finish_batch(batch_id)
    notify_batch(request.db_url, batch_id, Settings.from_env().webhook_url)
    logger.info("batch %s %s: %d done, %d failed, %d skipped", batch_id, state, len(done), len(failed), len(skipped))
    order = {shot.name: index for index, shot in enumerate(shots)}
    return BatchResult(
        batch_id=batch_id,
        state=state,
        done=tuple(sorted(done, key=order.__getitem__)),
        failed=tuple(sorted(failed, key=order.__getitem__)),
        skipped=skipped,
        waiting=tuple(sorted(waiting, key=order.__getitem__)),
        conformed=conformed,
        report=report,
    )
