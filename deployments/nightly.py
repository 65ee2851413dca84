"""The batch flow's deployments: the nightly batch on a cron schedule, and the rerun entry.

Declarations only: importing this module does nothing, and ``nightly_deployments`` builds Prefect
``RunnerDeployment`` objects without talking to a server. ``describe`` prints them (``voidflow deploy --dry-run``),
``deploy`` registers them with the Prefect server named by ``PREFECT_API_URL`` for a worker of their work pool to
run, and ``serve`` runs them from this process instead, without a work pool.

Both deployments run ``flows.batch.run_batch`` by module path (``flows.batch.run_batch``), so a worker runs the
voidflow installed beside it (the image ``ghcr.io/voidflow/voidflow:0.1.0`` or a virtualenv), not code shipped
with the deployment. Their one parameter is ``request``, a ``BatchRequest`` as JSON; Prefect checks every run's
parameters against the flow's schema (``enforce_parameter_schema``).

- ``voidflow-batch/nightly-batch``: on ``cron`` in ``timezone`` (02:00 Europe/London by default, so the hour does
  not move with daylight saving), over the whole edit.
- ``voidflow-batch/rerun-failed``: no schedule. There is no separate rerun flow: a rerun is a new ``run_batch``
  run whose request names the shots (``only_shots``) and the batch it reruns (``parent_batch``), which
  ``voidflow rerun`` builds from the ledger. Its default parameters are the nightly request, so a run started
  without parameters reprocesses the whole edit as a new batch (new versions; nothing is overwritten).

Each deployment runs one batch at a time (``concurrency_limit=1``; later runs wait): a batch claims every GPU of
the cluster for its VOID actors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, cast

from voidflow.void_ops.exceptions import ConfigurationError
from voidflow.void_ops.pipeline import Backend
from voidflow.void_ops.tracker import Tracker

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "NIGHTLY",
    "NIGHTLY_PRIORITY",
    "RERUN",
    "RERUN_PRIORITY",
    "TAGS",
    "WORK_POOL",
    "deploy",
    "describe",
    "nightly_deployments",
    "serve",
    "served",
]

#: Deployment names (Prefect's full names are ``voidflow-batch/<name>``).
NIGHTLY = "nightly-batch"
RERUN = "rerun-failed"
#: The process work pool that ``prefect worker start --pool voidflow-process --type process`` serves.
WORK_POOL = "voidflow-process"
TAGS = ("voidflow",)
#: GPU priority across batches sharing the GPU service (``BatchRequest.priority``, higher first): the nightly batch
#: yields to a rerun started from the rerun entry (as ``voidflow rerun --priority``'s default does).
NIGHTLY_PRIORITY = 0
RERUN_PRIORITY = 10


def _absolute(option: str, value: str | None) -> None:
    if value is not None and not (PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()):
        raise ConfigurationError(
            f"{option} {value!r}: must be an absolute path (a deployment runs in its worker's folder, not this one)"
        )


def _request(**fields: Any) -> dict[str, Any]:
    from pydantic import ValidationError

    from voidflow.flows.params import BatchRequest

    try:
        request = BatchRequest(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigurationError(f"deployment parameter {field}: {first['msg']} (got {first.get('input')!r})") from None
    return request.model_dump(mode="json")


def nightly_deployments(
    *,
    edit: str,
    out_dir: str,
    db_url: str,
    cron: str = "0 2 * * *",
    timezone: str = "Europe/London",
    work_pool: str = WORK_POOL,
    previous_edit: str | None = None,
    sidecar: str | None = None,
    backend: Backend = "cleanplate",
    image: str | None = None,
    models_dir: str | None = None,
    publish: Tracker | None = None,
) -> list[RunnerDeployment]:
    """Declare the nightly batch and the rerun entry for one edit; nothing is sent to a server.

    Args:
        edit: the edit to process, as the workers see it (absolute; the path map applies on the worker).
        out_dir: the batch output folder, as the workers see it (absolute).
        db_url: the provenance database the workers write to (a server database: a worker cannot reach this
            machine's SQLite file). Stored in the deployment: prefer a URL without a password (libpq reads
            ``PGPASSWORD`` or ``~/.pgpass`` on the worker).
        cron: when the nightly batch starts (five fields), read in ``timezone``.
        timezone: IANA zone name of the schedule.
        work_pool: the work pool whose workers run both deployments.
        previous_edit: last night's edit (absolute), or None: the batch then processes only the shots that
            changed since it (``voidflow diff``) and conforms the others' newest versions.
        sidecar: per-shot instructions (absolute), or None.
        backend: ``cleanplate`` or ``void``.
        image: container image for docker or kubernetes work pools (a job variable); None for process pools.
        models_dir: the models folder as the workers see it (absolute); required with ``backend="void"``.
        publish: the production tracker each delivered version goes to (``shotgrid`` or ``kitsu``), or None. Only
            the name travels: the tracker's credentials stay in the workers' settings or a Prefect Secret block.

    Returns:
        ``[nightly-batch, rerun-failed]`` as Prefect ``RunnerDeployment`` objects.

    Raises:
        ConfigurationError: a path is relative, the request or the schedule is invalid (the field is named).
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from voidflow.flows.batch import run_batch

    for option, value in (
        ("edit", edit),
        ("out_dir", out_dir),
        ("sidecar", sidecar),
        ("models_dir", models_dir),
        ("previous_edit", previous_edit),
    ):
        _absolute(option, value)
    if backend == "void" and models_dir is None:
        raise ConfigurationError("models_dir: required with backend 'void' (the models folder as the workers see it)")
    request = _request(
        edit=edit,
        out_dir=out_dir,
        db_url=db_url,
        sidecar=sidecar,
        backend=backend,
        void={"models_dir": models_dir},
        previous_edit=previous_edit,
        priority=NIGHTLY_PRIORITY,
        publish=publish,
    )
    parameters = {"request": request}
    superseding = f"; supersedes {previous_edit}" if previous_edit else ""
    publishing = f"; publishes to {publish}" if publish else ""
    common: dict[str, Any] = {
        "parameters": parameters,
        "work_pool_name": work_pool,
        "tags": list(TAGS),
        "concurrency_limit": 1,
        "job_variables": {"image": image} if image else {},
        "enforce_parameter_schema": True,
        "entrypoint_type": EntrypointType.MODULE_PATH,
    }
    try:
        schedule = Cron(cron, timezone=timezone, slug="nightly")
        nightly = run_batch.to_deployment(
            name=NIGHTLY,
            schedule=schedule,
            description=f"Nightly voidflow batch ({backend}) of {edit} into {out_dir}{superseding}{publishing}.",
            **common,
        )
    except ValueError as error:  # a bad cron string or time zone (pydantic's errors are ValueErrors)
        reason = " ".join(str(error).split())
        raise ConfigurationError(f"nightly schedule {cron!r} in {timezone!r}: {reason}") from None
    rerun = run_batch.to_deployment(
        name=RERUN,
        description=(
            f"Rerun entry for {edit}{superseding}: start it with request.only_shots (the shots) and "
            "request.parent_batch (the batch rerun), as `voidflow rerun` builds them; without them it reprocesses "
            "the whole edit as a new batch."
        ),
        **{**common, "parameters": {"request": {**request, "priority": RERUN_PRIORITY}}},
    )
    # Called from synchronous code, Prefect's dispatching methods return their result, not a coroutine.
    return [cast("RunnerDeployment", nightly), cast("RunnerDeployment", rerun)]


