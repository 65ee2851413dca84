"""Fault injection: a killed Ray worker, a killed flow, awkward paths and a huge edit. Nothing is lost, nothing
is duplicated, and every shot ends in a final state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import opentimelineio as otio
import pytest
from sqlalchemy.exc import OperationalError

from voidflow.flows.batch import run_batch
from voidflow.flows.params import BatchRequest
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops.intake import Selection, plan_shots, read_edit

FINAL = {"done", "failed", "skipped", "rejected"}


def _versions_are_unique(ledger: Ledger, shots: list[str]) -> None:
    for name in shots:
        _, versions = ledger.history(name)
        numbers = [version.number for version in versions]
        assert numbers == sorted(set(numbers)), f"{name}: duplicated version numbers {numbers}"


def _running_worker(ledger: Ledger, batch_id: str) -> int | None:
    for batch in ledger.batches(batch_id):
        for row in batch.shots:
            for run in row.stage_runs:
                if run.state == "running" and ":" in run.host:
                    pid = int(run.host.rsplit(":", 1)[1])
                    if pid != os.getpid():
                        return pid
    return None


@pytest.mark.usefixtures("ray_cluster")
def test_a_killed_ray_worker_is_retried_and_its_late_report_ignored(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(db_url)
    request = BatchRequest(edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=tmp_path / "out", db_url=db_url)
    outcome: list[object] = []
    runner = threading.Thread(target=lambda: outcome.append(run_batch(request)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        batches = ledger.batches(limit=1)
        if batches and batches[0].params.get("out_dir") == str(tmp_path / "out"):
            pid = _running_worker(ledger, batches[0].id)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = pid
        time.sleep(0.02)
    runner.join(timeout=300)
    assert killed is not None, "no running stage was seen to kill"
    (result,) = outcome
    assert result.state == "done" and result.done == ("sh010", "sh020", "sh030")  # type: ignore[attr-defined]
    (batch,) = ledger.batches(result.batch_id)  # type: ignore[attr-defined]
    lost = [(row.name, run) for row in batch.shots for run in row.stage_runs if run.state == "lost"]
    assert len(lost) == 1 and lost[0][1].error_class == "WorkerLost" and lost[0][1].host.endswith(f":{killed}")
    retried = next(row for row in batch.shots if row.name == lost[0][0])
    assert retried.state == "done" and retried.stage_runs[-1].attempt > 10  # the new attempt after the lost one
    assert {row.state for row in batch.shots} <= FINAL
    _versions_are_unique(ledger, ["sh010", "sh020", "sh030"])


def _voidflow(
    *args: str, home: Path, more_env: dict[str, str] | None = None, **options: object
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VOIDFLOW_DB_URL")}
    env |= {"VOIDFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), **(more_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "voidflow.deployments.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **options,
    )  # type: ignore[call-overload]


def test_a_killed_flow_is_resumed_without_redoing_finished_shots(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home, out = tmp_path / "home", tmp_path / "out"
    flow = _voidflow(
        "run",
        str(small_demo.edit),
        "--sidecar",
        str(small_demo.sidecar),
        "--out",
        str(out),
        home=home,
        start_new_session=True,
    )
    ledger: Ledger | None = None
    batch_id = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and flow.poll() is None:
            time.sleep(0.2)
            if ledger is None and (home / "voidflow.db").exists():
                ledger = Ledger(f"sqlite:///{home / 'voidflow.db'}")
            try:
                batches = ledger.batches() if ledger else []
            except OperationalError:  # the file is there before its tables are (seen in CI)
                batches = []
            if batches and any(row.state == "done" for row in batches[0].shots):
                batch_id = batches[0].id
                break
    finally:
        os.killpg(flow.pid, signal.SIGKILL)
        flow.wait(timeout=30)
    assert ledger is not None and batch_id is not None, "the flow finished no shot before the deadline"
    (killed,) = ledger.batches(batch_id)  # read after the kill: a shot may have finished in between
    finished = {row.name for row in killed.shots if row.state == "done"}
    assert killed.state == "running" and finished and finished != {"sh010", "sh020", "sh030"}

    resume = _voidflow("resume", batch_id[:8], home=home)
    output, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0, output[-3000:]
    (interrupted,) = ledger.batches(batch_id)
    assert interrupted.state == "interrupted" and {row.state for row in interrupted.shots} <= FINAL
    assert all(run.state != "running" for row in interrupted.shots for run in row.stage_runs)
    resumed = ledger.batches(limit=1)[0]
    assert resumed.parent_id == batch_id and resumed.state == "done"
    # a worker may still finish its shot between the kill and the resume: the resume goes by the ledger as it finds it
    settled = {row.name for row in interrupted.shots if row.state == "done"}
    assert settled >= finished
    remaining = {"sh010", "sh020", "sh030"} - settled
    assert remaining <= {row.name for row in resumed.shots if row.state == "done"}
    redone = {row.name for row in resumed.shots if row.stage_runs}
    # finished shots are not touched again; a shot killed after its last stage may be done from its cached stages
    assert redone <= remaining
    _versions_are_unique(ledger, ["sh010", "sh020", "sh030"])


@pytest.mark.usefixtures("ray_cluster")
def test_paths_with_spaces_and_accents(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "Prod Shots" / "Séquence 01 - été"
    shutil.copytree(Path(small_demo.edit).parent, folder)
    plate = folder / "demo_plate.mov"
    timeline = read_edit(folder / "demo_cut.otio").timeline
    for clip in timeline.find_clips():
        clip.media_reference.target_url = plate.as_uri()
    edit = folder / "coupe finale é.otio"
    otio.adapters.write_to_file(timeline, str(edit))
    request = BatchRequest(
        edit=edit,
        sidecar=folder / "demo_sidecar.yaml",
        out_dir=tmp_path / "sortie à rendre",
        db_url=db_url,
        only_shots=("sh020",),
    )
    result = run_batch(request)
    assert result.done == ("sh020",) and result.conformed is not None and result.conformed.exists()


def test_an_edit_of_5000_clips_plans(tmp_path: Path) -> None:
    track = otio.schema.Track(name="V1")
    for index in range(5000):
        track.append(
            otio.schema.Clip(
                name=f"A{index:04d}_C001",
                media_reference=otio.schema.MissingReference(),
                source_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(index, 24), otio.opentime.RationalTime(24, 24)
                ),
            )
        )
    path = tmp_path / "reel.otio"
    otio.adapters.write_to_file(otio.schema.Timeline(tracks=[track]), str(path))
    shots = plan_shots(read_edit(path), selection=Selection(everything=True))
    assert len(shots) == 5000 and len({shot.name for shot in shots}) == 5000
    assert {shot.reason for shot in shots} == {"no media reference in the edit"}
    assert shots[-1].record_start == 4999 * 24


@pytest.mark.usefixtures("ray_cluster")
def test_allowed_roots_confine_reads_and_writes(small_demo, db_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 8: media outside VOIDFLOW_ALLOWED_ROOTS fails its shot; an output folder outside refuses the batch."""
    from voidflow.flows.params import plan
    from voidflow.infra.settings import Settings
    from voidflow.void_ops.exceptions import PathNotAllowed

    show = tmp_path / "show"
    shutil.copytree(Path(small_demo.edit).parent, show)
    timeline = read_edit(show / "demo_cut.otio").timeline
    for clip in timeline.find_clips():  # sh010 still reads the original plate, outside the show folder
        if dict(clip.metadata.get("voidflow") or {}).get("shot") != "sh010":
            clip.media_reference.target_url = (show / "demo_plate.mov").as_uri()
    edit = show / "cut.otio"
    otio.adapters.write_to_file(timeline, str(edit))
    monkeypatch.setenv("VOIDFLOW_ALLOWED_ROOTS", f"{show}:{tmp_path / 'out'}")
    outside = BatchRequest(edit=edit, sidecar=show / "demo_sidecar.yaml", out_dir=tmp_path / "elsewhere", db_url=db_url)
    with pytest.raises(PathNotAllowed, match=r"^output folder .*elsewhere: outside the allowed roots \("):
        plan(outside, allowed_roots=Settings.from_env().allowed_roots)  # as an entry point reads them
    with pytest.raises(PathNotAllowed, match=r"^previous edit .*old\.otio: outside the allowed roots"):
        plan(outside.model_copy(update={"out_dir": tmp_path / "out", "previous_edit": tmp_path / "old.otio"}),
             allowed_roots=Settings.from_env().allowed_roots)  # fmt: skip
    result = run_batch(outside.model_copy(update={"out_dir": tmp_path / "out"}))
    # sh010's plate is refused at plan time, before it is opened: skipped with the reason, the others delivered.
    assert "sh010" in result.skipped and set(result.done) == {"sh020", "sh030"} and result.failed == ()
    (batch,) = Ledger(db_url).batches(result.batch_id)
    reason = next(shot.reason for shot in batch.shots if shot.name == "sh010")
    assert reason.startswith("media ") and "outside the allowed roots" in reason
    assert not (tmp_path / "elsewhere").exists()


