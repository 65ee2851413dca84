"""The per-shot Prefect task: a shot is a list of stages, mask → pass 1 → [pass 2] → deliver, each recorded (or
reused) in the ledger by one cached-stage runner.

Each stage is a ``_Step``: what keys it (stage, op version, input hashes, params) and how to run it. ``_Shot.run``
keys it, reuses a completed run with that key (recording the cache hit) unless the stage is forced, and otherwise
records the run around its work. The deliver stage adds a hook (``_Versioning``): a cache hit counts only while
its version exists, and a run reserves the next version and settles it when the run ends.

The flow submits one ``process_shot`` per ready shot to the ``RayTaskRunner``, so each runs in a Ray worker. Prefect
owns retries (transient errors only, see ``retry_transient``); Ray's own task retries are switched off where the
task is submitted (``max_retries=0``) so the two never stack.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from prefect import get_run_logger, task
from prefect.runtime import task_run as current_task_run
from prefect.task_engine import TaskRunTimeoutError

from voidflow.infra.database import StageRun, remember_password
from voidflow.infra.paths import ensure_allowed
from voidflow.infra.settings import Settings
from voidflow.tasks.backends import make_backend, make_masker, make_vlm, needs_segmenter
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.void_actors import ActorModel, GpuPool
from voidflow.void_ops import media, pipeline
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.exceptions import (
    InvalidInput,
    MatteInvalid,
    MediaInvalid,
    StorageUnavailable,
    VoidflowError,
    is_retryable,
)
from voidflow.void_ops.hashing import content_hash
from voidflow.void_ops.keys import stage_key
from voidflow.void_ops.masking._vlm_settings import VlmMode
from voidflow.void_ops.masking.sam2_video import Sam2Settings
from voidflow.void_ops.masking.vlm import Vlm, VlmExchange, VlmSettings
from voidflow.void_ops.mattes import mask_sources
from voidflow.void_ops.pipeline import Backend, DeliverySpec, Masker, QcReport, StageFile
from voidflow.void_ops.plates import ColourSettings, PlateView, plate_view
from voidflow.void_ops.shots import PLATE_ALPHA, Shot
from voidflow.void_ops.stages import CACHED_STAGES, Stage
from voidflow.void_ops.void.backend import VoidConfig

__all__ = ["ShotJob", "ShotOutcome", "mask_inputs", "process_shot", "retry_transient"]


@dataclass(frozen=True, slots=True)
class ShotJob:
    """What every shot of a batch shares: where to record, where to write, and how to process."""

    batch_id: str
    db_url: str
    out_dir: Path
    backend: Backend
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
    vlm_mode: VlmMode = "auto"
    vlm: VlmSettings = field(default_factory=VlmSettings)
    vlm_base_url: str | None = None
    gate: bool = False
    allowed_roots: tuple[str, ...] = ()  # media and mattes outside are refused (``VOIDFLOW_ALLOWED_ROOTS``)
    db_timeout_s: float = 30.0  # how long a locked SQLite ledger is waited for (``VOIDFLOW_DB_TIMEOUT``)
    shot_timeout_s: float | None = None  # one shot, all its stages: checked before each stage (``_within_time``)

    def runs_pass2(self, shot: Shot) -> bool:
        """Whether ``shot`` gets VOID's pass 2: its own sidecar choice, else the batch's."""
        wanted = self.pass2 if shot.instructions.pass2 is None else shot.instructions.pass2
        return bool(wanted and self.backend == "void")

    def stages(self, shot: Shot) -> tuple[Stage, ...]:
        """The cached stages ``shot`` goes through, in order: mask, pass 1, pass 2 when it runs it, deliver."""
        return tuple(stage for stage in CACHED_STAGES if stage != "pass2" or self.runs_pass2(shot))


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
    """Content hashes the mask stage depends on: the plate range and each mask file the shot names (``quadmask``,
    ``matte``, ``affected_matte``; a movie hashes whole, a sequence its files in the plate range), keyed by field.

    Raises:
        MatteInvalid: a mask file or one of its frames is missing (the message names the shot and the field).
        MediaInvalid: a plate frame is missing.
        OSError: a file cannot be read.
    """
    assert shot.media is not None
    first = shot.media.index_of(shot.first)
    policy = shot.instructions.missing_frames
    plate = ledger.range_hash(shot.media, first, shot.frames, allow_gaps=policy != "skip")
    # A held or black gap is part of what the stages saw: the policy keys the plate only where it applies.
    gaps = media.sequence_gaps(shot.media, first, shot.frames) if policy != "skip" else ()
    inputs = {"plate": content_hash([plate, f"missing_frames:{policy}"]) if gaps else plate}
    for name, source in mask_sources(shot).items():
        try:
            inputs[name] = ledger.range_hash(source, first, shot.frames)
        except MediaInvalid as error:
            raise MatteInvalid(f"shot '{shot.name}': {name} unusable: {error}") from None
    return inputs


def _vlm(job: ShotJob, ledger: Ledger, settings: Settings) -> Vlm | None:
    """The shot's VLM: stored answers from the ledger, and the live API when a key is configured (the worker's own
    settings, so it never travels as a task parameter)."""
    if job.vlm_mode == "off":
        return None
    stored = [
        VlmExchange(row.kind, row.model, row.request_sha256, row.request_summary, row.response_text)
        for row in ledger.exchanges()
    ]
    key = settings.gemini_key() if job.vlm_mode == "auto" else None
    return make_vlm(job.vlm_mode, job.vlm, stored, api_key=key, base_url=job.vlm_base_url)


@dataclass(frozen=True, slots=True)
class _Done:
    """What a stage's work produced: its main file, other files to record, and facts to keep with the run."""

    main: StageFile
    extra: tuple[StageFile, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Result:
    """A stage as the stages after it see it.

    Attributes:
        file: its main output (the earlier run's on a cache hit).
        run: the run that produced it (with its params and artifacts: the earlier run on a cache hit).
        hit: whether it was a cache hit.
        params: the params recorded for that run, with its facts (and, for deliver, its version).
    """

    file: StageFile
    run: StageRun
    hit: bool
    params: Mapping[str, Any]


class _Hook:
    """Where a stage departs from the plain cached-stage runner; the mask and the passes use it as is."""

    def reuse(self, origin: StageRun) -> dict[str, Any] | None:
        """Whether ``origin`` (a completed run with the stage's key) may be reused: None if not, else facts to add
        to the result."""
        return {}

    def begin(self) -> dict[str, Any]:
        """Before a run: params to record beside the keyed ones (they are not part of the key)."""
        return {}

    def end(self, done: _Done | None, run_id: int | None) -> None:
        """After a run: what it produced and its ID, or None and None when it failed."""


_PLAIN = _Hook()


@dataclass(frozen=True, slots=True)
class _Step:
    """One cached stage: what keys it (``stage_key``'s stage, op version, inputs and params) and how to run it."""

    stage: Stage
    version: str
    inputs: dict[str, str]
    params: dict[str, Any]
    work: Callable[[], _Done]
    seed: int | None = None
    hook: _Hook = _PLAIN


@dataclass(frozen=True, slots=True)
class _Shot:
    """One attempt at one shot: where it records, where it writes, and what it may reuse."""

    ledger: Ledger
    job: ShotJob
    shot: Shot
    attempt: int
    tag: str  # names this attempt's work files (``quadmask-<tag>.mkv``), so attempts never overwrite each other

    @property
    def seed(self) -> int:
        """The shot's seed: its sidecar's, else the batch's."""
        return self.shot.instructions.seed if self.shot.instructions.seed is not None else self.job.seed

    @property
    def folder(self) -> Path:
        """Everything the shot writes: its versions, and its ``work`` folder of intermediates."""
        return pipeline.shot_dir(self.job.out_dir, self.shot)

    def run(self, step: _Step) -> _Result:
        """Run ``step`` and record the run; or, unless its stage is forced, reuse a completed run with its key (that
        the hook accepts) and record the cache hit."""
        key = stage_key(step.stage, version=step.version, inputs=step.inputs, params=step.params)
        batch, name = self.job.batch_id, self.shot.name
        origin = None if step.stage in self.job.force else self.ledger.cached(step.stage, key)
        kept = step.hook.reuse(origin) if origin is not None else None
        if origin is not None and kept is not None:
            self.ledger.record_cache_hit(batch, name, step.stage, origin, attempt=self.attempt)
            return _Result(_stored(origin), origin, True, {**origin.params, **kept})
        params = {**step.params, **step.hook.begin()}
        try:
            with self.ledger.stage(
                batch, name, step.stage, params, key=key, attempt=self.attempt, seed=step.seed
            ) as handle:
                done = step.work()
                for produced in (done.main, *done.extra):
                    handle.add(produced)
                handle.params.update(done.facts)
        except BaseException:
            step.hook.end(None, None)
            raise
        step.hook.end(done, handle.run_id)
        return _Result(done.main, self.ledger.run(handle.run_id), False, {**params, **done.facts})

    def failed(self, stage: Stage, params: dict[str, Any], error: BaseException) -> NoReturn:
        """Record ``stage`` as failed before it could start (its inputs could not be read) and raise ``error``."""
        with self.ledger.stage(self.job.batch_id, self.shot.name, stage, params, key="", attempt=self.attempt):
            if isinstance(error, OSError):
                raise StorageUnavailable(f"shot '{self.shot.name}': {stage} input unreadable: {error}") from error
            raise error

    def outcome(self, version: str | None, note: str, results: Mapping[Stage, _Result], started: float) -> ShotOutcome:
        """The shot's outcome: its version (None when it stopped at the review gate) and QC line or gate note."""
        cached = tuple(stage for stage, result in results.items() if result.hit)
        return ShotOutcome(self.shot.name, version, note, cached, time.monotonic() - started)

    def fail(self, reason: str) -> None:
        """Record the shot as failed, with ``reason``."""
        self.ledger.finish_shot(self.job.batch_id, self.shot.name, state="failed", reason=reason)
        get_run_logger().error("%s: failed: %s", self.shot.name, reason)


def _stored(run: StageRun) -> StageFile:
    """A completed run's main output (its first artifact), as a stage's result."""
    first = run.artifacts[0]
    return StageFile(
        first.kind, Path(first.path), first.sha256, first.bytes, first.frames, first.fps, first.width, first.height
    )


@dataclass(frozen=True, slots=True)
class _Parts:
    """What a shot's stages are built from, made once per attempt before any stage runs."""

    masker: Masker
    models: dict[str, ActorModel]  # the GPU pool's passes by stage name; empty off the pool
    view: PlateView
    inputs: dict[str, str]  # the mask stage's content hashes: the plate range and each mask file, by field

    @property
    def plate(self) -> str:
        """The plate range's content hash."""
        return self.inputs["plate"]


def _parts(context: _Shot, slot: int, settings: Settings) -> _Parts:
    """Check the shot's files are allowed, build its masker (its VLM with the worker's ``settings``) and GPU models
    (``slot`` picks the actors), and read its plate's colour and content hashes; a plate or mask file that cannot
    be read fails the mask stage."""
    job, shot, ledger = context.job, context.shot, context.ledger
    assert shot.media is not None
    ensure_allowed(shot.media.path, job.allowed_roots, what=f"shot '{shot.name}': media")
    given = shot.instructions
    for name, path in (("matte", given.matte), ("affected_matte", given.affected_matte), ("quadmask", given.quadmask)):
        if path and path != PLATE_ALPHA:
            ensure_allowed(path, job.allowed_roots, what=f"shot '{shot.name}': {name}")
    masker = make_masker(
        shot,
        sam2_actor=job.sam2_actors[slot % len(job.sam2_actors)] if job.sam2_actors else None,
        sam2_max_side=job.sam2.max_side if job.sam2 else 1024,
        vlm=_vlm(job, ledger, settings) if needs_segmenter(shot) else None,
    )
    gpus, priority = job.gpus, shot.instructions.priority
    models = (
        {}
        if gpus is None
        else {
            name: ActorModel(gpus, name, shot=shot.name, priority=priority, frames=shot.frames) for name in gpus.params
        }
    )
    try:
        view = plate_view(shot, job.colour)  # before any GPU work: a bad colour space fails the shot here
        inputs = mask_inputs(ledger, shot)
    except (VoidflowError, OSError) as error:
        context.failed("mask", masker.params(shot), error)
    ledger.set_plate_hash(job.batch_id, shot.name, inputs["plate"])
    return _Parts(masker, models, view, inputs)


def _mask_step(stage: Stage, context: _Shot, parts: _Parts, done: Mapping[Stage, _Result]) -> _Step:
    """Mask: the quadmask and its review pictures; the VLM's exchanges are stored in the ledger's memo."""
    shot, ledger = context.shot, context.ledger
    colour = parts.view.params()

    def work() -> _Done:
        quadmask, output, reviews = pipeline.make_mask(
            shot, parts.masker, context.folder / "work", context.tag, parts.view
        )
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

    return _Step("mask", parts.masker.version, parts.inputs, parts.masker.params(shot), work)


def _inpaint_step(stage: Stage, context: _Shot, parts: _Parts, done: Mapping[Stage, _Result]) -> _Step:
    """Pass 1 or pass 2: the backend fills the quadmask's region; pass 2 also takes pass 1's fill."""
    job, shot, view = context.job, context.shot, parts.view
    assert stage in ("pass1", "pass2")
    backend = make_backend(job.backend, stage, void=job.void, model=parts.models.get(stage))
    quadmask, first = done["mask"].file, done["pass1"].file if stage == "pass2" else None
    prompt = shot.instructions.prompt or str(done["mask"].params.get("vlm_prompt") or "")
    inputs = {"plate": parts.plate, "quadmask": quadmask.sha256, **({"fill": first.sha256} if first else {})}
    geometry = backend.describe(shot.frames, view.info.height, pipeline.model_width(view))
    params = {**backend.params(), **geometry, "seed": context.seed, "prompt": prompt, "colour": view.params()}

    def work() -> _Done:
        fill = pipeline.inpaint(
            shot,
            backend,
            quadmask.path,
            context.folder / "work",
            context.tag,
            view,
            seed=context.seed,
            prompt=prompt,
            first_pass=first.path if first else None,
        )
        model = parts.models.get(stage)  # how its calls ran (GPU, memory recipe, when); nothing off the GPU pool
        return _Done(fill, facts={"gpu_runs": list(model.runs)} if model is not None else {})

    return _Step(stage, backend.version, inputs, params, work, seed=context.seed)


@dataclass(slots=True)
class _Versioning(_Hook):
    """Deliver's hook: a cache hit counts only while the version its run wrote exists (the shot keeps it); a run
    first reserves the shot's next version, records it with the run, and settles it when the run ends
    (``delivered`` or ``qc_failed`` by its QC, ``failed`` when it raised)."""

    ledger: Ledger
    batch_id: str
    shot: str
    runs: dict[str, int | None]  # lineage: the mask and pass runs the version is made from
    version: str = ""

    def reuse(self, origin: StageRun) -> dict[str, Any] | None:
        found = self.ledger.version_and_review_of_run(origin.id)
        if found is None:
            return None
        label, review = found
        if review == "rejected":  # the same inputs would only make the rejected pixels again, under a new name
            raise InvalidInput(
                f"shot '{self.shot}': {label} was rejected, and this run would make it again (the plate, mask, "
                "prompts, seed and settings it was made from are unchanged); change the prompt, the seed (sidecar "
                "'seed') or the mask, then rerun"
            )
        return {"version": label}

    def begin(self) -> dict[str, Any]:
        self.version = self.ledger.allocate_version(self.batch_id, self.shot, self.runs)
        return {"version": self.version}

    def end(self, done: _Done | None, run_id: int | None) -> None:
        if done is None:
            self.ledger.finish_version(self.shot, self.version, status="failed")
            return
        status = "delivered" if done.facts["qc"]["passed"] else "qc_failed"
        self.ledger.finish_version(self.shot, self.version, status=status, deliver_run_id=run_id)


def _deliver_step(stage: Stage, context: _Shot, parts: _Parts, done: Mapping[Stage, _Result]) -> _Step:
    """Deliver: composite the last pass's fill into the plate and write the next version (QC kept with the run)."""
    job, shot, view, spec = context.job, context.shot, parts.view, context.job.delivery
    quadmask, fill = done["mask"].file, done["pass2" if "pass2" in done else "pass1"].file
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
    runs: dict[str, int | None] = {name: result.run.id for name, result in done.items()}
    hook = _Versioning(context.ledger, job.batch_id, shot.name, runs)

    def work() -> _Done:
        _, qc, files = pipeline.deliver(
            shot, fill.path, quadmask.path, context.folder, view, version=hook.version, blend=job.blend, spec=spec
        )
        return _Done(files[0], tuple(files[1:]), {"qc": {**dataclasses.asdict(qc), "passed": qc.passed}})

    inputs = {"plate": parts.plate, "quadmask": quadmask.sha256, "fill": fill.sha256}
    return _Step("deliver", pipeline.DELIVER_VERSION, inputs, params, work, hook=hook)


#: How each cached stage's step is built from the shot's parts and the stages before it.
_STEPS: dict[Stage, Callable[[Stage, _Shot, _Parts, Mapping[Stage, _Result]], _Step]] = {
    "mask": _mask_step,
    "pass1": _inpaint_step,
    "pass2": _inpaint_step,
    "deliver": _deliver_step,
}


def _held_for_review(context: _Shot, mask: _Result) -> str | None:
    """With the review gate on, why the shot stops after its mask (awaiting review, or rejected; recorded), or None
    when the mask is approved."""
    review = context.ledger.review(mask.run.key)
    if review is not None and review.decision == "approved":
        return None
    job, name = context.job, context.shot.name
    state: Literal["rejected", "awaiting_review"] = "rejected" if review is not None else "awaiting_review"
    reason = (
        f"mask rejected by {review.reviewer}: {review.note}"
        if review is not None
        else f"mask awaits review (voidflow approve {name} --batch {job.batch_id[:8]})"
    )
    context.ledger.finish_shot(job.batch_id, name, state=state, reason=reason)
    return reason


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
    attempt = attempt_base + (current_task_run.run_count or 1)
    settings = Settings.from_env()  # the worker's own: the Gemini key, the database password
    remember_password(settings.db_url)
    context = _Shot(Ledger(job.db_url, db_timeout_s=job.db_timeout_s), job, shot, attempt, uuid.uuid4().hex[:8])
    started = time.monotonic()
    results: dict[Stage, _Result] = {}
    try:
        parts = _parts(context, slot, settings)
        for stage in job.stages(shot):
            _within_time(job, shot, started)
            result = results[stage] = context.run(_STEPS[stage](stage, context, parts, results))
            logger.info("%s: %s %s (%s)", shot.name, stage, "cached" if result.hit else "done", result.file.path.name)
            held = _held_for_review(context, result) if stage == "mask" and job.gate else None
            if held is not None:
                logger.info("%s: %s", shot.name, held)
                return context.outcome(None, held, results, started)
    except TaskRunTimeoutError as error:  # the shot timeout (an OSError too): Prefect's TimedOut, not retried
        context.fail(str(error))
        raise
    except OSError as error:  # a write outside the atomic writers (a work folder, say): name the file and cause
        reason = f"shot '{shot.name}': {error.filename or 'a file'}: {error.strerror or error}"
        context.fail(reason)
        raise StorageUnavailable(reason) from None
    except Exception as error:
        context.fail(str(error) or type(error).__name__)
        raise
    delivered = results["deliver"]
    version, qc_line = str(delivered.params["version"]), _qc_line(delivered.params.get("qc", {}))
    context.ledger.finish_shot(job.batch_id, shot.name, state="done", version=version)
    logger.info("%s: %s %s (%s)", shot.name, "kept" if delivered.hit else "delivered", version, qc_line)
    return context.outcome(version, qc_line, results, started)


def _within_time(job: ShotJob, shot: Shot, started: float) -> None:
    """Stop a shot past its time limit before its next stage, as Prefect reports a timeout (``TimedOut``, not
    retried). This is the shot timeout: a stage runs to its end (a GPU call has its own ``gpu_timeout_s``), as
    Prefect's own task timeout would not interrupt a blocking call (a decode, a GPU wait) either, and where it did
    interrupt, it raised into whatever ran: an import or a first database use, which then failed in the worker
    process for every later shot.

    Raises:
        TaskRunTimeoutError: more than ``job.shot_timeout_s`` seconds went by since the shot started.
    """
    if job.shot_timeout_s is not None and time.monotonic() - started > job.shot_timeout_s:
        raise TaskRunTimeoutError(f"shot '{shot.name}': ran past its {job.shot_timeout_s:g} s shot timeout")


def _qc_line(qc: dict[str, Any]) -> str:
    """One QC line from the QC recorded with a deliver run (``QcReport.summary``)."""
    if not qc:
        return "no QC recorded"
    return QcReport.from_record(qc).summary()
