"""The nightly batch: plan the edit, process every ready shot on Ray, conform, report.

Composition only: ``run_batch`` reads as the README's "What a batch does", one call per stage. The work is in
``tasks`` (the shot scheduler, the per-shot task, the ledger, the batch tasks) and ``void_ops`` (pure functions). A
failed shot never stops the others; the flow waits for every shot, conforms those that were delivered, and
returns a summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect_ray import RayTaskRunner

from voidflow.flows.params import BatchRequest, forced_stages, plan
from voidflow.flows.publish import PublishRequest, PublishResult, publish_batch
from voidflow.infra.database import remember_password
from voidflow.infra.settings import Settings
from voidflow.tasks.backends import needs_segmenter
from voidflow.tasks.batch import conform_batch, notify_batch, report_batch
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.publish import hold_shots, make_publisher, pull_approvals, shot_codes
from voidflow.tasks.scheduler import ShotScheduler
from voidflow.tasks.shots import ShotJob
from voidflow.tasks.void_actors import Pool, start_gpu_service, start_sam2_pool, stop_pool
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.exceptions import TrackerRejected, TrackerUnavailable, VoidflowError
from voidflow.void_ops.intake import Edit
from voidflow.void_ops.masking.vlm import VlmSettings
from voidflow.void_ops.media import ensure_writable_folder
from voidflow.void_ops.pipeline import DeliverySpec
from voidflow.void_ops.plates import ColourSettings
from voidflow.void_ops.shots import Shot

__all__ = ["BatchResult", "run_batch"]


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
    published: tuple[str, ...] = ()  # shots whose version is in the tracker (``--publish``): new or already there
    publish_failed: tuple[str, ...] = ()  # shots still ``done`` whose publish stage failed (``voidflow publish``)


@flow(name="voidflow-batch", task_runner=RayTaskRunner(), log_prints=True, persist_result=False)
def run_batch(request: BatchRequest) -> BatchResult:
    """Process every ready shot of the edit, then conform and report.

    A deployment starts this flow run, so it is an entry point: it reads ``Settings`` once, here, and passes their
    fields down (the webhook URL never becomes a parameter).

    Returns:
        The batch's ID, final state, shot names by outcome, and where the conformed edit and report went.
    """
    settings = Settings.from_env()
    remember_password(settings.db_url)  # the request names the database without it
    edit, shots = plan(request, allowed_roots=settings.allowed_roots, path_map=settings.path_map)
    ensure_writable_folder(request.out_dir)
    ledger = Ledger(request.db_url, db_timeout_s=settings.db_timeout_s)
    if request.publish:
        shots = _read_tracker(request, settings, ledger, shots)
    batch_id = _record_batch(ledger, request, edit, shots)
    ready = [shot for shot in shots if shot.status == "ready"]
    skipped = tuple(shot.name for shot in shots if shot.status == "skipped")
    print(f"batch {batch_id}: {len(ready)} shots to process, {len(skipped)} skipped")

    scheduler = ShotScheduler(ready, ledger=ledger, batch_id=batch_id)
    try:
        with _workers(_shot_job(request, batch_id, settings), request, ready, settings.gpu_idle_s) as job:
            tally = scheduler.run(job)
    except VoidflowError:  # the workers could not start (no GPU, models that do not load): no shot ran
        ledger.interrupt(batch_id)  # ``voidflow resume`` finishes it once the cause is fixed
        raise

    published = _publish(request, batch_id, tally.done) if request.publish and tally.done else None
    conformed = _conform(request, batch_id, settings) if tally.done else None
    state = ledger.finish_batch(batch_id)  # first, so the report shows how the batch ended
    report = report_batch(request.db_url, batch_id, request.out_dir / "report.html", db_timeout_s=settings.db_timeout_s)
    notify_batch(request.db_url, batch_id, settings.webhook_url, db_timeout_s=settings.db_timeout_s)
    get_run_logger().info(
        "batch %s %s: %d done, %d failed, %d skipped", batch_id, state, len(tally.done), len(tally.failed), len(skipped)
    )
    return BatchResult(
        batch_id=batch_id,
        state=state,
        done=tally.done,
        failed=tally.failed,
        skipped=skipped,
        waiting=tally.waiting,
        conformed=conformed,
        report=report,
        published=(*published.published, *published.kept) if published else (),
        publish_failed=tuple(published.failed) if published else (),
    )


def _read_tracker(request: BatchRequest, settings: Settings, ledger: Ledger, shots: list[Shot]) -> list[Shot]:
    """The plan with the shots the tracker marks omitted or on hold skipped (``tasks.publish.hold_shots``), and
    its approvals of the ready shots' published versions recorded (``pull_approvals``: they feed the review gate).
    A tracker that cannot be read changes nothing and is named in a warning.

    Raises:
        ConfigurationError: the tracker's settings are incomplete (before anything is recorded).
    """
    assert request.publish is not None
    publisher = make_publisher(request.publish, settings)
    held, warning = hold_shots(shots, publisher, shot_codes(settings))
    if not warning:
        try:
            approved = pull_approvals(ledger, publisher, [shot.name for shot in held if shot.status == "ready"])
            if approved:
                print(f"approved in {request.publish}: {', '.join(approved)}")
        except (TrackerUnavailable, TrackerRejected) as error:
            warning = f"{error}; no approval read"
    if warning:
        print(f"warning: {warning}")
    return held


def _publish(request: BatchRequest, batch_id: str, done: tuple[str, ...]) -> PublishResult:
    """Publish the delivered shots to the tracker (a subflow): its failures fail only their publish stage."""
    assert request.publish is not None
    result = publish_batch(
        PublishRequest(db_url=request.db_url, batch_id=batch_id, tracker=request.publish, shots=done)
    )
    counts = f"{len(result.published)} new, {len(result.kept)} already there, {len(result.failed)} failed"
    print(f"published to {request.publish}: {counts}")
    return result


def _record_batch(ledger: Ledger, request: BatchRequest, edit: Edit, shots: list[Shot]) -> str:
    """Record the edit, the batch (its request without the database URL, this flow run) and its shots; return the
    batch's ID."""
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
    return batch_id


