"""Publishes: what a batch delivered that a tracker can be told about, the publish stage run, and the tracker's IDs.

The publish stage runs after deliver, and also later on its own (``voidflow publish --batch``) when the batch is
long finished; so unlike the pixel stages its run is recorded without the running-batch guard, and it never moves
the shot's state: a shot whose publish failed stays ``done`` with its version, and its publish run says why.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from voidflow.infra.database import Publish, ShotRow, StageRun, Version, retry_conflicts, utcnow
from voidflow.tasks.ledger._base import LedgerBase, failure
from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.pipeline import FIRST_FRAME_NUMBER

__all__ = ["Deliverable", "PublishHandle", "PublishLedger"]


@dataclass(frozen=True, slots=True)
class Deliverable:
    """A shot a batch finished with a version, as the ledger holds it (the input of a publish).

    Attributes:
        shot: the shot's name.
        version: its version label (``v001``); ``version_id`` the version's row.
        status: the version's status (``delivered``; ``qc_failed`` versions are not published).
        batch_id: the batch whose shot row finished with it (where its publish runs are recorded: a batch that kept
            an earlier version names itself here).
        delivered_in: the batch that delivered the version (the tracker's link back to the ledger).
        first_frame, frames: the delivery's first frame number and length, handles included.
        head, tail: the shot's handles in frames.
        rate: frames per second of the delivery.
        delivery: the delivered media (movie path or sequence pattern).
        review: the review movie (the deliver run's ``review`` artifact), or None for a delivery made before
            review movies were.
    """

    shot: str
    version: str
    version_id: int
    status: str
    batch_id: str
    delivered_in: str
    first_frame: int
    frames: int
    head: int
    tail: int
    rate: float
    delivery: str
    review: str | None


@dataclass(slots=True)
class PublishHandle:
    """A running publish stage run; ``params`` are added to the run's params when it ends."""

    run_id: int
    token: str
    params: dict[str, Any]


class PublishLedger(LedgerBase):
    """The ledger's publish stage runs and tracker IDs."""

    def deliverables(self, batch_id: str, shots: tuple[str, ...] | None = None) -> list[Deliverable]:
        """The batch's shots that finished ``done`` with a version (only ``shots`` when given), in edit order.

        Raises:
            InvalidInput: no batch has that ID, or ``shots`` names a shot the batch did not finish with a version.
        """
        with self._unit() as session:
            rows = list(
                session.execute(
                    select(ShotRow)
                    .options(selectinload(ShotRow.stage_runs).selectinload(StageRun.artifacts))
                    .where(ShotRow.batch_id.startswith(batch_id))
                    .order_by(ShotRow.id)
                ).scalars()
            )
            if not rows or len({row.batch_id for row in rows}) > 1:
                raise InvalidInput(f"no batch with ID '{batch_id}' in the ledger (or the prefix is ambiguous)")
            done = {row.name: row for row in rows if row.state == "done" and row.version is not None}
            missing = sorted(set(shots or ()) - set(done))
            if missing:
                raise InvalidInput(f"batch {batch_id[:8]} has no delivered version of {', '.join(missing)}")
            return [self._deliverable(session, row) for name, row in done.items() if shots is None or name in shots]

    @staticmethod
    def _deliverable(session: Session, row: ShotRow) -> Deliverable:
        version = session.execute(
            select(Version).where(Version.shot_name == row.name, Version.label == row.version)
        ).scalar_one()
        run = session.get_one(StageRun, version.deliver_run_id) if version.deliver_run_id else None
        while run is not None and run.cached_from_id is not None:
            run = session.get_one(StageRun, run.cached_from_id)
        files = {artifact.kind: artifact for artifact in run.artifacts} if run is not None else {}
        media = files.get("delivery")
        return Deliverable(
            shot=row.name,
            version=version.label,
            version_id=version.id,
            status=version.status,
            batch_id=row.batch_id,
            delivered_in=version.batch_id,
            first_frame=int(run.params.get("first_frame_number") or FIRST_FRAME_NUMBER) if run else FIRST_FRAME_NUMBER,
            frames=int(media.frames or 0) if media else 0,
            head=row.head,
            tail=row.tail,
            rate=float(media.fps or row.rate) if media else row.rate,
            delivery=media.path if media else "",
            review=files["review"].path if "review" in files else None,
        )

    def published(self, version_id: int, tracker: str, site: str) -> Publish | None:
        """The tracker's record of a version on ``site``, or None when it was never published there."""
        with self._unit() as session:
            return session.execute(
                select(Publish).where(
                    Publish.version_id == version_id, Publish.tracker == tracker, Publish.site == site
                )
            ).scalar_one_or_none()

    def publishes(self, shot: str) -> list[tuple[str, Publish]]:
        """Every tracker record of a shot name's versions, as (version label, record), oldest first."""
        with self._unit() as session:
            rows = session.execute(
                select(Version.label, Publish)
                .join(Publish, Publish.version_id == Version.id)
                .where(Version.shot_name == shot)
                .order_by(Publish.id)
            ).all()
            return [(str(label), record) for label, record in rows]

    def published_versions(self, shot: str, tracker: str, site: str) -> list[tuple[str, str, str]]:
        """A shot name's versions on one tracker site: (version label, the batch that delivered it, the tracker's
        version ID), oldest first."""
        with self._unit() as session:
            rows = session.execute(
                select(Version.label, Version.batch_id, Publish.tracker_version_id)
                .join(Publish, Publish.version_id == Version.id)
                .where(Version.shot_name == shot, Publish.tracker == tracker, Publish.site == site)
                .order_by(Version.number)
            ).all()
            return [(str(label), str(batch), str(found)) for label, batch, found in rows]

    @contextmanager
    def publish_stage(self, batch_id: str, shot: str, params: dict[str, Any]) -> Iterator[PublishHandle]:
        """Record a ``publish`` stage run of ``shot`` in ``batch_id`` around the ``with`` body.

        The run is ``running`` while the body runs, ``done`` when it returns (with the handle's params), and
        ``failed`` with the error's class and one-line message when it raises (the error propagates). The shot's
        state is left as it is, and a finished batch takes the run too (``voidflow publish`` on last night's
        batch).
        """
        token = uuid.uuid4().hex
        with self._unit() as session:
            row = session.execute(
                select(ShotRow).where(ShotRow.batch_id == batch_id, ShotRow.name == shot)
            ).scalar_one()
            run = StageRun(
                shot_id=row.id,
                stage="publish",
                state="running",
                key="",
                token=token,
                host=f"{socket.gethostname()}:{os.getpid()}",
                code_version=self._code,
                params=params,
            )
            session.add(run)
            session.flush()
            handle = PublishHandle(run.id, token, {})
        try:
            yield handle
        except BaseException as error:
            self._end_publish(handle, state="failed", **failure(error))
            raise
        self._end_publish(handle, state="done")

    def _end_publish(self, handle: PublishHandle, *, state: str, **errors: str) -> None:
        with self._unit() as session:
            session.execute(
                update(StageRun)
                .where(StageRun.id == handle.run_id, StageRun.token == handle.token, StageRun.state == "running")
                .values(state=state, finished_at=utcnow(), **errors)
            )
            if handle.params:
                row = session.get_one(StageRun, handle.run_id)
                row.params = {**row.params, **handle.params}

    def record_publish(
        self,
        *,
        version_id: int,
        tracker: str,
        site: str,
        shot_code: str,
        tracker_shot_id: str,
        tracker_version_id: str,
        batch_id: str,
        stage_run_id: int | None,
    ) -> None:
        """Record the tracker's IDs for a version on ``site``; a record already there (a concurrent publish of the
        same version) is kept.

        Raises:
            StorageUnavailable: the ledger stayed locked.
        """

        def write() -> None:
            with self._unit() as session:
                found = session.execute(
                    select(Publish.id).where(
                        Publish.version_id == version_id, Publish.tracker == tracker, Publish.site == site
                    )
                ).scalar_one_or_none()
                if found is None:
                    session.add(
                        Publish(
                            version_id=version_id,
                            tracker=tracker,
                            site=site,
                            shot_code=shot_code,
                            tracker_shot_id=tracker_shot_id,
                            tracker_version_id=tracker_version_id,
                            batch_id=batch_id,
                            stage_run_id=stage_run_id,
                        )
                    )

        retry_conflicts(write, conflicts=(IntegrityError,), failure=f"could not record the publish of {shot_code}")
