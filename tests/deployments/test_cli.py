"""The ``voidflow`` command as users run it: exit codes, one-line errors, JSON output, a real batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest
import yaml

from tests.conftest import timeline_files


def voidflow(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VOIDFLOW_DB_URL")}
    env |= {"VOIDFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    command = [sys.executable, "-m", "voidflow.deployments.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)


@pytest.mark.parametrize("path", timeline_files(), ids=lambda p: p.name)
def test_plan_json_on_every_sample_timeline(path: Path, tmp_path: Path) -> None:
    result = voidflow("plan", str(path), "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    shots = json.loads(result.stdout)["shots"]
    required = {"name", "track", "index", "media", "rate", "source_start", "duration", "handles", "record_start"}
    assert shots and all(required | {"status", "reason"} <= set(shot) for shot in shots)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "/no/such/cut.edl"], "voidflow: error: /no/such/cut.edl: edit not found"),
        (["plan", "cut.mp4"], "voidflow: error: "),
        (["run", "/no/such/cut.otio", "--handles", "-1"], "voidflow: error: --handles: Input should be greater"),
    ],
)
def test_unusable_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = voidflow(*args, home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_run_status_and_conform(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home, out = tmp_path / "home", tmp_path / "out"
    bad = tmp_path / "bad.yaml"
    bad.write_text("shots:\n  sh010:\n    affected_ring: lots\n")
    refused = voidflow("run", str(small_demo.edit), "--sidecar", str(bad), "--out", str(out), home=home)
    assert refused.returncode == 2 and "shot 'sh010': field 'affected_ring'" in refused.stderr
    assert not out.exists()

    entries = yaml.safe_load(small_demo.sidecar.read_text())
    for entry in entries["shots"].values():
        entry["matte"] = small_demo.matte
    entries["shots"]["sh030"]["matte"] = str(tmp_path / "missing.mov")
    sidecar = tmp_path / "sidecar.yaml"
    sidecar.write_text(yaml.safe_dump(entries))
    result = voidflow("run", str(small_demo.edit), "--sidecar", str(sidecar), "--out", str(out), home=home)
    assert result.returncode == 1, result.stderr[-2000:]
    last = "[3/3 · 2 done · 0 running · 1 failed · 0 queued"
    assert last in result.stdout and "sh030: FAILED" in result.stdout, result.stdout + result.stderr[-3000:]

    status = voidflow("status", "--json", home=home)
    assert status.returncode == 0
    (batch,) = json.loads(status.stdout)["batches"]
    states = {shot["name"]: shot["state"] for shot in batch["shots"]}
    assert states == {"sh010": "done", "sh020": "done", "sh030": "failed", "slate": "skipped"}
    failed = next(shot for shot in batch["shots"] if shot["name"] == "sh030")
    assert "missing.mov: matte not found" in failed["reason"]

    edl = tmp_path / "conformed.edl"
    conformed = voidflow("conform", str(small_demo.edit), "--batch", batch["id"], "-o", str(edl), home=home)
    assert conformed.returncode == 0, conformed.stderr
    reread = otio.adapters.read_from_file(str(edl), rate=24)
    assert len(list(reread.find_clips())) == 4
    unknown = voidflow("conform", str(small_demo.edit), "--batch", "nope", "-o", str(edl), home=home)
    assert unknown.returncode == 2 and "no batch with ID 'nope'" in unknown.stderr


def test_config_show_masks_secrets_and_deploy_dry_run(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env_home = tmp_path / "home"
    shown = voidflow("config", "show", "--json", home=env_home)
    assert shown.returncode == 0
    settings = json.loads(shown.stdout)
    assert settings["gemini_api_key"] == "***" and "sk-test" not in shown.stdout
    assert settings["home"] == str(env_home)

    plan = voidflow(
        "deploy",
        str(small_demo.edit),
        "--out",
        str(tmp_path / "out"),
        "--dry-run",
        "--timezone",
        "America/Los_Angeles",
        "--cron",
        "30 1 * * *",
        "--publish",
        "kitsu",
        home=env_home,
    )
    assert plan.returncode == 0, plan.stderr
    deployments = {d["name"].split("/")[-1]: d for d in json.loads(plan.stdout)["deployments"]}
    nightly = deployments["nightly-batch"]
    assert nightly["schedules"][0]["cron"] == "30 1 * * *"
    assert nightly["schedules"][0]["timezone"] == "America/Los_Angeles"
    assert nightly["parameters"]["request"]["edit"] == str(small_demo.edit)
    # Both deployments publish to the tracker by name; its credentials stay in the workers' settings.
    assert {d["parameters"]["request"]["publish"] for d in deployments.values()} == {"kitsu"}
    unknown = voidflow("deploy", str(small_demo.edit), "--out", str(tmp_path), "--publish", "jira", home=env_home)
    assert unknown.returncode == 2 and "--publish: invalid choice: 'jira'" in unknown.stderr


def test_plan_shows_each_plates_colour_space_and_why(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = voidflow("plan", str(small_demo.edit), "--sidecar", str(small_demo.sidecar), "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    ready = [shot for shot in json.loads(result.stdout)["shots"] if shot["status"] == "ready"]
    assert ready and all(shot["colour"]["name"] == "Rec.1886 Rec.709 - Display" for shot in ready)
    assert all(shot["colour"]["source"] == "inferred" and "movie tags" in shot["colour"]["evidence"] for shot in ready)
    declared = voidflow(
        "plan", str(small_demo.edit), "--sidecar", str(small_demo.sidecar), "--plate-colourspace", "ACEScgg", "--json",
        home=tmp_path,
    )  # fmt: skip
    errors = [shot["colour"]["error"] for shot in json.loads(declared.stdout)["shots"] if shot["status"] == "ready"]
    assert errors and all("'ACEScgg'" in error and "\n" not in error for error in errors)
    assert "sh010" in errors[0]


def test_plate_the_media_layer_cannot_read_is_skipped_at_plan_time(tmp_path: Path) -> None:
    import opentimelineio as otio

    bogus = tmp_path / "plate.mov"
    bogus.write_text("not a movie\n")
    clip = otio.schema.Clip(
        name="sh010",
        media_reference=otio.schema.ExternalReference(
            target_url=bogus.as_uri(),
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(48, 24)
            ),
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, 24), otio.opentime.RationalTime(24, 24)),
    )
    edit = tmp_path / "cut.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(tracks=[otio.schema.Track(children=[clip])]), str(edit))
    result = voidflow("plan", str(edit), "--all", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    [shot] = json.loads(result.stdout)["shots"]
    assert shot["status"] == "skipped" and "plate.mov: unreadable or not media" in shot["reason"], shot


PAL_EDL = """TITLE: pal reel
FCM: NON-DROP FRAME