def _shot_job(request: BatchRequest, batch_id: str, settings: Settings) -> ShotJob:
    """What every shot of the batch shares, before its workers are started and named in it."""
    return ShotJob(
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
        allowed_roots=settings.allowed_roots,
        db_timeout_s=settings.db_timeout_s,
        shot_timeout_s=request.shot_timeout_s,
    )


@contextmanager
def _workers(job: ShotJob, request: BatchRequest, ready: list[Shot], gpu_idle_s: float) -> Iterator[ShotJob]:
    """Find or start the resident workers (the shared VOID GPU service for the ``void`` backend, which outlives the
    batch; the batch's own SAM2 actors for shots without a matte), yield the job that names them, and stop the
    batch's own however the batch ends."""
    sam2: Pool | None = None
    try:
        if request.backend == "void" and ready:
            job = _start_void(job, request, ready, gpu_idle_s)
        if any(needs_segmenter(shot) for shot in ready):
            job, sam2 = _start_sam2(job, request)
        yield job
    finally:
        if sam2 is not None:
            stop_pool(sam2)


def _start_void(job: ShotJob, request: BatchRequest, ready: list[Shot], gpu_idle_s: float) -> ShotJob:
    """Find the shared GPU service for the passes the batch needs (starting its missing workers); return the job
    that names it, with the batch's ID and priority."""
    config = request.void.config(pass2=any(job.runs_pass2(shot) for shot in ready))
    specs = {"pass1": config.pass1, **({"pass2": config.pass2} if config.pass2 is not None else {})}
    print(f"VOID: {' and '.join(specs)} on every GPU (a shared service; missing workers start now)")
    options = request.void
    pool = start_gpu_service(
        specs,
        timeout_s=options.gpu_timeout_s,
        on_cpu=options.device == "cpu",
        gpu_wait_s=options.gpu_wait_s,
        idle_s=gpu_idle_s,
    )
    pool = dataclasses.replace(pool, batch_id=job.batch_id, batch_priority=request.priority)
    print(f"VOID: {len(pool.workers)} GPU worker(s) ready (priority {request.priority})")
    return dataclasses.replace(job, void=config, gpus=pool)


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


def _conform(request: BatchRequest, batch_id: str, settings: Settings) -> Path:
    """Write the edit with the batch's delivered shots conformed in, as ``conformed.otio`` in the output folder."""
    out = request.out_dir / "conformed.otio"
    include = request.conform_qc_failed
    conformed = conform_batch(
        request.db_url,
        batch_id,
        out,
        allowed_roots=settings.allowed_roots,
        db_timeout_s=settings.db_timeout_s,
        include_qc_failed=include,
    )
    print(f"conformed edit: {conformed}")
    return conformed
