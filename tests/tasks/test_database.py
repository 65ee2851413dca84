"""The provenance ledger on SQLite and on a live PostgreSQL server: schema, stage runs, cache, versions, export."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from voidflow.infra.database import Base, engine_for, ensure_schema, redact_url, retry_conflicts
from voidflow.tasks.export import write_parquet
from voidflow.tasks.ledger import Ledger
from voidflow.void_ops.exceptions import ConfigurationError, MediaInvalid, StorageUnavailable
from voidflow.void_ops.keys import stage_key
from voidflow.void_ops.pipeline import StageFile
from voidflow.void_ops.shots import MediaSource, Shot


def test_migrations_match_the_models(any_db_url: str) -> None:
    with engine_for(any_db_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_schema_checks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    ensure_schema(url)
    with engine_for(url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(ConfigurationError, match="run `voidflow db upgrade`"):
        ensure_schema(url)
    with pytest.raises(ConfigurationError, match=r"cannot reach the database postgresql\+psycopg://me:\*\*\*@"):
        ensure_schema("postgresql+psycopg://me:hunter2@127.0.0.1:1/none")
    assert redact_url("postgresql://me:hunter2@db/x") == "postgresql://me:***@db/x"


def _shot(name: str) -> Shot:
    return Shot(name, "V1", 0, name, "clip", MediaSource("/p.mov", "movie", 24.0), 24.0, 10, 5, (2, 2), 0, "ready")


def _batch(ledger: Ledger, *names: str) -> str:
    edit = ledger.record_edit(Path("/e.otio"), "0" * 64, 24.0, [])
    batch = ledger.create_batch(
        edit_id=edit,
        edit_path=Path("/e.otio"),
        edit_sha256="0" * 64,
        out_dir=Path("/o"),
        backend="cleanplate",
        params={},
    )
    ledger.add_shots(batch, [_shot(name) for name in names])
    return batch


def test_stage_runs_record_success_failure_and_cache_hits(any_db_url: str, tmp_path: Path) -> None:
    ledger = Ledger(any_db_url)
    batch = _batch(ledger, "sh010", "sh020")
    output = tmp_path / "q.mkv"
    output.write_bytes(b"mask")
    key = stage_key("mask", version="1", inputs={"plate": "p"}, params={"threshold": 128})
    with ledger.stage(batch, "sh010", "mask", {"threshold": 128}, key=key, seed=3) as stage:
        stage.add(StageFile("quadmask", output, "a" * 64, 4, 9, 24.0, 64, 48))
    with pytest.raises(MediaInvalid), ledger.stage(batch, "sh020", "mask", {}, key=key):
        raise MediaInvalid("/p.mov: frame 3 missing")
    origin = ledger.cached("mask", key)
    assert origin is not None and origin.artifacts[0].frames == 9 and origin.seed == 3
    hit = ledger.record_cache_hit(batch, "sh020", "mask", origin)
    (row,) = ledger.batches(batch)
    done, failed = row.shots
    assert [run.state for run in failed.stage_runs] == ["failed", "cached"]
    assert failed.stage_runs[0].error_class == "MediaInvalid" and "Traceback" in failed.stage_runs[0].traceback
    assert failed.stage_runs[1].id == hit and failed.stage_runs[1].cached_from_id == done.stage_runs[0].id
    assert ledger.origin(failed.stage_runs[1]).id == done.stage_runs[0].id
    assert row.code_version and done.stage_runs[0].code_version == row.code_version
    output.unlink()
    assert ledger.cached("mask", key) is None  # a cache hit needs its files


def test_a_late_report_cannot_overwrite_the_owner(any_db_url: str) -> None:
    """The ownership fence: once another attempt owns a run, the first attempt's report changes nothing."""
    ledger = Ledger(any_db_url)
    batch = _batch(ledger, "sh010")
    with pytest.raises(RuntimeError), ledger.stage(batch, "sh010", "pass1", {}, key="k") as first:
        with engine_for(any_db_url).begin() as connection:  # e.g. the run was declared lost and taken over
            connection.execute(text("UPDATE stage_runs SET token = 'other' WHERE id = :id"), {"id": first.run_id})
        raise RuntimeError("the killed attempt reports late")
    (row,) = ledger.batches(batch)
    assert row.shots[0].stage_runs[0].state == "running"  # untouched by the late failure report


