"""Colour-true media, checked with independent oracles: ffprobe and the ffmpeg CLI for movies, OpenImageIO's own
ImageInput and oiiotool for image files. The product's reader is never the only judge of the product's files."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from tests.builders import one_shot
from voidflow.void_ops import media, pipeline
from voidflow.void_ops.cleanplate import CleanPlate
from voidflow.void_ops.colour import load_config
from voidflow.void_ops.composite import Blend
from voidflow.void_ops.exceptions import InvalidInput, MatteInvalid, MediaInvalid
from voidflow.void_ops.mattes import MatteMasker
from voidflow.void_ops.plates import ColourSettings, PlateView, plate_view
from voidflow.void_ops.shots import PLATE_ALPHA, Delivery, MediaSource, Shot, ShotInstructions

OIIOTOOL = str(Path(sys.executable).with_name("oiiotool"))
AP1 = (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)
CODE = 65535 / 255  # one 8-bit code value in 16-bit units
DNXHD = ["-c:v", "dnxhd", "-pix_fmt", "yuv422p", "-color_primaries", "bt709", "-color_trc", "bt709"]


# --- independent oracles -----------------------------------------------------------------------------------------


def ffprobe(path: Path | str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["streams"][0]


def cli_decode(path: Path | str, width: int, height: int, matrix: str = "bt709") -> np.ndarray:
    """The ffmpeg CLI's accurate decode to 16-bit RGB, (T, H, W, 3) uint16."""
    scale = f"scale=in_color_matrix={matrix}:in_range=tv:flags=accurate_rnd+full_chroma_int,format=rgb48le"
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", scale, "-f", "rawvideo", "-"], capture_output=True, check=True
    ).stdout
    return np.frombuffer(raw, "<u2").reshape(-1, height, width, 3)


def cli_alpha(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", "format=rgba64le", "-f", "rawvideo", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, "<u2").reshape(-1, height, width, 4)[..., 3]


def cli_prores_from_rgb48(frames: np.ndarray, path: Path) -> None:
    """The careful ffmpeg round trip's encode: 16-bit RGB in, BT.709 accurate, tagged ProRes 422 HQ out."""
    _, height, width, _ = frames.shape
    scale = "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,format=yuv422p10le"
    command = ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-s", f"{width}x{height}", "-r", "24"]
    command += ["-i", "-", "-vf", scale, "-c:v", "prores_ks", "-profile:v", "3", "-color_primaries", "bt709"]
    command += ["-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv", str(path)]
    subprocess.run(command, input=np.ascontiguousarray(frames, "<u2").tobytes(), capture_output=True, check=True)


def oiio_info(path: Path) -> str:
    return subprocess.run([OIIOTOOL, "--info", "-v", str(path)], capture_output=True, text=True, check=True).stdout


def oiio_attr(info: str, name: str) -> str | None:
    match = re.search(rf"^\s+{re.escape(name)}: (.*)$", info, re.MULTILINE)
    return match.group(1).strip().strip('"') if match else None


def oiio_read(path: Path, fmt: str = "float") -> tuple[np.ndarray, oiio.ImageSpec]:
    image = oiio.ImageInput.open(str(path))
    assert image is not None, oiio.geterror()
    try:
        return image.read_image(fmt), image.spec()
    finally:
        image.close()


def make_cli_movie(path: Path, source: str, args: list[str], frames: int = 3) -> Path:
    command = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-frames:v", str(frames), *args, str(path)]
    subprocess.run(command, capture_output=True, check=True)
    return path


def dnxhd_plate(path: Path, source: str | np.ndarray) -> Path:
    """A BT.709-tagged 1080p24 DNxHD plate made by the ffmpeg CLI (36 Mb/s, else 115 Mb/s) from a lavfi source or
    from (T, 1080, 1920, 3) uint8 RGB frames (converted to Y'CbCr by the CLI, BT.709, accurate flags)."""
    for rate in ("36M", "115M"):
        try:
            if isinstance(source, str):
                return make_cli_movie(path, source, [*DNXHD, "-colorspace", "bt709", "-b:v", rate])
            scale = "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int"
            command = ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "1920x1080", "-r", "24"]
            command += ["-i", "-", "-vf", scale, *DNXHD, "-colorspace", "bt709", "-b:v", rate, str(path)]
            subprocess.run(command, input=np.ascontiguousarray(source).tobytes(), capture_output=True, check=True)
            return path
        except subprocess.CalledProcessError:
            path.unlink(missing_ok=True)
    raise AssertionError("ffmpeg refused DNxHD 1080p24 at 36M and 115M")


