"""The ``voidflow`` commands: one handler per command, each binding its arguments to flows, tasks and the ledger.

A handler takes the parsed arguments and the settings ``deployments.cli.main`` read once, and returns the exit code
(0 success, 1 some shots failed); an unusable input raises a ``VoidflowError``, which ``main`` prints as one line
(exit 2). Each imports what it needs when it runs, so ``voidflow plan`` starts without Prefect or Ray.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voidflow.infra.settings import Settings
from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput, VoidflowError

if TYPE_CHECKING:
    from voidflow.tasks.ledger import Ledger

__all__ = ["COMMANDS", "Command"]

#: A command's handler: the parsed arguments and the settings in, the exit code out.
Command = Callable[[argparse.Namespace, Settings], int]


def _request(args: argparse.Namespace, settings: Settings, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from voidflow.flows.params import BatchRequest

    fields = {
        "edit": args.edit,
        "sidecar": args.sidecar,
        "track": args.track,
        "select_all": args.select_all,
        "handles": args.handles,
        "edl_rate": args.edl_rate,
        "out_dir": getattr(args, "out", Path("voidflow-out")),
        "backend": getattr(args, "backend", "cleanplate"),
        "output": getattr(args, "output", "prores"),
        "first_frame": getattr(args, "first_frame", 1001),
        "exr_compression": getattr(args, "exr_compression", "piz"),
        "plate_colourspace": getattr(args, "plate_colourspace", None),
        "ocio": getattr(args, "ocio", None) or settings.ocio,
        "seed": getattr(args, "seed", 0),
        "db_url": settings.db_url,
        "previous_edit": getattr(args, "previous_edit", None),
        "previous_sidecar": getattr(args, "previous_sidecar", None),
        "conform_qc_failed": getattr(args, "conform_qc_failed", False),
        "shot_timeout_s": getattr(args, "shot_timeout", 4 * 3600.0),
        "publish": getattr(args, "publish", None),
        "priority": getattr(args, "priority", 0),
        "void": {
            "models_dir": getattr(args, "models", None) or settings.models_dir,
            "pass2": getattr(args, "pass2", False),
            "compile": getattr(args, "compile", True),
            "memory_gb": getattr(args, "gpu_memory", None),
            "gpu_timeout_s": getattr(args, "gpu_timeout", 3600.0),
            "device": getattr(args, "device", "auto"),
            "gpu_wait_s": getattr(args, "gpu_wait", 600.0),
        },
        "masks": {
            "gate": getattr(args, "gate", False),
            "vlm": getattr(args, "vlm", "auto"),
            **({"sam2_checkpoint": args.sam2_checkpoint} if getattr(args, "sam2_checkpoint", None) else {}),
        },
    }
    try:
        return BatchRequest(**{**fields, **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"--{field.replace('_', '-')}: {first['msg']} (got {first.get('input')!r})") from None


def _ledger(settings: Settings) -> Ledger:
    """The ledger of ``settings``, its writes waiting ``db_timeout_s`` for another process's lock."""
    from voidflow.tasks.ledger import Ledger

    return Ledger(settings.db_url, db_timeout_s=settings.db_timeout_s)


def _planned(request: Any, settings: Settings) -> list[Any]:
    """The request's shots, planned as on this host: its path map and allowed roots (``flows.params.plan``)."""
    from voidflow.flows.params import plan

    return plan(request, allowed_roots=settings.allowed_roots, path_map=settings.path_map)[1]


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.flows.params import plan

    request = _request(args, settings)
    edit, shots = plan(request, allowed_roots=settings.allowed_roots, path_map=settings.path_map)
    colours = {shot.name: _plate_colour(shot, request) for shot in shots if shot.status == "ready"}
    about = {"path": str(edit.path), "rate": edit.rate, "rate_evidence": edit.rate_evidence, "warnings": edit.warnings}
    if args.json:
        documents = [{**shot.to_json(), **({"colour": colours[shot.name]} if shot.name in colours else {})}
                     for shot in shots]  # fmt: skip
        print(json.dumps({"edit": about, "shots": documents}, indent=2))
        return 0
    rate = f"{edit.rate:.3f}".rstrip("0").rstrip(".")
    print(f"edit {edit.path.name} at {rate} fps" + (f": {edit.rate_evidence}" if edit.rate_evidence else ""))
    for warning in edit.warnings:
        print(f"  note: {warning}")
    for shot in shots:
        state = "ready  " if shot.status == "ready" else "skipped"
        first, last = shot.source_start, shot.source_start + shot.duration - 1
        colour = colours.get(shot.name, {})
        space = f"[{colour.get('name') or 'colour: ' + str(colour.get('error'))}] " if colour else ""
        retime = f"{shot.retime.kind} x{shot.retime.scalar:g} " if shot.retime else ""
        span = f"{first}-{last} ({shot.duration} fr)"
        print(f"{state} {shot.name:<28} {shot.track:<10} {span} {retime}{space}{shot.reason}")
        for warning in shot.warnings:
            print(f"  note: {warning}")
    return 0


