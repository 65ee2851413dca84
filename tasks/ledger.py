"""Provenance reads and writes: batches, shots, stage runs and artifacts in the voidflow database.

Every write is one short unit of work. A stage run is written as ``running`` when it starts and becomes ``done``
(with its artifacts) only after the stage succeeded, or ``failed`` with the error's class and message.
"""

from __future__ import annotations

import socket
import traceback
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from infra.database import Artifact, Batch, ShotRow, StageRun, engine_for, utcnow
from void_ops.shots import Shot

__all__ = ["ArtifactInfo", "Ledger", "StageHandle"]


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """A file a stage wrote, as recorded."""

    kind: str
    path: str
    sha256: str
    bytes: int
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(slots=True)
class StageHandle:
    """What a running stage may add to its record before it finishes."""

    run_id: int
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, artifact: ArtifactInfo) -> None:
        """Record ``artifact`` with the stage run once the stage succeeds."""
        self.artifacts.append(artifact)


class Ledger:
    """The voidflow database, seen as a ledger of batches, shots and stage runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sessions = sessionmaker(engine_for(url), expire_on_commit=False)

    @contextmanager
    def _unit(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def create_batch(
        self, *, edit_path: Path, edit_sha256: str, out_dir: Path, backend: str, params: dict[str, Any]
    ) -> str:
        """Record a new running batch and return its ID (32 hex characters)."""
        batch_id = uuid.uuid4().hex
        with self._unit() as session:
            session.add(
                Batch(
                    id=batch_id,
                    state="running",
                    edit_path=str(edit_path),
                    edit_sha256=edit_sha256,
                    out_dir=str(out_dir),
                    backend=backend,
                    params=params,
                    host=socket.gethostname(),
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

    def _shot(self, session: Session, batch_id: str, name: str) -> ShotRow:
        return session.execute(select(ShotRow).where(ShotRow.batch_id == batch_id, ShotRow.name == name)).scalar_one()

    @contextmanager
    def stage(
        self, batch_id: str, shot: str, stage: str, params: dict[str, Any], attempt: int = 1
    ) -> Iterator[StageHandle]:
        """Record one stage run around the ``with`` body.

        The run is ``running`` while the body runs, ``done`` with the handle's artifacts when it returns, and
        ``failed`` with the error's class, message and traceback when it raises (the error propagates).

        Example::

            with ledger.stage(batch_id, "sh010", "mask", {"threshold": 128}) as run:
                run.add(ArtifactInfo("quadmask", path, digest, size))
        """
        with self._unit() as session:
            row = self._shot(session, batch_id, shot)
            row.state = "running"
            run = StageRun(
                shot_id=row.id, stage=stage, attempt=attempt, state="running", host=socket.gethostname(), params=params
            )
            session.add(run)
            session.flush()
            handle = StageHandle(run.id)
        try:
            yield handle
        except BaseException as error:
            with self._unit() as session:
                failed = session.get_one(StageRun, handle.run_id)
                failed.state = "failed"
                failed.finished_at = utcnow()
                failed.error_class = type(error).__name__
                failed.error_message = (str(error) or type(error).__name__)[:2000]
                failed.params = {**failed.params, **handle.params, "traceback": traceback.format_exc(limit=8)}
            raise
        with self._unit() as session:
            done = session.get_one(StageRun, handle.run_id)
            done.state = "done"
            done.finished_at = utcnow()
            done.params = {**done.params, **handle.params}
            session.add_all(Artifact(stage_run_id=done.id, **asdict(a)) for a in handle.artifacts)

    def next_version(self, shot: str) -> str:
        """Return the next free version label (``v001`` …) for the shot name, across all batches."""
        with self._unit() as session:
            used = session.execute(select(ShotRow.version).where(ShotRow.name == shot)).scalars().all()
        numbers = [int(v[1:]) for v in used if v]
        return f"v{max(numbers, default=0) + 1:03d}"

    def finish_shot(
        self, batch_id: str, shot: str, *, state: str, reason: str = "", version: str | None = None
    ) -> None:
        """Record a shot's final state (``done`` or ``failed``), the reason and its delivered version."""
        with self._unit() as session:
            row = self._shot(session, batch_id, shot)
            row.state, row.reason = state, reason
            if version is not None:
                row.version = version

    def finish_batch(self, batch_id: str) -> str:
        """Close a batch: ``done`` when no shot failed, else ``failed``; return that state."""
        with self._unit() as session:
            batch = session.get_one(Batch, batch_id)
            failed = session.execute(
                select(func.count()).where(ShotRow.batch_id == batch_id, ShotRow.state.in_(("failed", "running")))
            ).scalar_one()
            batch.state = "failed" if failed else "done"
            batch.finished_at = utcnow()
            return batch.state

    def batches(self, batch_id: str | None = None) -> list[Batch]:
        """Return batches newest first (or the one asked for) with their shots, stage runs and artifacts loaded."""
        query = (
            select(Batch)
            .options(selectinload(Batch.shots).selectinload(ShotRow.stage_runs).selectinload(StageRun.artifacts))
            .order_by(Batch.created_at.desc())
        )
        if batch_id is not None:
            query = query.where(Batch.id == batch_id)
        with self._unit() as session:
            return list(session.execute(query).scalars().all())
