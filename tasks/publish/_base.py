"""The publisher interface, the publish stage of one version, and the plan-time read of tracker standings.

The ledger stays the source of truth: a publish reads what a batch delivered from it (``Ledger.deliverables``),
tells the tracker, and records the tracker's IDs back in it (``publishes``), all inside one ``publish`` stage run.
A publish never touches the shot's pixel stages or its state: a shot whose publish failed is still ``done`` with
its version, and ``voidflow publish --batch ID`` runs the publish stage again on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from voidflow.infra.settings import Settings
from voidflow.tasks.ledger import Deliverable, Ledger
from voidflow.void_ops.exceptions import (
    ConfigurationError,
    DecisionConflict,
    InvalidInput,
    TrackerRejected,
    TrackerUnavailable,
)
from voidflow.void_ops.shots import Shot
from voidflow.void_ops.tracker import PublishItem, Receipt, ShotCodes, ShotStanding, Tracker

__all__ = [
    "PublishOutcome",
    "Publisher",
    "hold_shots",
    "make_publisher",
    "publish_version",
    "pull_approvals",
    "shot_codes",
]


class Publisher(Protocol):
    """A production tracker as voidflow uses it. Every call raises ``TrackerUnavailable`` (retryable) when the
    tracker does not answer, and ``TrackerRejected`` (one line naming the tracker, the shot and the cause) when it
    refuses: an unknown shot code, a missing permission or field, bad credentials."""

    tracker: Tracker
    site: str  # the tracker's URL and project, e.g. ``https://studio.shotgrid.autodesk.com#Demo``

    def publish(self, item: PublishItem) -> Receipt:
        """Make the version (or find the one an earlier publish made) on the item's shot, with its frame range,
        first frame, handles, rate and link to the ledger, and upload its review movie."""
        ...

    def standings(self, codes: Sequence[str]) -> dict[str, ShotStanding]:
        """How the tracker stands on each shot code: ``omit``, ``hold`` or ``active`` (also for codes it lacks)."""
        ...

    def approved(self, version_ids: Sequence[str]) -> set[str]:
        """The tracker versions among ``version_ids`` (the IDs a publish recorded) a supervisor approved."""
        ...


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What the publish stage did with one shot's version.

    Attributes:
        shot, version: the shot and the version published.
        state: ``published`` (a new tracker version), ``kept`` (the tracker already had it: nothing created) or
            ``skipped`` (not published: ``reason`` says why, e.g. the version failed QC).
        tracker_version_id: the tracker's ID of the version ("" when skipped).
    """

    shot: str
    version: str
    state: Literal["published", "kept", "skipped"]
    tracker_version_id: str = ""
    reason: str = ""


def make_publisher(tracker: Tracker, settings: Settings) -> Publisher:
    """The publisher for ``tracker``, configured by ``settings`` (its secret read here, in the publishing process).

    Raises:
        ConfigurationError: a setting the tracker needs is unset (one line naming the variable).
    """
    secret = settings.tracker_secret(tracker)
    if tracker == "shotgrid":
        from voidflow.tasks.publish._shotgrid import ShotGridPublisher

        _require(
            tracker,
            VOIDFLOW_SHOTGRID_URL=settings.shotgrid_url,
            VOIDFLOW_SHOTGRID_SCRIPT=settings.shotgrid_script,
            VOIDFLOW_SHOTGRID_KEY=secret,
            VOIDFLOW_SHOTGRID_PROJECT=settings.shotgrid_project,
        )
        assert settings.shotgrid_url and settings.shotgrid_script and secret and settings.shotgrid_project
        return ShotGridPublisher(
            settings.shotgrid_url, settings.shotgrid_project, script=settings.shotgrid_script, key=secret
        )
    from voidflow.tasks.publish._kitsu import KitsuPublisher

    _require(
        tracker,
        VOIDFLOW_KITSU_URL=settings.kitsu_url,
        VOIDFLOW_KITSU_LOGIN=settings.kitsu_login,
        VOIDFLOW_KITSU_PASSWORD=secret,
        VOIDFLOW_KITSU_PROJECT=settings.kitsu_project,
    )
    assert settings.kitsu_url and settings.kitsu_login and secret and settings.kitsu_project
    return KitsuPublisher(
        settings.kitsu_url,
        settings.kitsu_project,
        login=settings.kitsu_login,
        password=secret,
        task_type=settings.kitsu_task_type,
    )


def _require(tracker: str, **values: str | None) -> None:
    missing = [name for name, value in values.items() if not value]
    if missing:
        secret = "VOIDFLOW_SHOTGRID_KEY" if tracker == "shotgrid" else "VOIDFLOW_KITSU_PASSWORD"
        hint = f" ({secret} or its _SECRET_BLOCK)" if secret in missing else ""
        raise ConfigurationError(f"{tracker}: set {', '.join(missing)} to publish{hint}")


def shot_codes(settings: Settings) -> ShotCodes:
    """The shot code table named by ``VOIDFLOW_TRACKER_CODES``, or the identity when unset.

    Raises:
        ConfigurationError: the table cannot be read.
    """
    return ShotCodes.load(settings.tracker_codes) if settings.tracker_codes else ShotCodes()


