"""EDL rate inference: the sample EDLs, 25/30/50 fps EDLs, drop-frame, media evidence, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIMELINES
from voidflow.void_ops.edl_rate import check_edl_rate, edl_evidence, infer_edl_rate
from voidflow.void_ops.exceptions import EditUnreadable


def _edl(*events: tuple[str, str, str, str], fcm: str = "NON-DROP FRAME", comments: tuple[str, ...] = ()) -> str:
    lines = ["TITLE: test", f"FCM: {fcm}", ""]
    for number, (src_in, src_out, rec_in, rec_out) in enumerate(events, start=1):
        lines.append(f"{number:03d}  A001C003 V     C        {src_in} {src_out} {rec_in} {rec_out}")
        lines += list(comments)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("path", "rate", "ambiguous"),
    [
        ("edl/pycmx/ToD_R4_LOCK3.1_030618_Video.edl", 24.0, False),  # frames run to 23
        ("edl/edl-genius/cmx3600.edl", 30000 / 1001, False),  # FCM: DROP FRAME
        ("edl/screening_example.edl", 24.0, True),  # 13 events, frames only to 22: 24 assumed, and said so
    ],
)
def test_the_sample_edls(path: str, rate: float, ambiguous: bool) -> None:
    choice = infer_edl_rate((TIMELINES / path).read_text(errors="replace"), name=path)
    assert (choice.rate, choice.ambiguous) == (pytest.approx(rate), ambiguous)
    assert choice.evidence.startswith("EDL rate")


def test_a_pal_edl_is_25_fps() -> None:
    text = _edl(("01:00:00:00", "01:00:01:24", "10:00:00:00", "10:00:01:24"))
    choice = infer_edl_rate(text, name="pal.edl")
    assert choice.rate == 25.0 and not choice.ambiguous
    assert "01:00:01:24" in choice.evidence


@pytest.mark.parametrize(
    ("last", "fcm", "rate"),
    [
        ("29", "NON-DROP FRAME", 30000 / 1001),
        ("29", "DROP FRAME", 30000 / 1001),
        ("49", "NON-DROP FRAME", 50.0),
        ("59", "NON-DROP FRAME", 60000 / 1001),
        ("59", "DROP FRAME", 60000 / 1001),
        ("23", "NON-DROP FRAME", 24.0),
    ],
)
def test_the_largest_frame_field_names_the_rate(last: str, fcm: str, rate: float) -> None:
    text = _edl(("01:00:00:00", f"01:00:00:{last}", "10:00:00:00", f"10:00:00:{last}"), fcm=fcm)
    choice = infer_edl_rate(text, name="x.edl")
    assert choice.rate == pytest.approx(rate) and not choice.ambiguous


def test_semicolons_mark_drop_frame_without_fcm() -> None:
    text = _edl(("01:00:00;00", "01:00:00;10", "10:00:00;00", "10:00:00;10"), fcm="")
    assert edl_evidence(text).drop_frame
    assert infer_edl_rate(text, name="x.edl").rate == pytest.approx(30000 / 1001)


def test_the_named_media_decides_when_the_timecodes_cannot() -> None:
    text = _edl(("01:00:00:00", "01:00:00:12", "10:00:00:00", "10:00:00:12"), comments=("* FROM CLIP NAME: A001C003",))
    rates = {"A001C003": 25.0}
    choice = infer_edl_rate(text, name="x.edl", media_rate=rates.get)
    assert choice.rate == 25.0 and not choice.ambiguous and "A001C003" in choice.evidence
    # Media whose rate the timecodes contradict is not evidence: frames to 24 cannot be 24 fps.
    late = _edl(("01:00:00:00", "01:00:00:24", "10:00:00:00", "10:00:00:24"), comments=("* SOURCE FILE: A001C003",))
    assert infer_edl_rate(late, name="x.edl", media_rate={"A001C003": 24.0}.get).rate == 25.0
    # Two media at different rates settle nothing.
    two = _edl(
        ("01:00:00:00", "01:00:00:12", "10:00:00:00", "10:00:00:12"),
        comments=("* FROM CLIP NAME: A", "* FROM CLIP NAME: B"),
    )
    assert infer_edl_rate(two, name="x.edl", media_rate={"A": 25.0, "B": 30.0}.get).ambiguous


def test_frames_that_fit_no_rate_are_refused_with_the_flag_to_use() -> None:
    text = _edl(("01:00:00:00", "01:00:00:75", "10:00:00:00", "10:00:00:75"))
    with pytest.raises(EditUnreadable, match=r"^bad\.edl: timecode 01:00:00:75 has frame 75.*--edl-rate"):
        infer_edl_rate(text, name="bad.edl")


def test_a_given_rate_the_timecodes_contradict_is_refused() -> None:
    text = _edl(("01:00:00:00", "01:00:01:24", "10:00:00:00", "10:00:01:24"))
    with pytest.raises(EditUnreadable, match=r"^pal\.edl: timecode 01:00:01:24 has frame 24, beyond .*--edl-rate 24"):
        check_edl_rate(text, 24.0, name="pal.edl")
    check_edl_rate(text, 25.0, name="pal.edl")


def test_an_edl_without_events_is_ambiguous_not_an_error(tmp_path: Path) -> None:
    choice = infer_edl_rate("TITLE: empty\n", name="empty.edl")
    assert choice.rate == 24.0 and choice.ambiguous and "no timecodes" in choice.evidence


def test_read_edit_takes_the_rate_of_the_media_the_edl_names(tmp_path: Path) -> None:
    """A 12-frame EDL could be 24, 25 or 30 fps; the FFV1 movie it names beside it runs at 25, and says so."""
    from fractions import Fraction

    import numpy as np

    from voidflow.void_ops.intake import read_edit
    from voidflow.void_ops.media import probe, write_movie

    movie = write_movie(np.zeros((4, 16, 16, 3), np.uint8), tmp_path / "A001C003.mkv", Fraction(25), codec="ffv1",
                        timecode="01:00:00:00")  # fmt: skip
    assert probe(movie).timecode == "01:00:00:00"  # Matroska keeps it as TIMECODE
    edl = tmp_path / "reel.edl"
    edl.write_text(
        _edl(("01:00:00:00", "01:00:00:12", "10:00:00:00", "10:00:00:12"), comments=("* SOURCE FILE: A001C003.mkv",))
    )
    edit = read_edit(edl)
    assert edit.rate == 25.0 and edit.warnings == ()
    assert edit.rate_evidence == "EDL rate 25 fps: the media it names (A001C003.mkv) runs at that rate"