def soft_frames(count: int = 3, height: int = 1080, width: int = 1920) -> np.ndarray:
    """Camera-like RGB: smooth, moderately saturated colour fields that drift from frame to frame."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(count):
        r = 0.5 + 0.35 * np.sin(2 * np.pi * (1.5 * x / width + 0.1 * t))
        g = 0.5 + 0.3 * np.sin(2 * np.pi * (1.2 * y / height + 0.5 * x / width - 0.1 * t))
        b = 0.45 + 0.3 * np.cos(2 * np.pi * (x + 2 * y) / (width + height))
        frames.append(np.rint(np.stack([r, g, b], axis=-1) * 255).astype(np.uint8))
    return np.stack(frames)


def movie(path: Path) -> MediaSource:
    return MediaSource(str(path.resolve()), "movie", 24.0)


def eight_bit(frames: np.ndarray) -> np.ndarray:
    return np.rint(frames.astype(np.float64) / CODE).astype(np.int32)


@pytest.fixture(scope="module")
def bt709_plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dnxhd")
    return dnxhd_plate(folder / "plate.mov", "testsrc2=size=1920x1080:rate=24")


# --- 1. ProRes 422 HQ tags and matrix ----------------------------------------------------------------------------


def test_prores_hq_is_tagged_bt709_and_encodes_with_the_bt709_matrix(tmp_path: Path) -> None:
    frames = np.zeros((2, 720, 1280, 3), np.uint8)
    frames[...] = (200, 30, 30)
    path = tmp_path / "flat.mov"
    media.write_movie(frames, path, Fraction(24))
    stream = ffprobe(path)
    assert (stream["color_space"], stream["color_primaries"], stream["color_transfer"]) == ("bt709",) * 3
    assert stream["color_range"] == "tv"
    assert stream["pix_fmt"] == "yuv422p10le" and stream["profile"] == "HQ"
    decoded = cli_decode(path, 1280, 720).reshape(-1, 3).astype(np.float64) / CODE
    error = np.abs(decoded - (200, 30, 30)).max()
    assert error <= 1.0, f"(200,30,30) decodes as BT.709 to {decoded.mean(axis=0).round(2)} (max error {error:.2f})"


# --- 2. decoding follows the file's tags, NLE conventions when untagged ------------------------------------------


def test_tagged_dnxhd_plate_decodes_like_the_ffmpeg_cli(bt709_plate: Path) -> None:
    source = movie(bt709_plate)
    info = media.probe(source)
    assert (info.width, info.height, info.frames, info.codec) == (1920, 1080, 3, "dnxhd")
    assert (info.colour.primaries, info.colour.transfer, info.colour.matrix) == ("bt709",) * 3
    ours = media.read_frames(source, 0, 3)
    assert ours.dtype == np.uint16 and ours.shape == (3, 1080, 1920, 3)
    difference = np.abs(ours.astype(np.int32) - cli_decode(bt709_plate, 1920, 1080).astype(np.int32))
    assert difference.max() <= CODE and difference.mean() <= 0.05 * CODE, (difference.max(), difference.mean())


@pytest.mark.parametrize(("size", "matrix", "other"), [("720x480", "bt601", "bt709"), ("1280x720", "bt709", "bt601")])
def test_untagged_movie_decodes_with_the_nle_convention(tmp_path: Path, size: str, matrix: str, other: str) -> None:
    width, height = (int(n) for n in size.split("x"))
    path = make_cli_movie(
        tmp_path / "untagged.mov", f"testsrc2=size={size}:rate=24", ["-c:v", "prores_ks", "-pix_fmt", "yuv422p10le"], 2
    )
    stream = ffprobe(path)
    assert "color_space" not in stream or stream["color_space"] in ("unknown", "reserved")
    ours = media.read_frames(movie(path), 0, 2).astype(np.int32)
    right = np.abs(ours - cli_decode(path, width, height, matrix).astype(np.int32))
    assert right.max() <= CODE and right.mean() <= 0.05 * CODE, (right.max(), right.mean())
    wrong = np.abs(ours - cli_decode(path, width, height, other).astype(np.int32))
    assert wrong.max() > 10 * CODE  # the content tells the two matrices apart


# --- 3. round trip of a BT.709 plate through a ProRes delivery ---------------------------------------------------


def _round_trip(plate: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The plate and write_movie's re-encode of its decoded frames, both decoded by the CLI and rounded to 8 bits."""
    source = movie(plate)
    info = media.probe(source)
    delivery = folder / f"{plate.stem}-delivery.mov"
    media.write_movie(media.read_frames(source, 0, info.frames), delivery, Fraction(24), colour=info.decoding_tags())
    assert ffprobe(delivery)["color_space"] == "bt709"
    before = eight_bit(cli_decode(plate, info.width, info.height))
    return before, eight_bit(cli_decode(delivery, info.width, info.height))


