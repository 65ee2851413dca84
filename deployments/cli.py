"""``voidflow``: the command line, one of the ways voidflow is started (beside the Prefect deployments).

``main`` parses the arguments (``_parser``: every command and option, as ``voidflow --help`` shows them), reads the
settings once, and runs the command's handler (``deployments.commands``); it does no work of its own.

Exit codes: 0 success; 1 the batch ran but some shots failed (the rest completed); 2 the edit, sidecar, settings
or database is unusable (nothing ran); 3 an internal error (traceback in ``$VOIDFLOW_HOME/logs/``).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from voidflow.deployments.commands import COMMANDS
from voidflow.infra.settings import Settings
from voidflow.void_ops.exceptions import VoidflowError
from voidflow.void_ops.masking.vlm import VLM_MODES
from voidflow.void_ops.media import EXR_COMPRESSIONS
from voidflow.void_ops.pipeline import BACKENDS, OUTPUT_FORMATS
from voidflow.void_ops.stages import STAGE_ORDER
from voidflow.void_ops.tracker import TRACKERS

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``voidflow`` command line; return the exit code.

    The settings are read here, once, and passed to the command (``Settings.from_env``).
    """
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except VoidflowError as error:  # a bad variable: one line, nothing ran
        print(f"voidflow: error: {error}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args, settings)
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
        "--backend",
        choices=BACKENDS,
        default="cleanplate",
        help="inpainting backend: cleanplate (default), void or passthrough",
    )
    run.add_argument("--output", choices=OUTPUT_FORMATS, default="prores", help="delivery format (default prores)")
    run.add_argument("--first-frame", type=int, default=1001, help="a sequence delivery's first frame number (1001)")
    run.add_argument("--exr-compression", choices=EXR_COMPRESSIONS, default="piz", help="EXR (piz)")
    _colour_arguments(run)
    run.add_argument("--seed", type=int, default=0, help="batch seed (a shot's own seed wins)")
    run.add_argument("--pass2", action="store_true", help="void backend: also run VOID's pass 2 (refinement)")
    run.add_argument("--models", type=Path, help="void backend: models folder (default $VOIDFLOW_MODELS)")
    run.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="void backend: eager diffusers instead of the compiled fast path GPUs run by default",
    )
    run.add_argument("--compile", dest="compile", action="store_true", help=argparse.SUPPRESS)  # the default now
    run.add_argument("--gpu-memory", type=float, help="void backend: GB a GPU may use (default: the card's memory)")
    run.add_argument(
        "--gpu-timeout", type=float, default=3600.0, help="void backend: seconds one model call may take (3600)"
    )
    run.add_argument(
        "--device",
        choices=("auto", "cpu"),
        default="auto",
        help="void backend: GPUs (auto: waits --gpu-wait for a GPU group to grow from zero), or cpu (tests only)",
    )
    run.add_argument("--gpu-wait", type=float, default=600.0, help="void backend: seconds to wait for a GPU (600)")
    run.add_argument(
        "--shot-timeout",
        type=float,
        default=4 * 3600.0,
        help="seconds one shot may take, checked before each stage (14400)",
    )
    run.add_argument(
        "--priority", type=int, default=0, help="void backend: GPU priority across batches, higher first (0)"
    )
    _mask_arguments(run)
    run.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    run.add_argument(
        "--publish", choices=TRACKERS, help="after deliver, publish each version to this production tracker"
    )

    publish = commands.add_parser("publish", help="publish a batch's delivered versions to the production tracker")
    publish.add_argument("--batch", required=True, help="batch ID (see voidflow status)")
    publish.add_argument("--tracker", choices=TRACKERS, help="shotgrid or kitsu (default: the batch's --publish)")
    publish.add_argument("--shot", action="append", default=[], help="only this shot (repeatable)")

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
        review = commands.add_parser(verb, help=meaning + " (review gate), or decide on a delivered --version")
        review.add_argument("shots", nargs="+")
        review.add_argument("--batch", help="the batch (default: the newest one holding the shot)")
        review.add_argument("--version", help="decide on this delivered version (v002) instead of the mask")
        review.add_argument("--by", help="who decides (default: the current user)")
        review.add_argument("--note", default="", help="why (shown in the report and history)")

    room = commands.add_parser("review", help="serve the review room: review, fix and approve shots in a browser")
    room.add_argument("--batch", help="open on this batch (default: the list of batches)")
    room.add_argument("--host", default="127.0.0.1", help="address to serve on (not localhost: needs a token)")
    room.add_argument("--port", type=int, default=8765)

    rerun = commands.add_parser("rerun", help="rerun shots of an earlier batch as a new batch (nothing is overwritten)")
    rerun.add_argument("--batch", help="the batch to rerun (default: the newest batch holding --shot)")
    rerun.add_argument("--failed", action="store_true", help="every shot that failed or did not finish")
    rerun.add_argument("--shot", action="append", default=[], help="this shot (repeatable)")
    rerun.add_argument("--sidecar", type=Path, help="read the shots' instructions from this sidecar instead")
    rerun.add_argument(
        "--from",
        dest="force_from",
        choices=STAGE_ORDER,
        help="run this stage and every later one even where they are cached",
    )
    rerun.add_argument(
        "--no-compile",
        dest="compile",
        action="store_const",
        const=False,
        help="void backend: eager diffusers, whatever the batch ran (changes the VOID stages' keys: they rerun)",
    )
    rerun.add_argument(
        "--priority",
        type=int,
        default=10,
        help="void backend: GPU priority across batches, higher first (10: before the nightly run's 0)",
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

    timeline = commands.add_parser(
        "review-timeline", help="write an .otio of each shot's plate with its newest version stacked above it"
    )
    timeline.add_argument("--batch", required=True, help="any batch of the rerun chain (see voidflow status)")
    timeline.add_argument("-o", "--out", type=Path, required=True, help="the .otio to write (OpenRV opens it)")
    timeline.add_argument("--include-qc-failed", action="store_true", help="show versions that failed QC too")

    for verb, meaning in (
        ("deploy", "register the nightly and rerun deployments with the Prefect server"),
        ("serve", "run the nightly and rerun deployments from this process (no work pool)"),
    ):
        deployment = commands.add_parser(verb, help=meaning)
        deployment.add_argument("edit", type=Path)
        deployment.add_argument("--out", type=Path, required=True, help="output folder as the workers see it")
        deployment.add_argument("--sidecar", type=Path)
        deployment.add_argument("--previous-edit", type=Path, help="last night's edit: run only the changed shots")
        deployment.add_argument("--backend", choices=BACKENDS, default="cleanplate")
        deployment.add_argument("--models", type=Path, help="models folder as the workers see it (void backend)")
        deployment.add_argument(
            "--publish", choices=TRACKERS, help="after deliver, publish each version to this production tracker"
        )
        deployment.add_argument("--cron", default="0 2 * * *")
        deployment.add_argument("--timezone", default="Europe/London")
        deployment.add_argument("--db-url", help="the ledger as the workers reach it (default: VOIDFLOW_DB_URL)")
        if verb == "deploy":
            deployment.add_argument("--pool", default="voidflow-process", help="work pool")
            deployment.add_argument("--image", help="container image (docker/kubernetes pools)")
            deployment.add_argument("--dry-run", action="store_true", help="print the deployments and stop")

    models = commands.add_parser("models", help="fetch or verify model weights; warm this GPU node's compile cache")
    models.add_argument("action", choices=("fetch", "verify", "warm"))
    models.add_argument("--models", type=Path, help="models folder (default $VOIDFLOW_MODELS)")
    models.add_argument(
        "--frames",
        type=int,
        action="append",
        help="warm: compile for shots of this many frames (repeatable; default: every length VOID runs)",
    )
    models.add_argument("--offline", action="store_true", help="only from the local Hugging Face cache")
    models.add_argument("--cache-dir", type=Path, help="Hugging Face cache folder")

    config = commands.add_parser("config", help="show the effective settings (secrets masked)")
    config.add_argument("action", choices=("show",))
    config.add_argument("--json", action="store_true")

    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=("upgrade",))
    return parser


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("edit", type=Path, help=".otio, .otioz, .otiod, .edl, .xml (FCP7), .fcpxml or .aaf")
    parser.add_argument("--sidecar", type=Path, help="per-shot instructions (.yaml, .json or .csv)")
    parser.add_argument("--track", help="process every clip of this video track")
    parser.add_argument("--all", dest="select_all", action="store_true", help="process every clip of every track")
    parser.add_argument("--handles", type=int, default=8, help="frames beyond each end of the cut (default 8)")
    parser.add_argument("--edl-rate", type=float, help="timecode rate of an EDL (default: 24, or 29.97 for DF)")


def _mask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gate", action="store_true", help="stop after masks until shots are approved")
    parser.add_argument(
        "--vlm",
        choices=VLM_MODES,
        default="auto",
        help="the mask VLM: auto (stored answers, then the API when a key is set), replay, off",
    )
    parser.add_argument("--sam2-checkpoint", type=Path, help="SAM2 checkpoint (default: $VOIDFLOW_MODELS/sam2/...)")


def _colour_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--plate-colourspace",
        help="every plate's OCIO colour space (default: each plate's sidecar colourspace, else inferred from the file)",
    )
    command.add_argument(
        "--ocio", help="the show's OCIO config (default $OCIO, else OCIO's built-in ACES studio config)"
    )


if __name__ == "__main__":
    sys.exit(main())
