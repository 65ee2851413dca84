"""Cut diffing: what changed for each shot between two edits, so a nightly batch runs only those shots.

Shots are matched by name (the naming policy makes names stable: clip metadata, marker, clip name). For a shot in
both edits, every change that alters its pixels is listed:

| change | meaning |
|---|---|
| ``added`` / ``removed`` | the shot is only in the new / old edit |
| ``trimmed`` / ``extended`` | it shows fewer / more frames of the same media |
| ``slipped`` | it shows as many frames, from elsewhere in the same media |
| ``re-sourced`` | its media is another file |
| ``re-instructed`` | what to remove, the prompt, the prompts or the matte changed |

A shot whose record position alone changed (it moved in the cut) needs no work and is reported as ``moved``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voidflow.void_ops.shots import Shot

__all__ = ["NEEDS_WORK", "UNCHANGED", "ShotChange", "diff_shots"]

#: Changes that need the shot processed again.
NEEDS_WORK = frozenset({"added", "trimmed", "extended", "slipped", "re-sourced", "re-instructed"})
#: The reason a batch records for a shot it skips because the previous edit already had it as it is.
UNCHANGED = "unchanged since the previous edit"


@dataclass(frozen=True, slots=True)
class ShotChange:
    """One shot's changes between two edits (empty ``kinds`` when nothing changed)."""

    shot: str
    kinds: tuple[str, ...]
    detail: str

    @property
    def needs_work(self) -> bool:
        """Whether the shot must be processed again."""
        return bool(NEEDS_WORK.intersection(self.kinds))

    def as_dict(self) -> dict[str, object]:
        """The change as JSON-ready data."""
        return {"shot": self.shot, "changes": list(self.kinds), "detail": self.detail}


def _range(shot: Shot) -> str:
    return f"{shot.source_start}-{shot.source_start + shot.duration - 1}"


def diff_shots(old: Sequence[Shot], new: Sequence[Shot]) -> list[ShotChange]:
    """Compare the shots planned from two edits; returns one entry per shot name, in the new edit's order, then
    the removed shots.

    Example: a shot cut from frames 1001-1048 to 1001-1040 is ``trimmed`` with detail "1001-1048 → 1001-1040".
    """
    before = {shot.name: shot for shot in old}
    changes = []
    for shot in new:
        previous = before.get(shot.name)
        if previous is None:
            changes.append(ShotChange(shot.name, ("added",), f"new at record frame {shot.record_start}"))
            continue
        kinds: list[str] = []
        details: list[str] = []
        if (previous.media.path if previous.media else None) != (shot.media.path if shot.media else None):
            kinds.append("re-sourced")
            details.append(
                f"media {previous.media.path if previous.media else None} → {shot.media.path if shot.media else None}"
            )
        elif (previous.source_start, previous.duration) != (shot.source_start, shot.duration):
            old_end, new_end = previous.source_start + previous.duration, shot.source_start + shot.duration
            inside = shot.source_start >= previous.source_start and new_end <= old_end
            covers = shot.source_start <= previous.source_start and new_end >= old_end
            kinds.append("trimmed" if inside else "extended" if covers else "slipped")
            details.append(f"{_range(previous)} → {_range(shot)}")
        if previous.instructions != shot.instructions:
            kinds.append("re-instructed")
            details.append("instructions changed")
        if not kinds and previous.record_start != shot.record_start:
            kinds.append("moved")
            details.append(f"record frame {previous.record_start} → {shot.record_start}")
        changes.append(ShotChange(shot.name, tuple(kinds), "; ".join(details)))
    names = {shot.name for shot in new}
    changes.extend(
        ShotChange(shot.name, ("removed",), "no longer in the cut") for shot in old if shot.name not in names
    )
    return changes
