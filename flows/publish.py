"""Publishing a batch to the production tracker: after deliver (``voidflow run --publish``) or later on its own
(``voidflow publish --batch ID``).

Composition only: one ``publish_shot`` task per shot the batch finished with a version, run in this flow's threads
(tracker calls are I/O; the tracker's secret is read in this process, so only the machine running the flow needs
it), then gathered once. A shot whose publish fails stays ``done`` with its version: only its ``publish`` stage run
says ``failed``, and the result names it, so the command exits 1 and ``voidflow publish --batch ID`` can run the
publish stage again on its own (versions the tracker already has are found, not made twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from prefect import flow
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, field_validator

from voidflow.infra.database import public_url, remember_password
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.publish import publish_shot
from voidflow.void_ops.tracker import Tracker

__all__ = ["PUBLISH_THREADS", "PublishRequest", "PublishResult", "publish_batch"]

#: Tracker calls (uploads, mostly) one batch makes at once.
PUBLISH_THREADS = 4


class PublishRequest(BaseModel):
    """What to publish: a batch's delivered versions (all, or ``shots``) to one tracker. A Prefect parameter, so it
    holds no secret: the database URL without its password, and no tracker credentials (read from settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    db_url: str
    batch_id: str
    tracker: Tracker
    shots: tuple[str, ...] | None = None

    @field_validator("db_url")
    @classmethod
    def _no_password(cls, url: str) -> str:
        return public_url(url) if url else url


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did, shot names by outcome: ``published`` (new tracker versions), ``kept`` (already there),
    ``skipped`` (not published, e.g. QC failed: name → reason) and ``failed`` (name → the one-line reason)."""

    batch_id: str
    tracker: Tracker
    published: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@flow(
    name="voidflow-publish",
    task_runner=cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=PUBLISH_THREADS)),
    log_prints=True,
    persist_result=False,
)
def publish_batch(request: PublishRequest) -> PublishResult:
    """Publish the batch's delivered versions to the tracker, one ``publish`` stage run per shot.

    Raises:
        InvalidInput: no such batch, or ``shots`` names one it did not deliver.
    """
    settings = Settings.from_env()
    remember_password(settings.db_url)
    ledger = Ledger(request.db_url, db_timeout_s=settings.db_timeout_s)
    items = ledger.deliverables(request.batch_id, request.shots)
    batch_id = items[0].batch_id if items else request.batch_id
    futures = {
        item.shot: publish_shot.submit(
            request.db_url, batch_id, item.shot, request.tracker, db_timeout_s=settings.db_timeout_s
        )
        for item in items
    }
    wait(list(futures.values()))
    published: list[str] = []
    kept: list[str] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for shot, future in futures.items():
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException) or not future.state.is_completed():
            failed[shot] = " ".join(str(outcome or future.state.message).split()) or type(outcome).__name__
            print(f"{shot}: publish failed: {failed[shot]}")
            continue
        if outcome.state == "skipped":
            skipped[shot] = outcome.reason
        elif outcome.state == "published":
            published.append(shot)
        else:
            kept.append(shot)
        print(f"{shot}: {outcome.version} {outcome.state} {outcome.reason or outcome.tracker_version_id}")
    return PublishResult(batch_id, request.tracker, tuple(published), tuple(kept), skipped, failed)
