"""Edits, batches and shots: recording a batch's plan, each shot's end, and closing the batch."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from voidflow.infra.database import Batch, EditRow, ShotRow, StageRun, retry_conflicts, utcnow
from voidflow.tasks.ledger._base import LedgerBase
from voidflow.void_ops.shots import Shot
from voidflow.void_ops.stages import ShotState

__all__ = ["UNFINISHED", "BatchLedger"]

#: Shot states a batch did not finish (``resume`` and ``rerun --failed`` take these).
UNFINISHED: tuple[ShotState, ...] = ("failed", "running", "planned", "awaiting_review")


class BatchLedger(LedgerBase):
    """The ledger's edits, batches and shots."""

    def record_edit(self, path: Path, sha256: str, rate: float, warnings: Sequence[str]) -> int:
        """Record an edit intake (one row per path and content) and return its ID.

        Raises:
            StorageUnavailable: other batches kept recording the same edit at the same moment.
        """

        def write() -> int:
            with self._unit() as session:
                found = session.execute(
                    select(EditRow.id).where(EditRow.path == str(path), EditRow.sha256 == sha256)
                ).scalar_one_or_none()
                if found is not None:
                    return found
                row = EditRow(path=str(path), sha256=sha256, rate=rate, warnings={"warnings": list(warnings)})
                session.add(row)
                session.flush()
                return row.id

        # another batch recording the same edit at the same moment wins; the next attempt finds its row
        return retry_conflicts(write, conflicts=(IntegrityError,), failure=f"could not record the edit {path}")

    def create_batch(
        self,
        *,
        edit_id: int,
        edit_path: Path,
        edit_sha256: str,
        out_dir: Path,
        backend: str,
        params: dict[str, Any],
        kind: str = "run",
        parent_id: str | None = None,
    ) -> str:
        """Record a new running batch and return its ID (32 hex characters)."""
        batch_id = uuid.uuid4().hex
        with self._unit() as session:
            session.add(
                Batch(
                    id=batch_id,
                    state="running",
                    kind=kind,
                    parent_id=parent_id,
                    edit_id=edit_id,
                    edit_path=str(edit_path),
                    edit_sha256=edit_sha256,
                    out_dir=str(out_dir),
                    backend=backend,
                    params=params,
                    host=socket.gethostname(),
                    code_version=self._code,
                )
            )
        return batch_id

    def set_flow_run(self, batch_id: str, flow_run_id: str | None) -> None:
        """Record the Prefect flow run that drives the batch."""
        with self._unit() as session:
            session.get_one(Batch, batch_id).prefect_flow_run_id = flow_run_id

    def add_shots(self, batch_id: str, shots: Sequence[Shot]) -> None:
        """Record the planned shots of a batch: ``planned`` when ready, else ``skipped`` with the reason."""
        with self._unit() as session:
            session.add_all(
                ShotRow(
                    batch_id=batch_id,
                    name=shot.name,
                    track=shot.track,
                    clip_index=shot.index,
                    clip_name=shot.clip_name,
                    media=shot.media.path if shot.media else None,
                    rate=shot.rate,
                    source_start=shot.source_start,
                    duration=shot.duration,
                    head=shot.handles[0],
                    tail=shot.handles[1],
                    record_start=shot.record_start,
                    state="planned" if shot.status == "ready" else "skipped",
                    reason=shot.reason,
                )
                for shot in shots
            )

    def set_plate_hash(self, batch_id: str, shot: str, sha256: str) -> None:
        """Record the content hash of the plate range a shot read."""
        with self._unit() as session:
            self._shot(session, batch_id, shot).plate_sha256 = sha256

    def finish_shot(
        self, batch_id: str, shot: str, *, state: ShotState, reason: str = "", version: str | None = None
    ) -> None:
        """Record a shot's final state (``done``, ``failed``, ``awaiting_review`` or ``rejected``), the reason and
        its delivered version."""
        with self._unit() as session:
            row = self._shot(session, batch_id, shot)
            row.state, row.reason = state, reason
            if version is not None:
                row.version = version

    def mark_lost(self, batch_id: str, shot: str, message: str, *, cause: str = "WorkerLost") -> int:
        """Mark the shot's running stage runs ``lost`` and the shot failed; return how many runs.

        ``cause`` is the error class recorded: ``WorkerLost`` (the worker died; the reason reads "worker lost: …")
        or ``ShotTimedOut`` (the shot ran past its time limit; the reason is ``message``). A lost run's token no
        longer finishes it: a late report from the abandoned attempt changes nothing.
        """
        reason = f"worker lost: {message}" if cause == "WorkerLost" else message
        with self._unit() as session:
            row = self._shot(session, batch_id, shot)
            result: Any = session.execute(
                update(StageRun)
                .where(StageRun.shot_id == row.id, StageRun.state == "running")
                .values(state="lost", finished_at=utcnow(), error_class=cause, error_message=message[:2000])
            )
            row.state, row.reason = "failed", reason[:2000]
            return int(result.rowcount)

    def interrupt(self, batch_id: str) -> None:
        """Close a batch whose flow stopped (e.g. the process was killed): running stages become ``lost``, running
        and planned shots ``failed``, the batch ``interrupted``. ``resume`` then finishes them as a new batch."""
        with self._unit() as session:
            batch = session.get_one(Batch, batch_id)
            if batch.state != "running":
                return
            shot_ids = select(ShotRow.id).where(ShotRow.batch_id == batch_id)
            session.execute(
                update(StageRun)
                .where(StageRun.shot_id.in_(shot_ids), StageRun.state == "running")
                .values(state="lost", finished_at=utcnow(), error_class="WorkerLost", error_message="flow stopped")
            )
            session.execute(
                update(ShotRow)
                .where(ShotRow.batch_id == batch_id, ShotRow.state.in_(("running", "planned")))
                .values(state="failed", reason="the batch's flow stopped before this shot finished")
            )
            batch.state, batch.finished_at = "interrupted", utcnow()

    def finish_batch(self, batch_id: str) -> str:
        """Close a batch: ``done`` when every shot finished (done, skipped or rejected), ``awaiting_review`` when
        the only unfinished shots wait for a mask review, else ``failed``; return the state."""
        with self._unit() as session:
            batch = session.get_one(Batch, batch_id)
            states = set(session.execute(select(ShotRow.state).where(ShotRow.batch_id == batch_id)).scalars()) & set(
                UNFINISHED
            )
            batch.state = "done" if not states else "awaiting_review" if states == {"awaiting_review"} else "failed"
            batch.finished_at = utcnow()
            return batch.state
