"""Stage runs and the cache: a run recorded around its work, finished only by the attempt that owns it, and reused."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from voidflow.infra.database import Artifact, StageRun, utcnow
from voidflow.tasks.ledger._base import LedgerBase, failure
from voidflow.void_ops.pipeline import StageFile
from voidflow.void_ops.stages import StageState

__all__ = ["StageHandle", "StageLedger"]


@dataclass(slots=True)
class StageHandle:
    """What a running stage may add to its record before it finishes."""

    run_id: int
    token: str
    artifacts: list[StageFile] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, artifact: StageFile) -> None:
        """Record ``artifact`` with the stage run once the stage succeeds."""
        self.artifacts.append(artifact)


class StageLedger(LedgerBase):
    """The ledger's stage runs: recording one around its work, finding a reusable one, recording a cache hit."""

    @contextmanager
    def stage(
        self,
        batch_id: str,
        shot: str,
        stage: str,
        params: dict[str, Any],
        *,
        key: str,
        attempt: int = 1,
        seed: int | None = None,
        gpu: str | None = None,
    ) -> Iterator[StageHandle]:
        """Record one stage run around the ``with`` body.

        The run is ``running`` while the body runs, ``done`` with the handle's artifacts when it returns, and
        ``failed`` with the error's class, message and traceback when it raises (the error propagates). Only the
        attempt holding the run's token can finish it.

        Example::

            with ledger.stage(batch_id, "sh010", "mask", {"threshold": 128}, key=key) as run:
                run.add(StageFile("quadmask", path, digest, size))
        """
        token = uuid.uuid4().hex
        with self._unit() as session:
            row = self._shot(session, batch_id, shot)
            row.state = "running"
            run = StageRun(
                shot_id=row.id,
                stage=stage,
                attempt=attempt,
                state="running",
                key=key,
                token=token,
                host=f"{socket.gethostname()}:{os.getpid()}",
                gpu=gpu,
                seed=seed,
                code_version=self._code,
                params=params,
            )
            session.add(run)
            session.flush()
            handle = StageHandle(run.id, token)
        try:
            yield handle
        except BaseException as error:
            self._finish(handle, state="failed", **failure(error))
            raise
        self._finish(handle, state="done")

    def _finish(self, handle: StageHandle, *, state: StageState, **errors: str) -> None:
        with self._unit() as session:
            result: Any = session.execute(
                update(StageRun)
                .where(StageRun.id == handle.run_id, StageRun.token == handle.token, StageRun.state == "running")
                .values(state=state, finished_at=utcnow(), **errors)
            )
            if not result.rowcount:
                return  # the run was taken over (e.g. marked lost); a late report changes nothing
            if handle.params:
                row = session.get_one(StageRun, handle.run_id)
                row.params = {**row.params, **handle.params}
            if state == "done":
                session.add_all(
                    Artifact(stage_run_id=handle.run_id, **{**asdict(a), "path": str(a.path)}) for a in handle.artifacts
                )

    def run(self, run_id: int) -> StageRun:
        """A stage run with its artifacts."""
        with self._unit() as session:
            return self._run_with_artifacts(session, run_id)

    def origin(self, run: StageRun) -> StageRun:
        """Follow a cached run to the run that produced its outputs (with artifacts loaded)."""
        with self._unit() as session:
            current = self._run_with_artifacts(session, run.id)
            while current.cached_from_id is not None:
                current = self._run_with_artifacts(session, current.cached_from_id)
            return current

    def cached(self, stage: str, key: str) -> StageRun | None:
        """Return the newest completed run of ``stage`` with ``key`` whose files all still exist, or None."""
        with self._unit() as session:
            runs = session.execute(
                select(StageRun)
                .options(selectinload(StageRun.artifacts))
                .where(StageRun.stage == stage, StageRun.key == key, StageRun.state == "done")
                .order_by(StageRun.id.desc())
                .limit(5)
            ).scalars()
            for run in runs:
                if all(_exists(artifact.path) for artifact in run.artifacts):
                    return run
        return None

    def record_cache_hit(self, batch_id: str, shot: str, stage: str, origin: StageRun, *, attempt: int = 1) -> int:
        """Record that ``stage`` of ``shot`` reused ``origin``'s outputs; return the new run's ID."""
        with self._unit() as session:
            row = self._shot(session, batch_id, shot)
            row.state = "running"
            now = utcnow()
            run = StageRun(
                shot_id=row.id,
                stage=stage,
                attempt=attempt,
                state="cached",
                key=origin.key,
                cached_from_id=origin.id,
                token=uuid.uuid4().hex,
                started_at=now,
                finished_at=now,
                host=socket.gethostname(),
                seed=origin.seed,
                code_version=self._code,
                params=origin.params,
            )
            session.add(run)
            session.flush()
            return run.id


def _exists(path: str) -> bool:
    """Whether an artifact is still on disk (a sequence pattern: its folder holds files)."""
    if "%" not in Path(path).name:
        return os.path.exists(path)
    folder = Path(path).parent
    return folder.is_dir() and any(folder.iterdir())