def test_bt709_plate_round_trip_through_prores_is_within_codec_precision(tmp_path: Path) -> None:
    # Camera-like content (smooth colour fields): the documented target holds over the whole frame.
    plate = dnxhd_plate(tmp_path / "soft.mov", soft_frames())
    before, after = _round_trip(plate, tmp_path)
    error = np.abs(before - after)
    figures = f"soft DNxHD plate -> ProRes 422 HQ: max {error.max()}/255, mean {error.mean():.4f}/255"
    print(figures)
    assert error.max() <= 4 and error.mean() <= 0.5, figures


def test_real_avid_dnxhd_plate_round_trip_through_prores_meets_the_target(tmp_path: Path) -> None:
    # Real footage: Avid's DNxHD 1080p24 sample from the OTIO AAF adapter (tests/media, Apache-2.0), tagged bt709.
    plate = Path(__file__).parents[1] / "media" / "picchu_seq0100_snippet_dnx.mov"
    assert media.probe(movie(plate)).colour.matrix == "bt709"
    np.testing.assert_array_equal(media.read_frames(movie(plate), 0, 2), cli_decode(plate, 1920, 1080)[:2])
    before, after = _round_trip(plate, tmp_path)
    error = np.abs(before - after)
    figures = f"Avid DNxHD plate -> ProRes 422 HQ: max {error.max()}/255, mean {error.mean():.4f}/255"
    print(figures)
    assert error.max() <= 4 and error.mean() <= 0.5, figures


def test_bt709_plate_round_trip_is_as_good_as_the_careful_ffmpeg_round_trip(bt709_plate: Path, tmp_path: Path) -> None:
    # testsrc2's hard saturated chroma edges cannot survive two 4:2:2 chroma resamplings through clipped RGB within
    # 4/255 by any encoder; the reference is ffmpeg's own careful round trip (16-bit RGB, accurate flags, BT.709).
    before, after = _round_trip(bt709_plate, tmp_path)
    reference_path = tmp_path / "reference.mov"
    cli_prores_from_rgb48(cli_decode(bt709_plate, 1920, 1080), reference_path)
    reference = np.abs(before - eight_bit(cli_decode(reference_path, 1920, 1080)))
    error = np.abs(before - after)
    figures = (
        f"testsrc2 DNxHD plate -> ProRes 422 HQ: max {error.max()}/255, mean {error.mean():.4f}/255; "
        f"ffmpeg careful round trip: max {reference.max()}/255, mean {reference.mean():.4f}/255"
    )
    print(figures)
    assert error.max() <= reference.max() and error.mean() <= reference.mean() + 0.01, figures
    assert error.mean() <= 0.5, figures


# --- 4. mastering codecs, pixel aspect, timecode -----------------------------------------------------------------


