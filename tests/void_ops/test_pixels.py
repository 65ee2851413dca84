"""Quadmask classes, mattes, the plate-safe compositor and the cleanplate backend, with value tables."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.builders import one_shot
from voidflow.void_ops import media
from voidflow.void_ops.cleanplate import CleanPlate
from voidflow.void_ops.composite import Blend, changed_outside, composite
from voidflow.void_ops.exceptions import InvalidInput, MatteInvalid
from voidflow.void_ops.mattes import MatteMasker
from voidflow.void_ops.quadmask import combine, quantise, region
from voidflow.void_ops.shots import MediaSource, Shot


def test_quantise_by_ranges() -> None:
    values = np.array([0, 31, 32, 63, 95, 96, 127, 191, 192, 255], np.uint8)
    assert quantise(values).tolist() == [0, 0, 63, 63, 63, 127, 127, 127, 255, 255]


def test_combine_table_and_first_frame_rule() -> None:
    primary = np.array([[[True, True, False, False]]] * 2)
    affected = np.array([[[False, True, True, False]]] * 2)
    out = combine(primary, affected)
    assert out[1, 0].tolist() == [0, 63, 127, 255]
    cleared = combine(primary, affected, clear_affected_on_first_frame=True)
    assert cleared[0, 0].tolist() == [0, 63, 255, 255] and cleared[1, 0].tolist() == [0, 63, 127, 255]
    assert region(out)[0, 0].tolist() == [True, True, True, False]


def _shot(media_source: MediaSource, matte: str | None, ring: int = 0, frames: int = 6) -> Shot:
    return one_shot(media_source, frames, first=0, matte=matte, affected_ring=ring)


def test_matte_masker_reads_indexed_frames_and_grows_a_ring(tmp_path: Path) -> None:
    matte = np.zeros((8, 40, 48, 3), np.uint8)
    for index in range(8):
        matte[index, 15:25, 4 * index : 4 * index + 10] = 255  # the object moves 4 px a frame
    pattern = tmp_path / "roto" / "m.%04d.png"
    media.write_sequence(matte, pattern, Fraction(24), first_number=101)
    plate = MediaSource(str(tmp_path / "plate.mov"), "movie", 24.0, start=0, frames=8)
    shot = _shot(plate, str(pattern), ring=3)
    quadmask = MatteMasker()(shot, np.zeros((6, 40, 48, 3), np.uint8)).quadmask
    assert quadmask.shape == (6, 40, 48)
    # shot.first is media index 0, so quadmask frame k is matte file 101 + k.
    for k in range(6):
        assert (quadmask[k] == 0).sum() == 100
        assert quadmask[k, 20, 4 * k] == 0 and quadmask[k, 20, 4 * k + 11] == 127 and quadmask[k, 20, 4 * k + 14] == 255
    with pytest.raises(MatteInvalid, match="matte is 48x40, the plate is 64x40"):
        MatteMasker()(shot, np.zeros((6, 40, 64, 3), np.uint8))
    with pytest.raises(MatteInvalid, match="shot 'sh010': matte unusable: .*missing"):
        MatteMasker()(_shot(plate, str(pattern), frames=9), np.zeros((9, 40, 48, 3), np.uint8))
    with pytest.raises(MatteInvalid, match="no matte frames found"):
        MatteMasker()(_shot(plate, str(tmp_path / "none.%04d.png")), np.zeros((6, 40, 48, 3), np.uint8))


def test_blend_alpha_is_zero_beyond_grow_plus_feather() -> None:
    quadmask = np.full((1, 41, 41), 255, np.uint8)
    quadmask[0, 20, 20] = 0
    alpha = Blend(grow=3, feather=4).alpha(quadmask)[0]
    row = alpha[20, 20:]
    assert row[:4].tolist() == [1.0, 1.0, 1.0, 1.0]  # grown by 3
    assert 0 < row[4] < 1 and row[4] > row[7] > 0  # the feather ramps down over 4 px
    assert row[8:].tolist() == [0.0] * len(row[8:])
    with pytest.raises(InvalidInput):
        Blend(grow=-1).alpha(quadmask)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_composite_keeps_plate_bits_outside_alpha(dtype: type) -> None:
    rng = np.random.default_rng(0)
    scale = 1.0 if dtype is np.float32 else np.iinfo(dtype).max
    plate = (rng.random((3, 30, 30, 3)) * scale).astype(dtype)
    fill = (rng.random((3, 30, 30, 3)) * scale).astype(dtype)
    quadmask = np.full((3, 30, 30), 255, np.uint8)
    quadmask[:, 10:20, 10:20] = 0
    alpha = Blend(grow=2, feather=3).alpha(quadmask)
    out = composite(plate, fill, alpha)
    assert out.dtype == plate.dtype
    assert changed_outside(plate, out, alpha) == 0
    assert np.array_equal(out[alpha == 0], plate[alpha == 0])
    assert np.array_equal(out[alpha == 1], fill[alpha == 1])
    with pytest.raises(InvalidInput):
        composite(plate, fill[:2], alpha)


def test_cleanplate_recovers_a_static_background() -> None:
    rng = np.random.default_rng(1)
    background = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frames = np.repeat(background[None], 10, axis=0)
    quadmask = np.full((10, 48, 64), 255, np.uint8)
    for index in range(10):
        frames[index, 10:20, 5 * index : 5 * index + 8] = (250, 0, 0)  # an object crossing the frame
        quadmask[index, 10:20, 5 * index : 5 * index + 8] = 0
    quadmask[:, 40:44, 30:34] = 127  # an always-masked patch: never seen, filled by inpainting
    fill = CleanPlate()(frames, quadmask, seed=0, prompt="")
    assert np.array_equal(fill[:, 10:20], np.repeat(background[None, 10:20], 10, axis=0))
    keep = quadmask == 255
    assert np.array_equal(fill[keep], frames[keep])
    patch = fill[:, 40:44, 30:34].astype(int)
    assert patch.min() >= int(background.min()) and patch.max() <= int(background.max())
    with pytest.raises(InvalidInput):
        CleanPlate()(frames, quadmask[:5], seed=0, prompt="")
