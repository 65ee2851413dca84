"""Review movies: the mask stage's preview and plate proxy and the deliver stage's review movie, as a browser gets
them. A real 60-frame shot (a ProRes plate at 800x450, its roto, the clean-plate fill) goes through the real mask
and deliver stages; each movie is checked with ffprobe (frames, size, colour tags, keyframes, moov first) and
decoded at several frames by seeking with PyAV, as a browser seeks by time, against the picture it should hold."""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.builders import one_shot
from voidflow.void_ops import media, pipeline, report
from voidflow.void_ops.cleanplate import CleanPlate
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.frames import to_uint8
from voidflow.void_ops.mattes import MatteMasker
from voidflow.void_ops.pipeline import StageFile
from voidflow.void_ops.plates import ColourSettings, plate_view
from voidflow.void_ops.shots import MediaSource, Shot

FRAMES, WIDTH, HEIGHT = 60, 800, 450
REVIEW = (640, 360)
PICKS = (0, 1, 11, 12, 13, 35, 58, 59)  # both sides of keyframes (every 12th) and the last frame
RADIUS = 30


@dataclass(frozen=True)
class Staged:
    shot: Shot
    plate: np.ndarray  # the plate range as the model view shows it, (60, 450, 800, 3)
    quadmask: np.ndarray
    delivery: MediaSource
    files: dict[str, StageFile]  # by kind: the mask stage's and the deliver stage's


def _shoot(folder: Path) -> tuple[MediaSource, str]:
    """A locked-off ProRes plate: a grainy texture, a red ball rolling across (its roto beside it, to remove) and a
    white block sliding along the top (kept: it makes every frame of the result differ from the next)."""
    rng = np.random.default_rng(3)
    texture = np.asarray(Image.fromarray(rng.integers(60, 200, (18, 32, 3), np.uint8)).resize((WIDTH, HEIGHT)))
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    plate = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    matte = np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    for index in range(FRAMES):
        frame = texture + rng.normal(0, 2, texture.shape)
        ball = (cols - 80 - 10 * index) ** 2 + (rows - 280) ** 2 <= RADIUS**2
        frame[ball] = (210, 30, 25)
        frame[20:60, 40 + 11 * index : 80 + 11 * index] = 250
        plate[index] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        matte[index][ball] = 255
    written = media.write_movie(plate, folder / "plate.mov", Fraction(24))
    roto = media.write_sequence(matte, folder / "roto" / "roto.%04d.png", Fraction(24), first_number=1001)
    return written, roto.path


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    root = tmp_path_factory.mktemp("review")
    plate_source, roto = _shoot(root)
    shot = one_shot(plate_source, FRAMES, matte=roto, affected_ring=6)
    view = plate_view(shot, ColourSettings())
    folder = pipeline.shot_dir(root / "out", shot)
    mask, output, reviews = pipeline.make_mask(shot, MatteMasker(), folder / "work", "r1", view)
    fill = pipeline.inpaint(shot, CleanPlate(), mask.path, folder / "work", "r1", view, seed=0, prompt="")
    delivery, qc, delivered = pipeline.deliver(
        shot, fill.path, mask.path, folder, view, version="v001", blend=Blend(), spec=pipeline.DeliverySpec()
    )
    assert qc.changed_outside == 0, qc.summary()
    files = {file.kind: file for file in [*reviews, *delivered]}
    plate = view.to_model(pipeline.plate_frames(shot))
    return Staged(shot, plate, output.quadmask, delivery.media, files)


