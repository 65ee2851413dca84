"""Versions: immutable ``v###`` numbers per shot name, allocated before a delivery and closed after it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from voidflow.infra.database import StageRun, Version, retry_conflicts
from voidflow.tasks.ledger._base import LedgerBase

__all__ = ["VersionLedger"]


class VersionLedger(LedgerBase):
    """The ledger's delivered versions and their lineage."""

    def allocate_version(self, batch_id: str, shot: str, runs: dict[str, int | None]) -> str:
        """Reserve the shot name's next version number (``v001`` …) for a delivery about to be written.

        Numbers are unique per shot name (a unique constraint); two batches racing for one retry until each holds
        its own. ``runs`` gives the ``mask``, ``pass1``, ``pass2`` and ``deliver`` run IDs (lineage).

        Raises:
            StorageUnavailable: other batches kept taking the number (or holding the lock).
        """

        def write() -> str:
            with self._unit() as session:
                row = self._shot(session, batch_id, shot)
                highest = session.execute(
                    select(func.max(Version.number)).where(Version.shot_name == shot)
                ).scalar_one()
                number = (highest or 0) + 1
                session.add(
                    Version(
                        shot_name=shot,
                        number=number,
                        label=f"v{number:03d}",
                        batch_id=batch_id,
                        shot_id=row.id,
                        status="delivering",
                        mask_run_id=runs.get("mask"),
                        pass1_run_id=runs.get("pass1"),
                        pass2_run_id=runs.get("pass2"),
                        deliver_run_id=runs.get("deliver"),
                    )
                )
            return f"v{number:03d}"

        return retry_conflicts(
            write,
            conflicts=(IntegrityError, OperationalError),  # a concurrent batch took the number (or held the lock)
            failure=f"shot '{shot}': could not allocate a version",
            backoff_s=0.01,
        )

    def finish_version(self, shot: str, label: str, *, status: str, deliver_run_id: int | None = None) -> None:
        """Mark a version ``delivered``, ``qc_failed`` or ``failed`` and link the deliver run that wrote it."""
        with self._unit() as session:
            version = session.execute(
                select(Version).where(Version.shot_name == shot, Version.label == label)
            ).scalar_one()
            version.status = status
            if deliver_run_id is not None:
                version.deliver_run_id = deliver_run_id

    def version_status(self, shot: str, label: str) -> str | None:
        """``delivering``, ``delivered``, ``qc_failed`` or ``failed`` for a shot's version; None when unknown."""
        with self._unit() as session:
            return session.execute(
                select(Version.status).where(Version.shot_name == shot, Version.label == label)
            ).scalar_one_or_none()

    def latest_delivered(self, shot: str) -> tuple[str, StageRun] | None:
        """The newest delivered version of a shot name and the deliver run that wrote it (with its artifacts)."""
        with self._unit() as session:
            found = session.execute(
                select(Version.label, Version.deliver_run_id)
                .where(Version.shot_name == shot, Version.status == "delivered", Version.deliver_run_id.is_not(None))
                .order_by(Version.number.desc())
                .limit(1)
            ).first()
            if found is None or found[1] is None:
                return None
            return str(found[0]), self._run_with_artifacts(session, found[1])

    def versions_of_batch(self, batch_id: str) -> list[tuple[str, str, str]]:
        """(shot name, label, status) of every version a batch allocated, in order."""
        with self._unit() as session:
            rows = session.execute(
                select(Version.shot_name, Version.label, Version.status)
                .where(Version.batch_id == batch_id)
                .order_by(Version.id)
            ).all()
            return [(str(name), str(label), str(status)) for name, label, status in rows]

    def version_of_run(self, deliver_run_id: int) -> str | None:
        """Return the label of the version a deliver run wrote, if any."""
        found = self.version_and_review_of_run(deliver_run_id)
        return None if found is None else found[0]

    def version_and_review_of_run(self, deliver_run_id: int) -> tuple[str, str | None] | None:
        """The label of the version a deliver run wrote and its newest review decision (``approved``, ``rejected``,
        or None before any), if the run wrote one."""
        with self._unit() as session:
            row = session.execute(
                select(Version.label, Version.review_state).where(Version.deliver_run_id == deliver_run_id)
            ).one_or_none()
            return None if row is None else (str(row[0]), row[1])
