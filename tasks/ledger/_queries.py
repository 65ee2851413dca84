"""Reading the ledger back: batches with everything they recorded, and a shot name's history across batches."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from voidflow.infra.database import Artifact, Batch, ShotRow, StageRun, Version
from voidflow.tasks.ledger._base import LedgerBase

__all__ = ["QueryLedger"]


class QueryLedger(LedgerBase):
    """Reads over whole batches and shot names (for reports, exports and the command line)."""

    def batches(self, batch_id: str | None = None, *, limit: int | None = None) -> list[Batch]:
        """Return batches newest first (or the one asked for) with their shots, stage runs and artifacts loaded."""
        query = (
            select(Batch)
            .options(selectinload(Batch.shots).selectinload(ShotRow.stage_runs).selectinload(StageRun.artifacts))
            .order_by(Batch.created_at.desc())
        )
        if batch_id is not None:
            query = query.where(Batch.id.startswith(batch_id))
        if limit is not None:
            query = query.limit(limit)
        with self._unit() as session:
            return list(session.execute(query).scalars().all())

    def chain(self, batch_id: str) -> list[Batch]:
        """The rerun chain holding a batch (its first batch and every rerun below it), oldest first, loaded as by
        ``batches``; [] when no batch has that ID (or the prefix is ambiguous)."""
        with self._unit() as session:
            found = session.execute(select(Batch.id, Batch.parent_id).where(Batch.id.startswith(batch_id))).all()
            if len(found) != 1:
                return []
            root, parent = found[0]
            while parent is not None:
                root, parent = session.execute(select(Batch.id, Batch.parent_id).where(Batch.id == parent)).one()
            members, frontier = [root], [root]
            while frontier:
                frontier = list(session.execute(select(Batch.id).where(Batch.parent_id.in_(frontier))).scalars())
                members += frontier
            query = (
                select(Batch)
                .options(selectinload(Batch.shots).selectinload(ShotRow.stage_runs).selectinload(StageRun.artifacts))
                .where(Batch.id.in_(members))
                .order_by(Batch.created_at, Batch.id)
            )
            return list(session.execute(query).scalars().all())

    def versions_of(self, shots: list[str]) -> list[Version]:
        """Every version of these shot names, oldest first."""
        with self._unit() as session:
            query = select(Version).where(Version.shot_name.in_(shots)).order_by(Version.shot_name, Version.number)
            return list(session.execute(query).scalars())

    def runs(self, run_ids: list[int]) -> dict[int, StageRun]:
        """Stage runs by ID with their artifacts, each followed to the run that made its files (cache hits)."""
        found: dict[int, StageRun] = {}
        with self._unit() as session:
            wanted = set(run_ids)
            while wanted:
                rows = session.execute(
                    select(StageRun).options(selectinload(StageRun.artifacts)).where(StageRun.id.in_(wanted))
                ).scalars()
                loaded = {row.id: row for row in rows}
                found.update(loaded)
                wanted = {r.cached_from_id for r in loaded.values() if r.cached_from_id is not None} - set(found)
        origins: dict[int, StageRun] = {}
        for run_id in run_ids:
            run = found.get(run_id)
            while run is not None and run.cached_from_id is not None:
                run = found.get(run.cached_from_id)
            if run is not None:
                origins[run_id] = run
        return origins

    def artifact(self, artifact_id: int) -> tuple[Artifact, str] | None:
        """An artifact and the output folder of the batch whose run wrote it, or None when there is no such ID."""
        with self._unit() as session:
            found = session.execute(
                select(Artifact, Batch.out_dir)
                .join(StageRun, Artifact.stage_run_id == StageRun.id)
                .join(ShotRow, StageRun.shot_id == ShotRow.id)
                .join(Batch, ShotRow.batch_id == Batch.id)
                .where(Artifact.id == artifact_id)
            ).first()
            return None if found is None else (found[0], str(found[1]))

    def history(self, shot: str) -> tuple[list[ShotRow], list[Version]]:
        """Every batch's row for a shot name (oldest first, with stage runs) and every version of it."""
        with self._unit() as session:
            rows = list(
                session.execute(
                    select(ShotRow)
                    .options(selectinload(ShotRow.stage_runs), selectinload(ShotRow.batch))
                    .where(ShotRow.name == shot)
                    .order_by(ShotRow.id)
                ).scalars()
            )
            versions = list(
                session.execute(select(Version).where(Version.shot_name == shot).order_by(Version.number)).scalars()
            )
            return rows, versions