def test_versions_are_unique_under_concurrent_batches(any_db_url: str) -> None:
    ledger = Ledger(any_db_url)
    batches = [_batch(ledger, "sh010") for _ in range(4)]
    labels: list[str] = []
    lock = threading.Lock()

    def allocate(batch: str) -> None:
        for _ in range(5):
            label = Ledger(any_db_url).allocate_version(batch, "sh010", {})
            with lock:
                labels.append(label)

    threads = [threading.Thread(target=allocate, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(labels) == [f"v{n:03d}" for n in range(1, 21)]
    _, versions = ledger.history("sh010")
    assert [v.number for v in versions] == list(range(1, 21)) and {v.status for v in versions} == {"delivering"}


class _Conflict(Exception):
    pass


def test_retry_conflicts_calls_again_until_a_write_wins_then_gives_up_naming_it() -> None:
    calls: list[str] = []

    def write(wins_at: int | None) -> str:
        calls.append("call")
        if len(calls) == wins_at:
            return "won"
        raise _Conflict

    assert retry_conflicts(lambda: write(3), conflicts=(_Conflict,), failure="x") == "won" and len(calls) == 3
    calls.clear()
    with pytest.raises(StorageUnavailable, match=r"^could not allocate v001 after 4 attempts$"):
        retry_conflicts(lambda: write(None), conflicts=(_Conflict,), failure="could not allocate v001", tries=4)
    assert len(calls) == 4
    calls.clear()
    with pytest.raises(_Conflict):  # an error that is not one of the conflicts propagates at once
        retry_conflicts(lambda: write(None), conflicts=(KeyError,), failure="x")
    assert len(calls) == 1


def test_a_locked_sqlite_ledger_names_the_wait_it_was_given(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'locked.db'}"
    ensure_schema(url)
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageUnavailable, match=r"locked by another process \(waited 0\.2 s; "):
            Ledger(url, db_timeout_s=0.2).check_writable()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    Ledger(url, db_timeout_s=0.2).check_writable()


def test_file_hash_memo_follows_changes(any_db_url: str, tmp_path: Path) -> None:
    ledger = Ledger(any_db_url)
    plate = tmp_path / "plate.mov"
    plate.write_bytes(b"one")
    first = ledger.file_hash(plate)
    assert ledger.file_hash(plate) == first
    plate.write_bytes(b"two, longer")
    assert ledger.file_hash(plate) != first


def test_parquet_export_has_one_row_per_stage_run(any_db_url: str, tmp_path: Path) -> None:
    ledger = Ledger(any_db_url)
    batch = _batch(ledger, "sh010", "sh020")
    for shot in ("sh010", "sh020"):
        for stage in ("mask", "pass1"):
            with ledger.stage(batch, shot, stage, {"steps": 30}, key=f"{shot}{stage}"):
                pass
    (row,) = ledger.batches(batch)
    written, count = write_parquet(row, tmp_path / "runs.parquet")
    table = pq.read_table(written)
    assert count == table.num_rows == 4
    assert table.column("stage").to_pylist() == ["mask", "pass1", "mask", "pass1"]
    assert set(table.column_names) >= {"batch_id", "shot", "stage", "attempt", "state", "key", "seconds", "params"}


def test_status_flags_a_stage_running_past_the_shot_timeout(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Issue 8: stuck shots are visible: `voidflow status` names the stage, how long it runs, and where."""
    from voidflow.deployments.cli import main

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ensure_schema(url)
    ledger = Ledger(url)
    batch = _batch(ledger, "sh010", "sh020")
    with pytest.raises(RuntimeError), ledger.stage(batch, "sh010", "mask", {}, key="k") as stuck:
        with engine_for(url).begin() as connection:  # a worker that stopped answering five hours ago
            connection.execute(
                text("UPDATE stage_runs SET started_at = datetime('now', '-5 hours'), token = 'gone' WHERE id = :id"),
                {"id": stuck.run_id},
            )
        raise RuntimeError("the stuck attempt never reports")  # (its late report is fenced off)
    monkeypatch.setenv("VOIDFLOW_DB_URL", url)
    assert main(["status", "--batch", batch]) == 0
    lines = capsys.readouterr().out.splitlines()
    sh010 = next(line for line in lines if "sh010" in line)
    assert "STUCK: mask running for 5.0 h, past the 4 h shot timeout (on " in sh010
    assert "STUCK" not in next(line for line in lines if "sh020" in line)