def publish_version(ledger: Ledger, publisher: Publisher, item: Deliverable, codes: ShotCodes) -> PublishOutcome:
    """The publish stage of one delivered version: tell the tracker, record its IDs, all in one ``publish`` run.

    A version that failed QC is not published (``skipped``, no run recorded). Publishing a version the tracker
    already holds creates nothing there (``kept``); a rerun's new version is a new tracker version on the same
    shot.

    Raises:
        TrackerUnavailable: the tracker did not answer (retryable); the run is recorded ``failed``.
        TrackerRejected: the tracker refused (unknown shot code, permission, credentials); recorded ``failed``.
        InvalidInput: the version has no review movie (delivered before review movies were made).
    """
    if item.status != "delivered":
        reason = f"{item.version} is {item.status}; only delivered versions are published"
        return PublishOutcome(item.shot, item.version, "skipped", reason=reason)
    code = codes(item.shot)
    params = {"tracker": publisher.tracker, "site": publisher.site, "code": code, "version": item.version}
    with ledger.publish_stage(item.batch_id, item.shot, params) as run:
        if item.review is None:
            raise InvalidInput(
                f"{publisher.tracker}: shot '{item.shot}' {item.version} has no review movie "
                "(delivered before review movies were made: rerun it with --from deliver)"
            )
        if not Path(item.review).is_file():  # checked here: an unreadable upload would read as a tracker that is down
            raise InvalidInput(f"{publisher.tracker}: shot '{item.shot}' {item.version}: {item.review}: no such file")
        receipt = publisher.publish(
            PublishItem(
                shot=item.shot,
                code=code,
                version=item.version,
                batch_id=item.delivered_in,
                first_frame=item.first_frame,
                frames=item.frames,
                head=item.head,
                tail=item.tail,
                rate=item.rate,
                review=Path(item.review),
                delivery=item.delivery,
            )
        )
        ledger.record_publish(
            version_id=item.version_id,
            tracker=receipt.tracker,
            site=receipt.site,
            shot_code=code,
            tracker_shot_id=receipt.shot_id,
            tracker_version_id=receipt.version_id,
            batch_id=item.batch_id,
            stage_run_id=run.run_id,
        )
        run.params.update(
            {"tracker_shot_id": receipt.shot_id, "tracker_version_id": receipt.version_id, "created": receipt.created}
        )
    state: Literal["published", "kept"] = "published" if receipt.created else "kept"
    return PublishOutcome(item.shot, item.version, state, receipt.version_id)


def pull_approvals(ledger: Ledger, publisher: Publisher, shots: Sequence[str]) -> list[str]:
    """Record the tracker's approvals of the shots' published versions as review decisions in the ledger.

    An approved version is approved in the ledger (``decide_version``), and so is the mask it was made from
    (``decide``, by the mask's key): a rerun with ``--gate`` whose mask is unchanged goes past the gate, while a
    changed mask still waits for a person. Only what awaits a decision is decided: a decision already recorded (a
    person's, or an earlier pull's) stands. Returns ``["sh010 v001", …]``, the versions newly approved.

    Raises:
        TrackerUnavailable, TrackerRejected: the tracker could not be read.
    """
    published = {name: ledger.published_versions(name, publisher.tracker, publisher.site) for name in shots}
    approved = publisher.approved([found for rows in published.values() for _, _, found in rows])
    reviewer = f"{publisher.tracker} ({publisher.site})"
    recorded = []
    for name, rows in published.items():
        for label, delivered_in, found in rows:
            if found not in approved:
                continue
            note = f"approved in {publisher.tracker}"
            try:
                ledger.decide_version(
                    name, label, decision="approved", reviewer=reviewer, note=note, only_if_awaiting=True
                )
                recorded.append(f"{name} {label}")
            except (DecisionConflict, InvalidInput):  # decided already, or no longer delivered: it stands
                pass
            # its mask may be decided already, or have no mask run in that batch (a bring-your-own quadmask)
            with contextlib.suppress(DecisionConflict, InvalidInput):
                ledger.decide(
                    delivered_in, name, decision="approved", reviewer=reviewer, note=note, only_if_awaiting=True
                )
    return recorded


def hold_shots(shots: Sequence[Shot], publisher: Publisher, codes: ShotCodes) -> tuple[list[Shot], str]:
    """Skip the ready shots the tracker marks omitted or on hold, with its word for it as the reason.

    Returns the shots (held ones ``skipped``: "shotgrid: shot on hold (hld)") and a warning line, empty unless the
    tracker could not be read (down, or refusing the credentials), in which case nothing is skipped: a tracker
    problem fails only the publish stage.
    """
    ready = [shot for shot in shots if shot.status == "ready"]
    if not ready:
        return list(shots), ""
    try:
        found = publisher.standings([codes(shot.name) for shot in ready])
    except (TrackerUnavailable, TrackerRejected) as error:
        return list(shots), f"{error}; no shot skipped for its tracker status"
    words = {"omit": "omitted", "hold": "on hold"}
    held = []
    for shot in shots:
        standing = found.get(codes(shot.name)) if shot.status == "ready" else None
        if standing is not None and standing.standing != "active":
            reason = f"{publisher.tracker}: shot {words[standing.standing]} ({standing.status})"
            shot = dataclasses.replace(shot, status="skipped", reason=reason)
        held.append(shot)
    return held, ""