def _ramp(count: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 255 // (width + height - 2)], -1)
    return np.repeat(frame[None].astype(np.uint8), count, axis=0)


def test_prores_4444_carries_alpha(tmp_path: Path) -> None:
    alpha = _ramp(2, 48, 64)[..., 0]  # 0..255 across the frame
    path = tmp_path / "alpha.mov"
    media.write_movie(_ramp(2, 48, 64), path, Fraction(24), codec="prores_4444", alpha=alpha)
    stream = ffprobe(path)
    assert stream["profile"] == "4444"
    # ffmpeg's ProRes decoder reports every 4444 stream as 12-bit (the bitstream has no depth): yuva444p12le.
    assert stream["pix_fmt"] in ("yuva444p10le", "yuva444p12le")
    matte = media.read_matte(movie(path), 0, 2)
    assert matte.dtype == np.uint8 and np.abs(matte.astype(int) - alpha).max() <= 1
    oracle = cli_alpha(path, 64, 48).astype(np.float64) / CODE
    assert np.abs(oracle - alpha).max() <= 1


def test_prores_4444_xq_profile(tmp_path: Path) -> None:
    path = tmp_path / "xq.mov"
    media.write_movie(_ramp(2, 48, 64), path, Fraction(24), codec="prores_4444xq")
    stream = ffprobe(path)
    assert stream["profile"] in ("XQ", "4444XQ", "4444 XQ")
    assert stream["pix_fmt"].startswith("yuv444p")


def test_dnxhr_hqx_profile(tmp_path: Path) -> None:
    path = tmp_path / "hqx.mov"  # DNxHR's smallest frame is 256x120
    media.write_movie(_ramp(2, 144, 256), path, Fraction(24), codec="dnxhr_hqx")
    stream = ffprobe(path)
    assert stream["profile"] == "DNXHR HQX" and stream["pix_fmt"] == "yuv422p10le"


def test_pixel_aspect_and_timecode_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "anamorphic.mov"
    media.write_movie(_ramp(2, 48, 64), path, Fraction(24), pixel_aspect=Fraction(2), timecode="01:00:10:00")
    stream = ffprobe(path)
    assert stream["sample_aspect_ratio"] == "2:1"
    assert stream["tags"]["timecode"] == "01:00:10:00"
    info = media.probe(movie(path))
    assert info.pixel_aspect == 2 and info.timecode == "01:00:10:00"


# --- 5. half EXR -------------------------------------------------------------------------------------------------


def _halves(count: int = 2, height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(5)
    frames = rng.uniform(-0.5, 8.0, (count, height, width, 3)).astype(np.float16).astype(np.float32)
    frames[:, 0, 0] = (6.0, -0.25, 0.1875)
    return frames


def test_half_exr_header_and_bits(tmp_path: Path) -> None:
    frames = _halves()
    pattern = tmp_path / "plate" / "plate.%04d.exr"
    attributes = {"smpte:TimeCode": "01:00:00:00"}
    source = media.write_sequence(frames, pattern, Fraction(24), fmt="exr", attributes=attributes)
    first, second = (Path(str(pattern) % n) for n in (1001, 1002))
    info = oiio_info(first)
    assert re.search(r"3 channel, half openexr", info), info
    assert oiio_attr(info, "compression") == "piz"
    assert oiio_attr(info, "FramesPerSecond").startswith("24/1")
    assert oiio_attr(info, "smpte:TimeCode") == "01:00:00:00"
    assert oiio_attr(oiio_info(second), "smpte:TimeCode") == "01:00:00:01"
    for index, file in enumerate((first, second)):
        pixels, spec = oiio_read(file)
        assert spec.format == oiio.TypeDesc("half")
        assert np.array_equal(pixels, frames[index])
    back = media.read_frames(source, 0, 2)
    assert back.dtype == np.float32 and np.array_equal(back, frames)
    assert back[0, 0, 0].tolist() == [6.0, -0.25, 0.1875]


def test_exr_dwaa_compression(tmp_path: Path) -> None:
    pattern = tmp_path / "dwaa" / "plate.%04d.exr"
    media.write_sequence(_halves(1), pattern, Fraction(24), fmt="exr", compression="dwaa")
    assert oiio_attr(oiio_info(Path(str(pattern) % 1001)), "compression") == "dwaa"


def test_exr_matte_layer(tmp_path: Path) -> None:
    frames = _halves()
    alpha = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None, None], 48, axis=1).repeat(2, axis=0)
    pattern = tmp_path / "matte" / "plate.%04d.exr"
    source = media.write_sequence(frames, pattern, Fraction(24), fmt="exr", alpha=alpha, alpha_channel="matte.A")
    info = oiio_info(Path(str(pattern) % 1001))
    assert oiio_attr(info, "channel list") == "R, G, B, matte.A"
    pixels, spec = oiio_read(Path(str(pattern) % 1001))
    assert list(spec.channelnames) == ["R", "G", "B", "matte.A"]
    assert np.array_equal(pixels[..., :3], frames[0])
    assert np.abs(pixels[..., 3] - alpha[0]).max() <= 1e-3
    assert np.array_equal(media.read_frames(source, 0, 2), frames)


