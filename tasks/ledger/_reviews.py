"""Review decisions: a person's approval or rejection of a mask (found again by the mask's stage key) or of a
delivered version.

Decisions on one mask or version are numbered in rounds (1, 2, …) under a unique constraint. A caller that decides
only what is still awaiting a decision (the review room) writes round 1 and, when another reviewer was first, gets
``DecisionConflict`` naming who decided what; the command line decides again on top (the next round), as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from voidflow.infra.database import MaskReview, ShotRow, Version, VersionReview, retry_conflicts
from voidflow.tasks.ledger._base import LedgerBase
from voidflow.void_ops.exceptions import DecisionConflict, InvalidInput

__all__ = ["DECIDABLE_VERSIONS", "Decision", "ReviewLedger"]

Decision = Literal["approved", "rejected"]

#: Version statuses a supervisor can decide on: delivered, or delivered but failed QC (a person may overrule QC).
DECIDABLE_VERSIONS = ("delivered", "qc_failed")

_T = TypeVar("_T")


def _newest_mask_key(session: Session, batch_id: str, shot: str) -> tuple[ShotRow, str]:
    row = session.execute(
        select(ShotRow).where(ShotRow.batch_id.startswith(batch_id), ShotRow.name == shot)
    ).scalar_one_or_none()
    run = None if row is None else row.finished("mask")
    if row is None or run is None:
        raise InvalidInput(f"shot '{shot}' has no finished mask in batch {batch_id[:8]} to review")
    return row, run.key


class ReviewLedger(LedgerBase):
    """The ledger's review decisions on masks and versions."""

    def review(self, mask_key: str) -> MaskReview | None:
        """The newest decision on a mask with this key, or None when nobody has reviewed it."""
        with self._unit() as session:
            return session.execute(
                select(MaskReview).where(MaskReview.mask_key == mask_key).order_by(MaskReview.round.desc()).limit(1)
            ).scalar_one_or_none()

    def decide(
        self,
        batch_id: str,
        shot: str,
        *,
        decision: Decision,
        reviewer: str,
        note: str = "",
        only_if_awaiting: bool = False,
    ) -> str:
        """Record a decision on the mask the shot's newest mask run in the batch made, and return the mask's key.

        Args:
            only_if_awaiting: refuse when the mask was already decided (by anyone, even a moment ago).

        Raises:
            InvalidInput: the shot has no finished mask in that batch.
            DecisionConflict: ``only_if_awaiting`` and the mask has a decision already.
        """

        def write() -> str:
            with self._unit() as session:
                row, key = _newest_mask_key(session, batch_id, shot)
                done = session.execute(
                    select(func.max(MaskReview.round)).where(MaskReview.mask_key == key)
                ).scalar_one()
                if only_if_awaiting and done:
                    raise self._mask_conflict(session, shot, key)
                session.add(
                    MaskReview(
                        mask_key=key,
                        round=(done or 0) + 1,
                        shot_name=shot,
                        batch_id=row.batch_id,
                        decision=decision,
                        reviewer=reviewer,
                        note=note,
                    )
                )
                return key

        return self._decide(write, only_if_awaiting, lambda: self._mask_conflict_now(batch_id, shot), shot)

    def decide_version(
        self,
        shot: str,
        label: str,
        *,
        decision: Decision,
        reviewer: str,
        note: str = "",
        only_if_awaiting: bool = False,
    ) -> None:
        """Record a decision on a shot's delivered version (``v002``) and set the version's ``review_state``.

        Raises:
            InvalidInput: no such version, or it was not delivered (still delivering, or failed).
            DecisionConflict: ``only_if_awaiting`` and the version has a decision already.
        """

        def write() -> None:
            with self._unit() as session:
                version = self._version(session, shot, label)
                done = session.execute(
                    select(func.max(VersionReview.round)).where(VersionReview.version_id == version.id)
                ).scalar_one()
                if only_if_awaiting and done:
                    raise self._version_conflict(session, shot, version)
                session.add(
                    VersionReview(
                        version_id=version.id, round=(done or 0) + 1, decision=decision, reviewer=reviewer, note=note
                    )
                )
                version.review_state = decision

        def conflict() -> DecisionConflict:
            with self._unit() as session:
                return self._version_conflict(session, shot, self._version(session, shot, label))

        self._decide(write, only_if_awaiting, conflict, shot)

    def version_reviews(self, shot: str) -> dict[str, list[VersionReview]]:
        """Every decision on the shot's versions, by version label, oldest first."""
        with self._unit() as session:
            rows = session.execute(
                select(Version.label, VersionReview)
                .join(VersionReview, VersionReview.version_id == Version.id)
                .where(Version.shot_name == shot)
                .order_by(VersionReview.round)
            ).all()
        found: dict[str, list[VersionReview]] = {}
        for label, review in rows:
            found.setdefault(str(label), []).append(review)
        return found

    def mask_reviews(self, keys: list[str]) -> dict[str, list[MaskReview]]:
        """Every decision on these masks, by mask key, oldest first."""
        with self._unit() as session:
            rows = session.execute(
                select(MaskReview).where(MaskReview.mask_key.in_(keys)).order_by(MaskReview.round)
            ).scalars()
            found: dict[str, list[MaskReview]] = {}
            for review in rows:
                found.setdefault(review.mask_key, []).append(review)
            return found

    @staticmethod
    def _decide(
        write: Callable[[], _T], only_if_awaiting: bool, conflict: Callable[[], DecisionConflict], shot: str
    ) -> _T:
        if only_if_awaiting:  # one try: losing the race is the answer, not something to retry
            try:
                return write()
            except IntegrityError:
                raise conflict() from None
        return retry_conflicts(
            write,
            conflicts=(IntegrityError, OperationalError),
            failure=f"shot '{shot}': could not record the decision",
            backoff_s=0.01,
        )

    @staticmethod
    def _version(session: Session, shot: str, label: str) -> Version:
        version = session.execute(
            select(Version).where(Version.shot_name == shot, Version.label == label)
        ).scalar_one_or_none()
        if version is None:
            raise InvalidInput(f"shot '{shot}' has no version {label}")
        if version.status not in DECIDABLE_VERSIONS:
            raise InvalidInput(f"shot '{shot}' version {label} is {version.status}, not delivered: nothing to review")
        return version

    @staticmethod
    def _mask_conflict(session: Session, shot: str, key: str) -> DecisionConflict:
        first = session.execute(
            select(MaskReview).where(MaskReview.mask_key == key).order_by(MaskReview.round.desc()).limit(1)
        ).scalar_one()
        return DecisionConflict(f"shot '{shot}': its mask was already {first.decision} by {first.reviewer}")

    def _mask_conflict_now(self, batch_id: str, shot: str) -> DecisionConflict:
        with self._unit() as session:
            return self._mask_conflict(session, shot, _newest_mask_key(session, batch_id, shot)[1])

    @staticmethod
    def _version_conflict(session: Session, shot: str, version: Version) -> DecisionConflict:
        first = session.execute(
            select(VersionReview)
            .where(VersionReview.version_id == version.id)
            .order_by(VersionReview.round.desc())
            .limit(1)
        ).scalar_one()
        return DecisionConflict(f"shot '{shot}' {version.label}: already {first.decision} by {first.reviewer}")