def _plate_colour(shot: Any, request: Any) -> dict[str, object]:
    """The plate's colour space as a batch would decide it, and why; or the one-line reason it cannot."""
    from voidflow.void_ops.plates import ColourSettings, plate_view

    try:
        view = plate_view(shot, ColourSettings(config=request.ocio, plate_space=request.plate_colourspace))
    except VoidflowError as error:
        return {"error": str(error)}
    colour = view.colour
    return {"name": colour.name, "source": colour.source, "evidence": colour.evidence,
            "scene_referred": colour.scene_referred}  # fmt: skip


def _execute(request: Any, settings: Settings, ray_address: str | None) -> int:
    from voidflow.flows.batch import run_batch
    from voidflow.infra.cluster import orchestration
    from voidflow.infra.database import ensure_schema
    from voidflow.void_ops import media

    ensure_schema(settings.db_url)
    _ledger(settings).check_writable()
    shots = _planned(
        request, settings
    )  # fail fast, before Prefect and Ray start, on an unusable edit, sidecar or ledger
    media.ensure_writable_folder(request.out_dir)  # only once the request is good: a refusal writes nothing
    ready = sum(shot.status == "ready" for shot in shots)
    print(f"voidflow: {ready} of {len(shots)} shots to process; starting Prefect and Ray ...", flush=True)
    started = time.monotonic()
    with orchestration(settings, ray_address=ray_address):
        result = run_batch(request)
    print(f"\nbatch {result.batch_id}: {result.state} in {time.monotonic() - started:.0f}s")
    print(f"  done:    {len(result.done)} {' '.join(result.done)}")
    print(f"  failed:  {len(result.failed)} {' '.join(result.failed)}")
    if result.waiting:
        print(f"  waiting for mask review: {len(result.waiting)} {' '.join(result.waiting)}")
        print(f"    look at {result.report}, then: voidflow approve SHOT... --batch {result.batch_id[:8]}")
        print(f"    and: voidflow resume {result.batch_id[:8]}")
        print(f"    or review them in a browser: voidflow review --batch {result.batch_id[:8]}")
    print(f"  skipped: {len(result.skipped)}")
    if result.conformed:
        print(f"  conformed edit: {result.conformed}")
    print(f"  report:         {result.report}")
    if request.publish:
        print(f"  published:      {len(result.published)} to {request.publish}")
    if result.publish_failed:  # the shots are done; only their publish stage failed
        print(f"  publish failed: {len(result.publish_failed)} {' '.join(result.publish_failed)}")
        print(f"    the shots are done; publish them again with: voidflow publish --batch {result.batch_id[:8]}")
    return 1 if result.failed or result.publish_failed else 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    return _execute(_request(args, settings), settings, args.ray_address)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.void_ops.demo import make_demo

    out = args.out.absolute()
    print(f"voidflow demo: writing a synthetic shoot to {out / 'input'} ...", flush=True)
    shoot = make_demo(out, linear_shot=True)
    namespace = argparse.Namespace(
        edit=shoot.edit, sidecar=shoot.sidecar, track=None, select_all=False, handles=8, edl_rate=None, gate=args.gate
    )
    return _execute(_request(namespace, settings, out_dir=out), settings, None)