001  A001C003 V     C        01:00:00:00 01:00:01:24 10:00:00:00 10:00:01:24
* FROM CLIP NAME: A001C003
002  A001C004 V     C        01:00:05:10 01:00:06:00 10:00:01:24 10:00:02:14
* FROM CLIP NAME: A001C004
"""


def test_a_25_fps_edl_plans_without_edl_rate_and_says_why(tmp_path: Path) -> None:
    edl = tmp_path / "pal.edl"
    edl.write_text(PAL_EDL)
    result = voidflow("plan", str(edl), "--all", "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["edit"]["rate"] == 25.0
    assert plan["edit"]["rate_evidence"] == "EDL rate 25 fps: frame fields run to 24 (01:00:01:24)"
    assert [shot["duration"] for shot in plan["shots"]] == [49, 15]  # counted at 25 fps: 1 s 24 fr, 15 fr
    text = voidflow("plan", str(edl), "--all", home=tmp_path / "home")
    assert (
        text.stdout.splitlines()[0] == "edit pal.edl at 25 fps: EDL rate 25 fps: frame fields run to 24 (01:00:01:24)"
    )


def test_an_edl_rate_its_timecodes_contradict_is_refused_in_one_line(tmp_path: Path) -> None:
    edl = tmp_path / "pal.edl"
    edl.write_text(PAL_EDL)
    result = voidflow("plan", str(edl), "--edl-rate", "24", home=tmp_path / "home")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr == (
        f"voidflow: error: {edl}: timecode 01:00:01:24 has frame 24, beyond what --edl-rate 24 allows (frames 0-23)\n"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VOIDFLOW_RAY_CPUS", "lots", "voidflow: error: VOIDFLOW_RAY_CPUS='lots': expected a positive whole number\n"),
        ("VOIDFLOW_PATH_MAP", "/a", "voidflow: error: VOIDFLOW_PATH_MAP: entry '/a' is not FROM=TO\n"),
        (
            "VOIDFLOW_ALLOWED_ROOTS",
            "shows",
            "voidflow: error: VOIDFLOW_ALLOWED_ROOTS: 'shows' is not an absolute folder\n",
        ),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(variable: str, value: str, message: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VOIDFLOW_DB_URL")}
    env |= {"VOIDFLOW_HOME": str(tmp_path / "home"), variable: value}
    command = [sys.executable, "-m", "voidflow.deployments.cli", "plan", "cut.edl"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert (result.returncode, result.stderr) == (2, message)


def test_a_voidflow_home_that_does_not_exist_yet_is_created(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "not" / "yet" / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VOIDFLOW_DB_URL", "PREFECT_HOME")}
    env |= {"VOIDFLOW_HOME": str(home)}
    command = [sys.executable, "-m", "voidflow.deployments.cli", "run", str(small_demo.edit), "--sidecar",
               str(small_demo.sidecar), "--backend", "passthrough", "--out", str(tmp_path / "out")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode in (0, 1), result.stderr[-2000:]  # the batch ran (exit 1: some shot failed)
    assert (home / "voidflow.db").is_file() and (home / "prefect").is_dir()


def test_export_outside_the_allowed_roots_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VOIDFLOW_DB_URL")}
    env |= {"VOIDFLOW_HOME": str(tmp_path / "home"), "VOIDFLOW_ALLOWED_ROOTS": str(tmp_path / "show")}
    out = tmp_path / "elsewhere" / "runs.parquet"
    command = [sys.executable, "-m", "voidflow.deployments.cli", "export", "--batch", "abc", "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"voidflow: error: export {out}: outside the allowed roots")
    assert not out.parent.exists()
