"""What a reviewer can do from the review room, on the ledger: decide on a mask or a version (only while it awaits
a decision), give a shot new mask prompts, and find what "resume approved" runs.

Each decision is recorded exactly as ``voidflow approve/reject`` records it, then the batch's static report is
rewritten so that it shows the decision too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voidflow.infra.database import Batch, ShotRow
from voidflow.tasks.ledger import Decision, Ledger
from voidflow.tasks.review._page import write_report
from voidflow.tasks.review._views import UnknownName, newest_rows
from voidflow.void_ops.exceptions import DecisionConflict
from voidflow.void_ops.files import atomic_write
from voidflow.void_ops.sidecar import revise_prompts

__all__ = ["Prompts", "decide_mask", "decide_version", "refresh_report", "resumable", "write_prompts"]


@dataclass(frozen=True, slots=True)
class Prompts:
    """A reviewer's new prompts for a shot: sidecar ``points``/``boxes`` (frames count from the first cut frame,
    coordinates in plate pixels) and, optionally, new ``remove`` text."""

    points: list[dict[str, Any]]
    boxes: list[dict[str, Any]]
    remove: str | None = None


def _newest(ledger: Ledger, batch_id: str, shot: str) -> tuple[list[Batch], ShotRow]:
    chain = ledger.chain(batch_id)
    if not chain:
        raise UnknownName(f"no batch with ID '{batch_id}' in the ledger")
    row = newest_rows(chain).get(shot)
    if row is None:
        raise UnknownName(f"batch {batch_id[:8]} has no shot named '{shot}'")
    return chain, row


def refresh_report(ledger: Ledger, batch_id: str) -> Path:
    """Rewrite the chain's ``report.html`` in its first batch's output folder."""
    chain = ledger.chain(batch_id)
    return write_report(ledger, chain[0].id, Path(chain[0].out_dir) / "report.html")


def decide_mask(ledger: Ledger, batch_id: str, shot: str, decision: Decision, *, reviewer: str, note: str) -> str:
    """Approve or reject the mask of a shot awaiting review (its newest row in the batch's chain); return the
    batch that row belongs to.

    Raises:
        UnknownName: no such batch or shot.
        DecisionConflict: the shot is not awaiting a decision, or another reviewer decided first.
    """
    _, row = _newest(ledger, batch_id, shot)
    if row.state != "awaiting_review":
        raise DecisionConflict(f"shot '{shot}' is {row.state}, not awaiting a decision on its mask")
    ledger.decide(row.batch_id, shot, decision=decision, reviewer=reviewer, note=note, only_if_awaiting=True)
    refresh_report(ledger, row.batch_id)
    return row.batch_id


def decide_version(ledger: Ledger, shot: str, label: str, decision: Decision, *, reviewer: str, note: str) -> str:
    """Approve or reject a delivered version awaiting review; return the batch that delivered it.

    Raises:
        UnknownName: the shot has no such version.
        DecisionConflict: the version is not awaiting a decision, or another reviewer decided first.
    """
    version = next((v for v in ledger.versions_of([shot]) if v.label == label), None)
    if version is None:
        raise UnknownName(f"shot '{shot}' has no version {label}")
    if version.review_state != "pending":
        raise DecisionConflict(f"shot '{shot}' {label} is already {version.review_state}")
    ledger.decide_version(shot, label, decision=decision, reviewer=reviewer, note=note, only_if_awaiting=True)
    refresh_report(ledger, version.batch_id)
    return version.batch_id


def write_prompts(ledger: Ledger, batch_id: str, shot: str, prompts: Prompts) -> tuple[str, Path]:
    """Write a sidecar holding the shot's new prompts (the batch's own sidecar otherwise unchanged) into the output
    folder's ``review/`` folder; return the batch to rerun the shot from and the new sidecar.

    Raises:
        UnknownName: no such batch or shot.
        SidecarInvalid: a point or box breaks the sidecar schema (the message names the field).
    """
    chain, row = _newest(ledger, batch_id, shot)
    batch = next(b for b in chain if b.id == row.batch_id)
    source = batch.params.get("sidecar")
    text = revise_prompts(
        Path(source) if source else None, shot, points=prompts.points, boxes=prompts.boxes, remove=prompts.remove
    )
    folder = Path(batch.out_dir) / "review"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sidecar-{shot}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.yaml"
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return row.batch_id, path


def resumable(ledger: Ledger, batch_id: str) -> dict[str, list[str]]:
    """The shots "resume approved" runs on, by the batch holding their newest row: those awaiting review whose
    mask has a decision (approved ones go on to inpainting; rejected ones are closed as rejected).

    Raises:
        UnknownName: no such batch.
        DecisionConflict: no shot of the chain has a decision to act on.
    """
    chain = ledger.chain(batch_id)
    if not chain:
        raise UnknownName(f"no batch with ID '{batch_id}' in the ledger")
    waiting = {name: row for name, row in newest_rows(chain).items() if row.state == "awaiting_review"}
    keys = {name: run.key for name, row in waiting.items() if (run := row.finished("mask")) is not None}
    decided = ledger.mask_reviews(list(keys.values())) if keys else {}
    found: dict[str, list[str]] = {}
    for name, key in keys.items():
        if decided.get(key):
            found.setdefault(waiting[name].batch_id, []).append(name)
    if not found:
        raise DecisionConflict(f"batch {batch_id[:8]}: no shot awaiting review has a decision yet; nothing to resume")
    return found
