"""Rerun plans: which shots a rerun takes, and for each stage whether it will be reused or run, and why.

A rerun is a new batch over chosen shots of an earlier one (its parent); it never overwrites anything. Inside it,
every stage whose key already completed is a cache hit, so a rerun of a failed shot redoes only what failed and
what comes after it. The plan predicts that from the ledger without running anything:

* ``mask``: its key is recomputed from the current plate and matte content and the masker's parameters; the same
  key as the last run → reused, otherwise "mask inputs changed" and everything after it runs;
* later stages: reused when their last run completed, unless an earlier stage runs ("mask changed → pass1
  reruns") or ``--from`` forces them; otherwise the reason is what happened last time ("failed last time: CUDA
  out of memory", "not reached last time", "interrupted last time").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voidflow.infra.database import Batch, ShotRow, StageRun
from voidflow.tasks.backends import make_masker
from voidflow.tasks.ledger import UNFINISHED, Ledger
from voidflow.tasks.shots import mask_inputs
from voidflow.void_ops.exceptions import InvalidInput, VoidflowError
from voidflow.void_ops.keys import stage_key
from voidflow.void_ops.shots import Shot
from voidflow.void_ops.stages import CACHED_STAGES, forced_stages

__all__ = ["ShotPlan", "StagePlan", "plan_rerun", "rerun_shots"]


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What a rerun will do with one stage of one shot."""

    stage: str
    action: Literal["reuse", "run"]
    reason: str


@dataclass(frozen=True, slots=True)
class ShotPlan:
    """What a rerun will do with one shot."""

    shot: str
    stages: tuple[StagePlan, ...]

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        return {
            "shot": self.shot,
            "stages": [{"stage": s.stage, "action": s.action, "reason": s.reason} for s in self.stages],
        }


def rerun_shots(batch: Batch, *, failed: bool, shots: Sequence[str] = ()) -> list[ShotRow]:
    """The batch's shots a rerun takes: the named ones, or (``failed``) every shot that did not finish.

    Raises:
        InvalidInput: a named shot is not in the batch, or a named shot was skipped (it has nothing to rerun).
    """
    rows = {row.name: row for row in batch.shots}
    if shots:
        unknown = sorted(set(shots) - set(rows))
        if unknown:
            raise InvalidInput(f"batch {batch.id[:8]} has no shots named {', '.join(unknown)}")
        skipped = sorted(name for name in shots if rows[name].state == "skipped")
        if skipped:
            raise InvalidInput(
                f"shots {', '.join(skipped)} were skipped in batch {batch.id[:8]}: {rows[skipped[0]].reason}"
            )
        return [rows[name] for name in shots]
    if failed:
        return [row for row in batch.shots if row.state in UNFINISHED]
    return [row for row in batch.shots if row.state != "skipped"]


def _last(row: ShotRow, stage: str) -> StageRun | None:
    runs = [run for run in row.stage_runs if run.stage == stage]
    return runs[-1] if runs else None


def _mask_changed(ledger: Ledger, row: ShotRow, shot: Shot | None, last: StageRun) -> str:
    """Why the mask stage's inputs differ from its last run ("" when they do not)."""
    if shot is None:
        return "the shot is no longer in the edit"
    try:
        inputs = mask_inputs(ledger, shot)
        params = make_masker(shot).params(shot)
    except (VoidflowError, OSError) as error:
        return f"mask inputs unreadable: {error}"
    version = str(params.get("masker_version", ""))
    if stage_key("mask", version=version, inputs=inputs, params=params) == last.key:
        return ""
    if inputs["plate"] != row.plate_sha256:
        return "plate changed"
    return "mask inputs changed (matte or parameters)"


def plan_rerun(
    ledger: Ledger,
    rows: Sequence[ShotRow],
    *,
    shots: dict[str, Shot],
    force_from: str | None = None,
    pass2: bool = False,
) -> list[ShotPlan]:
    """Predict, stage by stage, what rerunning ``rows`` will reuse and run.

    Args:
        ledger: the ledger the rows came from.
        rows: the shots to rerun, as recorded in the batch being rerun (with stage runs loaded).
        shots: the same shots as planned now from the edit and sidecar (by name), to check the mask's inputs.
        force_from: ``--from``: this stage and every later one run whatever the ledger says.
        pass2: whether the rerun runs VOID's pass 2.
    """
    order = list(CACHED_STAGES)
    forced = set(forced_stages(force_from))
    plans = []
    for row in rows:
        had_pass2 = _last(row, "pass2") is not None
        stages = [stage for stage in order if stage != "pass2" or pass2 or had_pass2]
        upstream = ""
        decided = []
        for stage in stages:
            last = _last(row, stage)
            if stage in forced:
                decided.append(StagePlan(stage, "run", f"forced by --from {force_from}"))
                upstream = upstream or stage
                continue
            if upstream and stage == "deliver":
                reason = f"{upstream} reruns → deliver makes a new version if the output changes, else keeps it"
                decided.append(StagePlan(stage, "run", reason))
                continue
            if upstream:
                decided.append(StagePlan(stage, "run", f"{upstream} reruns → {stage} reruns"))
                continue
            reason = ""
            if last is None:
                reason = "not reached last time"
            elif last.state == "failed":
                reason = f"failed last time: {last.error_class}: {last.error_message}"
            elif last.state in ("running", "lost"):
                reason = "interrupted last time (its worker or the flow stopped)"
            elif stage == "mask":
                changed = _mask_changed(ledger, row, shots.get(row.name), last)
                reason = f"{changed} → mask and everything after it rerun" if changed else ""
            if reason:
                decided.append(StagePlan(stage, "run", reason))
                upstream = stage
            else:
                assert last is not None
                decided.append(StagePlan(stage, "reuse", f"cached ({last.state} in batch {row.batch_id[:8]})"))
        plans.append(ShotPlan(row.name, tuple(decided)))
    return plans
