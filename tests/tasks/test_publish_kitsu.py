"""Publishing to Kitsu through ``gazu``, against a real Zou started by the suite (``tests/trackers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gazu
import pytest

from tests.trackers import Zou, delivered_batch, free_port, kitsu_comments, kitsu_production, start_zou, zou_missing
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.publish import KitsuPublisher, hold_shots, publish_version, pull_approvals
from voidflow.void_ops.exceptions import TrackerRejected, TrackerUnavailable
from voidflow.void_ops.shots import MediaSource, Shot
from voidflow.void_ops.tracker import ShotCodes


@pytest.fixture(scope="module")
def zou(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zou]:
    """Zou with production Demo: sequences SQ010 (shots sh010, sh020 on standby and without a task, sh030
    canceled, sh060) and SQ020 (sh060 again)."""
    if zou_missing():
        pytest.skip(zou_missing())
    with start_zou(postgres_server, tmp_path_factory.mktemp("zou")) as server:
        layout = {
            "SQ010": {"sh010": "running", "sh020": "standby", "sh030": "canceled", "sh060": "running"},
            "SQ020": {"sh060": "running"},
        }
        kitsu_production(server, layout, without_task=("sh020",))
        yield server


def _publisher(zou: Zou, *, password: str | None = None, project: str = "Demo") -> KitsuPublisher:
    return KitsuPublisher(zou.url, project, login=zou.login, password=password or zou.password)


def _logged_in(zou: Zou) -> gazu.client.KitsuClient:
    client = gazu.client.create_client(zou.url)
    gazu.log_in(zou.login, zou.password, client=client)
    return client


def test_a_version_becomes_a_preview_on_its_shots_task_and_publishing_twice_adds_nothing(
    zou: Zou, db_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(db_url)
    first = delivered_batch(ledger, tmp_path / "a", ("sh010",))
    (item,) = ledger.deliverables(first.batch_id)
    outcome = publish_version(ledger, _publisher(zou), item, ShotCodes())
    assert outcome.state == "published"
    (comment,) = kitsu_comments(zou, "sh010")
    assert comment["text"].startswith(f"voidflow sh010 v001 (batch {first.batch_id})")
    assert comment["task_status"]["short_name"] == "wfa"
    preview = gazu.files.get_preview_file(outcome.tracker_version_id, client=_logged_in(zou))
    assert preview["extension"] == "mp4" and preview["file_size"] == first.review["sh010"].stat().st_size
    facts = preview["data"]["voidflow"]
    assert (facts["first_frame"], facts["last_frame"], facts["head"], facts["tail"], facts["fps"]) == (
        1001,
        1012,
        2,
        2,
        24.0,
    )
    assert facts["batch"] == first.batch_id and "cut 1003-1010" in preview["description"]
    (record,) = [p for _, p in ledger.publishes("sh010")]
    assert record.tracker == "kitsu" and record.tracker_version_id == preview["id"]

    assert publish_version(ledger, _publisher(zou), item, ShotCodes()).state == "kept"
    assert len(kitsu_comments(zou, "sh010")) == 1

    rerun = delivered_batch(ledger, tmp_path / "b", ("sh010",), parent=first.batch_id)
    (newer,) = ledger.deliverables(rerun.batch_id)
    assert publish_version(ledger, _publisher(zou), newer, ShotCodes()).state == "published"
    comments = kitsu_comments(zou, "sh010")
    assert sorted(c["text"].split()[2] for c in comments) == ["v001", "v002"]  # two versions, one shot's task


def test_bad_input_is_one_line_naming_the_tracker_the_shot_and_the_cause(zou: Zou, db_url: str, tmp_path: Path) -> None:
    ledger = Ledger(db_url)
    batch = delivered_batch(ledger, tmp_path, ("sh010", "sh020", "sh060", "sh404"))
    ok, no_task, ambiguous, unknown = ledger.deliverables(batch.batch_id)
    where = f"kitsu {zou.url}"
    cases = [
        (no_task, ShotCodes(), f"{where}: shot 'sh020' (code sh020) has no Compositing task"),
        (ambiguous, ShotCodes(), f"{where}: shot code 'sh060' is in several sequences (SQ010/sh060, SQ020/sh060)"),
        (unknown, ShotCodes(), f"{where}: no shot with code 'sh404' (voidflow shot sh404)"),
    ]
    for item, codes, message in cases:
        with pytest.raises(TrackerRejected) as error:
            publish_version(ledger, _publisher(zou), item, codes)
        assert str(error.value).startswith(message) and "\n" not in str(error.value)
    mapped = publish_version(ledger, _publisher(zou), ambiguous, ShotCodes({"sh060": "SQ020/sh060"}))
    assert mapped.state == "published" and len(kitsu_comments(zou, "sh060", "SQ020")) == 1
    with pytest.raises(TrackerRejected, match=f"{where}: shot 'sh010' \\(code sh010\\): bad credentials for "):
        publish_version(ledger, _publisher(zou, password="wrong"), ok, ShotCodes())
    with pytest.raises(TrackerRejected, match=f"{where}: no production named 'Nope'"):
        publish_version(ledger, _publisher(zou, project="Nope"), ok, ShotCodes())
    down = KitsuPublisher(f"http://127.0.0.1:{free_port()}", "Demo", login=zou.login, password=zou.password)
    with pytest.raises(TrackerUnavailable, match="not answering"):
        publish_version(ledger, down, ok, ShotCodes())
    runs = {
        row.name: [r.state for r in row.stage_runs if r.stage == "publish"]
        for row in ledger.batches(batch.batch_id)[0].shots
    }
    assert runs == {
        "sh010": ["failed", "failed", "failed"],
        "sh020": ["failed"],
        "sh060": ["failed", "done"],
        "sh404": ["failed"],
    }


def test_standby_and_canceled_shots_are_skipped_at_plan_time(zou: Zou) -> None:
    shots = [
        Shot(name, "V1", i, name, "clip", MediaSource("/p.mov", "movie", 24.0), 24.0, 10, 5, (2, 2), 0, "ready")
        for i, name in enumerate(("sh010", "sh020", "sh030"))
    ]
    held, warning = hold_shots(shots, _publisher(zou), ShotCodes())
    assert warning == ""
    assert [(s.status, s.reason) for s in held] == [
        ("ready", ""),
        ("skipped", "kitsu: shot on hold (standby)"),
        ("skipped", "kitsu: shot omitted (canceled)"),
    ]


def test_a_done_status_after_the_preview_is_an_approval(zou: Zou, db_url: str, tmp_path: Path) -> None:
    ledger = Ledger(db_url)
    batch = delivered_batch(ledger, tmp_path, ("sh030",))  # canceled in Kitsu, but still publishable
    (item,) = ledger.deliverables(batch.batch_id)
    publish_version(ledger, _publisher(zou), item, ShotCodes())
    assert pull_approvals(ledger, _publisher(zou), ["sh030"]) == []  # waiting for approval
    client = _logged_in(zou)
    (comment,) = kitsu_comments(zou, "sh030")
    task = gazu.task.get_task(comment["object_id"], client=client)
    gazu.task.add_comment(task, gazu.task.get_task_status_by_short_name("done", client=client), "good", client=client)

    assert pull_approvals(ledger, _publisher(zou), ["sh030"]) == ["sh030 v001"]
    (decision,) = ledger.version_reviews("sh030")["v001"]
    assert decision.decision == "approved" and decision.reviewer == f"kitsu ({zou.url}#Demo)"
    mask = ledger.review(batch.masks["sh030"])
    assert mask is not None and mask.decision == "approved"
