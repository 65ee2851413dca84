"""Publishing to ShotGrid through ``shotgun_api3``, against its own mockgun on a schema built like a default site's
(``tests/trackers.py``), and the real client against a port where nothing answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trackers import Mockgun, delivered_batch, free_port, write_schema
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.publish import ShotGridPublisher, hold_shots, make_publisher, publish_version, pull_approvals
from voidflow.void_ops.exceptions import ConfigurationError, TrackerRejected, TrackerUnavailable
from voidflow.void_ops.shots import MediaSource, Shot
from voidflow.void_ops.tracker import ShotCodes

SITE = "https://studio.shotgrid.autodesk.com"


@pytest.fixture
def site(tmp_path: Path) -> Mockgun:
    """A mockgun site with project Demo and shots SH010 (in progress), SH020 (omitted), SH030 (on hold)."""
    Mockgun.set_schema_paths(*write_schema(tmp_path / "schema"))
    sg = Mockgun(SITE, script_name="voidflow", api_key="k")
    project = sg.create("Project", {"name": "Demo"})
    link = {"type": "Project", "id": project["id"]}
    for code, status in (("SH010", "ip"), ("SH020", "omt"), ("SH030", "hld")):
        sg.create("Shot", {"code": code, "project": link, "sg_status_list": status})
    return sg


def _publisher(sg: Mockgun, project: str = "Demo") -> ShotGridPublisher:
    return ShotGridPublisher(SITE, project, script="voidflow", key="k", connect=lambda *a, **k: sg)


CODES = ShotCodes({"sh010": "SH010", "sh020": "SH020", "sh030": "SH030"})


def test_a_version_lands_on_its_shot_with_frames_handles_rate_movie_and_ledger_link(
    site: Mockgun, db_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(db_url)
    batch = delivered_batch(ledger, tmp_path, ("sh010",))
    (item,) = ledger.deliverables(batch.batch_id)
    outcome = publish_version(ledger, _publisher(site), item, CODES)

    assert outcome.state == "published"
    (version,) = site.find("Version", [], list(site.schema_field_read("Version")))
    (shot,) = site.find("Shot", [["code", "is", "SH010"]])
    assert version["entity"]["id"] == shot["id"] and version["code"] == "SH010_voidclean_v001"
    assert (version["sg_first_frame"], version["sg_last_frame"], version["frame_count"]) == (1001, 1012, 12)
    assert version["frame_range"] == "1001-1012" and version["sg_uploaded_movie_frame_rate"] == 24.0
    assert (version["sg_head_handles"], version["sg_tail_handles"]) == (2, 2)
    assert version["sg_voidflow_batch"] == batch.batch_id and batch.batch_id in version["description"]
    assert "cut 1003-1010" in version["description"] and version["sg_status_list"] == "rev"
    assert version["sg_uploaded_movie"]["file_size"] == batch.review["sh010"].stat().st_size
    assert version["sg_path_to_movie"] == str(batch.review["sh010"])
    (record,) = [p for _, p in ledger.publishes("sh010")]
    assert (record.tracker, record.site, record.tracker_version_id) == ("shotgrid", f"{SITE}#Demo", str(version["id"]))
    assert record.tracker_shot_id == str(shot["id"]) and record.shot_code == "SH010"
    run = next(r for r in ledger.batches(batch.batch_id)[0].shots[0].stage_runs if r.stage == "publish")
    assert run.state == "done" and run.params["tracker_version_id"] == str(version["id"])
    assert ledger.batches(batch.batch_id)[0].shots[0].state == "done"


def test_publishing_twice_creates_one_version_and_a_rerun_adds_the_next_on_the_same_shot(
    site: Mockgun, db_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(db_url)
    first = delivered_batch(ledger, tmp_path / "a", ("sh010",))
    (item,) = ledger.deliverables(first.batch_id)
    assert publish_version(ledger, _publisher(site), item, CODES).state == "published"
    again = publish_version(ledger, _publisher(site), item, CODES)  # a fresh client: found on the site, not made
    assert again.state == "kept" and len(site.find("Version", [])) == 1 and len(site.uploads) == 1

    rerun = delivered_batch(ledger, tmp_path / "b", ("sh010",), parent=first.batch_id)
    (newer,) = ledger.deliverables(rerun.batch_id)
    assert newer.version == "v002"
    assert publish_version(ledger, _publisher(site), newer, CODES).state == "published"
    versions = site.find("Version", [], ["code", "entity"], order=[{"field_name": "id", "direction": "asc"}])
    assert [v["code"] for v in versions] == ["SH010_voidclean_v001", "SH010_voidclean_v002"]
    assert versions[0]["entity"]["id"] == versions[1]["entity"]["id"]
    assert [label for label, _ in ledger.publishes("sh010")] == ["v001", "v002"]


def test_bad_input_fails_only_that_shots_publish_with_one_line(site: Mockgun, db_url: str, tmp_path: Path) -> None:
    ledger = Ledger(db_url)
    batch = delivered_batch(ledger, tmp_path, ("sh010", "sh040", "sh050"), qc_failed=("sh050",))
    ok, unknown, qc_failed = ledger.deliverables(batch.batch_id)
    with pytest.raises(TrackerRejected) as error:
        publish_version(ledger, _publisher(site), unknown, CODES)
    assert str(error.value) == f"shotgrid {SITE}: no shot with code 'sh040' (voidflow shot sh040)"
    assert publish_version(ledger, _publisher(site), ok, CODES).state == "published"  # the rest goes on
    skipped = publish_version(ledger, _publisher(site), qc_failed, CODES)
    assert skipped.state == "skipped" and "qc_failed" in skipped.reason
    shots = {row.name: row for row in ledger.batches(batch.batch_id)[0].shots}
    (failed,) = [r for r in shots["sh040"].stage_runs if r.stage == "publish"]
    assert failed.state == "failed" and failed.error_class == "TrackerRejected" and "\n" not in failed.error_message
    assert shots["sh040"].state == "done" and shots["sh040"].version == "v001"  # the pixels stand
    assert not [r for r in shots["sh050"].stage_runs if r.stage == "publish"]
    with pytest.raises(TrackerRejected, match=f"shotgrid {SITE}: no project named 'Nope'"):
        publish_version(ledger, _publisher(site, "Nope"), ok, CODES)


def test_a_site_without_voidflows_version_fields_is_refused_naming_them(db_url: str, tmp_path: Path) -> None:
    Mockgun.set_schema_paths(*write_schema(tmp_path / "bare", custom=False))
    sg = Mockgun(SITE, script_name="voidflow", api_key="k")
    project = sg.create("Project", {"name": "Demo"})
    sg.create("Shot", {"code": "SH010", "project": {"type": "Project", "id": project["id"]}})
    ledger = Ledger(db_url)
    (item,) = ledger.deliverables(delivered_batch(ledger, tmp_path, ("sh010",)).batch_id)
    with pytest.raises(
        TrackerRejected, match="Version has no field sg_head_handles, sg_tail_handles, sg_voidflow_batch"
    ):
        publish_version(ledger, _publisher(sg), item, CODES)
    assert sg.find("Version", []) == []


def test_a_site_that_does_not_answer_is_retryable_and_fails_only_the_publish(db_url: str, tmp_path: Path) -> None:
    """The real ``shotgun_api3`` client, pointed at a loopback port where nothing listens."""
    ledger = Ledger(db_url)
    (item,) = ledger.deliverables(delivered_batch(ledger, tmp_path, ("sh010",)).batch_id)
    down = ShotGridPublisher(f"http://127.0.0.1:{free_port()}", "Demo", script="voidflow", key="k")
    with pytest.raises(TrackerUnavailable) as error:
        publish_version(ledger, down, item, CODES)
    assert error.value.retryable and "not answering" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(TrackerUnavailable):
        down.standings(["SH010"])


def test_omitted_and_held_shots_are_skipped_at_plan_time(site: Mockgun) -> None:
    shots = [
        Shot(name, "V1", i, name, "clip", MediaSource("/p.mov", "movie", 24.0), 24.0, 10, 5, (2, 2), 0, "ready")
        for i, name in enumerate(("sh010", "sh020", "sh030", "sh040"))
    ]
    held, warning = hold_shots(shots, _publisher(site), CODES)
    assert warning == ""
    assert [(s.name, s.status, s.reason) for s in held] == [
        ("sh010", "ready", ""),
        ("sh020", "skipped", "shotgrid: shot omitted (omt)"),
        ("sh030", "skipped", "shotgrid: shot on hold (hld)"),
        ("sh040", "ready", ""),  # not in the tracker: publishing it will say so
    ]
    down = ShotGridPublisher(f"http://127.0.0.1:{free_port()}", "Demo", script="voidflow", key="k")
    kept, warning = hold_shots(shots, down, CODES)
    assert [s.status for s in kept] == ["ready"] * 4 and "not answering" in warning


def test_settings_name_what_is_missing_and_never_show_the_key() -> None:
    with pytest.raises(ConfigurationError, match="shotgrid: set VOIDFLOW_SHOTGRID_KEY, VOIDFLOW_SHOTGRID_PROJECT"):
        make_publisher("shotgrid", Settings.from_env({"VOIDFLOW_SHOTGRID_URL": SITE, "VOIDFLOW_SHOTGRID_SCRIPT": "vf"}))
    settings = Settings.from_env(
        {
            "VOIDFLOW_SHOTGRID_URL": SITE,
            "VOIDFLOW_SHOTGRID_SCRIPT": "vf",
            "VOIDFLOW_SHOTGRID_KEY": "sg-SECRET-1",
            "VOIDFLOW_SHOTGRID_PROJECT": "Demo",
            "VOIDFLOW_KITSU_PASSWORD": "kitsu-SECRET-2",
        }
    )
    publisher = make_publisher("shotgrid", settings)
    assert isinstance(publisher, ShotGridPublisher) and publisher.site == f"{SITE}#Demo"
    shown = repr(settings) + str(settings.shown())
    assert "sg-SECRET-1" not in shown and "kitsu-SECRET-2" not in shown


def test_a_supervisors_approval_becomes_the_versions_and_its_masks_decision(
    site: Mockgun, db_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(db_url)
    batch = delivered_batch(ledger, tmp_path, ("sh010", "sh030"))
    codes = ShotCodes({"sh010": "SH010", "sh030": "SH030"})
    for item in ledger.deliverables(batch.batch_id):
        publish_version(ledger, _publisher(site), item, codes)
    assert pull_approvals(ledger, _publisher(site), ["sh010", "sh030"]) == []  # pending review: nothing decided
    ledger.decide_version("sh030", "v001", decision="rejected", reviewer="ana", note="edge chatter")
    for version in site.find("Version", []):
        site.update("Version", version["id"], {"sg_status_list": "apr"})

    assert pull_approvals(ledger, _publisher(site), ["sh010", "sh030"]) == ["sh010 v001"]
    (decision,) = ledger.version_reviews("sh010")["v001"]
    assert (decision.decision, decision.reviewer) == ("approved", f"shotgrid ({SITE}#Demo)")
    mask = ledger.review(batch.masks["sh010"])
    assert mask is not None and mask.decision == "approved"  # a --gate rerun with this mask goes past the gate
    assert [r.decision for r in ledger.version_reviews("sh030")["v001"]] == ["rejected"]  # a person's word stands
    assert pull_approvals(ledger, _publisher(site), ["sh010", "sh030"]) == []  # decided once
