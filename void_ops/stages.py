"""The stage vocabulary: what a shot goes through, in order, what ``--from`` forces, and the states recorded.

Defined once here, in the innermost ring, so the ledger, the rerun planner, the flow and the command line all
speak of the same stages.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["CACHED_STAGES", "STAGE_ORDER", "ShotState", "Stage", "StageState", "forced_stages"]

Stage = Literal["mask", "pass1", "pass2", "deliver", "publish", "conform"]
#: Every stage of a batch, in order: the shot stages, then conform (which belongs to the batch). ``publish`` (to the
#: production tracker, ``--publish``) runs after deliver and is never cached: it finds earlier publishes in the
#: ledger instead, and its failure leaves the shot's pixel stages and state alone.
STAGE_ORDER: tuple[Stage, ...] = ("mask", "pass1", "pass2", "deliver", "publish", "conform")
#: The stages whose runs are keyed, recorded and reused from the ledger.
CACHED_STAGES: tuple[Stage, ...] = ("mask", "pass1", "pass2", "deliver")

#: A stage run's state in the ledger: ``running`` while its attempt works; then ``done`` (its outputs recorded) or
#: ``failed`` (with the error); ``lost`` when its worker died, it timed out or its flow stopped; ``cached`` for a run
#: that reused an earlier run's outputs instead of running.
StageState = Literal["running", "done", "failed", "lost", "cached"]
#: A shot's state in a batch: ``planned`` (or ``skipped`` with the reason) at planning; ``running`` from its first
#: stage; then ``done`` (delivered), ``failed``, ``awaiting_review`` (its mask waits for a person's decision) or
#: ``rejected`` (a person rejected its mask).
ShotState = Literal["planned", "skipped", "running", "done", "failed", "awaiting_review", "rejected"]


def forced_stages(force_from: Stage | str | None) -> tuple[Stage, ...]:
    """The compute stages ``--from`` makes run even when cached: the named stage and every later one.

    The deliver stage is forced only by ``--from deliver``: otherwise its key (which covers the final fill's
    content) decides, so a rerun whose output did not change keeps its version. ``--from publish`` and
    ``--from conform`` force nothing.
    Example: ``forced_stages("pass1") == ("pass1", "pass2")``.

    Raises:
        ValueError: ``force_from`` is not a stage.
    """
    if force_from is None or force_from in ("publish", "conform"):
        return ()
    if force_from == "deliver":
        return ("deliver",)
    if force_from not in STAGE_ORDER:
        raise ValueError(f"--from must be one of {', '.join(STAGE_ORDER)}, got {force_from!r}")
    return STAGE_ORDER[STAGE_ORDER.index(force_from) : STAGE_ORDER.index("deliver")]
