"""Batch-level tasks that read the ledger: conform the delivered shots, write the report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from prefect import task

from voidflow.infra.database import Batch, ShotRow, StageRun
from voidflow.infra.paths import ensure_allowed
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.review import write_report
from voidflow.void_ops.conform import conform, write_edit
from voidflow.void_ops.cutdiff import UNCHANGED
from voidflow.void_ops.exceptions import ConformError, InvalidInput
from voidflow.void_ops.intake import Edit, read_edit
from voidflow.void_ops.pipeline import FIRST_FRAME_NUMBER
from voidflow.void_ops.review_timeline import ReviewShot, review_timeline
from voidflow.void_ops.shots import Delivery, MediaKind, MediaSource

__all__ = [
    "conform_batch",
    "deliveries",
    "load_batch",
    "notify_batch",
    "report_batch",
    "review_shots",
    "summarize",
    "summary_markdown",
    "write_review_timeline",
]


def load_batch(ledger: Ledger, batch_id: str) -> Batch:
    """Return the batch with its shots, or raise ConformError naming the unknown ID."""
    found = ledger.batches(batch_id)
    if not found:
        raise ConformError(f"no batch with ID '{batch_id}' in the ledger")
    return found[0]


def _delivered_run(ledger: Ledger, shot: ShotRow) -> StageRun | None:
    """The run whose files a shot's delivery is: its own deliver run, or the one a cache hit points at."""
    run = shot.finished("deliver")
    return ledger.origin(run) if run is not None else None


def _source(shot: ShotRow, path: str, frames: int | None, fps: float | None) -> MediaSource:
    kind: MediaKind = "sequence" if "%" in Path(path).name else "movie"
    first_number = FIRST_FRAME_NUMBER if kind == "sequence" else 0
    return MediaSource(path, kind, fps or shot.rate, shot.source_start - shot.head, frames, first_number)


def _delivery(shot: ShotRow, label: str, run: StageRun) -> Delivery:
    files = {artifact.kind: artifact for artifact in run.artifacts}
    output, matte = files["delivery"], files["matte"]
    return Delivery(
        shot=shot.name,
        version=label,
        media=_source(shot, output.path, output.frames, output.fps),
        matte=_source(shot, matte.path, matte.frames, matte.fps),
        width=output.width or 0,
        height=output.height or 0,
    )


def deliveries(ledger: Ledger, batch: Batch, *, include_qc_failed: bool = False) -> dict[str, Delivery]:
    """Return the delivered versions to conform, by shot name.

    This batch's deliveries come first; for shots it did not deliver (a rerun of failed shots), its parent batches'
    along the chain; for shots it skipped as unchanged since a previous edit, the newest delivered version of that
    shot name. Versions that failed QC are left out unless ``include_qc_failed``.
    """
    found: dict[str, Delivery] = {}
    current: Batch | None = batch
    while current is not None:
        for shot in current.shots:
            if shot.name in found or shot.state != "done" or shot.version is None:
                continue
            if not include_qc_failed and ledger.version_status(shot.name, shot.version) == "qc_failed":
                continue
            run = _delivered_run(ledger, shot)
            if run is not None:
                found[shot.name] = _delivery(shot, shot.version, run)
        current = load_batch(ledger, current.parent_id) if current.parent_id else None
    for shot in batch.shots:
        if shot.name not in found and shot.reason.startswith(UNCHANGED):
            latest = ledger.latest_delivered(shot.name)
            if latest is not None:
                found[shot.name] = _delivery(shot, *latest)
    return found