# --- 6. 10-bit DPX -----------------------------------------------------------------------------------------------


def test_ten_bit_dpx_is_bit_exact(tmp_path: Path) -> None:
    ten = np.random.default_rng(6).integers(0, 1024, (2, 48, 64, 3)).astype(np.uint16)
    ten[0, 0, :3] = ((0, 1, 2), (1021, 1022, 1023), (64, 512, 940))
    frames = (ten << 6) | (ten >> 4)
    source = media.write_sequence(frames, tmp_path / "dpx" / "plate.%04d.dpx", Fraction(24), fmt="dpx")
    first = source.file_for_index(0)
    info = oiio_info(first)
    assert oiio_attr(info, "oiio:BitsPerSample") == "10" and "uint10 dpx" in info, info
    pixels, _ = oiio_read(first, "uint16")
    assert np.array_equal(pixels, frames[0])
    back = media.read_frames(source, 0, 2)
    assert back.dtype == np.uint16 and np.array_equal(back, frames)
    again = media.write_sequence(back, tmp_path / "dpx2" / "plate.%04d.dpx", Fraction(24), fmt="dpx")
    assert np.array_equal(media.read_frames(again, 0, 2), frames)
    assert np.array_equal(oiio_read(again.file_for_index(1), "uint16")[0], frames[1])


# --- 7. the pipeline on a scene-linear ACEScg plate --------------------------------------------------------------


def _shot(source: MediaSource, frames: int, colourspace: str | None = None) -> Shot:
    return one_shot(source, frames, colourspace=colourspace)


@dataclass(frozen=True)
class AcesShot:
    shot: Shot
    plate: np.ndarray
    box: tuple[slice, slice]
    view: PlateView
    fill: Path
    mask: Path
    shot_folder: Path


COUNT, HEIGHT, WIDTH = 6, 48, 64
NEUTRAL, WARM = (6, 6), (42, 56)  # centres of the 6.0 highlights, well clear of the matte


@pytest.fixture(scope="module")
def aces_shot(tmp_path_factory: pytest.TempPathFactory) -> AcesShot:
    """A locked-off ACEScg half-float plate (AP1 chromaticities, timecode 01:00:00:00) with soft highlights peaking
    at 6.0, an object to remove in a box, its quadmask and the cleanplate fill (pass 1, float EXR sequence)."""
    root = tmp_path_factory.mktemp("aces")
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    background = np.stack(
        [0.15 + 0.2 * x / WIDTH, 0.18 + 0.1 * y / HEIGHT, 0.2 + 0.1 * (x + y) / (WIDTH + HEIGHT)], axis=-1
    )
    for (cy, cx), colour in ((NEUTRAL, (6.0, 6.0, 6.0)), (WARM, (6.0, 4.0, 0.5))):
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 8)[..., None]
        background = background * (1 - blob) + blob * np.array(colour, np.float32)
    background = background.astype(np.float16).astype(np.float32)
    background[NEUTRAL], background[WARM] = (6.0, 6.0, 6.0), (6.0, 4.0, 0.5)
    plate = np.repeat(background[None], COUNT, axis=0)
    box = (slice(18, 30), slice(24, 40))
    for index in range(COUNT):
        plate[index][box] = np.float32(0.25 * index)  # an object to remove, changing every frame
    attributes = {"chromaticities": ("float[8]", AP1), "smpte:TimeCode": "01:00:00:00"}
    written = media.write_sequence(
        plate, root / "plates" / "sh010.%04d.exr", Fraction(24), fmt="exr", attributes=attributes
    )
    assert oiio_info(written.file_for_index(0)).count("half openexr") == 1
    source = MediaSource(written.path, "sequence", 24.0, start=86400, frames=COUNT, first_number=1001)
    shot = _shot(source, COUNT)  # media time 86400 = 01:00:00:00; the range is the whole plate
    view = plate_view(shot, ColourSettings())
    quadmask = np.full((COUNT, HEIGHT, WIDTH), 255, np.uint8)
    quadmask[(slice(None), *box)] = 0
    work = root / "out" / "shots" / "sh010" / "work"
    work.mkdir(parents=True)
    mask = work / "quadmask-x.mkv"
    media.write_mask(quadmask, mask)
    fill = pipeline.inpaint(shot, CleanPlate(), mask, work, "x", view, seed=0, prompt="")
    return AcesShot(shot, plate, box, view, fill.path, mask, work.parent)


