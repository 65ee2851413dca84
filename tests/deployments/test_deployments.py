"""The nightly deployments, checked with Prefect's own objects: without a server, then against the test server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.utilities.schema_tools import validate
from prefect.utilities.schema_tools.validation import ValidationError as SchemaValidationError

from voidflow.deployments.nightly import NIGHTLY, RERUN, WORK_POOL, deploy, describe, nightly_deployments, serve, served
from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.void_ops.exceptions import ConfigurationError

EDIT = "/shows/ep01/editorial/ep01_v012.otio"
OUT = "/shows/ep01/voidflow"
DB = "postgresql+psycopg://voidflow:s3cret@db.internal:5432/voidflow"


def _declare(**overrides: object) -> list[RunnerDeployment]:
    arguments: dict[str, object] = {"edit": EDIT, "out_dir": OUT, "db_url": DB, "sidecar": "/shows/ep01/sidecar.yaml"}
    return nightly_deployments(**{**arguments, **overrides})  # type: ignore[arg-type]


def _schema(deployment: RunnerDeployment) -> dict[str, object]:
    return deployment._parameter_openapi_schema.model_dump(exclude_unset=True)  # what deploy sends to the server


def test_two_deployments_of_the_batch_flow_by_module_path() -> None:
    nightly, rerun = _declare()
    assert [nightly.name, rerun.name] == [NIGHTLY, RERUN]
    for deployment in (nightly, rerun):
        assert isinstance(deployment, RunnerDeployment)
        assert deployment.flow_name == run_batch.name == "voidflow-batch"
        assert deployment.entrypoint == "voidflow.flows.batch.run_batch"
        assert deployment.entrypoint_type is EntrypointType.MODULE_PATH
        assert deployment.work_pool_name == WORK_POOL == "voidflow-process"
        assert deployment.tags == ["voidflow"]
        assert deployment.concurrency_limit == 1
        assert deployment.enforce_parameter_schema is True
        assert deployment.job_variables == {}
        assert deployment.description and EDIT in deployment.description
    assert "only_shots" in rerun.description and "parent_batch" in rerun.description


def test_nightly_schedule_is_a_cron_in_london_time_and_rerun_has_none() -> None:
    from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

    nightly, rerun = _declare()
    assert rerun.schedules == []
    [entry] = nightly.schedules
    assert isinstance(entry.schedule, CronSchedule)
    assert (entry.schedule.cron, entry.schedule.timezone, entry.active, entry.slug) == (
        "0 2 * * *",
        "Europe/London",
        True,
        "nightly",
    )
    # 02:00 London is 01:00 UTC in summer (BST) and 02:00 UTC in winter, as the server's scheduler computes it.
    server = ServerCronSchedule(cron=entry.schedule.cron, timezone=entry.schedule.timezone)
    summer = asyncio.run(server.get_dates(n=1, start=dt.datetime(2026, 7, 1, tzinfo=dt.UTC)))
    winter = asyncio.run(server.get_dates(n=1, start=dt.datetime(2026, 1, 10, tzinfo=dt.UTC)))
    assert summer[0].astimezone(dt.UTC).hour == 1
    assert winter[0].astimezone(dt.UTC).hour == 2

    [custom] = _declare(cron="30 23 * * 1-5", timezone="America/Los_Angeles")[0].schedules
    assert (custom.schedule.cron, custom.schedule.timezone) == ("30 23 * * 1-5", "America/Los_Angeles")


def test_parameters_pass_prefects_schema_and_the_flows_own_validation() -> None:
    nightly, rerun = _declare(backend="void", models_dir="/shows/models")
    for deployment in (nightly, rerun):
        assert set(deployment.parameters) == {"request"}
        assert validate(deployment.parameters, _schema(deployment), raise_on_error=True) == []
        request = run_batch.validate_parameters(deployment.parameters)["request"]
        assert isinstance(request, BatchRequest)
        # The deployment stores the database URL without its password: the workers' own VOIDFLOW_DB_URL holds it.
        assert "s3cret" not in str(deployment.parameters)
        public = "postgresql+psycopg://voidflow@db.internal:5432/voidflow"
        assert (str(request.edit), str(request.out_dir), request.db_url, request.backend) == (EDIT, OUT, public, "void")
        assert str(request.void.models_dir) == "/shows/models"
    bad = {"request": {**nightly.parameters["request"], "backend": "magic"}}
    with pytest.raises(SchemaValidationError, match="backend"):
        validate(bad, _schema(nightly), raise_on_error=True)
    unknown = {"request": {**nightly.parameters["request"], "shots_please": True}}
    with pytest.raises(SchemaValidationError):
        validate(unknown, _schema(nightly), raise_on_error=True)


def test_both_deployments_can_publish_to_a_tracker_by_name() -> None:
    nightly, rerun = _declare(publish="shotgrid")
    assert "publishes to shotgrid" in (nightly.description or "")
    for deployment in (nightly, rerun):
        assert validate(deployment.parameters, _schema(deployment), raise_on_error=True) == []
        assert run_batch.validate_parameters(deployment.parameters)["request"].publish == "shotgrid"
        bad = {"request": {**deployment.parameters["request"], "publish": "jira"}}
        with pytest.raises(SchemaValidationError, match="publish"):
            validate(bad, _schema(deployment), raise_on_error=True)
    assert all(run_batch.validate_parameters(d.parameters)["request"].publish is None for d in _declare())


def test_rerun_parameters_name_the_shots_and_the_parent_batch() -> None:
    if "only_shots" not in BatchRequest.model_fields:
        pytest.skip("BatchRequest has no rerun fields yet")
    rerun = _declare()[1]
    parameters = {"request": {**rerun.parameters["request"], "only_shots": ["sh010", "sh030"], "parent_batch": "b1"}}
    assert validate(parameters, _schema(rerun), raise_on_error=True) == []
    request = run_batch.validate_parameters(parameters)["request"]
    assert (tuple(request.only_shots), request.parent_batch) == (("sh010", "sh030"), "b1")


def test_image_is_a_job_variable() -> None:
    nightly, rerun = _declare(image="ghcr.io/voidflow/voidflow:0.1.0", work_pool="gpu-k8s")
    assert nightly.job_variables == rerun.job_variables == {"image": "ghcr.io/voidflow/voidflow:0.1.0"}
    assert nightly.work_pool_name == "gpu-k8s"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"edit": "ep01.otio"}, "edit 'ep01.otio': must be an absolute path"),
        ({"sidecar": "notes/sidecar.yaml"}, "sidecar 'notes/sidecar.yaml': must be an absolute path"),
        ({"cron": "0 2 * *"}, "nightly schedule '0 2 \\* \\*' in 'Europe/London': .*Invalid cron"),
        ({"timezone": "Mars/Olympus"}, "nightly schedule .* in 'Mars/Olympus': .*Invalid timezone"),
        ({"backend": "magic"}, "deployment parameter backend: Input should be 'cleanplate', 'void' or 'passthrough'"),
        ({"backend": "void"}, "models_dir: required with backend 'void'"),
    ],
)
def test_bad_declarations_fail_with_one_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        _declare(**overrides)
    assert "\n" not in str(caught.value)


def test_describe_is_json_without_a_server_and_hides_the_password() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        text = describe(_declare(previous_edit="/shows/ep01/editorial/ep01_v011.otio"))
    assert "s3cret" not in text
    nightly, rerun = json.loads(text)["deployments"]
    assert nightly["name"] == "voidflow-batch/nightly-batch" and rerun["name"] == "voidflow-batch/rerun-failed"
    assert nightly["flow"] == "voidflow-batch" and nightly["entrypoint"] == "voidflow.flows.batch.run_batch"
    assert nightly["work_pool"] == rerun["work_pool"] == "voidflow-process"
    assert [(s["cron"], s["timezone"]) for s in nightly["schedules"]] == [("0 2 * * *", "Europe/London")]
    assert rerun["schedules"] == []
    assert nightly["parameters"]["request"]["db_url"] == "postgresql+psycopg://voidflow@db.internal:5432/voidflow"
    assert nightly["parameters"]["request"]["edit"] == EDIT
    assert "ep01_v011.otio" in nightly["description"]


def test_served_copies_drop_the_work_pool_and_keep_the_rest() -> None:
    originals = _declare(image="ghcr.io/voidflow/voidflow:0.1.0")
    copies = served(originals)
    for original, copy in zip(originals, copies, strict=True):
        assert copy.work_pool_name is None and copy.job_variables == {}
        assert (copy.name, copy.entrypoint, copy.entrypoint_type) == (
            original.name,
            original.entrypoint,
            original.entrypoint_type,
        )
        assert copy.schedules == original.schedules and copy.parameters == original.parameters
        assert _schema(copy) == _schema(original)
        assert original.work_pool_name == WORK_POOL  # untouched


def test_deploy_and_serve_need_a_prefect_server() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ConfigurationError, match="PREFECT_API_URL is not set"):
            deploy(_declare())
        with pytest.raises(ConfigurationError, match="PREFECT_API_URL is not set"):
            serve(_declare())


def test_deploy_registers_both_against_the_server(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    declared = _declare(cron="15 3 * * *")
    ids = deploy(declared)
    assert len(ids) == 2
    assert deploy(_declare(cron="15 3 * * *")) == ids  # registering again updates in place

    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(WORK_POOL)
        assert (pool.type, pool.concurrency_limit) == ("process", 1)
        nightly = client.read_deployment_by_name(f"voidflow-batch/{NIGHTLY}")
        rerun = client.read_deployment_by_name(f"voidflow-batch/{RERUN}")
        assert [str(nightly.id), str(rerun.id)] == ids
        assert nightly.entrypoint == "voidflow.flows.batch.run_batch" and nightly.work_pool_name == WORK_POOL
        assert [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules] == [("15 3 * * *", "Europe/London")]
        assert rerun.schedules == []
        assert nightly.parameters == declared[0].parameters
        assert nightly.enforce_parameter_schema and rerun.tags == ["voidflow"]

        # The server enforces the flow's schema on every run it is asked to create (nothing runs: no worker).
        run = client.create_flow_run_from_deployment(rerun.id, parameters=declared[1].parameters)
        assert run.parameters["request"]["edit"] == EDIT
        bad = {"request": {**declared[1].parameters["request"], "output": "gif"}}
        with pytest.raises(PrefectHTTPStatusError, match="409|422"):
            client.create_flow_run_from_deployment(rerun.id, parameters=bad)

    with pytest.raises(ConfigurationError, match="takes no image"):
        deploy(_declare(image="ghcr.io/voidflow/voidflow:0.1.0"))