def _conform(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.batch import conform_batch

    ensure_schema(settings.db_url)
    written = conform_batch.fn(
        settings.db_url,
        args.batch,
        args.out.absolute(),
        allowed_roots=settings.allowed_roots,
        edit_path=args.edit.absolute(),
        include_qc_failed=args.include_qc_failed,
        mode="track" if args.as_track else "reference",
    )
    print(f"conformed edit: {written}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema

    ensure_schema(settings.db_url)
    batches = _ledger(settings).batches(args.batch)
    document = {"batches": [_batch_json(batch) for batch in batches]}
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    for batch in document["batches"]:
        print(f"{batch['id']}  {batch['state']:<8} {batch['created_at']}  {batch['edit']}")
        for shot in batch["shots"]:
            note = f"STUCK: {shot['stuck']}" if shot["stuck"] else shot["reason"]
            print(f"    {shot['name']:<28} {shot['state']:<8} {shot['version'] or '':<5} {note}")
    return 0


def _stuck(batch: Any, shot: Any) -> str:
    """Why a shot of a running batch looks stuck: a stage running longer than the batch's shot timeout."""
    if batch.state != "running":
        return ""
    limit = float(batch.params.get("shot_timeout_s") or 4 * 3600.0)
    now = datetime.now(UTC)
    for run in shot.stage_runs:
        started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=UTC)
        running_s = (now - started).total_seconds()
        if run.state == "running" and running_s > limit:
            hours = running_s / 3600
            return f"{run.stage} running for {hours:.1f} h, past the {limit / 3600:g} h shot timeout (on {run.host})"
    return ""


def _batch_json(batch: Any) -> dict[str, Any]:
    def when(moment: Any) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": batch.id,
        "state": batch.state,
        "created_at": when(batch.created_at),
        "finished_at": when(batch.finished_at),
        "edit": batch.edit_path,
        "out_dir": batch.out_dir,
        "backend": batch.backend,
        "prefect_flow_run_id": batch.prefect_flow_run_id,
        "shots": [
            {
                "name": shot.name,
                "track": shot.track,
                "state": shot.state,
                "reason": shot.reason,
                "version": shot.version,
                "stuck": _stuck(batch, shot),
                "stages": [_run_json(run) for run in shot.stage_runs],
            }
            for shot in batch.shots
        ],
    }


def _run_json(run: Any) -> dict[str, Any]:
    return {
        "stage": run.stage,
        "state": run.state,
        "attempt": run.attempt,
        "key": run.key,
        "cached_from": run.cached_from_id,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": run.error_message,
    }


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import redact_url, upgrade

    upgrade(settings.db_url)
    print(f"database {redact_url(settings.db_url)} is at the newest schema")
    return 0


