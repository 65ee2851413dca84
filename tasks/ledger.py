"""Provenance reads and writes: edits, batches, shots, stage runs, artifacts, versions, VLM exchanges.

Every write is one short unit of work. A stage run is written as ``running`` when it starts and becomes ``done``
(with its artifacts) only after the stage succeeded, or ``failed`` with the error's class, message and traceback.
Finishing a run checks its ownership token, so a late report from an attempt that lost the run can never overwrite
the attempt that owns it. A completed stage with the same key is not run again: the new run is recorded as
``cached`` and points at the run that made the outputs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import false, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from voidflow.infra.database import (
    Artifact,
    Batch,
    EditRow,
    FileHash,
    MaskReview,
    ShotRow,
    StageRun,
    Version,
    VlmExchangeRow,
    engine_for,
    redact_url,
    sqlite_busy_timeout,
    utcnow,
)
from voidflow.void_ops.exceptions import InvalidInput, MediaInvalid, StaleAttempt, StorageUnavailable
from voidflow.void_ops.pipeline import StageFile
from voidflow.void_ops.shots import Shot

__all__ = ["UNFINISHED", "Ledger", "StageHandle", "code_version", "content_hash"]

_RETRIES = 8
#: Shot states a batch did not finish (``resume`` and ``rerun --failed`` take these).
UNFINISHED = ("failed", "running", "planned", "awaiting_review")


def code_version() -> str:
    """voidflow's version, plus the git commit when running from a checkout (recorded with every stage run)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("voidflow")
    except PackageNotFoundError:
        release = "0+unknown"
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        commit = (head.parent / ref[5:]).read_text().strip() if ref.startswith("ref: ") else ref
        return f"{release}+g{commit[:12]}"
    except OSError:
        return release


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


