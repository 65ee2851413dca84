"""Bounded shot memory: the estimate's arithmetic and sample types, and the windowed code paths giving exactly what
the whole-shot ones gave (QC, OCIO in chunks, decoders filling one array)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.builders import one_shot
from voidflow.void_ops import media, pipeline
from voidflow.void_ops.colour import to_colourspace
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.frames import from_unit, to_unit
from voidflow.void_ops.host_memory import WORKER_BYTES, decoded_sample, shot_memory
from voidflow.void_ops.mattes import MatteMasker
from voidflow.void_ops.passthrough import Passthrough
from voidflow.void_ops.plates import ColourSettings, plate_view
from voidflow.void_ops.shots import MediaSource

MIB = 1024**2


def test_the_estimate_counts_each_stage_s_arrays() -> None:
    # 10 frames of 20x30, 16-bit: a plate is 36,000 bytes, a plane 6,000, a window of float temporaries
    # 4 x 9 frames x 7,200 bytes; an integer plate has no separate model view.
    plane, plate, window, fixed = 6_000, 36_000, 4 * 9 * 7_200, 128 * MIB
    estimate = shot_memory("sh010", 10, 20, 30, "uint16", backend="passthrough")
    assert dict(estimate.stages) == {
        "mask": fixed + window + plate + 6 * plane,
        "pass1": fixed + window + 2 * plate + 2 * plane,
        "deliver": fixed + window + 2 * plate + 5 * plane + 9 * plane,  # the matte files outweigh a 16-bit plate
    }
    assert estimate.peak_stage == "deliver" and estimate.peak_bytes == WORKER_BYTES + dict(estimate.stages)["deliver"]
    # A float plate adds its model view (a float copy) to every stage, and the fill comes back through it at pass 1.
    floats = shot_memory("sh010", 10, 20, 30, "float32", backend="passthrough")
    view = 72_000
    assert dict(floats.stages)["pass1"] == fixed + window + 2 * view + view + view + 2 * plane
    # VOID adds three floats over its run; pass 2 holds pass 1's fill besides.
    void = shot_memory("sh010", 300, 20, 30, "uint16", backend="void", pass2=True)
    stages = dict(void.stages)
    assert list(stages) == ["mask", "pass1", "pass2", "deliver"]
    assert (
        stages["pass1"] - dict(shot_memory("sh010", 300, 20, 30, "uint16", backend="passthrough").stages)["pass1"]
        == 3 * 197 * 7_200
    )
    assert stages["pass2"] == stages["pass1"] + 300 * 3_600
    assert void.line() == f"30x20, 300 frames, uint16: ~{void.peak_bytes / 1024**3:.1f} GB at pass2"
    with pytest.raises(ValueError, match=r"^shot 'sh010': frames, height and width must be positive, got 0x20x30$"):
        shot_memory("sh010", 0, 20, 30, "uint16")


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("prores.mov", lambda frames, path: media.write_movie(frames, path, Fraction(24), codec="prores")),
        ("ffv1.mkv", lambda frames, path: media.write_movie(frames, path, Fraction(24), codec="ffv1")),
        ("png8/f.%04d.png", lambda frames, path: media.write_sequence(frames, path, Fraction(24))),
        ("png16/f.%04d.png", lambda frames, path: media.write_sequence(frames.astype(np.uint16) * 257, path,
                                                                        Fraction(24))),
        ("exr/f.%04d.exr", lambda frames, path: media.write_sequence(frames, path, Fraction(24), fmt="exr")),
        ("dpx/f.%04d.dpx", lambda frames, path: media.write_sequence(frames, path, Fraction(24), fmt="dpx")),
    ],
)  # fmt: skip
def test_decoded_sample_is_what_the_decoder_returns(tmp_path: Path, name: str, write) -> None:  # type: ignore[no-untyped-def]
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 32, 3), dtype=np.uint8)
    written = write(frames, tmp_path / name)
    source = written if isinstance(written, MediaSource) else MediaSource(str(tmp_path / name), "movie", 24.0)
    assert decoded_sample(media.probe(source)) == str(media.read_frames(source, 0, 2).dtype)


def test_ocio_in_chunks_gives_the_whole_shot_result() -> None:
    frames = np.random.default_rng(1).random((3, 600, 700, 3), dtype=np.float32) * 4  # 1.26 M pixels: two chunks
    whole = to_colourspace(frames, config_spec=None, src="ACEScg", dst="ACEScct")
    parts = [to_colourspace(frame[None], config_spec=None, src="ACEScg", dst="ACEScct") for frame in frames]
    assert np.array_equal(whole, np.concatenate(parts)) and not np.array_equal(whole, frames)


def _flicker_whole(plate: np.ndarray, result: np.ndarray, alpha: np.ndarray, ring: int = 16) -> float:
    """The flicker as it was computed over the whole shot at once (before QC went window by window)."""
    scale = 1.0 if plate.dtype.kind == "f" else float(np.iinfo(plate.dtype).max)
    region = alpha > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    band = np.stack([cv2.dilate(frame.astype(np.uint8), kernel).astype(bool) for frame in region]) & ~region
    inside, around = region[1:] | region[:-1], band[1:] & band[:-1]
    steps = np.abs(np.diff(result.astype(np.float64), axis=0)).mean(axis=-1)
    plate_steps = np.abs(np.diff(plate.astype(np.float64), axis=0)).mean(axis=-1)
    return float((steps[inside].mean() - plate_steps[around].mean()) / scale)


@pytest.mark.parametrize("output", ["prores", "png"])
def test_windowed_qc_equals_the_whole_shot_numbers(small_demo, tmp_path: Path, output: str) -> None:  # type: ignore[no-untyped-def]
    plate_source = MediaSource(str(small_demo.plate), "movie", 24.0)
    frames = 3 * pipeline.QC_WINDOW + 5  # several windows and a short last one
    shot = one_shot(plate_source, frames, matte=str(small_demo.matte), affected_ring=6)
    view = plate_view(shot, ColourSettings())
    work = tmp_path / "work"
    quadmask, _, _ = pipeline.make_mask(shot, MatteMasker(), work, "t", view)
    fill = pipeline.inpaint(shot, Passthrough(), quadmask.path, work, "t", view, seed=0, prompt="")
    spec = pipeline.DeliverySpec(output)
    delivery, qc, _ = pipeline.deliver(
        shot, fill.path, quadmask.path, tmp_path / "shot", view, version="v001", blend=Blend(), spec=spec
    )
    plate = pipeline.plate_frames(shot)
    back = media.read_frames(delivery.media, 0, frames)
    alpha = Blend().alpha(media.read_mask(quadmask.path))
    assert qc.frames == frames and qc.flicker == pytest.approx(_flicker_whole(plate, plate, alpha), abs=1e-9)
    if output == "png":
        assert qc.changed_outside == int(np.any(plate != back, axis=-1)[alpha == 0].sum()) == 0
        return
    reference = media.codec_reference(plate, "prores", view.info.decoding_tags())
    eight = [from_unit(to_unit(values), np.uint8).astype(np.int16) for values in (back, reference)]
    kernel = np.ones((2 * pipeline.MOVIE_QC_MARGIN + 1,) * 2, np.uint8)
    clear = np.stack([cv2.dilate((frame > 0).astype(np.uint8), kernel) == 0 for frame in alpha])
    error = np.abs(eight[0] - eight[1])[clear]
    whole = dataclasses.replace(
        qc,
        codec_max=float(error.max()) / 255,
        codec_p999=float(np.percentile(error, 99.9)) / 255,
        codec_mean=float(error.mean()) / 255,
    )
    assert (qc.codec_max, qc.codec_p999) == (whole.codec_max, whole.codec_p999) and error.max() > 0
    assert qc.codec_mean == pytest.approx(whole.codec_mean, rel=1e-12)
