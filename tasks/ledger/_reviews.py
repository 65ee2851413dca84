"""Mask reviews: a person's decision on a mask, found again by the mask's stage key."""

from __future__ import annotations

from sqlalchemy import select

from voidflow.infra.database import MaskReview, ShotRow
from voidflow.tasks.ledger._base import LedgerBase
from voidflow.void_ops.exceptions import InvalidInput

__all__ = ["ReviewLedger"]


class ReviewLedger(LedgerBase):
    """The ledger's mask reviews."""

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
