"""The per-shot Prefect task: mask → pass 1 → deliver, each stage recorded in the ledger.

The flow submits one ``process_shot`` per ready shot to the ``RayTaskRunner``, so each runs in a Ray worker. Prefect
owns retries (transient errors only, see ``retry_transient``); Ray's own task retries are switched off where the
task is submitted (``max_retries=0``) so the two never stack.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import task_run as current_task_run

from tasks.backends import make_backend, make_masker
from tasks.ledger import ArtifactInfo, Ledger
from void_ops import pipeline
from void_ops.composite import Blend
from void_ops.exceptions import is_retryable
from void_ops.pipeline import OutputFormat, QcReport, StageFile
from void_ops.shots import Delivery, Shot

__all__ = ["ShotJob", "ShotOutcome", "process_shot", "retry_transient"]


@dataclass(frozen=True, slots=True)
class ShotJob:
    """What every shot of a batch shares: where to record, where to write, and how to process."""

    batch_id: str
    db_url: str
    out_dir: Path
    backend: str
    seed: int
    blend: Blend
    output: OutputFormat


@dataclass(frozen=True, slots=True)
class ShotOutcome:
    """A delivered shot."""

    name: str
    delivery: Delivery
    qc: QcReport
    seconds: float


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only errors marked retryable (``void_ops.exceptions``)."""
    error = state.result(raise_on_failure=False)
    return is_retryable(error) if isinstance(error, BaseException) else False


def _artifact(stage_file: StageFile) -> ArtifactInfo:
    return ArtifactInfo(
        kind=stage_file.kind,
        path=str(stage_file.path),
        sha256=stage_file.sha256,
        bytes=stage_file.bytes,
        frames=stage_file.frames,
        fps=stage_file.fps,
        width=stage_file.width,
        height=stage_file.height,
    )


@task(
    name="process-shot",
    task_run_name="shot-{shot.name}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
    persist_result=False,
)
def process_shot(shot: Shot, job: ShotJob) -> ShotOutcome:
    """Mask, inpaint and deliver one shot, recording each stage run and its files.

    Raises:
        VoidflowError: the shot failed; the ledger holds the failed stage run and the shot's reason.
    """
    logger = get_run_logger()
    ledger = Ledger(job.db_url)
    attempt = current_task_run.run_count or 1
    run = uuid.uuid4().hex[:8]
    folder = pipeline.shot_dir(job.out_dir, shot)
    work = folder / "work"
    seed = shot.instructions.seed if shot.instructions.seed is not None else job.seed
    started = time.monotonic()
    try:
        masker, backend = make_masker(shot), make_backend(job.backend)
        with ledger.stage(job.batch_id, shot.name, "mask", masker.params(shot), attempt) as stage:
            quadmask = pipeline.make_mask(shot, masker, work, run)
            stage.add(_artifact(quadmask))
        logger.info("%s: mask done (%s)", shot.name, quadmask.path.name)
        with ledger.stage(job.batch_id, shot.name, "pass1", {**backend.params(), "seed": seed}, attempt) as stage:
            fill = pipeline.inpaint(shot, backend, quadmask.path, work, run, seed=seed)
            stage.add(_artifact(fill))
        logger.info("%s: pass 1 done with %s", shot.name, backend.name)
        version = ledger.next_version(shot.name)
        deliver_params = {
            "version": version,
            "grow": job.blend.grow,
            "feather": job.blend.feather,
            "output": job.output,
            "first_frame_number": pipeline.FIRST_FRAME_NUMBER,
        }
        with ledger.stage(job.batch_id, shot.name, "deliver", deliver_params, attempt) as stage:
            delivery, qc, files = pipeline.deliver(
                shot, fill.path, quadmask.path, folder, version=version, blend=job.blend, output=job.output
            )
            stage.params["qc"] = {**dataclasses.asdict(qc), "passed": qc.passed}
            for written in files:
                stage.add(_artifact(written))
    except Exception as error:
        reason = str(error) or type(error).__name__
        ledger.finish_shot(job.batch_id, shot.name, state="failed", reason=reason)
        logger.error("%s: failed: %s", shot.name, reason)
        raise
    ledger.finish_shot(job.batch_id, shot.name, state="done", version=version)
    logger.info("%s: delivered %s (%s)", shot.name, version, qc.summary())
    return ShotOutcome(shot.name, delivery, qc, time.monotonic() - started)