class Ledger:
    """The voidflow database, seen as a ledger of batches, shots, stage runs and versions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sessions = sessionmaker(engine_for(url), expire_on_commit=False)
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
                f"(waited {sqlite_busy_timeout():g} s; VOIDFLOW_DB_TIMEOUT sets the wait)"
            ) from None

    def check_writable(self) -> None:
        """Take the write lock once and let it go, so a ledger another process holds fails before any work starts.

        Raises:
            StorageUnavailable: the ledger stayed locked past the busy timeout.
        """
        with self._unit() as session:
            session.execute(update(Batch).where(false()).values(state=Batch.state))

    # -- batches and shots ------------------------------------------------------------------------------------

    def record_edit(self, path: Path, sha256: str, rate: float, warnings: Sequence[str]) -> int:
        """Record an edit intake (one row per path and content) and return its ID."""
        for _ in range(_RETRIES):
            try:
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
            except IntegrityError:  # another batch recorded the same edit at the same moment
                continue
        raise StorageUnavailable(f"could not record the edit {path} after {_RETRIES} attempts")

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

    def _shot(self, session: Session, batch_id: str, name: str) -> ShotRow:
        """The shot's row, for a write by an attempt: refused once the batch is no longer running (an attempt
        orphaned by a killed flow must not move a shot that ``resume`` has already closed)."""
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

    def set_plate_hash(self, batch_id: str, shot: str, sha256: str) -> None:
        """Record the content hash of the plate range a shot read."""
        with self._unit() as session:
            self._shot(session, batch_id, shot).plate_sha256 = sha256

    def finish_shot(
        self, batch_id: str, shot: str, *, state: str, reason: str = "", version: str | None = None
    ) -> None:
        """Record a shot's final state (``done`` or ``failed``), the reason and its delivered version."""
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

    # -- stage runs and the cache -----------------------------------------------------------------------------

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
            self._finish(
                handle,
                state="failed",
                error_class=type(error).__name__,
                error_message=(str(error) or type(error).__name__)[:2000],
                traceback=traceback.format_exc(limit=12),
            )
            raise
        self._finish(handle, state="done")

    def _finish(self, handle: StageHandle, *, state: str, **errors: str) -> None:
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
            return session.get_one(StageRun, run_id, options=[selectinload(StageRun.artifacts)])

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

    # -- versions ---------------------------------------------------------------------------------------------

    def allocate_version(self, batch_id: str, shot: str, runs: dict[str, int | None]) -> str:
        """Reserve the shot name's next version number (``v001`` …) for a delivery about to be written.

        Numbers are unique per shot name (a unique constraint); two batches racing for one retry until each holds
        its own. ``runs`` gives the ``mask``, ``pass1``, ``pass2`` and ``deliver`` run IDs (lineage).
        """
        for attempt in range(_RETRIES):
            try:
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
            except (IntegrityError, OperationalError):  # a concurrent batch took the number (or held the lock)
                time.sleep(0.01 * (attempt + 1))
        raise StorageUnavailable(f"shot '{shot}': could not allocate a version after {_RETRIES} attempts")

    def finish_version(self, shot: str, label: str, *, status: str, deliver_run_id: int | None = None) -> None:
        """Mark a version ``delivered`` or ``failed`` and link the deliver run that wrote it."""
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
        return str(found[0]), self.run(found[1])

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
        with self._unit() as session:
            return session.execute(
                select(Version.label).where(Version.deliver_run_id == deliver_run_id)
            ).scalar_one_or_none()

    # -- hashes and VLM exchanges -----------------------------------------------------------------------------

    def file_hash(self, path: Path) -> str:
        """Return the file's sha256, reusing the memo while its size and modification time are unchanged."""
        from voidflow.void_ops.hashing import sha256_file

        status = path.stat()
        key = str(path.resolve())
        with self._unit() as session:
            memo = session.get(FileHash, key)
            if memo is not None and (memo.size, memo.mtime_ns) == (status.st_size, status.st_mtime_ns):
                return memo.sha256
        digest = sha256_file(path)
        memo = FileHash(path=key, size=status.st_size, mtime_ns=status.st_mtime_ns, sha256=digest)
        for _ in range(_RETRIES):
            try:
                with self._unit() as session:
                    session.merge(memo)
                break
            except IntegrityError:  # another shot hashed the same file at the same moment; merge again as an update
                continue
        return digest

    def range_hash(self, source: Any, first: int, count: int) -> str:
        """Content hash of frames [first, first + count) of a ``MediaSource`` (file hashes memoised).

        Raises:
            MediaInvalid: a frame of a sequence is missing (named).
        """
        if source.kind == "movie":
            return content_hash([self.file_hash(Path(source.path)), f"{first}+{count}"])
        files = [source.file_for_index(index) for index in range(first, first + count)]
        missing = next((file for file in files if not file.is_file()), None)
        if missing is not None:
            raise MediaInvalid(f"{source.path}: frame {missing.name} missing ({missing})")
        return content_hash([self.file_hash(file) for file in files])

    def store_exchange(
        self,
        *,
        request_sha256: str,
        kind: str,
        model: str,
        summary: str,
        response: str,
        stage_run_id: int | None = None,
    ) -> None:
        """Store a VLM exchange once per request hash (the same request later is answered from here)."""
        try:
            with self._unit() as session:
                if (
                    session.execute(
                        select(VlmExchangeRow.id).where(VlmExchangeRow.request_sha256 == request_sha256)
                    ).scalar_one_or_none()
                    is None
                ):
                    session.add(
                        VlmExchangeRow(
                            request_sha256=request_sha256,
                            kind=kind,
                            model=model,
                            request_summary=summary,
                            response_text=response,
                            stage_run_id=stage_run_id,
                        )
                    )
        except IntegrityError:  # stored concurrently by another shot: same request, same answer
            return

    def exchanges(self) -> list[VlmExchangeRow]:
        """Every stored VLM exchange."""
        with self._unit() as session:
            return list(session.execute(select(VlmExchangeRow)).scalars())

    # -- mask reviews -----------------------------------------------------------------------------------------

    def review(self, mask_key: str) -> MaskReview | None:
        """The newest decision on a mask with this key, or None when nobody has reviewed it."""
        with self._unit() as session:
            return session.execute(
                select(MaskReview).where(MaskReview.mask_key == mask_key).order_by(MaskReview.id.desc()).limit(1)
            ).scalar_one_or_none()

    def decide(self, batch_id: str, shot: str, *, decision: str, reviewer: str, note: str = "") -> str:
        """Record ``approved`` or ``rejected`` for the mask the shot's newest mask run in the batch made.

        Returns the mask's key. Raises InvalidInput when the shot has no finished mask in that batch.
        """
        with self._unit() as session:
            row = session.execute(
                select(ShotRow).where(ShotRow.batch_id.startswith(batch_id), ShotRow.name == shot)
            ).scalar_one_or_none()
            runs = (
                []
                if row is None
                else [run for run in row.stage_runs if run.stage == "mask" and run.state in ("done", "cached")]
            )
            if row is None or not runs:
                raise InvalidInput(f"shot '{shot}' has no finished mask in batch {batch_id[:8]} to review")
            key = runs[-1].key
            session.add(
                MaskReview(
                    mask_key=key, shot_name=shot, batch_id=row.batch_id, decision=decision, reviewer=reviewer, note=note
                )
            )
            return key

    # -- reading ----------------------------------------------------------------------------------------------

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

    def origin(self, run: StageRun) -> StageRun:
        """Follow a cached run to the run that produced its outputs (with artifacts loaded)."""
        with self._unit() as session:
            current = session.get_one(StageRun, run.id, options=[selectinload(StageRun.artifacts)])
            while current.cached_from_id is not None:
                current = session.get_one(StageRun, current.cached_from_id, options=[selectinload(StageRun.artifacts)])
            return current


def _exists(path: str) -> bool:
    if "%" not in Path(path).name:
        return os.path.exists(path)
    folder = Path(path).parent
    return folder.is_dir() and any(folder.iterdir())


def content_hash(parts: Sequence[str]) -> str:
    """Combine ordered content hashes into one."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