def review_shots(
    ledger: Ledger,
    batch_id: str,
    plates: Mapping[str, MediaSource | None],
    *,
    include_qc_failed: bool = False,
) -> list[ReviewShot]:
    """Each shot of a batch's rerun chain with its newest delivered version, for the review timeline.

    The chain is the batch's first batch and every rerun below it (``Ledger.chain``), so any batch of it gives the
    same answer. A shot's version is the one the newest batch of the chain would conform (``deliveries``: its own,
    else its parents'); its state is the newest batch's that processed it (a rerun's "not in this rerun" rows are
    passed over). A done shot whose version failed QC (left out unless ``include_qc_failed``) shows ``qc_failed``.

    Args:
        ledger: the ledger.
        batch_id: any batch of the chain (an unambiguous prefix is enough).
        plates: each shot's plate as planned on this host (``Shot.media``), by name; shots absent get none.
        include_qc_failed: show versions that failed QC too.

    Returns:
        One per shot name of the chain, in the order the chain first planned them.

    Raises:
        ConformError: no batch has that ID.
    """
    chain = ledger.chain(batch_id)
    if not chain:
        raise ConformError(f"no batch with ID '{batch_id}' in the ledger")
    rows: dict[str, ShotRow] = {}
    for batch in chain:  # oldest first: a newer row wins unless it only skipped the shot
        for row in batch.shots:
            if row.name not in rows or row.state != "skipped":
                rows[row.name] = row
    found: dict[str, Delivery] = {}
    for batch in reversed(chain):
        for name, delivery in deliveries(ledger, batch, include_qc_failed=include_qc_failed).items():
            found.setdefault(name, delivery)
    shots = []
    for name, row in rows.items():
        state, reason = row.state, row.reason
        shown = name in found or state != "done" or row.version is None
        if not shown and ledger.version_status(name, row.version or "") == "qc_failed":
            state, reason = "qc_failed", f"{row.version} failed QC"
        shots.append(ReviewShot(name, row.batch_id, state, reason, plates.get(name), found.get(name)))
    return shots


def write_review_timeline(
    ledger: Ledger,
    batch_id: str,
    edit: Edit,
    plates: Mapping[str, MediaSource | None],
    out: Path,
    *,
    include_qc_failed: bool = False,
) -> Path:
    """Write the review timeline of a batch's rerun chain (``void_ops.review_timeline``) as ``out``, an ``.otio``.

    Args:
        ledger: the ledger.
        batch_id: any batch of the chain.
        edit: the batch's edit, read now (its hash must match what the batch planned).
        plates: each shot's plate as planned on this host from ``edit``, by name.
        out: the ``.otio`` to write (atomically; read back before it is moved into place).
        include_qc_failed: show versions that failed QC too.

    Raises:
        ConformError: no such batch, the edit changed since the batch planned it, or a shot has no clip in it.
        InvalidInput: ``out`` is not an ``.otio``.
    """
    if out.suffix.lower() != ".otio":
        raise InvalidInput(f"{out}: a review timeline is written as .otio, not '{out.suffix}'")
    batch = load_batch(ledger, batch_id)
    if edit.sha256 != batch.edit_sha256:
        raise ConformError(f"{edit.path}: the edit changed since batch {batch.id[:8]} planned it; refused")
    shots = review_shots(ledger, batch.id, plates, include_qc_failed=include_qc_failed)
    return write_edit(review_timeline(edit, shots, name=f"voidflow review {batch.id[:8]}"), out)


@task(name="conform", persist_result=False)
def conform_batch(
    db_url: str,
    batch_id: str,
    out: Path,
    *,
    allowed_roots: tuple[str, ...] = (),
    db_timeout_s: float = 30.0,
    edit_path: Path | None = None,
    include_qc_failed: bool = False,
    mode: Literal["reference", "track"] = "reference",
) -> Path:
    """Write the batch's edit with every delivered shot conformed in, as ``out`` (format by suffix).

    ``allowed_roots`` are the only folders ``out`` may lie in (``Settings.allowed_roots``, read by the entry point
    that calls this; empty: anywhere).

    Raises:
        ConformError: the edit changed since the batch planned it, or a delivery does not fit its clip.
        PathNotAllowed: ``out`` lies outside ``allowed_roots``.
    """
    ensure_allowed(out, allowed_roots, what="conformed edit")
    ledger = Ledger(db_url, db_timeout_s=db_timeout_s)
    batch = load_batch(ledger, batch_id)
    edit = read_edit(Path(edit_path or batch.edit_path), edl_rate=batch.params.get("edl_rate"))
    if edit.sha256 != batch.edit_sha256:
        raise ConformError(f"{edit.path}: the edit changed since batch {batch_id} planned it; conform refused")
    found = deliveries(ledger, batch, include_qc_failed=include_qc_failed)
    return write_edit(conform(edit, found, mode=mode), out)


