"""The provenance database: SQLAlchemy 2 typed models, the engine factory and schema checks.

SQLite (WAL mode) is the embedded default; PostgreSQL is used through a ``postgresql+psycopg://`` URL. Every schema
change is an Alembic migration under ``infra/migrations``; ``tests/test_database.py`` fails when these models and
the migrations disagree.

Tables: ``batches`` (one nightly run over one edit), ``shots`` (one clip of that edit in that batch),
``stage_runs`` (one attempt at one stage of one shot) and ``artifacts`` (files a stage run wrote).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, event
from sqlalchemy import create_engine as _sa_create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from void_ops.exceptions import ConfigurationError

__all__ = [
    "Artifact",
    "Base",
    "Batch",
    "ShotRow",
    "StageRun",
    "engine_for",
    "ensure_schema",
    "redact_url",
    "upgrade",
    "utcnow",
]

_MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of voidflow's tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Batch(Base):
    """One run of voidflow over one edit."""

    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16))
    edit_path: Mapped[str] = mapped_column(Text)
    edit_sha256: Mapped[str] = mapped_column(String(64))
    out_dir: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]]
    host: Mapped[str] = mapped_column(String(255))
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    shots: Mapped[list[ShotRow]] = relationship(back_populates="batch", order_by="ShotRow.id")


class ShotRow(Base):
    """One clip of the batch's edit and where it stands."""

    __tablename__ = "shots"
    __table_args__ = (UniqueConstraint("batch_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    track: Mapped[str] = mapped_column(String(255))
    clip_index: Mapped[int]
    clip_name: Mapped[str] = mapped_column(Text)
    media: Mapped[str | None] = mapped_column(Text)
    rate: Mapped[float] = mapped_column(Float)
    source_start: Mapped[int] = mapped_column(BigInteger)
    duration: Mapped[int]
    head: Mapped[int]
    tail: Mapped[int]
    record_start: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str | None] = mapped_column(String(16))
    batch: Mapped[Batch] = relationship(back_populates="shots")
    stage_runs: Mapped[list[StageRun]] = relationship(back_populates="shot", order_by="StageRun.id")


class StageRun(Base):
    """One attempt at one stage (mask, pass1, deliver, …) of one shot."""

    __tablename__ = "stage_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(default=1)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    host: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]]
    error_class: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    shot: Mapped[ShotRow] = relationship(back_populates="stage_runs")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="stage_run", order_by="Artifact.id")


class Artifact(Base):
    """A file a stage run wrote."""

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_run_id: Mapped[int] = mapped_column(ForeignKey("stage_runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    frames: Mapped[int | None]
    fps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None]
    height: Mapped[int | None]
    stage_run: Mapped[StageRun] = relationship(back_populates="artifacts")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@functools.cache
def engine_for(url: str) -> Engine:
    """Return this process's engine for ``url`` (one pool per process and URL).

    SQLite files get WAL journaling, foreign keys and a 30 s busy timeout; their folder is created.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _sa_create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return _sa_create_engine(url, pool_pre_ping=True)


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Apply every pending migration to the database at ``url``."""
    config = _alembic_config(url)
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def ensure_schema(url: str) -> None:
    """Make sure the database at ``url`` is reachable and at the newest schema, before any work starts.

    An empty database is created at the newest schema. A database at an older schema is left alone.

    Raises:
        ConfigurationError: the database cannot be reached, or it needs ``voidflow db upgrade`` (one line, with
            the URL's password hidden).
    """
    head = ScriptDirectory.from_config(_alembic_config(url)).get_current_head()
    try:
        with engine_for(url).connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            has_tables = bool(connection.dialect.get_table_names(connection))
    except SQLAlchemyError as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        raise ConfigurationError(f"cannot reach the database {redact_url(url)}: {reason}") from None
    if current == head:
        return
    if current is None and not has_tables:
        upgrade(url)
        return
    raise ConfigurationError(
        f"the database {redact_url(url)} is at schema {current or 'unversioned'}, voidflow needs {head}: "
        "run `voidflow db upgrade`"
    )
