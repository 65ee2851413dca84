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

from tasks.backends import make_backend, make_masker, make_refiner
from tasks.ledger import ArtifactInfo, Ledger
from void_ops import media, pipeline
from void_ops.composite import Blend
from void_ops.exceptions import ConfigurationError, is_retryable
from void_ops.pipeline import OutputFormat, QcReport, StageFile
from void_ops.shots import Delivery, Shot
from void_ops.void.backend import VoidConfig

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
    void: VoidConfig | None = None
    pass2: bool = False
    pass1_actors: tuple[str, ...] = ()
    pass2_actors: tuple[str, ...] = ()

    def runs_pass2(self, shot: Shot) -> bool:
        """Whether ``shot`` gets VOID's pass 2: its own sidecar choice, else the batch's."""
        wanted = self.pass2 if shot.instructions.pass2 is None else shot.instructions.pass2
        return bool(wanted and self.backend == "void")


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


def _plate_size(shot: Shot) -> tuple[int, int]:
    """(height, width) of the shot's plate."""
    assert shot.media is not None
    info = media.probe(shot.media)
    return info.height, info.width


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
def process_shot(shot: Shot, job: ShotJob, slot: int = 0) -> ShotOutcome:
    """Mask, inpaint (pass 1, optionally pass 2) and deliver one shot, recording each stage run and its files.

    ``slot`` picks the shot's actors in the pools (slot modulo pool size).

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
        masker = make_masker(shot)
        actor = job.pass1_actors[slot % len(job.pass1_actors)] if job.pass1_actors else None
        backend = make_backend(job.backend, void=job.void, actor=actor)
        with ledger.stage(job.batch_id, shot.name, "mask", masker.params(shot), attempt) as stage:
            quadmask = pipeline.make_mask(shot, masker, work, run)
            stage.add(_artifact(quadmask))
        logger.info("%s: mask done (%s)", shot.name, quadmask.path.name)
        geometry = backend.describe(shot.frames, *_plate_size(shot))
        pass1_params = {**backend.params(), **geometry, "seed": seed}
        with ledger.stage(job.batch_id, shot.name, "pass1", pass1_params, attempt) as stage:
            fill = pipeline.inpaint(shot, backend, quadmask.path, work, run, seed=seed)
            stage.add(_artifact(fill))
        logger.info("%s: pass 1 done with %s", shot.name, backend.name)
        if job.runs_pass2(shot):
            if job.void is None or not job.pass2_actors:
                raise ConfigurationError(f"shot '{shot.name}': pass 2 asked for, but the batch started no pass-2 model")
            refiner = make_refiner(job.void, job.pass2_actors[slot % len(job.pass2_actors)])
            pass2_params = {**refiner.params(), **geometry, "seed": seed}
            with ledger.stage(job.batch_id, shot.name, "pass2", pass2_params, attempt) as stage:
                fill = pipeline.refine(shot, refiner, quadmask.path, fill.path, work, run, seed=seed)
                stage.add(_artifact(fill))
            logger.info("%s: pass 2 done", shot.name)
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
