"""What the review room shows, read from the ledger into plain records (the page, the JSON API and the static
report all read these; none of them reads the database itself).

A batch is shown with its rerun chain: each shot appears once, as its newest row in the chain, so a rerun of two
shots adds to the night's picture instead of replacing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import opentimelineio as otio

from voidflow.infra.database import Artifact, Batch, MaskReview, ShotRow, StageRun, Version, VersionReview
from voidflow.tasks.ledger import DECIDABLE_VERSIONS, Ledger
from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.pipeline import QcReport

__all__ = [
    "REVIEW_MEDIA",
    "BatchPage",
    "BatchSummary",
    "DecisionView",
    "MaskView",
    "MediaRef",
    "MediaUrl",
    "ShotCard",
    "ShotPage",
    "StageTiming",
    "UnknownName",
    "VersionView",
    "batch_page",
    "batch_summaries",
    "newest_rows",
    "shot_page",
]

#: Artifact kinds the review room may show: pictures and proxy movies made for people, never plates or deliveries.
REVIEW_MEDIA = frozenset({"overlay", "contact_sheet", "preview", "plate_proxy", "review"})

#: How a page links to an artifact: ``/media/<id>`` when served, a relative path in the static report.
MediaUrl = Callable[[Artifact], str]


class UnknownName(InvalidInput):
    """A batch, shot or version the ledger does not hold (the review room answers 404)."""


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A review picture or movie: where the page fetches it, and what it holds."""

    kind: str
    url: str
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class StageTiming:
    stage: str
    state: str
    seconds: float
    attempt: int
    cached: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class DecisionView:
    decision: str
    reviewer: str
    note: str
    decided_at: str
    round: int


@dataclass(frozen=True, slots=True)
class VersionView:
    """A delivered (or failed) version of the shot and what people decided about it."""

    label: str
    status: str
    review_state: str
    batch_id: str
    created_at: str
    awaiting: bool
    qc: str = ""
    qc_passed: bool | None = None
    review: MediaRef | None = None
    contact_sheet: MediaRef | None = None
    decisions: tuple[DecisionView, ...] = ()


@dataclass(frozen=True, slots=True)
class MaskView:
    """The shot's newest mask, its prompts (frames count from the first cut frame, as in a sidecar), its review
    pictures and decisions."""

    key: str
    awaiting: bool
    remove: str
    points: tuple[dict[str, Any], ...]
    boxes: tuple[dict[str, Any], ...]
    overlay: MediaRef | None = None
    preview: MediaRef | None = None
    plate_proxy: MediaRef | None = None
    decisions: tuple[DecisionView, ...] = ()


@dataclass(frozen=True, slots=True)
class ShotCard:
    """One shot on the overview: where it stands, in the batch of the chain that last ran it."""

    name: str
    batch_id: str
    state: str
    filter_state: str  # the state the overview filters by: awaiting_review, failed, qc_failed, done, …
    reason: str
    version: str | None
    qc: str
    stages: tuple[StageTiming, ...]
    picture: MediaRef | None
    movie: MediaRef | None
    mask_awaiting: bool
    versions_awaiting: tuple[str, ...]
    mask_decision: str = ""  # the newest decision on the shot's mask, for people: "rejected by maya: …"


@dataclass(frozen=True, slots=True)
class BatchPage:
    """A batch and its rerun chain, as the overview shows it."""

    batch_id: str
    chain: tuple[dict[str, str], ...]
    state: str
    edit: str
    backend: str
    created_at: str
    counts: dict[str, int]
    cards: tuple[ShotCard, ...]