def _deliver(aces: AcesShot, version: str, output: str) -> tuple[Delivery, pipeline.QcReport]:
    spec = pipeline.DeliverySpec(output=output)  # type: ignore[arg-type]
    delivery, qc, _ = pipeline.deliver(
        aces.shot, aces.fill, aces.mask, aces.shot_folder, aces.view, version=version, blend=Blend(), spec=spec
    )
    return delivery, qc


def test_acescg_plate_colour_is_inferred_from_chromaticities(aces_shot: AcesShot) -> None:
    colour = aces_shot.view.colour
    assert colour.name == "ACEScg" and colour.source == "inferred", colour
    assert "chromaticities" in colour.evidence and aces_shot.view.view.scene_referred
    assert aces_shot.fill.parent.name == "fill-x" and aces_shot.fill.name == "fill.%06d.exr"


def test_acescg_exr_delivery_is_half_and_bit_identical_outside_the_matte(aces_shot: AcesShot) -> None:
    delivery, qc = _deliver(aces_shot, "v001", "exr")
    assert qc.passed, qc.summary()
    first = delivery.media.file_for_index(0)
    assert first.name == "sh010_voidclean_v001.1001.exr"
    info = oiio_info(first)
    assert "half openexr" in info, info
    chroma = oiio_attr(info, "chromaticities")
    assert chroma is not None and [float(v) for v in re.split(r"[ ,]+", chroma)] == pytest.approx(AP1, abs=1e-6)
    assert (oiio_attr(info, "FramesPerSecond") or "").startswith("24/1")
    # OpenImageIO 3 stores oiio:ColorSpace as OpenEXR's colorInteropID: ACEScg's interop ID is lin_ap1_scene.
    stored_space = oiio_attr(info, "oiio:ColorSpace")
    assert stored_space in ("ACEScg", "lin_ap1_scene"), stored_space
    assert load_config(None).getColorSpace(stored_space).getName() == "ACEScg"
    assert oiio_attr(info, "voidflow:shot") == "sh010"
    assert oiio_attr(info, "smpte:TimeCode") == "01:00:00:00"
    plate, box = aces_shot.plate, aces_shot.box
    # Clear of the grown, feathered matte (Blend(): 4 + 4 px; 10 px kept clear) the delivery is the plate, bit for bit.
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[box[0].start - 10 : box[0].stop + 10, box[1].start - 10 : box[1].stop + 10] = False
    for index in range(COUNT):
        pixels, spec = oiio_read(delivery.media.file_for_index(index))
        assert spec.format == oiio.TypeDesc("half") and list(spec.channelnames) == ["R", "G", "B", "matte.A"]
        rgb, alpha = pixels[..., :3], pixels[..., 3]
        assert np.array_equal(rgb[outside], plate[index][outside])
        assert np.array_equal(rgb[alpha == 0], plate[index][alpha == 0])
        assert rgb[NEUTRAL].tolist() == [6.0, 6.0, 6.0] and rgb[WARM].tolist() == [6.0, 4.0, 0.5]
        assert (alpha[box] == 1).all() and not np.array_equal(rgb[box], plate[index][box])


def test_acescg_prores_delivery_is_the_bt709_model_view(aces_shot: AcesShot) -> None:
    delivery, qc = _deliver(aces_shot, "v002", "prores")
    stream = ffprobe(delivery.media.path)
    assert (stream["color_space"], stream["color_primaries"], stream["color_transfer"]) == ("bt709",) * 3
    assert stream["color_range"] == "tv" and stream["profile"] == "HQ"
    assert stream["tags"]["timecode"] == "01:00:00:00"
    encoding = pipeline.delivery_encoding(aces_shot.view, pipeline.DeliverySpec(output="prores"))
    assert encoding["colourspace"] == "display Rec.709 (model view)" and encoding["tags"] == "bt709"
    assert encoding["encoding"] == aces_shot.view.view.describe()
    # What the file holds, decoded by the ffmpeg CLI, is the model view of the plate outside the matte.
    expected = eight_bit(np.rint(aces_shot.view.to_model(aces_shot.plate) * 65535))
    decoded = eight_bit(cli_decode(delivery.media.path, WIDTH, HEIGHT))
    assert qc.changed_outside == 0 and qc.header == () and qc.frames == COUNT
    far = np.ones((HEIGHT, WIDTH), bool)
    far[10:38, 16:48] = False
    error = np.abs(decoded - expected)[:, far]
    reference_path = Path(delivery.media.path).with_name("reference.mov")
    cli_prores_from_rgb48(np.rint(aces_shot.view.to_model(aces_shot.plate) * 65535).astype(np.uint16), reference_path)
    reference = np.abs(eight_bit(cli_decode(reference_path, WIDTH, HEIGHT)) - expected)[:, far]
    figures = (
        f"ACEScg -> ProRes model view, outside the matte: max {error.max()}/255, mean {error.mean():.3f}/255; "
        f"ffmpeg careful encode: max {reference.max()}/255, mean {reference.mean():.3f}/255; QC: {qc.summary()}"
    )
    print(figures)
    assert error.max() <= reference.max() and error.mean() <= reference.mean() + 0.01, figures
    assert error.mean() <= 0.5 and np.percentile(error, 99) <= 4, figures


