"""The publish stage as a Prefect task: one shot's delivered version to the tracker, retried while the tracker is
down, recorded in the ledger either way."""

from __future__ import annotations

from prefect import task

from voidflow.infra.database import remember_password
from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.publish._base import PublishOutcome, make_publisher, publish_version, shot_codes
from voidflow.tasks.shots import retry_transient
from voidflow.void_ops.tracker import Tracker

__all__ = ["publish_shot"]


@task(
    name="publish",
    task_run_name="publish-{shot}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    persist_result=False,
)
def publish_shot(
    db_url: str, batch_id: str, shot: str, tracker: Tracker, *, db_timeout_s: float = 30.0
) -> PublishOutcome:
    """Publish the version ``shot`` finished with in ``batch_id`` to ``tracker`` (``publish_version``).

    The tracker's secret comes from this process's own settings, read here: it is never a task parameter. Prefect
    retries a tracker that did not answer (``TrackerUnavailable``); each attempt is a ``publish`` stage run.

    Raises:
        TrackerUnavailable: the tracker stayed down through the retries.
        TrackerRejected: the tracker refused (unknown shot code, permission, credentials).
        ConfigurationError: the tracker's settings are incomplete.
    """
    settings = Settings.from_env()  # this process's own: the tracker's secret, the database password
    remember_password(settings.db_url)
    ledger = Ledger(db_url, db_timeout_s=db_timeout_s)
    [item] = ledger.deliverables(batch_id, (shot,))
    return publish_version(ledger, make_publisher(tracker, settings), item, shot_codes(settings))
