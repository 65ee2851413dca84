"""What voidflow tells a production tracker, and what it reads back: typed records, free of any tracker's client.

A delivered version becomes a ``PublishItem`` (the shot's tracker code, its version, frame range, handles, rate and
review movie); a publisher (``tasks.publish``) turns it into a ShotGrid Version or a Kitsu preview and answers with
a ``Receipt`` (the tracker's IDs, recorded in the ledger). Reading back, a tracker's shot status becomes a
``ShotStanding``: omitted and on-hold shots are skipped at plan time with the tracker's word for it.

Shot codes: a voidflow shot name is the tracker's shot code unless a ``ShotCodes`` table maps it (studios whose
tracker names shots ``EP01_SQ010_SH010`` while the edit says ``sh010``). Example::

    codes = ShotCodes.load(Path("codes.yaml"))   # {"sh010": "EP01_SQ010_SH010"}
    codes("sh010") == "EP01_SQ010_SH010"; codes("sh020") == "sh020"
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from voidflow.void_ops.exceptions import ConfigurationError

__all__ = ["TRACKERS", "PublishItem", "Receipt", "ShotCodes", "ShotStanding", "Standing", "Tracker"]

#: The production trackers voidflow publishes to (``--publish``, ``voidflow publish --tracker``).
Tracker = Literal["shotgrid", "kitsu"]
TRACKERS: tuple[Tracker, ...] = ("shotgrid", "kitsu")

#: A tracker shot's standing for voidflow: ``active`` (work on it), ``omit`` (cut from the show) or ``hold``
#: (paused by production); omitted and held shots are skipped at plan time.
Standing = Literal["active", "omit", "hold"]


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One delivered version, as a tracker is told about it.

    Attributes:
        shot: voidflow's shot name.
        code: the tracker's code for that shot (``ShotCodes``; the name itself unless mapped).
        version: voidflow's version label (``v001``).
        batch_id: the batch that delivered it (the link back to the ledger).
        first_frame: the delivery's first frame number, head handle included (1001 for a sequence; a movie
            counts from the same number).
        frames: frames delivered, handles included.
        head: head handle frames; ``tail`` likewise. The cut is ``[first_frame + head, last_frame - tail]``.
        tail: tail handle frames.
        rate: frames per second.
        review: the review movie (H.264 ``.mp4``, the deliver stage's ``review`` artifact) to upload.
        delivery: the delivered media (a movie, or a sequence's printf pattern), linked as the version's frames.
    """

    shot: str
    code: str
    version: str
    batch_id: str
    first_frame: int
    frames: int
    head: int
    tail: int
    rate: float
    review: Path
    delivery: str

    @property
    def last_frame(self) -> int:
        """The delivery's last frame number, tail handle included."""
        return self.first_frame + self.frames - 1

    @property
    def title(self) -> str:
        """The tracker version's name: ``<code>_voidclean_<version>`` (one per shot code and version)."""
        return f"{self.code}_voidclean_{self.version}"

    @property
    def marker(self) -> str:
        """The line that links a tracker record back to the ledger, and finds it again on a second publish."""
        return f"voidflow {self.shot} {self.version} (batch {self.batch_id})"

    def describe(self) -> str:
        """The tracker version's description: the marker, the cut, the handles and the rate."""
        cut = f"cut {self.first_frame + self.head}-{self.last_frame - self.tail}"
        return f"{self.marker}: {cut}, handles {self.head}+{self.tail}, {self.rate:g} fps"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a tracker answered to a publish.

    Attributes:
        tracker: which tracker.
        site: the tracker's URL and project (``https://studio.shotgrid.autodesk.com#Demo``): a version can be
            published to several sites, once each.
        shot_id: the tracker's ID of the shot.
        version_id: the tracker's ID of the version (ShotGrid Version, Kitsu preview file).
        created: False when the tracker already held this version (a second publish creates nothing).
    """

    tracker: Tracker
    site: str
    shot_id: str
    version_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class ShotStanding:
    """A shot as its tracker sees it: its standing and the tracker's own word for its status (``omt``, ``hld``,
    ``canceled`` …), or ``active`` with an empty status where the tracker has no such shot."""

    code: str
    standing: Standing
    status: str = ""


@dataclass(frozen=True, slots=True)
class ShotCodes:
    """The mapping hook from voidflow shot names to tracker shot codes; names not in ``table`` map to themselves."""

    table: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, name: str) -> str:
        """The tracker code of the shot named ``name``."""
        return self.table.get(name, name)

    @classmethod
    def load(cls, path: Path) -> ShotCodes:
        """Read a table from YAML or JSON (``{shot: code}``) or CSV (columns ``shot`` and ``code``).

        Raises:
            ConfigurationError: the file cannot be read, or is not such a table (one line naming the file).
        """
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"{path}: shot code table unreadable ({error.strerror})") from None
        try:
            if path.suffix.lower() == ".csv":
                rows = list(csv.DictReader(text.splitlines()))
                table = {row["shot"].strip(): row["code"].strip() for row in rows}
            else:
                loaded = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
                if not isinstance(loaded, dict):
                    raise ValueError("expected a mapping of shot name to tracker code")
                table = {str(name): str(code) for name, code in loaded.items()}
        except (ValueError, KeyError, TypeError, yaml.YAMLError) as error:
            raise ConfigurationError(f"{path}: not a shot code table ({error})") from None
        return cls(table)