def test_a_locked_sqlite_ledger_stops_the_run_with_one_line(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 8: another process holding the SQLite ledger's write lock: one line naming the ledger, exit 2."""
    import sqlite3

    from voidflow.infra.database import ensure_schema

    home = tmp_path / "home"
    ensure_schema(f"sqlite:///{home / 'voidflow.db'}")
    holder = sqlite3.connect(home / "voidflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        run = _voidflow(
            *("run", str(small_demo.edit), "--sidecar", str(small_demo.sidecar), "--out", str(tmp_path / "out")),
            home=home,
            more_env={"VOIDFLOW_DB_TIMEOUT": "1"},
        )
        output, _ = run.communicate(timeout=240)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    last = output.strip().splitlines()[-1]
    assert run.returncode == 2, output[-2000:]
    assert last == (
        f"voidflow: error: the ledger sqlite:///{home / 'voidflow.db'} is locked by another process "
        "(waited 1 s; VOIDFLOW_DB_TIMEOUT sets the wait)"
    )
    assert "Traceback" not in output


def _mount_tmpfs(folder: Path, *options: str) -> bool:
    """Mount a small tmpfs at ``folder`` (root with mount rights, as in CI's container); False where not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 2 MB filesystem: big enough for a shot's masks, too small for its deliveries; unmounted afterwards."""
    folder = tmp_path / "small disk"
    if not _mount_tmpfs(folder, "size=2m"):
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN (CI's container has it)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.usefixtures("ray_cluster")
def test_a_full_disk_fails_the_shots_cleanly_and_leaves_no_partial_file(
    small_demo, small_disk: Path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    request = BatchRequest(edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=small_disk / "out", db_url=db_url)
    result = run_batch(request)
    assert result.failed and not result.done, result
    ledger = Ledger(db_url)
    (batch,) = ledger.batches(result.batch_id)
    assert {row.state for row in batch.shots} <= FINAL
    for row in batch.shots:
        if row.state == "failed":
            assert "No space left on device" in row.reason and "\n" not in row.reason, row.reason
    # Every shot file under a final name is one the ledger recorded complete; the rest are temporary names.
    recorded = {Path(a.path) for row in batch.shots for run in row.stage_runs for a in run.artifacts}
    for path in (small_disk / "out" / "shots").rglob("*"):
        if path.is_file() and path not in recorded:
            assert ".tmp" in path.name or path.name.startswith("."), f"partial file under a final name: {path}"
    _versions_are_unique(ledger, ["sh010", "sh020", "sh030"])


def test_a_read_only_output_folder_stops_the_run_with_its_name(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 8: an unwritable output folder is found before any work starts: one line naming it, exit 2."""
    folder = tmp_path / "read only"
    mounted = _mount_tmpfs(folder, "size=1m", "ro")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root writes into any folder; a read-only mount needs CAP_SYS_ADMIN (CI's container has it)")
        folder.chmod(0o555)
    try:
        run = _voidflow(
            *("run", str(small_demo.edit), "--sidecar", str(small_demo.sidecar), "--out", str(folder / "out")),
            home=tmp_path / "home",
        )
        output, _ = run.communicate(timeout=120)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
    assert run.returncode == 2, output[-2000:]
    cause = "Read-only file system" if mounted else "Permission denied"
    assert output.strip().splitlines()[-1] == f"voidflow: error: output folder {folder / 'out'}: not writable ({cause})"
    assert "Traceback" not in output


@pytest.mark.usefixtures("ray_cluster")
def test_a_shot_past_its_time_limit_fails_and_leaves_no_stage_running(small_demo, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 8: a shot that outlives ``shot_timeout_s`` fails with that reason, once (no retry), and the ledger
    keeps no stage in a running state. The limit is far below a shot's work here (about half a second): the shot is
    stopped before its next stage (a stage runs to its end; nothing is raised into it, as Prefect's task timeout
    would, into an import or a first database use, failing the worker process for later shots)."""
    request = BatchRequest(
        edit=small_demo.edit, sidecar=small_demo.sidecar, out_dir=tmp_path / "out", db_url=db_url, shot_timeout_s=0.1
    )
    result = run_batch(request)
    assert set(result.failed) == {"sh010", "sh020", "sh030"} and not result.done
    (batch,) = Ledger(db_url).batches(result.batch_id)
    for row in batch.shots:
        if row.name in result.failed:
            assert row.reason == f"shot '{row.name}': ran past its 0.1 s shot timeout (not retried)"
            assert all(run.state != "running" for run in row.stage_runs)
            assert {run.attempt for run in row.stage_runs} <= {1}


def _bytes_of(path: Path) -> bytes:
    """A file's bytes; nothing for folders, sockets and files gone meanwhile (a live Ray session rotates its logs)."""
    try:
        return path.read_bytes() if path.is_file() else b""
    except OSError:
        return b""


@pytest.mark.postgres
def test_the_database_password_never_reaches_prefect(small_demo, postgres_server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17: the password in VOIDFLOW_DB_URL stays in the environment of the processes that connect. A batch
    run against PostgreSQL with a planted password: the flow run's parameters, Prefect's database, every file
    voidflow writes, the run's Ray session logs and its console hold the URL without it."""
    from sqlalchemy.engine import make_url

    from tests.conftest import _fresh_postgres_database

    planted = "PLANTED-db-p4ss"
    url = make_url(_fresh_postgres_database(postgres_server)).set(password=planted)  # trust auth ignores it
    home = tmp_path / "home"
    began = time.time()
    run = _voidflow(
        *("run", str(small_demo.edit), "--sidecar", str(small_demo.sidecar), "--out", str(tmp_path / "out")),
        *("--backend", "passthrough"),
        home=home,
        more_env={"VOIDFLOW_DB_URL": url.render_as_string(hide_password=False)},
    )
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]
    assert planted not in output
    ray_sessions = [s for s in Path("/tmp/ray").glob("session_2*") if s.stat().st_mtime >= began]  # the run's Ray
    assert ray_sessions, "the run's Ray session logs were not found to search"
    searched = [*home.rglob("*"), *(tmp_path / "out").rglob("*"), *(f for s in ray_sessions for f in s.rglob("*"))]
    assert [path for path in searched if planted.encode() in _bytes_of(path)] == []
    assert (home / "prefect" / "prefect.db").is_file()  # Prefect's own database was written, and searched
    batch = Ledger(url.render_as_string(hide_password=False)).batches(limit=1)[0]
    assert batch.state == "done"
