"""Reruns: a new batch over chosen shots of an earlier one, with a plan that says what it will reuse and why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voidflow.flows.params import BatchRequest, plan
from voidflow.infra.paths import PathMap
from voidflow.tasks.batch import load_batch
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.planner import ShotPlan, plan_rerun, rerun_shots

__all__ = ["prepare_rerun"]

_RERUN_FIELDS = ("only_shots", "force_from", "parent_batch")


def prepare_rerun(
    db_url: str,
    batch_id: str,
    *,
    failed: bool,
    shots: Sequence[str] = (),
    force_from: str | None = None,
    sidecar: Path | None = None,
    allowed_roots: tuple[str, ...] = (),
    path_map: PathMap = (),
    db_timeout_s: float = 30.0,
) -> tuple[BatchRequest | None, list[ShotPlan]]:
    """Build the rerun batch's request from the stored one, and its plan; (None, []) when nothing needs rerunning.

    Args:
        db_url: the ledger.
        batch_id: the batch to rerun (an unambiguous prefix is enough).
        failed: take every shot that failed or did not finish.
        shots: take these shots instead.
        force_from: run this stage and all later ones even where cached.
        sidecar: read the shots' instructions from this sidecar instead of the batch's (the review room writes one
            when a reviewer gives new prompts); later reruns in the chain keep it.
        allowed_roots, path_map: this host's ``Settings`` fields, for planning (see ``params.plan``).
        db_timeout_s: how long a locked SQLite ledger is waited for (``Settings.db_timeout_s``).

    Raises:
        ConformError: no such batch.
        InvalidInput: a named shot is not in the batch or was skipped there.
        PathNotAllowed: the edit, sidecar or output folder lies outside ``allowed_roots``.
    """
    ledger = Ledger(db_url, db_timeout_s=db_timeout_s)
    batch = load_batch(ledger, batch_id)
    rows = rerun_shots(batch, failed=failed, shots=shots)
    if not rows:
        return None, []
    stored = {name: value for name, value in batch.params.items() if name not in _RERUN_FIELDS}
    if sidecar is not None:
        stored["sidecar"] = sidecar
    request = BatchRequest(
        **stored,
        db_url=db_url,
        only_shots=tuple(row.name for row in rows),
        force_from=force_from,  # type: ignore[arg-type]
        parent_batch=batch.id,
    )
    _, planned = plan(request, allowed_roots=allowed_roots, path_map=path_map)
    ready = {shot.name: shot for shot in planned if shot.status == "ready"}
    return request, plan_rerun(ledger, rows, shots=ready, force_from=force_from, pass2=request.void.pass2)
