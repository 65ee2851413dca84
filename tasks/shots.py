"""The per-shot Prefect task: mask → pass 1 → [pass 2] → deliver, each stage recorded (or reused) in the ledger.

The flow submits one ``process_shot`` per ready shot to the ``RayTaskRunner``, so each runs in a Ray worker. Prefect
owns retries (transient errors only, see ``retry_transient``); Ray's own task retries are switched off where the
task is submitted (``max_retries=0``) so the two never stack.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import task_run as current_task_run

from voidflow.infra.database import StageRun
from voidflow.infra.paths import ensure_allowed
from voidflow.infra.settings import Settings
from voidflow.tasks.backends import make_backend, make_masker, make_refiner, make_vlm, needs_segmenter
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.void_actors import ActorModel, GpuPool
from voidflow.void_ops import pipeline
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.exceptions import (
    ConfigurationError,
    MatteInvalid,
    MediaInvalid,
    StorageUnavailable,
    VoidflowError,
    is_retryable,
)
from voidflow.void_ops.keys import stage_key
from voidflow.void_ops.masking.sam2_video import Sam2Settings
from voidflow.void_ops.masking.vlm import Vlm, VlmExchange, VlmSettings
from voidflow.void_ops.mattes import matte_source
from voidflow.void_ops.pipeline import DeliverySpec, QcReport, StageFile
from voidflow.void_ops.plates import ColourSettings, PlateView, plate_view
from voidflow.void_ops.shots import PLATE_ALPHA, Shot
from voidflow.void_ops.void.backend import VoidConfig

__all__ = ["ShotJob", "ShotOutcome", "mask_inputs", "process_shot", "retry_transient"]


@dataclass(frozen=True, slots=True)
class ShotJob:
    """What every shot of a batch shares: where to record, where to write, and how to process."""

    batch_id: str
    db_url: str
    out_dir: Path
    backend: str
    seed: int
    blend: Blend
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    colour: ColourSettings = field(default_factory=ColourSettings)
    void: VoidConfig | None = None
    pass2: bool = False
    gpus: GpuPool | None = None
    force: tuple[str, ...] = ()  # stages run even when a completed run has their key (rerun --from)
    sam2: Sam2Settings | None = None
    sam2_actors: tuple[str, ...] = ()
    vlm_mode: str = "auto"
    vlm: VlmSettings = field(default_factory=VlmSettings)
    vlm_base_url: str | None = None
    gate: bool = False
    allowed_roots: tuple[str, ...] = ()  # media and mattes outside are refused (``VOIDFLOW_ALLOWED_ROOTS``)

    def runs_pass2(self, shot: Shot) -> bool:
        """Whether ``shot`` gets VOID's pass 2: its own sidecar choice, else the batch's."""
        wanted = self.pass2 if shot.instructions.pass2 is None else shot.instructions.pass2
        return bool(wanted and self.backend == "void")


@dataclass(frozen=True, slots=True)
class ShotOutcome:
    """A finished shot: its version (None when it stopped at the review gate), QC or gate note, the stages that
    were cache hits, and how long it took."""

    name: str
    version: str | None
    qc: str
    cached: tuple[str, ...]
    seconds: float


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only errors marked retryable (``void_ops.exceptions``)."""
    error = state.result(raise_on_failure=False)
    return is_retryable(error) if isinstance(error, BaseException) else False


def mask_inputs(ledger: Ledger, shot: Shot) -> dict[str, str]:
    """Content hashes the mask stage depends on: the plate range and, when the shot has one, its matte.

    Raises:
        MatteInvalid: the matte or one of its frames is missing.
        MediaInvalid: a plate frame is missing.
        OSError: a file cannot be read.
    """
    assert shot.media is not None
    first = shot.media.index_of(shot.first)
    inputs = {"plate": ledger.range_hash(shot.media, first, shot.frames)}
    if shot.instructions.matte:
        matte = matte_source(shot.instructions.matte, shot.media)
        try:
            inputs["matte"] = ledger.range_hash(matte, first, shot.frames)
        except MediaInvalid as error:
            raise MatteInvalid(f"shot '{shot.name}': matte unusable: {error}") from None
    return inputs