@dataclass(frozen=True, slots=True)
class ShotPage:
    """Everything the shot page shows: the card, timing facts for the player, mask, versions, provenance,
    history."""

    card: ShotCard
    rate: float
    frames: int
    head: int
    tail: int
    source_start: int
    record_start: int
    start_timecode: str
    width: int | None  # plate pixels, where the prompts live (None: no mask or delivery recorded them)
    height: int | None
    mask: MaskView | None
    versions: tuple[VersionView, ...]
    provenance: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (stage, ((key, value), …))
    history: tuple[dict[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """One batch in ``GET /api/batches``: its states and its shots' states."""

    batch_id: str
    parent_id: str | None
    kind: str
    state: str
    created_at: str
    finished_at: str | None
    edit: str
    shots: tuple[dict[str, str | None], ...]


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _media(artifacts: Iterable[Artifact], kind: str, url: MediaUrl) -> MediaRef | None:
    for artifact in artifacts:
        if artifact.kind == kind:
            return MediaRef(kind, url(artifact), artifact.frames, artifact.fps, artifact.width, artifact.height)
    return None


def _decisions(rows: Iterable[MaskReview | VersionReview]) -> tuple[DecisionView, ...]:
    return tuple(DecisionView(r.decision, r.reviewer, r.note, _when(r.decided_at), r.round) for r in rows)


def _qc_line(params: Mapping[str, Any]) -> tuple[str, bool | None]:
    qc = params.get("qc") or {}
    if not qc:
        return "", None
    try:
        report = QcReport.from_record(qc)
    except TypeError:  # recorded by a version of voidflow whose QC had other fields
        return f"{'passed' if qc.get('passed') else 'FAILED'} (recorded by an older QC)", qc.get("passed")
    return report.summary(), bool(qc.get("passed", report.passed))


def newest_rows(chain: Iterable[Batch]) -> dict[str, ShotRow]:
    """Each shot's newest row in a rerun chain (batches oldest first), in edit order. A rerun records every shot
    of the edit, those it did not take as ``skipped``: such a row never hides the row of the batch that ran it."""
    newest: dict[str, ShotRow] = {}
    for batch in chain:
        for row in batch.shots:
            if row.state != "skipped" or row.name not in newest:
                newest[row.name] = row
    return newest


class _Reader:
    """One page's reads: the rows are loaded once, in a handful of queries, then turned into records."""

    def __init__(self, ledger: Ledger, batches: list[Batch], url: MediaUrl) -> None:
        self.ledger, self.url = ledger, url
        self.newest = newest_rows(batches)
        names = list(self.newest)
        self.versions: dict[str, list[Version]] = {}
        for version in ledger.versions_of(names) if names else []:
            self.versions.setdefault(version.shot_name, []).append(version)
        wanted = [r.id for row in self.newest.values() for r in row.stage_runs if r.stage in ("mask", "deliver")]
        wanted += [v.deliver_run_id for vs in self.versions.values() for v in vs if v.deliver_run_id is not None]
        self.origins = ledger.runs(wanted) if wanted else {}
        masks = [run.key for row in self.newest.values() if (run := row.finished("mask")) is not None]
        self.mask_reviews = ledger.mask_reviews(masks) if masks else {}

    def files(self, run: StageRun | None) -> list[Artifact]:
        origin = self.origins.get(run.id) if run is not None else None
        return list(origin.artifacts) if origin is not None else []

    def card(self, row: ShotRow) -> ShotCard:
        deliver, mask = row.finished("deliver"), row.finished("mask")
        delivered, masked = self.files(deliver), self.files(mask)
        origin = self.origins.get(deliver.id) if deliver is not None else None
        qc = _qc_line(origin.params)[0] if origin is not None else ""
        versions = self.versions.get(row.name, [])
        mine = next((v for v in versions if v.label == row.version), None)
        filter_state = "qc_failed" if mine is not None and mine.status == "qc_failed" else row.state
        reviews = self.mask_reviews.get(mask.key, []) if mask is not None else []
        mask_awaiting = mask is not None and row.state == "awaiting_review" and not reviews
        said = f"mask {reviews[-1].decision} by {reviews[-1].reviewer}" if reviews else ""
        return ShotCard(
            name=row.name,
            batch_id=row.batch_id,
            state=row.state,
            filter_state=filter_state,
            reason=row.reason,
            version=row.version,
            qc=qc,
            stages=tuple(
                StageTiming(
                    run.stage,
                    run.state,
                    round(((run.finished_at or run.started_at) - run.started_at).total_seconds(), 2),
                    run.attempt,
                    run.cached_from_id is not None,
                    run.error_message or "",
                )
                for run in row.stage_runs
            ),
            picture=_media(delivered, "contact_sheet", self.url) or _media(masked, "overlay", self.url),
            movie=_media(delivered, "review", self.url) or _media(masked, "preview", self.url),
            mask_awaiting=mask_awaiting,
            mask_decision=f"{said}: {reviews[-1].note}" if reviews and reviews[-1].note else said,
            versions_awaiting=tuple(
                v.label for v in versions if v.status in DECIDABLE_VERSIONS and v.review_state == "pending"
            ),
        )

    def mask(self, row: ShotRow) -> MaskView | None:
        run = row.finished("mask")
        if run is None:
            return None
        files, params = self.files(run), self.origins[run.id].params if run.id in self.origins else run.params
        reviews = self.mask_reviews.get(run.key, [])
        points, boxes = params.get("points") or [], params.get("boxes") or []  # as the masker records them
        return MaskView(
            key=run.key,
            awaiting=row.state == "awaiting_review" and not reviews,
            remove=str(params.get("remove") or ""),
            points=tuple({"frame": f, "x": x, "y": y, "positive": positive} for f, x, y, positive in points),
            boxes=tuple({"frame": f, "box": [x0, y0, x1, y1]} for f, x0, y0, x1, y1 in boxes),
            overlay=_media(files, "overlay", self.url),
            preview=_media(files, "preview", self.url),
            plate_proxy=_media(files, "plate_proxy", self.url),
            decisions=_decisions(reviews),
        )

    def version(self, version: Version, decisions: list[VersionReview]) -> VersionView:
        origin = self.origins.get(version.deliver_run_id) if version.deliver_run_id is not None else None
        files = list(origin.artifacts) if origin is not None else []
        qc, passed = _qc_line(origin.params) if origin is not None else ("", None)
        return VersionView(
            label=version.label,
            status=version.status,
            review_state=version.review_state,
            batch_id=version.batch_id,
            created_at=_when(version.created_at),
            awaiting=version.status in DECIDABLE_VERSIONS and version.review_state == "pending",
            qc=qc,
            qc_passed=passed,
            review=_media(files, "review", self.url),
            contact_sheet=_media(files, "contact_sheet", self.url),
            decisions=_decisions(decisions),
        )


def _chain(ledger: Ledger, batch_id: str) -> list[Batch]:
    batches = ledger.chain(batch_id)
    if not batches:
        raise UnknownName(f"no batch with ID '{batch_id}' in the ledger")
    return batches


def _chain_state(batches: list[Batch], cards: tuple[ShotCard, ...]) -> str:
    """The chain's state as the night stands: running while a batch of it runs, else awaiting review while a
    shot waits for a decision, else failed when a shot's newest row failed, else done."""
    if any(b.state == "running" for b in batches):
        return "running"
    for state in ("awaiting_review", "failed"):
        if any(card.state == state for card in cards):
            return state
    return "done"


def batch_page(ledger: Ledger, batch_id: str, url: MediaUrl) -> BatchPage:
    """The overview of a batch and its rerun chain (each shot as its newest row in the chain).

    Raises:
        UnknownName: no batch has that ID (or the prefix names several).
    """
    batches = _chain(ledger, batch_id)
    reader = _Reader(ledger, batches, url)
    cards = tuple(reader.card(row) for row in reader.newest.values())
    counts: dict[str, int] = {}
    for card in cards:
        counts[card.filter_state] = counts.get(card.filter_state, 0) + 1
    asked = next(b for b in batches if b.id.startswith(batch_id))
    newest = batches[-1]
    return BatchPage(
        batch_id=asked.id,
        chain=tuple(
            {"batch": b.id, "kind": b.kind, "state": b.state, "created_at": _when(b.created_at)} for b in batches
        ),
        state=_chain_state(batches, cards),
        edit=asked.edit_path,
        backend=newest.backend,
        created_at=_when(batches[0].created_at),
        counts=dict(sorted(counts.items())),
        cards=cards,
    )


def _flatten(value: object, prefix: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        for index, inner in enumerate(value):
            yield from _flatten(inner, f"{prefix}[{index}]")
    else:
        text = str(value)
        yield prefix, text if len(text) <= 400 else text[:400] + "…"


def _timecode(frame: int, rate: float) -> str:
    try:
        return str(otio.opentime.to_timecode(otio.opentime.RationalTime(frame, rate), rate))
    except (ValueError, TypeError):  # a rate with no timecode: the frame number
        return str(frame)


def shot_page(ledger: Ledger, batch_id: str, shot: str, url: MediaUrl) -> ShotPage:
    """The shot page's records: the shot's newest row in the batch's chain, its mask, every version of the shot
    name (any batch), each stage's recorded parameters, and its history.

    Raises:
        UnknownName: no such batch, or the shot is not in its chain.
    """
    reader = _Reader(ledger, _chain(ledger, batch_id), url)
    row = reader.newest.get(shot)
    if row is None:
        raise UnknownName(f"batch {batch_id[:8]} has no shot named '{shot}'")
    decisions = ledger.version_reviews(shot)
    provenance = []
    for stage in ("plan", "mask", "pass1", "pass2", "deliver"):
        run = row.finished(stage)
        if run is not None:
            origin = reader.origins.get(run.id, run)
            entries = [("seed", str(origin.seed))] if origin.seed is not None else []
            entries += [("gpu", origin.gpu)] if origin.gpu else []
            provenance.append((stage, tuple(entries + list(_flatten(origin.params)))))
    rows, _ = ledger.history(shot)
    sized = [
        a
        for run in (row.finished("mask"), row.finished("deliver"))
        for a in reader.files(run)
        if a.kind in ("quadmask", "delivery") and a.width
    ]
    return ShotPage(
        card=reader.card(row),
        rate=row.rate,
        frames=row.duration + row.head + row.tail,
        head=row.head,
        tail=row.tail,
        source_start=row.source_start,
        record_start=row.record_start,
        start_timecode=_timecode(row.source_start - row.head, row.rate),
        width=sized[0].width if sized else None,
        height=sized[0].height if sized else None,
        mask=reader.mask(row),
        versions=tuple(reader.version(v, decisions.get(v.label, [])) for v in reader.versions.get(shot, [])),
        provenance=tuple(provenance),
        history=tuple(
            {
                "batch": h.batch_id,
                "kind": h.batch.kind,
                "state": h.state,
                "version": h.version or "",
                "reason": h.reason,
            }
            for h in rows
        ),
    )


def batch_summaries(ledger: Ledger, *, limit: int = 50) -> list[BatchSummary]:
    """The newest batches with their shots' states, for ``GET /api/batches``."""
    return [
        BatchSummary(
            batch_id=b.id,
            parent_id=b.parent_id,
            kind=b.kind,
            state=b.state,
            created_at=_when(b.created_at),
            finished_at=_when(b.finished_at) or None,
            edit=b.edit_path,
            shots=tuple({"name": s.name, "state": s.state, "version": s.version} for s in b.shots),
        )
        for b in ledger.batches(limit=limit)
    ]
