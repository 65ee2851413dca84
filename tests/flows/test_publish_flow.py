"""``--publish kitsu`` through the real batch flow and a real Zou: a tracker that is down fails only the publish
stage, ``voidflow publish`` runs that stage again on its own, held shots are skipped at plan time, and a rerun's new
version is a new preview on the same shot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

from tests.trackers import Zou, free_port, kitsu_comments, kitsu_production, start_zou, zou_missing
from voidflow.deployments.cli import main
from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.tasks.batch import summarize
from voidflow.tasks.ledger import Ledger

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def zou(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zou]:
    """Zou with the demo's shots in SQ010: sh010 and sh020 in progress, sh030 on standby."""
    if zou_missing():
        pytest.skip(zou_missing())
    with start_zou(postgres_server, tmp_path_factory.mktemp("zou")) as server:
        kitsu_production(server, {"SQ010": {"sh010": "running", "sh020": "running", "sh030": "standby"}})
        yield server


def _kitsu(monkeypatch: pytest.MonkeyPatch, url: str, zou: Zou, db_url: str) -> None:
    """Point this process's settings at a Kitsu (the publish tasks run in the flow's process)."""
    for name, value in (
        ("VOIDFLOW_KITSU_URL", url),
        ("VOIDFLOW_KITSU_LOGIN", zou.login),
        ("VOIDFLOW_KITSU_PASSWORD", zou.password),
        ("VOIDFLOW_KITSU_PROJECT", "Demo"),
        ("VOIDFLOW_DB_URL", db_url),
    ):
        monkeypatch.setenv(name, value)


def _publish_runs(ledger: Ledger, batch_id: str) -> dict[str, list[str]]:
    (batch,) = ledger.batches(batch_id)
    return {shot.name: [r.state for r in shot.stage_runs if r.stage == "publish"] for shot in batch.shots}


def test_publish_after_deliver_a_tracker_down_and_publishing_again(  # type: ignore[no-untyped-def]
    small_demo, zou: Zou, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    ledger = Ledger(db_url)
    out = tmp_path / "out"
    request = BatchRequest(
        edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=out, db_url=db_url, output="png", publish="kitsu"
    )

    # Kitsu is down: every shot is delivered, only their publish stage fails (after its retries); nothing skipped.
    _kitsu(monkeypatch, f"http://127.0.0.1:{free_port()}", zou, db_url)
    down = run_batch(request)
    assert (down.state, down.done, down.failed) == ("done", ("sh010", "sh020", "sh030"), ())
    assert down.publish_failed == ("sh010", "sh020", "sh030") and down.published == ()
    (batch,) = ledger.batches(down.batch_id)
    for shot in batch.shots:
        if shot.name == "slate":
            continue
        assert (shot.state, shot.version) == ("done", "v001")
        assert [r.stage for r in shot.stage_runs if r.state == "done"] == ["mask", "pass1", "deliver"]
        failed = [r for r in shot.stage_runs if r.stage == "publish"]
        assert [r.state for r in failed] == ["failed"] * 3  # Prefect retried the tracker twice
        assert {r.error_class for r in failed} == {"TrackerUnavailable"}
        assert "not answering" in failed[-1].error_message and "\n" not in failed[-1].error_message
    assert "warning: kitsu http://127.0.0.1:" in caplog.text  # the plan-time read skipped nothing
    assert sorted(summarize(ledger, down.batch_id)["publish_failed"]) == ["sh010", "sh020", "sh030"]

    # Kitsu is back: `voidflow publish` runs the publish stage alone; no pixel stage runs again.
    _kitsu(monkeypatch, zou.url, zou, db_url)
    assert main(["publish", "--batch", down.batch_id[:8]]) == 0
    assert "published: 3 sh010 sh020 sh030" in capsys.readouterr().out
    assert _publish_runs(ledger, down.batch_id) == {
        "sh010": ["failed", "failed", "failed", "done"],
        "sh020": ["failed", "failed", "failed", "done"],
        "sh030": ["failed", "failed", "failed", "done"],
        "slate": [],
    }
    (batch,) = ledger.batches(down.batch_id)
    assert sum(r.stage == "deliver" for s in batch.shots for r in s.stage_runs) == 3
    assert [len(kitsu_comments(zou, name)) for name in ("sh010", "sh020", "sh030")] == [1, 1, 1]
    assert summarize(ledger, down.batch_id)["publish_failed"] == {}

    # The same edit again: sh030 is on hold in Kitsu now skipped at plan time; the others keep v001, and the
    # tracker keeps its one preview each.
    again = run_batch(request)
    assert again.done == ("sh010", "sh020") and "sh030" in again.skipped
    assert again.published == ("sh010", "sh020") and again.publish_failed == ()
    reasons = {shot.name: shot.reason for shot in ledger.batches(again.batch_id)[0].shots}
    assert reasons["sh030"] == "kitsu: shot on hold (standby)"
    assert [len(kitsu_comments(zou, name)) for name in ("sh010", "sh020")] == [1, 1]

    # A rerun that makes a new version publishes it as a new preview on the same shot's task.
    assert main(["rerun", "--batch", again.batch_id[:8], "--shot", "sh010", "--from", "deliver"]) == 0
    comments = kitsu_comments(zou, "sh010")
    assert [c["text"].split()[2] for c in comments] == ["v001", "v002"]
    assert len({c["object_id"] for c in comments}) == 1
    assert [label for label, _ in ledger.publishes("sh010")] == ["v001", "v002"]

    # The Kitsu password is nowhere: not in the ledger, the outputs, or Prefect's database (flow run parameters).
    prefect_db = Path(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).split("///")[-1])
    ledger_db = Path(db_url.removeprefix("sqlite:///"))
    places = [*prefect_db.parent.glob(f"{prefect_db.name}*"), *ledger_db.parent.glob(f"{ledger_db.name}*")]
    places += list(out.rglob("*"))
    assert prefect_db.is_file() and ledger_db.is_file()
    assert [p for p in places if p.is_file() and zou.password.encode() in p.read_bytes()] == []


def test_publish_names_a_batch_without_a_tracker_and_bad_settings(  # type: ignore[no-untyped-def]
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("VOIDFLOW_DB_URL", db_url)
    assert main(["publish", "--batch", "nosuchbatch"]) == 2
    assert "no batch with ID 'nosuchbatch'" in capsys.readouterr().err
