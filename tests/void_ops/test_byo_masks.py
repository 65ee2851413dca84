"""Bring-your-own masks: a finished quadmask (lossy, 16-bit, float, RGB) read by VOID's value ranges; an
affected-region roto combined with the object matte; every file checked against the plate's range and size."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.builders import one_shot
from voidflow.void_ops import media
from voidflow.void_ops.exceptions import MatteInvalid
from voidflow.void_ops.mattes import MatteMasker, QuadmaskMasker, mask_sources, to_levels
from voidflow.void_ops.shots import MediaSource, Shot

T, H, W = 10, 64, 96
#: The plate: a movie whose media index k is plate index k; the shot shows indices 2..7 (6 frames with handles).
PLATE = MediaSource("/plates/sh010.mov", "movie", 24.0, start=0, frames=T)
FIRST, FRAMES = 2, 6


def _classes() -> np.ndarray:
    """A moving quadmask with all four classes: affected box, object box, and their overlap."""
    quadmask = np.full((T, H, W), 255, np.uint8)
    for t in range(T):
        quadmask[t, 8:40, 8 + 3 * t : 40 + 3 * t] = 127
        quadmask[t, 20:56, 28 + 3 * t : 60 + 3 * t] = 0
        quadmask[t, 20:40, 28 + 3 * t : 40 + 3 * t] = 63
    return quadmask


def _shot(**instructions: object) -> Shot:
    return one_shot(PLATE, FRAMES, first=FIRST, **instructions)


def _plate(width: int = W, frames: int = FRAMES) -> np.ndarray:
    return np.zeros((frames, H, width, 3), np.uint8)


def test_lossy_h264_quadmask_reads_right_by_ranges(tmp_path: Path) -> None:
    expected = _classes()
    movie = media.write_movie(np.repeat(expected[..., None], 3, -1), tmp_path / "q.mp4", Fraction(24), codec="h264")
    decoded = to_levels(media.read_frames(movie, 0, T)[..., 0])
    assert (decoded != expected).any()  # the codec changed values: equality would misread them
    shot = _shot(quadmask=movie.path)
    assert shot.first == FIRST and shot.frames == FRAMES
    out = QuadmaskMasker()(shot, _plate()).quadmask
    assert out.dtype == np.uint8 and np.array_equal(out, expected[FIRST : FIRST + FRAMES])
    params = QuadmaskMasker().params(shot)
    assert (params["source"], params["quadmask"], params["channel"]) == ("quadmask", movie.path, 0)


def test_16_bit_float_and_rgb_quadmask_sequences(tmp_path: Path) -> None:
    expected = _classes()
    noise = np.random.default_rng(3).integers(-20, 21, expected.shape)  # within every class's range
    noisy = np.clip(expected.astype(int) + noise, 0, 255)
    deep = np.repeat((noisy * 257).astype(np.uint16)[..., None], 3, -1)
    floats = np.repeat((noisy / 255).astype(np.float32)[..., None], 3, -1)
    rgb = np.stack([noisy.astype(np.uint8), 255 - expected, np.zeros_like(expected)], -1)  # classes in red only
    sources = [
        media.write_sequence(deep, tmp_path / "deep" / "q.%04d.png", Fraction(24), first_number=1001),
        media.write_sequence(floats, tmp_path / "float" / "q.%04d.exr", Fraction(24), fmt="exr", pixel_type="float"),
        media.write_sequence(rgb, tmp_path / "rgb" / "q.%04d.png", Fraction(24), first_number=7),
    ]
    assert to_levels(np.array([0, 16191, 32639, 65535], np.uint16)).tolist() == [0, 63, 127, 255]
    for source in sources:
        out = QuadmaskMasker()(_shot(quadmask=source.path), _plate()).quadmask
        assert np.array_equal(out, expected[FIRST : FIRST + FRAMES]), source.path


def test_affected_matte_combines_with_the_object_and_the_ring(tmp_path: Path) -> None:
    obj = np.zeros((T, H, W, 3), np.uint8)
    obj[:, 20:40, 20:40] = 255
    shadow = np.zeros((T, H, W, 3), np.uint8)
    shadow[:, 30:60, 30:70] = 255  # overlaps the object's lower right corner
    matte = media.write_sequence(obj, tmp_path / "obj" / "m.%04d.png", Fraction(24))
    affected = media.write_movie(shadow, tmp_path / "shadow.mkv", Fraction(24), codec="ffv1")
    shot = _shot(matte=matte.path, affected_matte=affected.path, affected_ring=2)
    out = MatteMasker()(shot, _plate()).quadmask
    frame = out[0]
    assert frame[25, 25] == 0  # object only
    assert frame[35, 35] == 63  # object and shadow
    assert frame[50, 60] == 127  # shadow only
    assert frame[25, 41] == 127 and frame[25, 43] == 255  # the 2 px ring around the object, then keep
    assert frame[5, 5] == 255
    assert set(np.unique(out)) == {0, 63, 127, 255}
    params = MatteMasker().params(shot)
    assert (params["source"], params["affected_matte"], params["affected_ring"]) == (
        "matte+affected_matte",
        affected.path,
        2,
    )
    assert MatteMasker().params(_shot(matte=matte.path))["source"] == "matte"
    assert list(mask_sources(shot)) == ["matte", "affected_matte"]


def test_size_and_frame_count_mismatches_name_the_shot_and_field(tmp_path: Path) -> None:
    expected = _classes()
    short = media.write_movie(np.repeat(expected[:6, ..., None], 3, -1), tmp_path / "short.mkv", 24, codec="ffv1")
    with pytest.raises(MatteInvalid) as caught:
        QuadmaskMasker()(_shot(quadmask=short.path), _plate())
    assert str(caught.value) == "shot 'sh010': quadmask has 6 frames; the shot needs plate indices 2-7 (6 frames)"
    with pytest.raises(MatteInvalid, match=r"^shot 'sh010': quadmask is 96x64, the plate is 80x64$"):
        QuadmaskMasker()(_shot(quadmask=short.path), _plate(width=80))

    obj = np.zeros((T, H, W, 3), np.uint8)
    matte = media.write_sequence(obj, tmp_path / "obj" / "m.%04d.png", Fraction(24))
    small = media.write_sequence(obj[:, :32, :48], tmp_path / "small" / "a.%04d.png", Fraction(24))
    with pytest.raises(MatteInvalid, match=r"^shot 'sh010': affected_matte is 48x32, the plate is 96x64$"):
        MatteMasker()(_shot(matte=matte.path, affected_matte=small.path), _plate())
    gappy = media.write_sequence(obj, tmp_path / "gappy" / "a.%04d.png", Fraction(24), first_number=1)
    Path(gappy.path % 6).unlink()  # plate index 5, inside the shot's range
    with pytest.raises(MatteInvalid) as caught:
        MatteMasker()(_shot(matte=matte.path, affected_matte=gappy.path), _plate())
    assert str(caught.value).startswith("shot 'sh010': affected_matte unusable: ") and "a.0006.png" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(MatteInvalid, match=r"^shot 'sh010': .*none\.mov: quadmask not found$"):
        QuadmaskMasker()(_shot(quadmask=str(tmp_path / "none.mov")), _plate())
    with pytest.raises(MatteInvalid, match=r"^shot 'sh010': .*: no affected_matte frames found$"):
        mask_sources(_shot(matte=matte.path, affected_matte=str(tmp_path / "no" / "a.%04d.png")))