def _vlm(job: ShotJob, ledger: Ledger) -> Vlm | None:
    """The shot's VLM: stored answers from the ledger, and the live API when a key is configured (read here, in
    the worker, so it never travels as a task parameter)."""
    if job.vlm_mode == "off":
        return None
    stored = [
        VlmExchange(row.kind, row.model, row.request_sha256, row.request_summary, row.response_text)
        for row in ledger.exchanges()
    ]
    key = Settings.from_env().gemini_key() if job.vlm_mode == "auto" else None
    return make_vlm(job.vlm_mode, job.vlm, stored, api_key=key, base_url=job.vlm_base_url)


@dataclass(frozen=True, slots=True)
class _Done:
    """What a stage produced: its main file, other files to record, and facts to keep with the run."""

    main: StageFile
    extra: tuple[StageFile, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Shot:
    """One attempt at one shot: where it records and what it may reuse."""

    ledger: Ledger
    job: ShotJob
    shot: Shot
    attempt: int

    def stage(
        self,
        stage: str,
        version: str,
        inputs: dict[str, str],
        params: dict[str, Any],
        work: Callable[[], _Done],
        *,
        seed: int | None = None,
    ) -> tuple[StageFile, StageRun, bool]:
        """Run ``work`` as ``stage`` unless a completed run with the same key exists (then record a cache hit).

        Returns the stage's main output, the run that produced it (with its params and artifacts: the earlier
        run on a cache hit), and whether it was a cache hit.
        """
        key = stage_key(stage, version=version, inputs=inputs, params=params)
        batch, name = self.job.batch_id, self.shot.name
        origin = None if stage in self.job.force else self.ledger.cached(stage, key)
        if origin is not None:
            self.ledger.record_cache_hit(batch, name, stage, origin, attempt=self.attempt)
            first = origin.artifacts[0]
            reused = StageFile(
                first.kind,
                Path(first.path),
                first.sha256,
                first.bytes,
                first.frames,
                first.fps,
                first.width,
                first.height,
            )
            return reused, origin, True
        with self.ledger.stage(batch, name, stage, params, key=key, attempt=self.attempt, seed=seed) as handle:
            done = work()
            for produced in (done.main, *done.extra):
                handle.add(produced)
            handle.params.update(done.facts)
        run = self.ledger.run(handle.run_id)
        return done.main, run, False

    def failed(self, stage: str, params: dict[str, Any], error: BaseException) -> None:
        """Record ``stage`` as failed before it could start (its inputs could not be read) and raise ``error``."""
        with self.ledger.stage(self.job.batch_id, self.shot.name, stage, params, key="", attempt=self.attempt):
            if isinstance(error, OSError):
                raise StorageUnavailable(f"shot '{self.shot.name}': {stage} input unreadable: {error}") from error
            raise error


@task(
    name="process-shot",
    task_run_name="shot-{shot.name}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
    persist_result=False,
)
def process_shot(shot: Shot, job: ShotJob, slot: int = 0, attempt_base: int = 0) -> ShotOutcome:
    """Mask, inpaint (pass 1, optionally pass 2) and deliver one shot, reusing every stage whose key is done.

    Each stage's key hashes its inputs' content, its parameters and its op version (``void_ops.keys``); a stage
    whose key already completed is recorded as a cache hit instead of run, and so is a delivery, which then keeps
    its version. ``slot`` picks the shot's actors in the pools (slot modulo pool size); ``attempt_base`` numbers
    the attempts of a shot run again after its worker was lost (10, 20 …) apart from Prefect's retries.

    Raises:
        VoidflowError: the shot failed; the ledger holds the failed stage run and the shot's reason.
    """
    logger = get_run_logger()
    ledger = Ledger(job.db_url)
    attempt = attempt_base + (current_task_run.run_count or 1)
    run = uuid.uuid4().hex[:8]
    folder = pipeline.shot_dir(job.out_dir, shot)
    work = folder / "work"
    seed = shot.instructions.seed if shot.instructions.seed is not None else job.seed
    context = _Shot(ledger, job, shot, attempt)
    started = time.monotonic()
    cached: list[str] = []
    try:
        assert shot.media is not None
        ensure_allowed(shot.media.path, job.allowed_roots, what=f"shot '{shot.name}': media")
        if shot.instructions.matte and shot.instructions.matte != PLATE_ALPHA:
            ensure_allowed(shot.instructions.matte, job.allowed_roots, what=f"shot '{shot.name}': matte")
        masker = make_masker(
            shot,
            sam2_actor=job.sam2_actors[slot % len(job.sam2_actors)] if job.sam2_actors else None,
            sam2_max_side=job.sam2.max_side if job.sam2 else 1024,
            vlm=_vlm(job, ledger) if needs_segmenter(shot) else None,
        )
        gpus, priority = job.gpus, shot.instructions.priority
        models = (
            {
                name: ActorModel(gpus, name, shot=shot.name, priority=priority, frames=shot.frames)
                for name in gpus.params
            }
            if gpus is not None
            else {}
        )
        backend = make_backend(job.backend, void=job.void, model=models.get("pass1"))
        runs: dict[str, int | None] = {"pass2": None}
        try:
            view = plate_view(shot, job.colour)  # before any GPU work: a bad colour space fails the shot here
            inputs = mask_inputs(ledger, shot)
        except (VoidflowError, OSError) as error:
            context.failed("mask", masker.params(shot), error)
        colour = view.params()
        plate = inputs["plate"]
        ledger.set_plate_hash(job.batch_id, shot.name, plate)

        def mask() -> _Done:
            quadmask, output, reviews = pipeline.make_mask(shot, masker, work, run, view)
            for exchange in output.exchanges:
                ledger.store_exchange(
                    request_sha256=exchange.request_sha256,
                    kind=exchange.kind,
                    model=exchange.model,
                    summary=exchange.request_summary,
                    response=exchange.response_text,
                )
            facts = {
                "vlm_prompt": output.prompt,
                "notes": list(output.notes),
                "vlm_requests": [exchange.request_sha256 for exchange in output.exchanges],
                "colour": colour,  # what the masker saw; the plate's hash already keys the stage
            }
            return _Done(quadmask, tuple(reviews), facts)

        quadmask, mask_run, hit = context.stage("mask", masker.version, inputs, masker.params(shot), mask)
        runs["mask"] = mask_run.id
        cached += ["mask"] if hit else []
        logger.info("%s: mask %s (%s)", shot.name, "cached" if hit else "done", quadmask.path.name)
        if job.gate:
            review = ledger.review(mask_run.key)
            if review is None or review.decision != "approved":
                state = "rejected" if review is not None else "awaiting_review"
                reason = (
                    f"mask rejected by {review.reviewer}: {review.note}"
                    if review is not None
                    else f"mask awaits review (voidflow approve {shot.name} --batch {job.batch_id[:8]})"
                )
                ledger.finish_shot(job.batch_id, shot.name, state=state, reason=reason)
                logger.info("%s: %s", shot.name, reason)
                return ShotOutcome(shot.name, None, reason, tuple(cached), time.monotonic() - started)

        geometry = backend.describe(shot.frames, view.info.height, pipeline.model_width(view))
        prompt = shot.instructions.prompt or str(mask_run.params.get("vlm_prompt") or "")
        pass1_params = {**backend.params(), **geometry, "seed": seed, "prompt": prompt, "colour": colour}
        fill, pass1_run, hit = context.stage(
            "pass1",
            backend.version,
            {"plate": plate, "quadmask": quadmask.sha256},
            pass1_params,
            lambda: _Done(
                pipeline.inpaint(shot, backend, quadmask.path, work, run, view, seed=seed, prompt=prompt),
                facts=_gpu_facts(models.get("pass1")),
            ),
            seed=seed,
        )
        runs["pass1"] = pass1_run.id
        cached += ["pass1"] if hit else []
        logger.info("%s: pass 1 %s with %s", shot.name, "cached" if hit else "done", backend.name)

        if job.runs_pass2(shot):
            if job.void is None or "pass2" not in models:
                raise ConfigurationError(f"shot '{shot.name}': pass 2 asked for, but the batch started no pass-2 model")
            refiner = make_refiner(job.void, models["pass2"])
            first_fill = fill
            fill, pass2_run, hit = context.stage(
                "pass2",
                refiner.version,
                {"plate": plate, "quadmask": quadmask.sha256, "fill": first_fill.sha256},
                {**refiner.params(), **geometry, "seed": seed, "prompt": prompt, "colour": colour},
                lambda: _Done(
                    pipeline.refine(
                        shot, refiner, quadmask.path, first_fill.path, work, run, view, seed=seed, prompt=prompt
                    ),
                    facts=_gpu_facts(models.get("pass2")),
                ),
                seed=seed,
            )
            runs["pass2"] = pass2_run.id
            cached += ["pass2"] if hit else []
            logger.info("%s: pass 2 %s", shot.name, "cached" if hit else "done")

        version, qc_line, hit = _deliver(context, view, plate, quadmask, fill, folder, runs)
        cached += ["deliver"] if hit else []
    except OSError as error:  # a write outside the atomic writers (a work folder, say): name the file and cause
        reason = f"shot '{shot.name}': {error.filename or 'a file'}: {error.strerror or error}"
        ledger.finish_shot(job.batch_id, shot.name, state="failed", reason=reason)
        logger.error("%s: failed: %s", shot.name, reason)
        raise StorageUnavailable(reason) from None
    except Exception as error:
        reason = str(error) or type(error).__name__
        ledger.finish_shot(job.batch_id, shot.name, state="failed", reason=reason)
        logger.error("%s: failed: %s", shot.name, reason)
        raise
    ledger.finish_shot(job.batch_id, shot.name, state="done", version=version)
    logger.info("%s: %s %s (%s)", shot.name, "kept" if hit else "delivered", version, qc_line)
    return ShotOutcome(shot.name, version, qc_line, tuple(cached), time.monotonic() - started)


def _gpu_facts(model: ActorModel | None) -> dict[str, Any]:
    """How a pass's calls ran (GPU, memory recipe, when), for the stage's provenance; empty off the GPU pool."""
    return {"gpu_runs": list(model.runs)} if model is not None else {}


def _deliver(
    context: _Shot,
    view: PlateView,
    plate: str,
    quadmask: StageFile,
    fill: StageFile,
    folder: Path,
    runs: dict[str, int | None],
) -> tuple[str, str, bool]:
    """Deliver stage: a cache hit keeps the earlier version; otherwise a new version is reserved and written."""
    ledger, job, shot = context.ledger, context.job, context.shot
    spec = job.delivery
    params: dict[str, Any] = {
        "grow": job.blend.grow,
        "feather": job.blend.feather,
        "output": spec.output,
        "first_frame_number": spec.first_frame,
        "exr_compression": spec.exr_compression if spec.output == "exr" else None,
        "exr_matte": spec.exr_matte if spec.output == "exr" else None,
        "out_dir": str(job.out_dir),
        "colour": view.params(),
        "delivery_encoding": pipeline.delivery_encoding(view, spec),
    }
    inputs = {"plate": plate, "quadmask": quadmask.sha256, "fill": fill.sha256}
    key = stage_key("deliver", version=pipeline.DELIVER_VERSION, inputs=inputs, params=params)
    origin = None if "deliver" in job.force else ledger.cached("deliver", key)
    if origin is not None:
        kept = ledger.version_of_run(origin.id)
        if kept is not None:
            ledger.record_cache_hit(job.batch_id, shot.name, "deliver", origin, attempt=context.attempt)
            qc = origin.params.get("qc", {})
            return kept, _qc_line(qc), True
    version = ledger.allocate_version(job.batch_id, shot.name, runs)
    try:
        with ledger.stage(
            job.batch_id, shot.name, "deliver", {**params, "version": version}, key=key, attempt=context.attempt
        ) as handle:
            _, qc, files = pipeline.deliver(
                shot, fill.path, quadmask.path, folder, view, version=version, blend=job.blend, spec=spec
            )
            handle.params["qc"] = {**dataclasses.asdict(qc), "passed": qc.passed}
            for written in files:
                handle.add(written)
    except BaseException:
        ledger.finish_version(shot.name, version, status="failed")
        raise
    status = "delivered" if qc.passed else "qc_failed"
    ledger.finish_version(shot.name, version, status=status, deliver_run_id=handle.run_id)
    return version, qc.summary(), False


def _qc_line(qc: dict[str, Any]) -> str:
    if not qc:
        return "no QC recorded"
    fields = {f.name: qc[f.name] for f in dataclasses.fields(QcReport) if f.name in qc}
    return QcReport(**{**fields, "header": tuple(qc.get("header", ()))}).summary()
