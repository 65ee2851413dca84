"""What every part of the ledger shares: its sessions (one unit of work per write), the shot guard, the code version."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import false, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from voidflow.infra.database import BUSY_TIMEOUT_S, Batch, ShotRow, StageRun, engine_for, redact_url
from voidflow.void_ops.exceptions import StaleAttempt, StorageUnavailable

__all__ = ["LedgerBase", "code_version", "failure"]


def failure(error: BaseException) -> dict[str, str]:
    """What a failed run records about its error: the class, the message (at most 2,000 characters; the class name
    when it has none) and the traceback (12 frames). Call it inside the ``except`` block."""
    return {
        "error_class": type(error).__name__,
        "error_message": (str(error) or type(error).__name__)[:2000],
        "traceback": traceback.format_exc(limit=12),
    }


def code_version() -> str:
    """voidflow's version, plus the git commit when running from a checkout (recorded with every stage run)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("voidflow")
    except PackageNotFoundError:
        release = "0+unknown"
    head = Path(__file__).resolve().parents[2] / ".git" / "HEAD"  # tasks/ledger/_base.py -> the checkout
    try:
        ref = head.read_text().strip()
        commit = (head.parent / ref[5:]).read_text().strip() if ref.startswith("ref: ") else ref
        return f"{release}+g{commit[:12]}"
    except OSError:
        return release


class LedgerBase:
    """The database behind the ledger: its URL, its sessions and the code version every record carries.

    Args:
        url: SQLAlchemy URL of the database (``sqlite:///…`` or ``postgresql+psycopg://…``).
        db_timeout_s: seconds a write waits for another process's lock on a SQLite ledger
            (``Settings.db_timeout_s``).
    """

    def __init__(self, url: str, *, db_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.db_timeout_s = db_timeout_s
        self._sessions = sessionmaker(engine_for(url, db_timeout_s), expire_on_commit=False)
        self._code = code_version()

    @contextmanager
    def _unit(self) -> Iterator[Session]:
        """One transaction. A SQLite ledger locked by another process past the busy timeout is reported as such.

        Raises:
            StorageUnavailable: the database stayed locked (retryable).
        """
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as error:
            if "database is locked" not in str(error.orig):
                raise
            raise StorageUnavailable(
                f"the ledger {redact_url(self.url)} is locked by another process "
                f"(waited {self.db_timeout_s:g} s; VOIDFLOW_DB_TIMEOUT sets the wait)"
            ) from None

    def check_writable(self) -> None:
        """Take the write lock once and let it go, so a ledger another process holds fails before any work starts.

        Raises:
            StorageUnavailable: the ledger stayed locked past the busy timeout.
        """
        with self._unit() as session:
            session.execute(update(Batch).where(false()).values(state=Batch.state))

    @staticmethod
    def _shot(session: Session, batch_id: str, name: str) -> ShotRow:
        """The shot's row, for a write by an attempt: refused once the batch is no longer running (an attempt
        orphaned by a killed flow must not move a shot that ``resume`` has already closed).

        Raises:
            StaleAttempt: the batch is no longer running.
        """
        row = session.execute(
            select(ShotRow)
            .options(selectinload(ShotRow.batch))
            .where(ShotRow.batch_id == batch_id, ShotRow.name == name)
        ).scalar_one()
        if row.batch.state != "running":
            raise StaleAttempt(
                f"shot '{name}': batch {batch_id[:8]} is {row.batch.state}; this attempt no longer owns it"
            )
        return row

    @staticmethod
    def _run_with_artifacts(session: Session, run_id: int) -> StageRun:
        """A stage run with its artifacts loaded, so it can be read after the session closes."""
        return session.get_one(StageRun, run_id, options=[selectinload(StageRun.artifacts)])
