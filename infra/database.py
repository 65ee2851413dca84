"""The provenance database: SQLAlchemy 2 typed models, the engine factory and schema checks.

SQLite (WAL mode) is the embedded default; PostgreSQL is used through a ``postgresql+psycopg://`` URL. Every schema
change is an Alembic migration under ``infra/migrations``; ``tests/test_database.py`` fails when these models and
the migrations disagree.

Tables: ``edits`` (edit intake), ``batches`` (one run over one edit; reruns point at their parent), ``shots`` (one
clip of that edit in that batch), ``stage_runs`` (one attempt at one stage of one shot, or a cache hit),
``artifacts`` (files a stage run wrote), ``versions`` (immutable ``v###`` per shot name with lineage and review
state), ``vlm_exchanges`` (stored VLM requests and responses for offline replay), ``mask_reviews`` (approvals
and rejections of masks before GPU work), ``publishes`` (a version's record in a production tracker: its IDs there)
and ``file_hashes`` (content hash memo).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy import create_engine as _sa_create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from voidflow.void_ops.exceptions import ConfigurationError, StorageUnavailable

__all__ = [
    "BUSY_TIMEOUT_S",
    "CONFLICT_TRIES",
    "Artifact",
    "Base",
    "Batch",
    "EditRow",
    "FileHash",
    "MaskReview",
    "Publish",
    "ShotRow",
    "StageRun",
    "Version",
    "VersionReview",
    "VlmExchangeRow",
    "engine_for",
    "ensure_schema",
    "public_url",
    "redact_url",
    "remember_password",
    "retry_conflicts",
    "upgrade",
    "utcnow",
]

_MIGRATIONS = Path(__file__).with_name("migrations")
#: Seconds a write waits for another process's lock on a SQLite database, unless told otherwise.
BUSY_TIMEOUT_S = 30.0
#: Attempts ``retry_conflicts`` makes before giving up.
CONFLICT_TRIES = 8

_T = TypeVar("_T")


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of voidflow's tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class EditRow(Base):
    """An edit file as read at intake (one row per path and content)."""

    __tablename__ = "edits"
    __table_args__ = (UniqueConstraint("path", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    rate: Mapped[float] = mapped_column(Float)
    warnings: Mapped[dict[str, Any]]
    read_at: Mapped[datetime] = mapped_column(default=utcnow)


class Batch(Base):
    """One run of voidflow over one edit; a rerun is a batch whose ``parent_id`` names the batch it reruns."""

    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="run")
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    edit_id: Mapped[int] = mapped_column(ForeignKey("edits.id"))
    edit_path: Mapped[str] = mapped_column(Text)
    edit_sha256: Mapped[str] = mapped_column(String(64))
    out_dir: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]]
    host: Mapped[str] = mapped_column(String(255))
    code_version: Mapped[str] = mapped_column(String(64))
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(64))
    shots: Mapped[list[ShotRow]] = relationship(back_populates="batch", order_by="ShotRow.id")


class ShotRow(Base):
    """One clip of the batch's edit and where it stands."""

    __tablename__ = "shots"
    __table_args__ = (UniqueConstraint("batch_id", "name"), Index("ix_shots_name", "name"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    track: Mapped[str] = mapped_column(String(255))
    clip_index: Mapped[int]
    clip_name: Mapped[str] = mapped_column(Text)
    media: Mapped[str | None] = mapped_column(Text)
    plate_sha256: Mapped[str | None] = mapped_column(String(64))
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

    def finished(self, stage: str) -> StageRun | None:
        """The newest run of ``stage`` that ended with its outputs (``done``, or ``cached``: a reused run), or None."""
        runs = [run for run in self.stage_runs if run.stage == stage and run.state in ("done", "cached")]
        return runs[-1] if runs else None


class StageRun(Base):
    """One attempt at one stage (mask, pass1, pass2, deliver) of one shot, or a cache hit on an earlier one.

    ``key`` hashes the stage's input content hashes, parameters, weight hashes and op version; a ``cached`` run
    points at the run that produced its outputs (``cached_from_id``). ``token`` is the run's ownership fence: only
    the attempt holding it may finish the row.
    """

    __tablename__ = "stage_runs"
    __table_args__ = (Index("ix_stage_runs_stage_key_state", "stage", "key", "state"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(default=1)
    state: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    cached_from_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))
    token: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    host: Mapped[str] = mapped_column(String(255))
    gpu: Mapped[str | None] = mapped_column(String(128))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    code_version: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    error_class: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
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


class Version(Base):
    """An immutable delivered version of a shot (``v001``…), with the runs it came from and its review state.

    ``status`` is ``delivering`` while its files are written, then ``delivered`` or ``failed``; numbers are unique
    per shot name across all batches and never reused.
    """

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("shot_name", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_name: Mapped[str] = mapped_column(String(255))
    number: Mapped[int]
    label: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"))
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id"))
    status: Mapped[str] = mapped_column(String(16))
    review_state: Mapped[str] = mapped_column(String(16), default="pending")
    deliver_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))
    mask_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))
    pass1_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))
    pass2_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))