def _rerun(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.flows.rerun import prepare_rerun
    from voidflow.infra.database import ensure_schema

    ensure_schema(settings.db_url)
    if not args.failed and not args.shot:
        raise InvalidInput("say which shots to rerun: --failed, or --shot NAME")
    batch_id = args.batch or _newest_batch_with(_ledger(settings), args.shot[0])
    eager = getattr(args, "compile", None) is False  # --no-compile: the VOID stages run again, eagerly
    request, plans = prepare_rerun(
        settings.db_url,
        batch_id,
        failed=args.failed,
        shots=args.shot,
        force_from=_no_later_than(args.force_from, "pass1") if eager else args.force_from,
        sidecar=getattr(args, "sidecar", None) and args.sidecar.absolute(),
        allowed_roots=settings.allowed_roots,
        path_map=settings.path_map,
        db_timeout_s=settings.db_timeout_s,
    )
    if request is None:
        print(f"batch {batch_id[:8]}: nothing to rerun (every shot finished)")
        return 0
    if eager:
        request = request.model_copy(update={"void": request.void.model_copy(update={"compile": False})})
    if getattr(args, "priority", None) is not None:  # resume keeps the batch's own
        request = request.model_copy(update={"priority": args.priority})
    if args.dry_run:
        if getattr(args, "json", False):
            print(json.dumps({"batch": request.parent_batch, "shots": [p.as_dict() for p in plans]}, indent=2))
            return 0
        print(f"rerun of batch {str(request.parent_batch)[:8]} ({len(plans)} shots):")
        for shot_plan in plans:
            for stage in shot_plan.stages:
                print(f"  {shot_plan.shot:<24} {stage.stage:<8} {stage.action:<6} {stage.reason}")
        return 0
    return _execute(request, settings, args.ray_address)


def _no_later_than(force_from: str | None, stage: str) -> str:
    """The earlier of ``force_from`` (None: none) and ``stage`` in the stage order."""
    from voidflow.void_ops.stages import STAGE_ORDER

    if force_from is None:
        return stage
    return min(force_from, stage, key=STAGE_ORDER.index)


def _newest_batch_with(ledger: Any, shot: str) -> str:
    rows, _ = ledger.history(shot)
    if not rows:
        raise InvalidInput(f"no batch has a shot named '{shot}'")
    return str(rows[-1].batch_id)


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.batch import load_batch

    ensure_schema(settings.db_url)
    ledger = _ledger(settings)
    batch = load_batch(ledger, args.batch)
    if batch.state == "running" and not args.dry_run:
        ledger.interrupt(batch.id)
        print(
            f"batch {batch.id[:8]} was still marked running: its flow is taken as stopped, its unfinished shots rerun"
        )
    namespace = argparse.Namespace(
        batch=args.batch,
        failed=True,
        shot=[],
        force_from=None,
        dry_run=args.dry_run,
        json=False,
        ray_address=args.ray_address,
    )
    return _rerun(namespace, settings)


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema

    ensure_schema(settings.db_url)
    rows, versions = _ledger(settings).history(args.shot)
    if not rows:
        raise InvalidInput(f"no batch has a shot named '{args.shot}'")
    document = {
        "shot": args.shot,
        "versions": [
            {
                "version": v.label,
                "status": v.status,
                "review": v.review_state,
                "batch": v.batch_id,
                "created_at": v.created_at.isoformat(),
            }
            for v in versions
        ],
        "batches": [
            {
                "batch": row.batch_id,
                "kind": row.batch.kind,
                "state": row.state,
                "version": row.version,
                "reason": row.reason,
                "stages": [_run_json(run) for run in row.stage_runs],
            }
            for row in rows
        ],
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print(f"{args.shot}: versions {', '.join(f'{v.label} ({v.status})' for v in versions) or 'none'}")
    for entry in document["batches"]:
        print(f"  batch {entry['batch'][:8]} {entry['kind']:<5} {entry['state']:<8} {entry['version'] or ''}")
        for stage in entry["stages"]:
            note = stage["error"] or (f"reused run {stage['cached_from']}" if stage["cached_from"] else "")
            print(f"      {stage['stage']:<8} {stage['state']:<7} attempt {stage['attempt']} {note}")
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema
    from voidflow.infra.paths import ensure_allowed
    from voidflow.tasks.batch import load_batch
    from voidflow.tasks.export import write_parquet

    ensure_allowed(args.out, settings.allowed_roots, what="export")
    ensure_schema(settings.db_url)
    batch = load_batch(_ledger(settings), args.batch)
    written, count = write_parquet(batch, args.out.absolute())
    print(f"wrote {count} stage runs of batch {batch.id[:8]} to {written}")
    return 0


def _review_timeline(args: argparse.Namespace, settings: Settings) -> int:
    """Plan the batch's edit as this host sees it (the plates' real paths), then write its review timeline."""
    from voidflow.flows.params import BatchRequest, plan
    from voidflow.infra.database import ensure_schema
    from voidflow.infra.paths import ensure_allowed
    from voidflow.tasks.batch import load_batch, write_review_timeline

    ensure_allowed(args.out, settings.allowed_roots, what="review timeline")
    ensure_schema(settings.db_url)
    ledger = _ledger(settings)
    batch = load_batch(ledger, args.batch)
    narrowing = ("only_shots", "previous_edit", "previous_sidecar")  # plan every shot of the edit, as it is now
    stored = {name: value for name, value in batch.params.items() if name not in narrowing}
    edit, shots = plan(
        BatchRequest(**stored, db_url=settings.db_url),
        allowed_roots=settings.allowed_roots,
        path_map=settings.path_map,
    )
    plates = {shot.name: shot.media for shot in shots}
    written = write_review_timeline(
        ledger, batch.id, edit, plates, args.out.absolute(), include_qc_failed=args.include_qc_failed
    )
    print(f"review timeline of batch {batch.id[:8]}'s rerun chain: {written}")
    return 0


def _review(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema

    ensure_schema(settings.db_url)
    ledger = _ledger(settings)
    decision: Literal["approved", "rejected"] = "approved" if args.command == "approve" else "rejected"
    reviewer = args.by or settings.user
    for shot in args.shots:
        if args.version:
            ledger.decide_version(shot, args.version, decision=decision, reviewer=reviewer, note=args.note)
            print(f"{shot}: {args.version} {decision} by {reviewer}")
            continue
        batch = args.batch or _newest_batch_with(ledger, shot)
        ledger.decide(batch, shot, decision=decision, reviewer=reviewer, note=args.note)
        print(f"{shot}: mask {decision} by {reviewer} (batch {batch[:8]})")
    from voidflow.tasks.review import refresh_report

    for batch in dict.fromkeys(args.batch or _newest_batch_with(ledger, shot) for shot in args.shots):
        print(f"report: {refresh_report(ledger, batch)}")  # the report shows the decisions too
    return 0


def _review_room(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from voidflow.deployments.review import ReviewConfig, create_app, is_loopback
    from voidflow.infra.database import ensure_schema

    if not is_loopback(args.host) and not settings.review_token:
        raise ConfigurationError(
            f"voidflow review: serving on {args.host} needs VOIDFLOW_REVIEW_TOKEN set (every request must carry it)"
        )
    ensure_schema(settings.db_url)
    if args.batch and not _ledger(settings).chain(args.batch):
        raise InvalidInput(f"no batch with ID '{args.batch}' in the ledger")
    app = create_app(ReviewConfig(settings, batch=args.batch, host=args.host, port=args.port))
    where = f"http://{args.host}:{args.port}/"
    print(
        f"review room on {where}"
        + (" (open it once with ?token=<VOIDFLOW_REVIEW_TOKEN>)" if settings.review_token else "")
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    """Run the publish stage of a finished batch on its own: its delivered versions to the tracker."""
    from voidflow.flows.publish import PublishRequest, publish_batch
    from voidflow.infra.cluster import orchestration
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.batch import load_batch
    from voidflow.tasks.publish import make_publisher

    ensure_schema(settings.db_url)
    batch = load_batch(_ledger(settings), args.batch)
    tracker = args.tracker or batch.params.get("publish")
    if not tracker:
        raise InvalidInput(f"--tracker: batch {batch.id[:8]} was run without --publish; say shotgrid or kitsu")
    shots = tuple(args.shot) or None
    request = PublishRequest(db_url=settings.db_url, batch_id=batch.id, tracker=tracker, shots=shots)
    with orchestration(settings):
        make_publisher(tracker, settings)  # its settings complete (a Secret block is read once Prefect is up)
        result = publish_batch(request)
    print(f"\nbatch {batch.id[:8]} to {tracker}:")
    print(f"  published: {len(result.published)} {' '.join(result.published)}")
    print(f"  already there: {len(result.kept)} {' '.join(result.kept)}")
    for shot, reason in result.skipped.items():
        print(f"  skipped {shot}: {reason}")
    for shot, reason in result.failed.items():
        print(f"  FAILED {shot}: {reason}")
    return 1 if result.failed else 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.flows.params import BatchRequest
    from voidflow.void_ops.cutdiff import diff_shots

    def shots(edit: Path, sidecar: Path | None) -> list[Any]:
        request = BatchRequest(
            edit=edit, sidecar=sidecar, out_dir=Path("."), db_url="", edl_rate=args.edl_rate, select_all=True
        )
        return _planned(request, settings)

    changes = diff_shots(shots(args.old, args.old_sidecar), shots(args.new, args.sidecar))
    if args.json:
        print(json.dumps({"shots": [change.as_dict() for change in changes]}, indent=2))
        return 0
    for change in changes:
        print(f"{change.shot:<28} {', '.join(change.kinds) or 'unchanged':<24} {change.detail}")
    return 0


def _deployments(args: argparse.Namespace, settings: Settings) -> list[Any]:
    from voidflow.deployments.nightly import nightly_deployments

    def absolute(path: Path | None) -> str | None:
        return str(path.absolute()) if path is not None else None

    return nightly_deployments(
        edit=str(args.edit.absolute()),
        out_dir=str(args.out.absolute()),
        db_url=args.db_url or settings.db_url,
        cron=args.cron,
        timezone=args.timezone,
        sidecar=absolute(args.sidecar),
        previous_edit=absolute(args.previous_edit),
        backend=args.backend,
        models_dir=absolute(args.models or (settings.models_dir if args.backend == "void" else None)),
        publish=args.publish,
        **({"work_pool": args.pool, "image": args.image} if args.command == "deploy" else {}),
    )


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.deployments.nightly import deploy, describe

    found = _deployments(args, settings)
    if args.dry_run:
        print(describe(found))
        return 0
    for deployment_id in deploy(found):
        print(f"deployed {deployment_id}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.deployments.nightly import serve
    from voidflow.infra.cluster import prepare_environment

    prepare_environment(settings)
    serve(_deployments(args, settings))
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.models import fetch, verify

    folder = (args.models or settings.models_dir or settings.home / "models").absolute()
    if args.action == "warm":
        return _warm(folder, getattr(args, "frames", None), settings)
    if args.action == "fetch":
        lock = fetch(folder, offline=args.offline or settings.hf_offline, cache_dir=args.cache_dir, report=print)
        print(f"models in {folder}; sha256 sums in {lock}")
        return 0
    problems = verify(folder)
    for problem in problems:
        print(problem)
    print(f"{folder}: {'all files match the lock' if not problems else f'{len(problems)} problems'}")
    return 2 if problems else 0


def _warm(folder: Path, frames: list[int] | None, settings: Settings) -> int:
    """``models warm``: compile VOID's passes for this node's GPU into the compile cache (``VOIDFLOW_COMPILE_CACHE``),
    one blank call per shape shots of ``frames`` frames meet (``warm_lengths``; default every length), so a farm
    can bake the cache into its image. Exit 0 when warmed.

    Raises:
        ConfigurationError: torch sees no CUDA GPU here (nothing is compiled on a CPU), the compile cache is off,
            or the models are missing (exit 2, before anything loads).
    """
    import dataclasses

    import torch

    from voidflow.flows.params import PASS2_FILE, VoidOptions
    from voidflow.void_ops.void.backend import PassRun, warm_lengths, warm_passes
    from voidflow.void_ops.void.compile_cache import CompileCache, device_key

    if not torch.cuda.is_available():
        raise ConfigurationError(
            f"models warm compiles VOID for this node's GPU, and torch {torch.__version__} sees no CUDA GPU here: "
            "nothing to warm (run it on a GPU node)"
        )
    if settings.compile_cache is None:
        raise ConfigurationError("models warm: VOIDFLOW_COMPILE_CACHE is off, so nothing would keep what it compiles")
    options = VoidOptions(models_dir=folder)
    config = options.config(pass2=(folder / PASS2_FILE).exists())
    specs = {"pass1": config.pass1, **({"pass2": config.pass2} if config.pass2 is not None else {})}
    geometry = config.settings
    lengths = warm_lengths(frames, geometry, window=options.window, overlap=options.overlap)
    cache = CompileCache(settings.compile_cache, device_key("cuda"))
    print(f"compile cache {cache.folder}: warming {', '.join(specs)} at {', '.join(map(str, lengths))} frames")

    def report(name: str, length: int, run: PassRun) -> None:
        note = f" ({run.cache.note})" if run.cache.note else ""
        graphs = f", {run.cache.graphs}" if run.cache.graphs else ""
        print(f"  {name} {length} frames: {run.finished - run.started:.1f} s, cache {run.cache.state}{graphs}{note}")

    on_gpu = {
        name: dataclasses.replace(spec, device="cuda", dtype="bfloat16", compile=True) for name, spec in specs.items()
    }
    warm_passes(on_gpu, lengths, geometry, cache, report)
    print(f"compile cache {cache.folder}: {cache.size_mb()} MB")
    return 0


def _config(args: argparse.Namespace, settings: Settings) -> int:
    shown = settings.shown()
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        for name, value in shown.items():
            print(f"{name:<22} {value}")
    return 0


#: The handler of each command, by the name typed after ``voidflow``.
COMMANDS: dict[str, Command] = {
    "plan": _plan,
    "run": _run,
    "conform": _conform,
    "status": _status,
    "demo": _demo,
    "db": _db,
    "rerun": _rerun,
    "resume": _resume,
    "history": _history,
    "export": _export,
    "review-timeline": _review_timeline,
    "diff": _diff,
    "deploy": _deploy,
    "serve": _serve,
    "models": _models,
    "config": _config,
    "approve": _review,
    "publish": _publish,
    "reject": _review,
    "review": _review_room,
}