def test_acescg_prores_delivery_passes_qc(aces_shot: AcesShot) -> None:
    _, qc = _deliver(aces_shot, "v003", "prores")
    assert qc.passed, qc.summary()


# --- 8. bad input ------------------------------------------------------------------------------------------------


def test_unknown_declared_colourspace_names_shot_and_value(tmp_path: Path) -> None:
    frames = np.full((3, 16, 16, 3), 0.5, np.float32)
    source = media.write_sequence(frames, tmp_path / "p" / "p.%04d.exr", Fraction(24), fmt="exr")
    with pytest.raises(InvalidInput) as caught:
        plate_view(_shot(source, 3, colourspace="ACEScgg"), ColourSettings())
    message = str(caught.value)
    assert "\n" not in message and "sh010" in message and "'ACEScgg'" in message, message


def test_scene_linear_declared_on_bt709_video_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "video709.mp4"
    tags = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
    make_cli_movie(path, "testsrc2=size=320x180:rate=24", ["-c:v", "libx264", "-pix_fmt", "yuv420p", *tags])
    assert ffprobe(path)["color_transfer"] == "bt709" and ffprobe(path)["pix_fmt"] == "yuv420p"
    source = movie(path)
    with pytest.raises(InvalidInput) as caught:
        plate_view(_shot(source, 3, colourspace="ACEScg"), ColourSettings())
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "sh010" in message, message


def test_missing_plate_sequence_is_media_invalid(tmp_path: Path) -> None:
    source = MediaSource(str(tmp_path / "gone" / "sh010.%04d.exr"), "sequence", 24.0, frames=6, first_number=1001)
    with pytest.raises(MediaInvalid, match=r"sh010\.1001\.exr"):
        plate_view(_shot(source, 6), ColourSettings())


def test_plate_alpha_is_the_matte_when_the_sidecar_says_so(tmp_path: Path) -> None:
    frames = _halves(4)
    alpha = np.zeros(frames.shape[:3], np.float32)
    alpha[:, 10:30, 20:40] = 1.0
    source = media.write_sequence(frames, tmp_path / "rgba" / "p.%04d.exr", Fraction(24), fmt="exr", alpha=alpha)
    assert media.probe(source).alpha
    shot = dataclasses.replace(_shot(source, 4), instructions=ShotInstructions(matte=PLATE_ALPHA))
    quadmask = MatteMasker()(shot, media.read_frames(source, 0, 4)).quadmask
    assert np.array_equal(quadmask == 0, alpha > 0.5)  # the object (0, remove) is exactly the plate's alpha
    opaque = media.write_sequence(frames, tmp_path / "rgb" / "p.%04d.exr", Fraction(24), fmt="exr")
    no_alpha = dataclasses.replace(_shot(opaque, 4), instructions=ShotInstructions(matte=PLATE_ALPHA))
    with pytest.raises(MatteInvalid, match=r"plate-alpha, but the plate has no alpha channel"):
        MatteMasker()(no_alpha, media.read_frames(opaque, 0, 4))


@dataclass
class _SeesShapes:
    """A pass-1 backend that records the frames it is handed and fills with CleanPlate."""

    seen: list[tuple[int, ...]]
    name: str = "sees-shapes"
    version: str = "1"
    max_frames: int | None = None
    min_frames: int = 1

    def params(self) -> dict[str, object]:
        return {}

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]:
        return {}

    def __call__(
        self, frames: np.ndarray, quadmask: np.ndarray, *, seed: int, prompt: str, first_pass: np.ndarray | None = None
    ) -> np.ndarray:
        self.seen.append(frames.shape)
        return CleanPlate()(frames, quadmask, seed=seed, prompt=prompt)


