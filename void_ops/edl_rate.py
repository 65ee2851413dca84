"""An EDL's timecode rate, inferred from the EDL itself when the user gives none.

CMX 3600 EDLs do not state their rate. What they do carry is evidence, weighed in this order:

1. the rate of the media named by ``* FROM CLIP NAME:`` / ``* SOURCE FILE:`` comments, where that media is found
   (the caller probes it) and agrees with the timecodes;
2. ``FCM: DROP FRAME`` (or ``;`` separators): 29.97 drop-frame, or 59.94 when frame fields pass 29;
3. the largest frame field of any timecode: an EDL whose frames run to 24 is 25 fps, to 29 is 30-based, and so on.
   With enough events the largest field is the rate's last frame; when it is not a standard rate's last frame, the
   smallest standard rate that holds it is used and the choice is marked ambiguous (the EDL plans, and says so).

Frame fields of 60 and more fit no rate: that EDL is refused with a message suggesting ``--edl-rate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from voidflow.void_ops.exceptions import EditUnreadable

__all__ = ["EdlEvidence", "EdlRate", "check_edl_rate", "edl_evidence", "infer_edl_rate"]

_TIMECODE = re.compile(r"\b\d{2}:\d{2}:\d{2}([:;.,])(\d{2})\b")
_MEDIA_COMMENT = re.compile(r"^\*\s*(?:FROM CLIP NAME|SOURCE FILE)\s*:\s*(.+?)\s*$", re.IGNORECASE)
_DROP = re.compile(r"^FCM:\s*DROP\s+FRAME", re.IGNORECASE | re.MULTILINE)

#: The rate each timecode base stands for when nothing else says: film at 24, broadcast NTSC at 29.97/59.94.
_NOMINAL = {24: 24.0, 25: 25.0, 30: 30000 / 1001, 50: 50.0, 60: 60000 / 1001}


@dataclass(frozen=True, slots=True)
class EdlEvidence:
    """What an EDL's text says about its rate: drop-frame marks, the largest frame field (and where), media names."""

    drop_frame: bool
    largest_frame: int
    largest_at: str
    media: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EdlRate:
    """The rate an EDL is read at, the one-line evidence for it, and whether other standard rates fit as well."""

    rate: float
    evidence: str
    ambiguous: bool = False


def edl_evidence(text: str) -> EdlEvidence:
    """Collect the rate evidence of an EDL's text: FCM, every event timecode's frame field, media comments."""
    drop = bool(_DROP.search(text))
    largest, largest_at = -1, ""
    media: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("*"):
            found = _MEDIA_COMMENT.match(stripped)
            if found and found.group(1) not in media:
                media.append(found.group(1))
            continue
        for match in _TIMECODE.finditer(stripped):
            drop = drop or match.group(1) in ";,"
            if int(match.group(2)) > largest:
                largest, largest_at = int(match.group(2)), match.group(0)
    return EdlEvidence(drop, largest, largest_at, tuple(media))


def _label(rate: float) -> str:
    return f"{rate:.3f}".rstrip("0").rstrip(".")


def _fits(rate: float, evidence: EdlEvidence) -> bool:
    """Whether timecodes at ``rate`` can hold the EDL's frame fields and its drop-frame marks."""
    base = round(rate)
    return evidence.largest_frame < base and (not evidence.drop_frame or (base in (30, 60) and rate != base))


def infer_edl_rate(text: str, *, name: str, media_rate: Callable[[str], float | None] | None = None) -> EdlRate:
    """Infer the timecode rate of the EDL ``text`` (``name`` is the file, for messages).

    Args:
        media_rate: the frame rate of the media an EDL comment names, or None where it is not found.

    Raises:
        EditUnreadable: frame fields too large for any rate (60 and up), naming the timecode and ``--edl-rate``.
    """
    evidence = edl_evidence(text)
    frames = evidence.largest_frame
    if frames >= 60:
        raise EditUnreadable(
            f"{name}: timecode {evidence.largest_at} has frame {frames}, which fits no frame rate; "
            "pass --edl-rate with the EDL's rate"
        )
    probe = media_rate or _none
    found = {clip: rate for clip in evidence.media if (rate := probe(clip)) is not None and _fits(rate, evidence)}
    if len({round(rate, 3) for rate in found.values()}) == 1:
        clip, rate = next(iter(found.items()))
        return EdlRate(rate, f"EDL rate {_label(rate)} fps: the media it names ({clip}) runs at that rate")
    base = next(base for base in _NOMINAL if base > frames and (not evidence.drop_frame or base in (30, 60)))
    rate = _NOMINAL[base]
    if evidence.drop_frame:
        reason = f"FCM: DROP FRAME, frames up to {frames}"
        return EdlRate(rate, f"EDL rate {_label(rate)} fps drop-frame: {reason}", ambiguous=False)
    if frames == base - 1:
        return EdlRate(rate, f"EDL rate {_label(rate)} fps: frame fields run to {frames} ({evidence.largest_at})")
    seen = f"frame fields run only to {frames}" if frames >= 0 else "no timecodes"
    return EdlRate(
        rate,
        f"EDL rate {_label(rate)} fps assumed: {seen}, so higher rates fit as well (pass --edl-rate to be sure)",
        ambiguous=True,
    )


def check_edl_rate(text: str, rate: float, *, name: str) -> None:
    """Refuse a user-given EDL rate that the EDL's own timecodes contradict, with the timecode that does.

    Raises:
        EditUnreadable: a frame field at or beyond the rate's timecode base.
    """
    evidence = edl_evidence(text)
    if evidence.largest_frame >= round(rate):
        raise EditUnreadable(
            f"{name}: timecode {evidence.largest_at} has frame {evidence.largest_frame}, beyond what "
            f"--edl-rate {_label(rate)} allows (frames 0-{round(rate) - 1})"
        )


def _none(_: str) -> float | None:
    return None
