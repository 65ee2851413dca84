"""The provenance database: models and migrations agree; schema checks fail early with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from infra.database import Base, engine_for, ensure_schema, redact_url
from tasks.ledger import ArtifactInfo, Ledger
from void_ops.exceptions import ConfigurationError, MediaInvalid
from void_ops.shots import MediaSource, Shot


def test_migrations_match_the_models(db_url: str) -> None:
    with engine_for(db_url).connect() as connection:
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


def test_stage_runs_record_success_and_failure(db_url: str) -> None:
    ledger = Ledger(db_url)
    batch = ledger.create_batch(
        edit_path=Path("/e.otio"), edit_sha256="0" * 64, out_dir=Path("/o"), backend="cleanplate", params={}
    )
    ledger.add_shots(batch, [_shot("sh010"), _shot("sh020")])
    with ledger.stage(batch, "sh010", "mask", {"threshold": 128}) as stage:
        stage.add(ArtifactInfo("quadmask", "/o/q.mkv", "a" * 64, 10, 9, 24.0, 64, 48))
    with pytest.raises(MediaInvalid), ledger.stage(batch, "sh020", "mask", {}) as stage:
        raise MediaInvalid("/p.mov: frame 3 missing")
    ledger.finish_shot(batch, "sh010", state="done", version=ledger.next_version("sh010"))
    ledger.finish_shot(batch, "sh020", state="failed", reason="/p.mov: frame 3 missing")
    assert ledger.finish_batch(batch) == "failed"
    (row,) = ledger.batches(batch)
    done, failed = row.shots
    assert (done.state, done.version, failed.state) == ("done", "v001", "failed")
    assert done.stage_runs[0].state == "done" and done.stage_runs[0].artifacts[0].frames == 9
    run = failed.stage_runs[0]
    assert (run.state, run.error_class, run.error_message) == ("failed", "MediaInvalid", "/p.mov: frame 3 missing")
    assert "Traceback" in run.params["traceback"]
    assert ledger.next_version("sh010") == "v002"