def _redacted(parameters: dict[str, Any]) -> dict[str, Any]:
    request = parameters.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("db_url"), str):
        return parameters
    from sqlalchemy.exc import ArgumentError

    from voidflow.infra.database import redact_url

    try:
        url = redact_url(request["db_url"])
    except (ArgumentError, ValueError):  # display only: an unparseable URL is never shown in full
        url = "<unparseable database URL>"
    return {**parameters, "request": {**request, "db_url": url}}


def _schedule(entry: Any) -> dict[str, Any]:
    schedule = entry.schedule.model_dump(mode="json", exclude_none=True)
    return {**schedule, "active": entry.active, "slug": entry.slug}


def describe(deployments: Sequence[RunnerDeployment]) -> str:
    """Describe the deployments as indented JSON, without a server (what ``voidflow deploy --dry-run`` prints).

    Each entry: ``name`` (``flow/deployment``), ``flow``, ``entrypoint``, ``work_pool``, ``schedules`` (``cron``,
    ``timezone``, ``day_or``, ``active``, ``slug``; empty for the rerun entry), ``parameters`` (the database
    password replaced by ``***``), ``tags``, ``concurrency_limit``, ``job_variables`` and ``description``.
    """
    entries = [
        {
            "name": f"{deployment.flow_name}/{deployment.name}",
            "flow": deployment.flow_name,
            "entrypoint": deployment.entrypoint,
            "work_pool": deployment.work_pool_name,
            "schedules": [_schedule(entry) for entry in deployment.schedules or []],
            "parameters": _redacted(deployment.parameters),
            "tags": list(deployment.tags),
            "concurrency_limit": deployment.concurrency_limit,
            "enforce_parameter_schema": deployment.enforce_parameter_schema,
            "job_variables": deployment.job_variables,
            "description": deployment.description,
        }
        for deployment in deployments
    ]
    return json.dumps({"deployments": entries}, indent=2)


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: deployments need a running Prefect server "
            "(`prefect server start`, or infra/containers/compose.yaml) and its URL, e.g. http://127.0.0.1:4200/api"
        )
    return str(url)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _ensure_pool(name: str, group: Sequence[RunnerDeployment]) -> None:
    """Create ``name`` as a process pool (one batch at a time) if missing; check an image can be used there."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            pool = client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template, concurrency_limit=1)
            )
    takes_image = "image" in pool.base_job_template.get("variables", {}).get("properties", {})
    with_image = [deployment.name for deployment in group if deployment.job_variables.get("image")]
    if with_image and not takes_image:
        raise ConfigurationError(
            f"work pool {name!r} ({pool.type}) runs flows in local processes and takes no image: "
            f"drop the image of {', '.join(with_image)} or use a docker or kubernetes pool"
        )


def deploy(deployments: Sequence[RunnerDeployment]) -> list[str]:
    """Register the deployments with the Prefect server of ``PREFECT_API_URL``; return their IDs.

    A missing work pool is created as a ``process`` pool running one flow at a time. No image is built or pushed
    (``prefect.deploy(..., build=False, push=False)``): workers run the voidflow installed beside them.
    Registering again updates the deployments in place (same names, same schedule slug).

    Raises:
        ConfigurationError: no API URL, the server cannot be reached or refuses a deployment, a deployment has no
            work pool, or an image is given for a process pool (one line).
    """
    import httpx
    from prefect import deploy as prefect_deploy
    from prefect.exceptions import PrefectException

    url = _api_url()
    groups: dict[str, list[RunnerDeployment]] = {}
    for deployment in deployments:
        if not deployment.work_pool_name:
            raise ConfigurationError(f"deployment {deployment.name!r} has no work pool (use serve() to run it here)")
        groups.setdefault(deployment.work_pool_name, []).append(deployment)
    ids: list[str] = []
    for pool, group in groups.items():
        try:
            _ensure_pool(pool, group)
            created = cast(
                "list[Any]",
                prefect_deploy(
                    *group,
                    work_pool_name=pool,
                    build=False,
                    push=False,
                    print_next_steps_message=False,
                    ignore_warnings=True,
                ),
            )
        except (ValueError, PrefectException, httpx.HTTPError, OSError) as error:
            raise ConfigurationError(f"Prefect API {url}: {_first_line(error)}") from None
        if len(created) != len(group):
            raise ConfigurationError(
                f"Prefect API {url}: {len(group) - len(created)} of {len(group)} deployments were refused "
                "(reasons in the table above)"
            )
        ids.extend(str(deployment_id) for deployment_id in created)
    return ids


def served(deployments: Sequence[RunnerDeployment]) -> list[RunnerDeployment]:
    """Copies of the deployments for ``serve``: no work pool and no job variables (this process runs them)."""
    return [deployment.model_copy(update={"work_pool_name": None, "job_variables": {}}) for deployment in deployments]


def serve(deployments: Sequence[RunnerDeployment]) -> None:
    """Run the deployments from this process until interrupted (``prefect.serve``), without a work pool.

    Registers them with the Prefect server of ``PREFECT_API_URL`` (whose scheduler creates the nightly runs),
    then runs their flow runs here, one at a time (``limit=1``), in this machine's environment: its Ray, GPUs and
    ``VOIDFLOW_*`` settings.

    Raises:
        ConfigurationError: no API URL (a temporary local server would drop the schedule when this process ends).
    """
    from prefect import serve as prefect_serve

    _api_url()
    prefect_serve(*served(deployments), limit=1)
