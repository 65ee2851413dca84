"""Reading the ledger back: batches with everything they recorded, and a shot name's history across batches."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from voidflow.infra.database import Batch, ShotRow, StageRun, Version
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