def _ffprobe(path: Path) -> tuple[dict, list[dict]]:
    """The video stream (frames counted by decoding) and every frame's key flag, picture type and timestamp."""
    command = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_streams", "-show_frames"]
    out = subprocess.run(
        [*command, "-show_entries", "frame=key_frame,pict_type,pts", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    parsed = json.loads(out)
    return parsed["streams"][0], parsed["frames"]


def _top_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types, in file order."""
    data, boxes, at = path.read_bytes(), [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        size = struct.unpack(">Q", data[at + 8 : at + 16])[0] if size == 1 else size
        boxes.append(kind.decode())
        at += size
    return boxes


def _seek(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a review movie as a browser seeks: to the time ``index / 24`` s, from the keyframe at or
    before it; BT.709 video range to RGB, (H, W, 3) uint8."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        target = int(Fraction(index, 24) / stream.time_base)
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts >= target:
                assert frame.pts == target, f"{path.name}: no frame at {index / 24:.4f} s"
                rgb: np.ndarray = frame.to_ndarray(format="rgb24", src_colorspace="ITU709")
                return rgb
    raise AssertionError(f"{path.name}: frame {index} not found")


def _shrink(frame: np.ndarray, resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(REVIEW, resample))


def _tinted(frame: np.ndarray, quadmask: np.ndarray) -> np.ndarray:
    """The preview's picture, written out from its definition: remove red, overlap orange, affected blue, at 50%."""
    out, mask = _shrink(frame).astype(np.float32), _shrink(quadmask, Image.Resampling.NEAREST)
    for level, colour in ((0, (255, 40, 40)), (63, (255, 160, 0)), (127, (40, 160, 255))):
        hit = (np.abs(mask.astype(np.int16) - level) <= 31) if level else mask <= 31
        out[hit] = out[hit] * 0.5 + np.array(colour, np.float32) * 0.5
    return out.astype(np.uint8)


def _expected(staged: Staged, kind: str) -> np.ndarray:
    """Every frame each movie should show, (100, 360, 640, 3) uint8, made from independent reads."""
    plate = to_uint8(staged.plate)
    if kind == "plate_proxy":
        return np.stack([_shrink(frame) for frame in plate])
    if kind == "preview":
        return np.stack([_tinted(frame, mask) for frame, mask in zip(plate, staged.quadmask, strict=True)])
    delivered = to_uint8(media.read_frames(staged.delivery, 0, FRAMES))  # the delivery, decoded (BT.709 ProRes)
    return np.stack([_shrink(frame) for frame in delivered])


@pytest.mark.parametrize("kind", ["plate_proxy", "preview", "review"])
def test_review_movie_is_a_browser_ready_h264(staged: Staged, kind: str) -> None:
    record = staged.files[kind]
    assert (record.frames, record.fps, record.width, record.height) == (FRAMES, 24.0, *REVIEW)
    assert record.bytes == record.path.stat().st_size and record.sha256 == media.sha256_file(record.path)
    stream, frames = _ffprobe(record.path)
    assert (stream["codec_name"], stream["pix_fmt"], stream["width"], stream["height"]) == ("h264", "yuv420p", *REVIEW)
    assert (stream["nb_read_frames"], stream["r_frame_rate"]) == (str(FRAMES), "24/1")
    tags = (stream["color_primaries"], stream["color_transfer"], stream["color_space"], stream["color_range"])
    assert tags == ("bt709", "bt709", "bt709", "tv")
    keys = [index for index, frame in enumerate(frames) if frame["key_frame"] == 1]
    assert keys == list(range(0, FRAMES, report.REVIEW_GOP))
    assert {frame["pict_type"] for frame in frames} == {"I", "P"}  # no B-frames: decode order is display order
    assert [frame["pts"] for frame in frames] == sorted(frame["pts"] for frame in frames)
    boxes = _top_boxes(record.path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: a browser reads the index first


@pytest.mark.parametrize("kind", ["plate_proxy", "preview", "review"])
def test_seeking_lands_on_the_frame_asked_for(staged: Staged, kind: str) -> None:
    expected = _expected(staged, kind).astype(np.int16)
    for index in PICKS:
        got = _seek(staged.files[kind].path, index).astype(np.int16)
        error = np.abs(got - expected[index])
        assert error.mean() < 2.5, f"{kind} frame {index}: mean error {error.mean():.2f}"
        for other in (index - 1, index + 1):  # the neighbours differ where the ball moves: not those
            if 0 <= other < FRAMES:
                moved = np.abs(expected[other] - expected[index]).max(axis=-1) > 40
                assert moved.sum() > 200
                assert error[moved].mean() * 4 < np.abs(got - expected[other])[moved].mean(), (kind, index, other)


def test_the_three_movies_show_the_same_geometry_and_frames(staged: Staged) -> None:
    proxy, preview, review = (staged.files[kind] for kind in ("plate_proxy", "preview", "review"))
    assert proxy.path.name == "plate-r1.mp4" and preview.path.name == "preview-r1.mp4"
    assert review.path == Path(staged.delivery.path).parent / "review.mp4"
    last = FRAMES - 1
    plate, result = _seek(proxy.path, last).astype(np.int16), _seek(review.path, last).astype(np.int16)
    ball = _shrink(staged.quadmask[last], Image.Resampling.NEAREST) == 0
    outside = _shrink(staged.quadmask[last], Image.Resampling.NEAREST) == 255
    assert np.abs(plate - result)[outside].mean() < 1.5  # the same picture outside the mask
    assert np.abs(plate - result)[ball].mean() > 40  # and the ball is gone from the result


def test_review_size_is_even_and_at_most_640_wide() -> None:
    assert report.review_size(1280, 720) == (640, 360)
    assert report.review_size(2048, 858) == (640, 268)
    assert report.review_size(321, 181) == (320, 180)
    assert report.review_size(3, 3) == (2, 2)


def test_anamorphic_review_movie_stores_the_pixel_aspect(tmp_path: Path) -> None:
    frames = np.full((3, 90, 160, 3), 128, np.uint8)
    path = report.review_movie(frames, tmp_path / "squeezed.mp4", Fraction(24), pixel_aspect=Fraction(2))
    stream, _ = _ffprobe(path)
    assert (stream["width"], stream["height"], stream["sample_aspect_ratio"]) == (160, 90, "2:1")


def test_keyframe_interval_is_for_h264_only(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(InvalidInput, match=r"keyframe_interval is for h264 and at least 1, got 12 \(prores\)"):
        media.write_movie(frames, tmp_path / "a.mov", Fraction(24), keyframe_interval=12)
    with pytest.raises(InvalidInput, match=r"got 0 \(h264\)"):
        media.write_movie(frames, tmp_path / "b.mp4", Fraction(24), codec="h264", keyframe_interval=0)
    assert not list(tmp_path.iterdir())
