"""Provenance reads and writes: edits, batches, shots, stage runs, artifacts, versions, VLM exchanges.

Every write is one short unit of work. A stage run is written as ``running`` when it starts and becomes ``done``
(with its artifacts) only after the stage succeeded, or ``failed`` with the error's class, message and traceback.
Finishing a run checks its ownership token, so a late report from an attempt that lost the run can never overwrite
the attempt that owns it. A completed stage with the same key is not run again: the new run is recorded as
``cached`` and points at the run that made the outputs.

One concern per module: ``_batches`` (edits, batches, shots), ``_stages`` (stage runs and the cache),
``_versions``, ``_memo`` (file hashes, VLM exchanges), ``_reviews`` (mask reviews), ``_publishes`` (publish runs
and tracker IDs) and ``_queries`` (reading batches and histories back), on ``_base`` (the sessions and the shot
guard). ``Ledger`` is all of them.
"""

from __future__ import annotations

from voidflow.tasks.ledger._base import code_version
from voidflow.tasks.ledger._batches import UNFINISHED, BatchLedger
from voidflow.tasks.ledger._memo import MemoLedger
from voidflow.tasks.ledger._publishes import Deliverable, PublishLedger
from voidflow.tasks.ledger._queries import QueryLedger
from voidflow.tasks.ledger._reviews import DECIDABLE_VERSIONS, Decision, ReviewLedger
from voidflow.tasks.ledger._stages import StageHandle, StageLedger
from voidflow.tasks.ledger._versions import VersionLedger
from voidflow.void_ops.hashing import content_hash

__all__ = [
    "DECIDABLE_VERSIONS",
    "UNFINISHED",
    "Decision",
    "Deliverable",
    "Ledger",
    "StageHandle",
    "code_version",
    "content_hash",
]


class Ledger(BatchLedger, StageLedger, VersionLedger, MemoLedger, ReviewLedger, QueryLedger, PublishLedger):
    """The voidflow database, seen as a ledger of batches, shots, stage runs and versions.

    Args:
        url: SQLAlchemy URL of the database (``sqlite:///…`` or ``postgresql+psycopg://…``).
        db_timeout_s: seconds a write waits for another process's lock on a SQLite ledger
            (``Settings.db_timeout_s``; default 30).
    """
