"""``voidflow``: the command line. It binds arguments to flows and reads the ledger; it does no work of its own.

Exit codes: 0 success; 1 the batch ran but some shots failed (the rest completed); 2 the edit, sidecar, settings
or database is unusable (nothing ran); 3 an internal error (traceback in ``$VOIDFLOW_HOME/logs/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voidflow.infra.settings import Settings
from voidflow.void_ops.exceptions import InvalidInput, VoidflowError

_OUTPUTS = ("prores", "prores_4444", "prores_4444xq", "dnxhr_hqx", "png", "exr", "dpx", "tiff")

__all__ = ["main"]


def _mask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gate", action="store_true", help="stop after masks until shots are approved")
    parser.add_argument(
        "--vlm",
        choices=("auto", "replay", "off"),
        default="auto",
        help="the mask VLM: auto (stored answers, then the API when a key is set), replay, off",
    )
    parser.add_argument("--sam2-checkpoint", type=Path, help="SAM2 checkpoint (default: $VOIDFLOW_MODELS/sam2/...)")


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("edit", type=Path, help=".otio, .otioz, .otiod, .edl, .xml (FCP7), .fcpxml or .aaf")
    parser.add_argument("--sidecar", type=Path, help="per-shot instructions (.yaml, .json or .csv)")
    parser.add_argument("--track", help="process every clip of this video track")
    parser.add_argument("--all", dest="select_all", action="store_true", help="process every clip of every track")
    parser.add_argument("--handles", type=int, default=8, help="frames beyond each end of the cut (default 8)")
    parser.add_argument("--edl-rate", type=float, help="timecode rate of an EDL (default: 24, or 29.97 for DF)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voidflow", description="AI object removal over the shots of an edit.")
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser("plan", help="list the shots an edit would give, without running anything")
    _selection_arguments(plan)
    plan.add_argument("--json", action="store_true", help='print {"shots": [...]} as JSON')
    _colour_arguments(plan)

    run = commands.add_parser("run", help="run a batch over an edit")
    _selection_arguments(run)
    run.add_argument("--out", type=Path, default=Path("voidflow-out"), help="output folder (default voidflow-out)")
    run.add_argument(
        "--backend", default="cleanplate", help="inpainting backend: cleanplate (default), void or passthrough"
    )
    run.add_argument("--output", choices=_OUTPUTS, default="prores", help="delivery format (default prores)")
    run.add_argument("--first-frame", type=int, default=1001, help="a sequence delivery's first frame number (1001)")
    run.add_argument(
        "--exr-compression", choices=("piz", "zip", "zips", "dwaa", "dwab", "none"), default="piz", help="EXR (piz)"
    )
    _colour_arguments(run)
    run.add_argument("--seed", type=int, default=0, help="batch seed (a shot's own seed wins)")
    run.add_argument("--pass2", action="store_true", help="void backend: also run VOID's pass 2 (refinement)")
    run.add_argument("--models", type=Path, help="void backend: models folder (default $VOIDFLOW_MODELS)")
    run.add_argument("--compile", action="store_true", help="void backend: compile the models (fast after ~2 min)")
    run.add_argument("--gpu-memory", type=float, help="void backend: GB a GPU may use (default: the card's memory)")
    run.add_argument(
        "--gpu-timeout", type=float, default=3600.0, help="void backend: seconds one model call may take (3600)"
    )
    run.add_argument("--shot-timeout", type=float, default=4 * 3600.0, help="seconds one shot may take (14400)")
    _mask_arguments(run)
    run.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")

    diff = commands.add_parser("diff", help="what changed per shot between two edits")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.add_argument("--old-sidecar", type=Path)
    diff.add_argument("--sidecar", type=Path, help="the new edit's sidecar")
    diff.add_argument("--edl-rate", type=float)
    diff.add_argument("--json", action="store_true")

    conform = commands.add_parser("conform", help="write an edit with a batch's results conformed in")
    conform.add_argument("edit", type=Path)
    conform.add_argument("--batch", required=True, help="batch ID (see voidflow status)")
    conform.add_argument("-o", "--out", type=Path, required=True, help="output edit: .otio, .otioz, .edl or .xml")
    conform.add_argument("--include-qc-failed", action="store_true", help="conform versions that failed QC too")
    conform.add_argument(
        "--as-track",
        action="store_true",
        help="put the versions on a new track above the cut instead of switching clips' media",
    )

    status = commands.add_parser("status", help="batches, newest first, with their shots")
    status.add_argument("--batch", help="only this batch")
    status.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="make a synthetic shoot and run the whole batch on it")
    demo.add_argument("--out", type=Path, default=Path("demo-out"))
    demo.add_argument("--gate", action="store_true", help="stop after masks until shots are approved")

    for verb, meaning in (("approve", "let shots' masks through to inpainting"), ("reject", "stop shots' masks")):
        review = commands.add_parser(verb, help=meaning + " (review gate)")
        review.add_argument("shots", nargs="+")
        review.add_argument("--batch", help="the batch (default: the newest one holding the shot)")
        review.add_argument("--by", help="who decides (default: the current user)")
        review.add_argument("--note", default="", help="why (shown in the report and history)")

    rerun = commands.add_parser("rerun", help="rerun shots of an earlier batch as a new batch (nothing is overwritten)")
    rerun.add_argument("--batch", help="the batch to rerun (default: the newest batch holding --shot)")
    rerun.add_argument("--failed", action="store_true", help="every shot that failed or did not finish")
    rerun.add_argument("--shot", action="append", default=[], help="this shot (repeatable)")
    rerun.add_argument(
        "--from",
        dest="force_from",
        choices=("mask", "pass1", "pass2", "deliver", "conform"),
        help="run this stage and every later one even where they are cached",
    )
    rerun.add_argument("--dry-run", action="store_true", help="print the plan, with a reason per stage, and stop")
    rerun.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    rerun.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")

    resume = commands.add_parser("resume", help="finish the unfinished shots of a batch (rerun --failed)")
    resume.add_argument("batch")
    resume.add_argument("--dry-run", action="store_true")
    resume.add_argument("--ray-address")

    history = commands.add_parser("history", help="every version and stage run of a shot, across batches")
    history.add_argument("shot")
    history.add_argument("--json", action="store_true")

    export = commands.add_parser("export", help="write a batch's stage runs as Parquet (one row per stage run)")
    export.add_argument("--batch", required=True)
    export.add_argument("-o", "--out", type=Path, required=True, help="a .parquet file")

    for verb, meaning in (
        ("deploy", "register the nightly and rerun deployments with the Prefect server"),
        ("serve", "run the nightly and rerun deployments from this process (no work pool)"),
    ):
        deployment = commands.add_parser(verb, help=meaning)
        deployment.add_argument("edit", type=Path)
        deployment.add_argument("--out", type=Path, required=True, help="output folder as the workers see it")
        deployment.add_argument("--sidecar", type=Path)
        deployment.add_argument("--previous-edit", type=Path, help="last night's edit: run only the changed shots")
        deployment.add_argument("--backend", default="cleanplate")
        deployment.add_argument("--models", type=Path, help="models folder as the workers see it (void backend)")
        deployment.add_argument("--cron", default="0 2 * * *")
        deployment.add_argument("--timezone", default="Europe/London")
        deployment.add_argument("--db-url", help="the ledger as the workers reach it (default: VOIDFLOW_DB_URL)")
        if verb == "deploy":
            deployment.add_argument("--pool", default="voidflow-process", help="work pool")
            deployment.add_argument("--image", help="container image (docker/kubernetes pools)")
            deployment.add_argument("--dry-run", action="store_true", help="print the deployments and stop")

    models = commands.add_parser("models", help="fetch or verify model weights")
    models.add_argument("action", choices=("fetch", "verify"))
    models.add_argument("--models", type=Path, help="models folder (default $VOIDFLOW_MODELS)")
    models.add_argument("--offline", action="store_true", help="only from the local Hugging Face cache")
    models.add_argument("--cache-dir", type=Path, help="Hugging Face cache folder")

    config = commands.add_parser("config", help="show the effective settings (secrets masked)")
    config.add_argument("action", choices=("show",))
    config.add_argument("--json", action="store_true")

    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=("upgrade",))
    return parser


def _colour_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--plate-colourspace",
        help="every plate's OCIO colour space (default: each plate's sidecar colourspace, else inferred from the file)",
    )
    command.add_argument(
        "--ocio", help="the show's OCIO config (default $OCIO, else OCIO's built-in ACES studio config)"
    )


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
        "void": {
            "models_dir": getattr(args, "models", None) or settings.models_dir,
            "pass2": getattr(args, "pass2", False),
            "compile": getattr(args, "compile", False),
            "memory_gb": getattr(args, "gpu_memory", None),
            "gpu_timeout_s": getattr(args, "gpu_timeout", 3600.0),
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


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.flows.params import plan

    request = _request(args, settings)
    _, shots = plan(request)
    colours = {shot.name: _plate_colour(shot, request) for shot in shots if shot.status == "ready"}
    if args.json:
        documents = [{**shot.to_json(), **({"colour": colours[shot.name]} if shot.name in colours else {})}
                     for shot in shots]  # fmt: skip
        print(json.dumps({"shots": documents}, indent=2))
        return 0
    for shot in shots:
        state = "ready  " if shot.status == "ready" else "skipped"
        first, last = shot.source_start, shot.source_start + shot.duration - 1
        colour = colours.get(shot.name, {})
        space = f"[{colour.get('name') or 'colour: ' + str(colour.get('error'))}] " if colour else ""
        print(f"{state} {shot.name:<28} {shot.track:<10} {first}-{last} ({shot.duration} fr) {space}{shot.reason}")
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
    from voidflow.flows.params import plan
    from voidflow.infra.cluster import orchestration
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.ledger import Ledger
    from voidflow.void_ops import media

    ensure_schema(settings.db_url)
    Ledger(settings.db_url).check_writable()
    _, shots = plan(request)  # fail fast, before Prefect and Ray start, on an unusable edit, sidecar or ledger
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
    print(f"  skipped: {len(result.skipped)}")
    if result.conformed:
        print(f"  conformed edit: {result.conformed}")
    print(f"  report:         {result.report}")
    return 1 if result.failed else 0


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
        edit_path=args.edit.absolute(),
        include_qc_failed=args.include_qc_failed,
        mode="track" if args.as_track else "reference",
    )
    print(f"conformed edit: {written}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.ledger import Ledger

    ensure_schema(settings.db_url)
    batches = Ledger(settings.db_url).batches(args.batch)
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
    from voidflow.tasks.ledger import Ledger

    ensure_schema(settings.db_url)
    if not args.failed and not args.shot:
        raise InvalidInput("say which shots to rerun: --failed, or --shot NAME")
    batch_id = args.batch or _newest_batch_with(Ledger(settings.db_url), args.shot[0])
    request, plans = prepare_rerun(
        settings.db_url, batch_id, failed=args.failed, shots=args.shot, force_from=args.force_from
    )
    if request is None:
        print(f"batch {batch_id[:8]}: nothing to rerun (every shot finished)")
        return 0
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


def _newest_batch_with(ledger: Any, shot: str) -> str:
    rows, _ = ledger.history(shot)
    if not rows:
        raise InvalidInput(f"no batch has a shot named '{shot}'")
    return str(rows[-1].batch_id)


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.batch import load_batch
    from voidflow.tasks.ledger import Ledger

    ensure_schema(settings.db_url)
    ledger = Ledger(settings.db_url)
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
    from voidflow.tasks.ledger import Ledger

    ensure_schema(settings.db_url)
    rows, versions = Ledger(settings.db_url).history(args.shot)
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
    from voidflow.tasks.batch import load_batch
    from voidflow.tasks.export import write_parquet
    from voidflow.tasks.ledger import Ledger

    ensure_schema(settings.db_url)
    batch = load_batch(Ledger(settings.db_url), args.batch)
    written, count = write_parquet(batch, args.out.absolute())
    print(f"wrote {count} stage runs of batch {batch.id[:8]} to {written}")
    return 0


def _review(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.ledger import Ledger

    ensure_schema(settings.db_url)
    ledger = Ledger(settings.db_url)
    decision = "approved" if args.command == "approve" else "rejected"
    for shot in args.shots:
        batch = args.batch or _newest_batch_with(ledger, shot)
        ledger.decide(batch, shot, decision=decision, reviewer=args.by or settings.user, note=args.note)
        print(f"{shot}: mask {decision} by {args.by or settings.user} (batch {batch[:8]})")
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    from voidflow.flows.params import BatchRequest, plan
    from voidflow.void_ops.cutdiff import diff_shots

    def shots(edit: Path, sidecar: Path | None) -> list[Any]:
        request = BatchRequest(
            edit=edit, sidecar=sidecar, out_dir=Path("."), db_url="", edl_rate=args.edl_rate, select_all=True
        )
        return plan(request)[1]

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
    if args.action == "fetch":
        lock = fetch(folder, offline=args.offline or settings.hf_offline, cache_dir=args.cache_dir, report=print)
        print(f"models in {folder}; sha256 sums in {lock}")
        return 0
    problems = verify(folder)
    for problem in problems:
        print(problem)
    print(f"{folder}: {'all files match the lock' if not problems else f'{len(problems)} problems'}")
    return 2 if problems else 0


def _config(args: argparse.Namespace, settings: Settings) -> int:
    shown = settings.shown()
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        for name, value in shown.items():
            print(f"{name:<22} {value}")
    return 0


_COMMANDS = {
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
    "diff": _diff,
    "deploy": _deploy,
    "serve": _serve,
    "models": _models,
    "config": _config,
    "approve": _review,
    "reject": _review,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``voidflow`` command line; return the exit code."""
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    try:
        return _COMMANDS[args.command](args, settings)
    except VoidflowError as error:
        print(f"voidflow: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("voidflow: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        log = settings.home / "logs" / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc(), encoding="utf-8")
        print(f"voidflow: internal error: {type(error).__name__}: {error} (traceback in {log})", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
