"""Publishing to the production tracker: a delivered version becomes a ShotGrid Version or a Kitsu preview on its
shot, and the tracker's shot statuses keep omitted and held shots out of a batch.

``Publisher`` is the interface (``publish`` one ``PublishItem``, read ``standings``), with one implementation per
tracker: ``ShotGridPublisher`` (``shotgun_api3``) and ``KitsuPublisher`` (``gazu``); ``make_publisher`` builds one
from the settings. ``publish_version`` is the publish stage of one version (a ``publish`` stage run, the tracker's
IDs recorded in the ledger); ``publish_shot`` runs it as a Prefect task, retried while the tracker is down;
``hold_shots`` skips, at plan time, the shots the tracker marks omitted or on hold, and ``pull_approvals`` records a
supervisor's approval of a published version (and of the mask it came from) as a review decision.
"""

from __future__ import annotations

from voidflow.tasks.publish._base import (
    Publisher,
    PublishOutcome,
    hold_shots,
    make_publisher,
    publish_version,
    pull_approvals,
    shot_codes,
)
from voidflow.tasks.publish._kitsu import KitsuPublisher
from voidflow.tasks.publish._shotgrid import CUSTOM_FIELDS, ShotGridPublisher
from voidflow.tasks.publish._task import publish_shot

__all__ = [
    "CUSTOM_FIELDS",
    "KitsuPublisher",
    "PublishOutcome",
    "Publisher",
    "ShotGridPublisher",
    "hold_shots",
    "make_publisher",
    "publish_shot",
    "publish_version",
    "pull_approvals",
    "shot_codes",
]
