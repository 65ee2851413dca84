"""Flow Production Tracking (ShotGrid) through ``shotgun_api3``: a delivered version becomes a ``Version`` on its
shot, with the review movie uploaded to ``sg_uploaded_movie``.

What a Version gets (standard fields, plus three the site adds once, see ``CUSTOM_FIELDS``)::

    code                           <code>_voidclean_v001 (finds it again: publishing twice creates nothing)
    entity, project                the Shot (by code) and the show's Project (by name)
    description                    voidflow sh010 v001 (batch <id>): cut 1009-1032, handles 8+8, 24 fps
    sg_status_list                 rev (pending review)
    sg_first_frame, sg_last_frame  the delivered range, handles included; frame_count, frame_range likewise
    sg_uploaded_movie_frame_rate   the delivery's rate
    sg_path_to_frames              the delivered media;  sg_path_to_movie: the review movie
    sg_head_handles, sg_tail_handles, sg_voidflow_batch   the handles, and the batch (the link to the ledger)
    sg_uploaded_movie              the review movie, uploaded

Read back: a Shot's ``sg_status_list`` ``omt`` is *omit* and ``hld`` is *on hold*; a Version's ``apr`` is a
supervisor's approval.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from xmlrpc.client import ProtocolError

from voidflow.void_ops.exceptions import TrackerRejected, TrackerUnavailable
from voidflow.void_ops.tracker import PublishItem, Receipt, ShotStanding, Standing, Tracker

__all__ = ["CUSTOM_FIELDS", "ShotGridPublisher"]

#: Version fields voidflow writes that a ShotGrid site does not have until its admin adds them (numbers, text).
CUSTOM_FIELDS = ("sg_head_handles", "sg_tail_handles", "sg_voidflow_batch")
#: The Shot statuses that keep voidflow off a shot.
_STANDINGS: dict[str, Standing] = {"omt": "omit", "hld": "hold"}


class ShotGridPublisher:
    """Publishes to one ShotGrid site and project as one API script.

    Args:
        url: the site (``https://studio.shotgrid.autodesk.com``).
        project: the show's Project name.
        script: the API script's name; ``key``: its key (the secret: read from settings in the publishing
            process, never stored).
        connect: makes the client: ``shotgun_api3.Shotgun`` (default), or any class with its signature, such as
            ``shotgun_api3.lib.mockgun.Shotgun`` in tests. Called on first use.
    """

    tracker: Tracker = "shotgrid"

    def __init__(
        self, url: str, project: str, *, script: str, key: str, connect: Callable[..., Any] | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.site = f"{self.url}#{project}"
        self._script, self._key = script, key
        self._connect = connect
        self._sg: Any = None
        self._project: dict[str, Any] | None = None

    def publish(self, item: PublishItem) -> Receipt:
        """Create the item's Version on its shot (or find the one a first publish made) and upload its review movie.

        Raises:
            TrackerUnavailable: the site did not answer, or answered with a server error.
            TrackerRejected: bad credentials, no such project or shot code, a missing Version field or permission.
        """
        with self._calls(f"shot '{item.shot}' (code {item.code})"):
            project = self._project_link()
            shot = self._sg.find_one("Shot", [["project", "is", project], ["code", "is", item.code]], ["code"])
            if shot is None:
                raise TrackerRejected(f"{self._where()}: no shot with code '{item.code}' (voidflow shot {item.shot})")
            link = {"type": "Shot", "id": shot["id"]}
            found = self._sg.find_one(
                "Version",
                [["project", "is", project], ["entity", "is", link], ["code", "is", item.title]],
                ["sg_uploaded_movie"],
            )
            created = found is None
            if found is None:
                self._check_fields(item)
                found = self._sg.create("Version", {**self._fields(item), "project": project, "entity": link})
            if not found.get("sg_uploaded_movie"):  # a first publish that stopped before its upload finishes here
                self._sg.upload(
                    "Version", found["id"], str(item.review), field_name="sg_uploaded_movie", display_name=item.title
                )
            return Receipt("shotgrid", self.site, str(shot["id"]), str(found["id"]), created)

    def standings(self, codes: Sequence[str]) -> dict[str, ShotStanding]:
        """Each code's standing from its Shot's ``sg_status_list`` (codes the project lacks are ``active``).

        Raises:
            TrackerUnavailable, TrackerRejected: as for ``publish``.
        """
        with self._calls("reading shot statuses"):
            shots = self._sg_find_shots(list(codes)) if codes else []
        found = {shot["code"]: str(shot.get("sg_status_list") or "") for shot in shots}
        return {
            code: ShotStanding(code, _STANDINGS.get(found.get(code, ""), "active"), found.get(code, ""))
            for code in codes
        }

    def approved(self, version_ids: Sequence[str]) -> set[str]:
        """The versions among ``version_ids`` a supervisor approved (``sg_status_list`` ``apr``).

        Raises:
            TrackerUnavailable, TrackerRejected: as for ``publish``.
        """
        if not version_ids:
            return set()
        with self._calls("reading version statuses"):
            self._project_link()
            ids = [int(found) for found in version_ids]
            found = self._sg.find("Version", [["id", "in", ids], ["sg_status_list", "is", "apr"]], ["id"])
        return {str(version["id"]) for version in found}

    def _sg_find_shots(self, codes: list[str]) -> list[dict[str, Any]]:
        project = self._project_link()
        return list(
            self._sg.find("Shot", [["project", "is", project], ["code", "in", codes]], ["code", "sg_status_list"])
        )

    @staticmethod
    def _fields(item: PublishItem) -> dict[str, Any]:
        return {
            "code": item.title,
            "description": item.describe(),
            "sg_status_list": "rev",
            "sg_first_frame": item.first_frame,
            "sg_last_frame": item.last_frame,
            "frame_count": item.frames,
            "frame_range": f"{item.first_frame}-{item.last_frame}",
            "sg_uploaded_movie_frame_rate": float(item.rate),
            "sg_path_to_frames": item.delivery,
            "sg_path_to_movie": str(item.review),
            "sg_head_handles": item.head,
            "sg_tail_handles": item.tail,
            "sg_voidflow_batch": item.batch_id,
        }

    def _check_fields(self, item: PublishItem) -> None:
        """Refuse, naming them, the Version fields voidflow writes that the site does not have."""
        schema = self._sg.schema_field_read("Version")
        missing = [name for name in self._fields(item) if name not in schema]
        if missing:
            raise TrackerRejected(
                f"{self._where()}: shot '{item.shot}': Version has no field {', '.join(missing)} "
                "(a site admin adds them once: README, Publishing)"
            )

    def _project_link(self) -> dict[str, Any]:
        if self._sg is None:
            connect = self._connect
            if connect is None:
                from shotgun_api3 import Shotgun

                connect = Shotgun
            self._sg = connect(self.url, script_name=self._script, api_key=self._key)
        if self._project is None:
            found = self._sg.find_one("Project", [["name", "is", self.project]], ["name"])
            if found is None:
                raise TrackerRejected(f"{self._where()}: no project named '{self.project}'")
            self._project = {"type": "Project", "id": found["id"]}
        return self._project

    def _where(self) -> str:
        return f"shotgrid {self.url}"

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Translate the client's errors into voidflow's, one line naming the site and ``what`` was being done."""
        import shotgun_api3
        from shotgun_api3.lib import httplib2

        try:
            yield
        except (TrackerRejected, TrackerUnavailable):
            raise
        except shotgun_api3.AuthenticationFault as error:
            raise TrackerRejected(
                f"{self._where()}: {what}: bad credentials for script '{self._script}': {_line(error)}"
            ) from None
        except ProtocolError as error:
            kind = TrackerUnavailable if error.errcode >= 500 or error.errcode == 429 else TrackerRejected
            raise kind(f"{self._where()}: {what}: HTTP {error.errcode} {_line(error.errmsg)}") from None
        except shotgun_api3.ShotgunError as error:  # Fault: permissions, unknown fields, bad filters
            raise TrackerRejected(f"{self._where()}: {what}: {_line(error)}") from None
        except (OSError, http.client.HTTPException, httplib2.HttpLib2Error) as error:
            raise TrackerUnavailable(f"{self._where()}: {what}: not answering ({_line(error)})") from None


def _line(error: object) -> str:
    """An error's text on one line, at most 300 characters."""
    return " ".join(str(error).split())[:300] or type(error).__name__
