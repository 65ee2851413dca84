"""The review room's reads and decisions: records read from the ledger for the page, the JSON API and the static
report (one set of templates for all three), and the actions a reviewer takes."""

from __future__ import annotations

from voidflow.tasks.review._actions import (
    Prompts,
    decide_mask,
    decide_version,
    refresh_report,
    resumable,
    write_prompts,
)
from voidflow.tasks.review._page import STATIC, render, write_report
from voidflow.tasks.review._views import (
    REVIEW_MEDIA,
    BatchPage,
    BatchSummary,
    MediaUrl,
    ShotPage,
    UnknownName,
    batch_page,
    batch_summaries,
    shot_page,
)

__all__ = [
    "REVIEW_MEDIA",
    "STATIC",
    "BatchPage",
    "BatchSummary",
    "MediaUrl",
    "Prompts",
    "ShotPage",
    "UnknownName",
    "batch_page",
    "batch_summaries",
    "decide_mask",
    "decide_version",
    "refresh_report",
    "render",
    "resumable",
    "shot_page",
    "write_prompts",
    "write_report",
]
