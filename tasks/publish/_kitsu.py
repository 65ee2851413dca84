"""Kitsu (CGWire's Zou) through ``gazu``: a delivered version becomes a preview on its shot's task, posted with a
comment that links it back to the ledger.

Kitsu has no Version entity: a version is a comment on the shot's task (``VOIDFLOW_KITSU_TASK_TYPE``, default
``Compositing``) with status *Waiting For Approval* (``wfa``) and the review movie as its preview. The comment's
text starts with ``PublishItem.marker`` (``voidflow sh010 v001 (batch <id>)``), which finds it again, so publishing
twice creates nothing; the preview file carries the frame range, handles and rate in its ``description`` and in
``data["voidflow"]``.

Shot codes are shot names in the project; ``SQ010/SH010`` names the sequence too, where two sequences share a
shot name. Read back: a shot whose status is ``canceled`` is *omit*, ``standby`` is *on hold*; a preview whose
task was set to a done status after it (and has no newer preview) is a supervisor's approval.

Every call goes through one ``gazu.client.KitsuClient`` of this publisher's own (never gazu's module-wide default
client), so publishers in threads of one process do not share a login.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from voidflow.void_ops.exceptions import TrackerRejected, TrackerUnavailable
from voidflow.void_ops.tracker import PublishItem, Receipt, ShotStanding, Standing, Tracker

__all__ = ["PUBLISH_STATUS", "KitsuPublisher"]

#: The task status a new version is posted with: the supervisor's queue.
PUBLISH_STATUS = "wfa"
#: The shot statuses that keep voidflow off a shot.
_STANDINGS: dict[str, Standing] = {"canceled": "omit", "standby": "hold"}


class KitsuPublisher:
    """Publishes to one Kitsu production as one user.

    Args:
        url: the Zou API (``https://kitsu.studio/api``).
        project: the production's name.
        login: the user's email; ``password``: theirs (the secret: read from settings in the publishing process,
            never stored).
        task_type: the shot task the previews go on.
    """

    tracker: Tracker = "kitsu"

    def __init__(self, url: str, project: str, *, login: str, password: str, task_type: str = "Compositing") -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.site = f"{self.url}#{project}"
        self.task_type = task_type
        self._login, self._password = login, password
        self._client: Any = None
        self._project: dict[str, Any] | None = None
        self._shots: dict[str, list[dict[str, Any]]] | None = None  # by shot name: one per sequence holding it

    def publish(self, item: PublishItem) -> Receipt:
        """Post the item's comment and preview on its shot's task (or find the ones a first publish made).

        Raises:
            TrackerUnavailable: Zou did not answer, or answered with a server error.
            TrackerRejected: bad credentials, no such production, shot code or task, or no permission.
        """
        import gazu

        with self._calls(f"shot '{item.shot}' (code {item.code})"):
            client = self._session()
            shot = self._shot(item)
            task_type = gazu.task.get_task_type_by_name(self.task_type, client=client)
            task = gazu.task.get_task_by_entity(shot, task_type, client=client) if task_type else None
            if task is None:
                raise TrackerRejected(
                    f"{self._where()}: shot '{item.shot}' (code {item.code}) has no {self.task_type} task "
                    "(VOIDFLOW_KITSU_TASK_TYPE names the task type)"
                )
            comment = next(
                (
                    c
                    for c in gazu.task.all_comments_for_task(task, client=client)
                    if str(c.get("text") or "").startswith(item.marker)
                ),
                None,
            )
            created = comment is None
            if comment is None:
                status = gazu.task.get_task_status_by_short_name(PUBLISH_STATUS, client=client)
                comment = gazu.task.add_comment(task, status, comment=item.describe(), client=client)
            previews = comment.get("previews") or []
            if previews:
                preview_id = str(previews[0]["id"] if isinstance(previews[0], dict) else previews[0])
            else:  # a first publish that stopped before its upload finishes here
                preview = gazu.task.add_preview(task, comment, preview_file_path=str(item.review), client=client)
                preview_id = str(preview["id"])
                gazu.files.update_preview(
                    preview_id, {"description": item.describe(), "data": _data(item)}, client=client
                )
            return Receipt("kitsu", self.site, str(shot["id"]), preview_id, created)

    def standings(self, codes: Sequence[str]) -> dict[str, ShotStanding]:
        """Each code's standing from its shot's status (codes the production lacks are ``active``).

        Raises:
            TrackerUnavailable, TrackerRejected: as for ``publish``.
        """
        found: dict[str, ShotStanding] = {}
        with self._calls("reading shot statuses"):
            self._session()
            for code in codes:
                matches = self._matching(code)
                status = str(matches[0].get("status") or "") if len(matches) == 1 else ""
                if len(matches) == 1 and matches[0].get("canceled"):
                    status = "canceled"
                found[code] = ShotStanding(code, _STANDINGS.get(status, "active"), status)
        return found

    def approved(self, version_ids: Sequence[str]) -> set[str]:
        """The previews among ``version_ids`` a supervisor approved: their task's status is a done one (*Done*,
        set in a later comment) and no newer preview was posted on it since.

        Raises:
            TrackerUnavailable, TrackerRejected: as for ``publish``.
        """
        import gazu

        found: set[str] = set()
        with self._calls("reading review statuses"):
            client = self._session()
            for preview_id in version_ids:
                preview = gazu.files.get_preview_file(preview_id, client=client)
                task = gazu.task.get_task(preview["task_id"], client=client)
                status = gazu.task.get_task_status(task["task_status_id"], client=client)
                revisions = [p["revision"] for p in gazu.files.get_all_preview_files_for_task(task, client=client)]
                if status.get("is_done") and preview["revision"] == max(revisions):
                    found.add(preview_id)
        return found

    def _session(self) -> Any:
        """This publisher's logged-in client (logging in on first use)."""
        import gazu

        if self._client is None:
            client = gazu.client.create_client(self.url)
            log_in: Any = gazu.log_in  # gazu's module functions carry no annotations
            log_in(self._login, self._password, client=client)
            self._client = client
        if self._project is None:
            found = gazu.project.get_project_by_name(self.project, client=self._client)
            if not found:
                raise TrackerRejected(f"{self._where()}: no production named '{self.project}'")
            self._project = found
        return self._client

    def _matching(self, code: str) -> list[dict[str, Any]]:
        """The production's shots with this code (``SHOT`` or ``SEQUENCE/SHOT``)."""
        import gazu

        if self._shots is None:
            sequences = {
                s["id"]: s["name"] for s in gazu.shot.all_sequences_for_project(self._project, client=self._client)
            }
            self._shots = {}
            for shot in gazu.shot.all_shots_for_project(self._project, client=self._client):
                shot = {**shot, "sequence_name": sequences.get(shot.get("parent_id"), "")}
                self._shots.setdefault(shot["name"], []).append(shot)
        sequence, _, name = code.rpartition("/")
        return [s for s in self._shots.get(name, []) if not sequence or s["sequence_name"] == sequence]

    def _shot(self, item: PublishItem) -> dict[str, Any]:
        matches = self._matching(item.code)
        if not matches:
            raise TrackerRejected(f"{self._where()}: no shot with code '{item.code}' (voidflow shot {item.shot})")
        if len(matches) > 1:
            where = ", ".join(sorted(f"{s['sequence_name']}/{s['name']}" for s in matches))
            raise TrackerRejected(
                f"{self._where()}: shot code '{item.code}' is in several sequences ({where}): "
                "map it to SEQUENCE/SHOT in VOIDFLOW_TRACKER_CODES"
            )
        return matches[0]

    def _where(self) -> str:
        return f"kitsu {self.url}"

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Translate gazu's errors into voidflow's, one line naming the server and ``what`` was being done."""
        import requests
        from gazu import exception as kitsu

        try:
            yield
        except (TrackerRejected, TrackerUnavailable):
            raise
        except (kitsu.AuthFailedException, kitsu.NotAuthenticatedException) as error:
            raise TrackerRejected(
                f"{self._where()}: {what}: bad credentials for '{self._login}' ({_line(error)})"
            ) from None
        except kitsu.NotAllowedException as error:
            raise TrackerRejected(
                f"{self._where()}: {what}: '{self._login}' is not allowed to ({_line(error)})"
            ) from None
        except (kitsu.ServerErrorException, kitsu.HostException) as error:
            raise TrackerUnavailable(f"{self._where()}: {what}: server error ({_line(error)})") from None
        except kitsu.GazuException as error:  # a route, parameter or upload the server refused
            raise TrackerRejected(f"{self._where()}: {what}: {type(error).__name__} {_line(error)}") from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TrackerUnavailable(f"{self._where()}: {what}: not answering ({_line(error)})") from None


def _data(item: PublishItem) -> dict[str, Any]:
    """The frame facts and ledger link kept on the preview file (``data["voidflow"]``)."""
    return {
        "voidflow": {
            "shot": item.shot,
            "version": item.version,
            "batch": item.batch_id,
            "first_frame": item.first_frame,
            "last_frame": item.last_frame,
            "frames": item.frames,
            "head": item.head,
            "tail": item.tail,
            "fps": item.rate,
            "delivery": item.delivery,
        }
    }


def _line(error: object) -> str:
    """An error's text on one line, at most 300 characters."""
    return " ".join(str(error).split())[:300] or type(error).__name__