class VlmExchangeRow(Base):
    """A stored VLM request and its raw response, so a rerun can replay it offline (no API key is ever stored)."""

    __tablename__ = "vlm_exchanges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    request_summary: Mapped[str] = mapped_column(Text)
    response_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))


class MaskReview(Base):
    """A person's decision on a mask (by its stage key, so a rerun with the same mask finds it).

    ``round`` counts the decisions on one mask (1 for the first): two reviewers deciding the same mask at once both
    write the same round, and the unique constraint lets exactly one of them win.
    """

    __tablename__ = "mask_reviews"
    __table_args__ = (UniqueConstraint("mask_key", "round", name="uq_mask_reviews_key_round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mask_key: Mapped[str] = mapped_column(String(64), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    shot_name: Mapped[str] = mapped_column(String(255))
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"))
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class VersionReview(Base):
    """A person's decision on a delivered version; ``round`` as for ``MaskReview`` (one winner per round)."""

    __tablename__ = "version_reviews"
    __table_args__ = (UniqueConstraint("version_id", "round", name="uq_version_reviews_version_round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class Publish(Base):
    """A delivered version's record in a production tracker (``--publish``, ``voidflow publish``): the tracker's IDs
    of its shot and version, and the publish stage run that made it. One per version, tracker and site (URL and
    project), so publishing twice finds this row instead of creating a second tracker version."""

    __tablename__ = "publishes"
    __table_args__ = (UniqueConstraint("version_id", "tracker", "site", name="uq_publishes_version_tracker_site"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    tracker: Mapped[str] = mapped_column(String(16))
    site: Mapped[str] = mapped_column(Text)
    shot_code: Mapped[str] = mapped_column(String(255))
    tracker_shot_id: Mapped[str] = mapped_column(String(64))
    tracker_version_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"))
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id"))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileHash(Base):
    """Memo of content hashes by path, size and modification time, so unchanged plates are not re-read."""

    __tablename__ = "file_hashes"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


#: Full database URLs of this process (its own ``VOIDFLOW_DB_URL``), by their form without the password.
_PASSWORDS: dict[str, str] = {}


def public_url(url: str) -> str:
    """``url`` without its password: the only form a database URL travels in (Prefect parameters, Ray arguments,
    provenance). The process that connects puts the password back from its own settings (``remember_password``).

    Example: ``postgresql+psycopg://vf:s3cret@db/voidflow`` → ``postgresql+psycopg://vf@db/voidflow``.
    """
    parsed = make_url(url)
    return parsed._replace(password=None).render_as_string(hide_password=False) if parsed.password else url


def remember_password(url: str) -> None:
    """Let this process connect to ``url``'s database when it is named without its password (``public_url``):
    called once at each entry point (the command line, a batch's flow run, a shot's worker) with
    ``Settings.db_url``, so the password never leaves the environment of the process that uses it."""
    if make_url(url).password:
        _PASSWORDS[public_url(url)] = url


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
def engine_for(url: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """Return this process's engine for ``url`` (one pool per process, URL and timeout).

    SQLite files get WAL journaling, foreign keys and a busy timeout: a write waits up to ``busy_timeout_s``
    seconds for another process's lock (``Settings.db_timeout_s``); their folder is created.
    """
    url = _PASSWORDS.get(url, url)  # a URL that travelled without its password gets it back here
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = _sa_create_engine(url, connect_args={"timeout": busy_timeout_s})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return _sa_create_engine(url, pool_pre_ping=True)


def retry_conflicts(
    write: Callable[[], _T],
    *,
    conflicts: tuple[type[Exception], ...],
    failure: str,
    tries: int = CONFLICT_TRIES,
    backoff_s: float = 0.0,
) -> _T:
    """Return ``write()``, calling it again while it fails with one of ``conflicts`` (a concurrent writer won a race).

    ``write`` must be one whole unit of work, so each call starts afresh and sees the winner's row. After the n-th
    conflict it waits ``backoff_s * n`` seconds (0: retry at once).

    Example: ``retry_conflicts(add_row, conflicts=(IntegrityError,), failure="could not record the edit")``.

    Raises:
        StorageUnavailable: every one of the ``tries`` calls conflicted: "<failure> after <tries> attempts".
    """
    for attempt in range(1, tries + 1):
        try:
            return write()
        except conflicts:
            if backoff_s:
                time.sleep(backoff_s * attempt)
    raise StorageUnavailable(f"{failure} after {tries} attempts")


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every pending migration to the database at ``url`` (up to ``revision``, default the newest)."""
    config = _alembic_config(url)
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


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