def test_anamorphic_plate_is_desqueezed_for_the_model_and_delivered_at_plate_geometry(tmp_path: Path) -> None:
    frames = _ramp(4, 48, 64)
    plate = media.write_movie(frames, tmp_path / "scope.mov", Fraction(24), pixel_aspect=Fraction(2))
    assert ffprobe(plate.path)["sample_aspect_ratio"] == "2:1"
    shot = _shot(dataclasses.replace(plate, frames=4), 4)
    view = plate_view(shot, ColourSettings())
    assert view.info.pixel_aspect == 2 and pipeline.model_width(view) == 128
    quadmask = np.full((4, 48, 64), 255, np.uint8)
    quadmask[:, 16:32, 24:40] = 0
    media.write_mask(quadmask, tmp_path / "q.mkv")
    backend = _SeesShapes([])
    fill = pipeline.inpaint(shot, backend, tmp_path / "q.mkv", tmp_path / "work", "r1", view, seed=0, prompt="")
    assert backend.seen == [(4, 48, 128, 3)]  # square pixels for the model
    assert (fill.width, fill.height) == (64, 48)  # the fill is back at plate geometry
    delivery, qc, _ = pipeline.deliver(
        shot, fill.path, tmp_path / "q.mkv", tmp_path / "shot", view, version="v001", blend=Blend(),
        spec=pipeline.DeliverySpec(output="prores"),
    )  # fmt: skip
    assert ffprobe(delivery.media.path)["sample_aspect_ratio"] == "2:1" and ffprobe(delivery.media.path)["width"] == 64
    assert qc.passed, qc.summary()


def test_prores_4444_delivery_carries_the_blend_alpha(aces_shot: AcesShot) -> None:
    delivery, qc = _deliver(aces_shot, "v004", "prores_4444")
    assert ffprobe(delivery.media.path)["pix_fmt"].startswith("yuva444p") and qc.passed, qc.summary()
    alpha = media.read_matte(delivery.media, 0, COUNT).astype(np.int16)
    written = media.read_matte(delivery.matte, 0, COUNT).astype(np.int16)  # the matte PNGs beside it
    assert np.abs(alpha - written).max() <= 1 and written.max() == 255


def test_sequence_plate_delivery_timecode_counts_from_the_files_timecode(tmp_path: Path) -> None:
    # An image sequence's media time is its frame number (1001 ...), not a timecode: the delivery's timecode must
    # come from the plate's own smpte:TimeCode, counted on to the shot's first frame.
    frames = _halves(6)
    plate = media.write_sequence(
        frames, tmp_path / "p" / "p.%04d.exr", Fraction(24), fmt="exr", attributes={"smpte:TimeCode": "02:00:00:00"}
    )
    source = dataclasses.replace(plate, start=1001, frames=6)  # as an OTIO ImageSequenceReference gives it
    shot = dataclasses.replace(_shot(source, 6), source_start=1003, duration=2, handles=(1, 1))  # first: index 1
    view = plate_view(shot, ColourSettings())
    quadmask = np.full((4, 48, 64), 255, np.uint8)
    quadmask[:, 10:20, 10:20] = 0
    media.write_mask(quadmask, tmp_path / "q.mkv")
    fill = pipeline.inpaint(shot, CleanPlate(), tmp_path / "q.mkv", tmp_path / "work", "r1", view, seed=0, prompt="")
    for version, output in (("v001", "exr"), ("v002", "prores")):
        delivery, qc, _ = pipeline.deliver(
            shot, fill.path, tmp_path / "q.mkv", tmp_path / "shot", view, version=version, blend=Blend(),
            spec=pipeline.DeliverySpec(output=output),  # type: ignore[arg-type]
        )  # fmt: skip
        if output == "exr":
            first = delivery.media.file_for_index(0)
            assert oiio_attr(oiio_info(first), "smpte:TimeCode") == "02:00:00:01"
        else:
            assert ffprobe(delivery.media.path)["tags"]["timecode"] == "02:00:00:01"
        assert qc.header == (), qc.summary()  # QC's own timecode check agrees
