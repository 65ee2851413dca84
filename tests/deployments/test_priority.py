"""Priorities across batches sharing the GPU service (issue 17, item 2): the nightly batch below an artist's rerun,
on the command line and in the deployments."""

from __future__ import annotations

from voidflow.deployments.cli import _parser
from voidflow.deployments.nightly import NIGHTLY_PRIORITY, RERUN_PRIORITY, nightly_deployments
from voidflow.flows.batch import run_batch


def test_a_run_defaults_below_a_rerun_and_either_takes_priority() -> None:
    parser = _parser()
    assert parser.parse_args(["run", "edit.otio"]).priority == 0
    assert parser.parse_args(["run", "edit.otio", "--priority", "5"]).priority == 5
    assert parser.parse_args(["rerun", "--shot", "sh010"]).priority == 10
    assert parser.parse_args(["rerun", "--shot", "sh010", "--priority", "-1"]).priority == -1
    assert not hasattr(parser.parse_args(["resume", "b1"]), "priority")  # a resumed batch keeps its own


def test_the_nightly_deployment_yields_to_the_rerun_entry() -> None:
    nightly, rerun = nightly_deployments(
        edit="/shows/ep01/ep01.otio", out_dir="/shows/ep01/voidflow", db_url="postgresql+psycopg://voidflow@db/voidflow"
    )
    assert NIGHTLY_PRIORITY < RERUN_PRIORITY
    requests = [run_batch.validate_parameters(d.parameters)["request"] for d in (nightly, rerun)]
    assert [request.priority for request in requests] == [NIGHTLY_PRIORITY, RERUN_PRIORITY]
    assert requests[0].model_copy(update={"priority": RERUN_PRIORITY}) == requests[1]  # nothing else differs