@task(name="report", persist_result=False)
def report_batch(db_url: str, batch_id: str, out: Path, *, db_timeout_s: float = 30.0) -> Path:
    """Write the batch's HTML report to ``out``: the review room's overview of its whole rerun chain (states,
    timings, QC, contact sheets, mask overlays and preview movies), as one self-contained file."""
    return write_report(Ledger(db_url, db_timeout_s=db_timeout_s), batch_id, out)


def summarize(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """The batch's numbers for people: shots by state, cache hits, new versions, GPU hours, QC and publish failures."""
    batch = load_batch(ledger, batch_id)
    states: dict[str, int] = {}
    cached = gpu_seconds = 0.0
    for shot in batch.shots:
        states[shot.state] = states.get(shot.state, 0) + 1
        for run in shot.stage_runs:
            cached += run.state == "cached"
            if (
                run.stage in ("pass1", "pass2")
                and run.finished_at
                and str(run.params.get("device", "")).startswith("cuda")
            ):
                gpu_seconds += (run.finished_at - run.started_at).total_seconds()
    versions = ledger.versions_of_batch(batch_id)
    return {
        "batch": batch.id,
        "state": batch.state,
        "edit": batch.edit_path,
        "shots": states,
        "cached_stages": int(cached),
        "new_versions": [f"{name} {label}" for name, label, _ in versions],
        "qc_failed": [f"{name} {label}" for name, label, status in versions if status == "qc_failed"],
        "gpu_hours": round(gpu_seconds / 3600, 3),
        "failed": {shot.name: shot.reason for shot in batch.shots if shot.state == "failed"},
        "publish_failed": _publish_failed(batch),
    }


def _publish_failed(batch: Batch) -> dict[str, str]:
    """Shots whose newest publish stage run failed (they are ``done``: only the tracker lacks them), with why."""
    failed = {}
    for shot in batch.shots:
        runs = [run for run in shot.stage_runs if run.stage == "publish"]
        if runs and runs[-1].state == "failed":
            failed[shot.name] = runs[-1].error_message or ""
    return failed


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown (the Prefect artifact, and the webhook's text)."""
    shots = ", ".join(f"{count} {state}" for state, count in sorted(summary["shots"].items()))
    lines = [
        f"**voidflow batch {summary['batch'][:8]}: {summary['state']}** ({summary['edit']})",
        f"- shots: {shots}",
        f"- new versions: {', '.join(summary['new_versions']) or 'none'}",
        f"- cached stages: {summary['cached_stages']}; GPU hours: {summary['gpu_hours']}",
    ]
    if summary["qc_failed"]:
        lines.append(f"- QC failed: {', '.join(summary['qc_failed'])}")
    lines.extend(f"- failed {name}: {reason}" for name, reason in summary["failed"].items())
    lines.extend(f"- publish failed {name}: {reason}" for name, reason in summary.get("publish_failed", {}).items())
    return "\n".join(lines)


@task(name="notify", persist_result=False)
def notify_batch(db_url: str, batch_id: str, webhook: str | None = None, *, db_timeout_s: float = 30.0) -> str:
    """Publish the batch summary as a Prefect Markdown artifact and, when a webhook is set, POST it as JSON
    (``{"text": …, "summary": …}``, which Slack-compatible hooks accept). A webhook that fails is logged, never
    fails the batch. Returns the Markdown."""
    import json
    import urllib.error
    import urllib.request

    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    summary = summarize(Ledger(db_url, db_timeout_s=db_timeout_s), batch_id)
    text = summary_markdown(summary)
    create_markdown_artifact(text, key="voidflow-batch-summary", description=f"batch {batch_id}")
    if webhook:
        body = json.dumps({"text": text, "summary": summary}).encode()
        request = urllib.request.Request(webhook, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            get_run_logger().warning("batch summary webhook failed: %s", getattr(error, "reason", error))
    return text
