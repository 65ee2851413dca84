"""Tests for void_ops.media with the real ffmpeg: frame accuracy, errors, lossless round trips, atomic writes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import ffmpeg
import numpy as np
import pytest
from PIL import Image

from voidflow.void_ops.exceptions import InvalidInput, MediaInvalid, StorageUnavailable
from voidflow.void_ops.media import (
    probe,
    read_frames,
    read_mask,
    read_matte,
    sequence_gaps,
    sha256_file,
    sha256_source,
    write_mask,
    write_movie,
    write_sequence,
)
from voidflow.void_ops.shots import MediaSource

BLOCK = 16  # 96x64 frames hold 6x4 blocks: 12 bits of the frame number, then their 12 complements
BITS = 12
RATES = [Fraction(24), Fraction(25), Fraction(30000, 1001)]


def numbered_frames(count: int, width: int = 96, height: int = 64) -> np.ndarray:
    """Return ``(count, height, width, 3)`` uint8 frames whose blocks spell each frame's number in binary."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    columns = width // BLOCK
    for number in range(count):
        bits = [(number >> bit) & 1 for bit in range(BITS)]
        for slot, value in enumerate(bits + [1 - b for b in bits]):
            row, column = divmod(slot, columns)
            frames[number, row * BLOCK : (row + 1) * BLOCK, column * BLOCK : (column + 1) * BLOCK] = 255 * value
    return frames


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Read back the numbers drawn by ``numbered_frames`` from decoded frames of any dtype."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(frames.dtype, 1.0)
    columns = frames.shape[2] // BLOCK
    numbers = []
    for frame in frames.astype(np.float64) / scale:
        slots = []
        for slot in range(2 * BITS):
            row, column = divmod(slot, columns)
            centre = frame[row * BLOCK + 4 : (row + 1) * BLOCK - 4, column * BLOCK + 4 : (column + 1) * BLOCK - 4]
            slots.append(int(centre.mean() > 0.5))
        bits, complements = slots[:BITS], slots[BITS:]
        assert all(b != c for b, c in zip(bits, complements, strict=True)), "a frame number block is unreadable"
        numbers.append(sum(bit << position for position, bit in enumerate(bits)))
    return numbers


def write_numbered(kind: str, folder: Path, rate: Fraction, count: int = 60) -> MediaSource:
    frames = numbered_frames(count)
    if kind == "png":
        return write_sequence(frames, folder / "seq" / "plate.%04d.png", rate)
    suffix = ".mkv" if kind == "ffv1" else ".mov"
    return write_movie(frames, folder / f"plate{suffix}", rate, codec=kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", RATES, ids=str)
@pytest.mark.parametrize("kind", ["prores", "h264", "ffv1", "png"])
def test_read_frames_is_frame_accurate(tmp_path: Path, kind: str, rate: Fraction) -> None:
    source = write_numbered(kind, tmp_path, rate)
    assert probe(source).frames == 60
    for first, count in [(0, 1), (0, 60), (1, 3), (23, 12), (29, 2), (50, 10), (59, 1)]:
        frames = read_frames(source, first, count)
        assert frames.shape == (count, 64, 96, 3)
        assert frame_numbers(frames) == list(range(first, first + count)), (first, count)


def test_range_beyond_the_movie_names_file_and_range(tmp_path: Path) -> None:
    source = write_movie(numbered_frames(10), tmp_path / "short.mov", Fraction(24))
    with pytest.raises(MediaInvalid, match=r"short\.mov: asked for frames 8\.\.12 \(5\) but the media ends at frame 9"):
        read_frames(source, 8, 5)
    with pytest.raises(MediaInvalid, match=r"short\.mov: asked for frames 10\.\.10"):
        read_matte(source, 10, 1)


def test_missing_sequence_frame_is_named(tmp_path: Path) -> None:
    source = write_sequence(numbered_frames(10), tmp_path / "seq" / "plate.%04d.png", Fraction(24))
    (tmp_path / "seq" / "plate.1004.png").unlink()
    with pytest.raises(MediaInvalid, match=r"frame 1004 missing .*plate\.1004\.png"):
        read_frames(source, 0, 10)
    assert frame_numbers(read_frames(source, 4, 6)) == list(range(4, 10))
    assert probe(source).frames == 10  # first file to last, the gap included (sequence_gaps names it)
    with pytest.raises(MediaInvalid, match=r"frame 1011 missing"):
        read_frames(source, 5, 6)


def test_missing_file(tmp_path: Path) -> None:
    source = MediaSource(path=str(tmp_path / "nothing.mov"), kind="movie", rate=24.0)
    with pytest.raises(MediaInvalid, match=r"nothing\.mov: not found"):
        probe(source)
    with pytest.raises(MediaInvalid, match=r"nothing\.mov: not found"):
        read_frames(source, 0, 1)
    sequence = MediaSource(path=str(tmp_path / "none.%04d.exr"), kind="sequence", rate=24.0, first_number=1001)
    with pytest.raises(MediaInvalid, match=r"none\.1001\.exr: not found"):
        probe(sequence)


def test_truncated_movie_is_invalid(tmp_path: Path) -> None:
    source = write_movie(numbered_frames(20), tmp_path / "cut.mov", Fraction(24))
    data = Path(source.path).read_bytes()
    Path(source.path).write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaInvalid, match=r"cut\.mov: unreadable or not media \(.*moov atom not found"):
        probe(source)
    with pytest.raises(MediaInvalid, match=r"cut\.mov"):
        read_frames(source, 0, 20)


@pytest.mark.parametrize("codec", ["prores", "ffv1"])
def test_damaged_frames_are_not_returned(tmp_path: Path, codec: str) -> None:
    name = "hit.mkv" if codec == "ffv1" else "hit.mov"
    source = write_movie(numbered_frames(20), tmp_path / name, Fraction(24), codec=codec)  # type: ignore[arg-type]
    data = bytearray(Path(source.path).read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, len(data) // 10, dtype=np.uint8).tobytes()
    data[len(data) // 3 : len(data) // 3 + len(noise)] = noise
    Path(source.path).write_bytes(data)
    # ProRes: the decoder reports the damaged frame; Matroska: the demuxer drops the damaged packets, so fewer
    # frames are listed than were written.
    expected = (
        r"hit\.mov: damaged data \(ffmpeg: \[prores" if codec == "prores" else r"hit\.mkv: asked for frames 0\.\.19"
    )
    with pytest.raises(MediaInvalid, match=expected):
        read_frames(source, 0, 20)


def test_text_file_is_not_media(tmp_path: Path) -> None:
    path = tmp_path / "notes.mov"
    path.write_text("not a movie\n")
    source = MediaSource(path=str(path), kind="movie", rate=24.0)
    with pytest.raises(MediaInvalid, match=r"notes\.mov: unreadable or not media \(ffmpeg: .+\)"):
        probe(source)
    with pytest.raises(MediaInvalid, match=r"notes\.mov"):
        read_frames(source, 0, 1)


def test_bad_read_arguments(tmp_path: Path) -> None:
    source = MediaSource(path=str(tmp_path / "any.mov"), kind="movie", rate=24.0)
    with pytest.raises(InvalidInput, match=r"first_index must be >= 0, got -1"):
        read_frames(source, -1, 1)
    with pytest.raises(InvalidInput, match=r"count must be > 0, got 0"):
        read_matte(source, 0, 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_is_bit_exact(tmp_path: Path, dtype: type) -> None:
    frames: np.ndarray = np.random.default_rng(1).integers(0, np.iinfo(dtype).max + 1, (4, 48, 64, 3)).astype(dtype)
    source = write_sequence(frames, tmp_path / "v001" / "shot.%04d.png", Fraction(24), first_number=7)
    assert sorted(p.name for p in (tmp_path / "v001").iterdir()) == [f"shot.{n:04d}.png" for n in range(7, 11)]
    assert probe(source).bit_depth == np.iinfo(dtype).bits
    decoded = read_frames(source, 0, 4)
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, frames)


def test_png_from_float_is_clipped_16_bit(tmp_path: Path) -> None:
    frames = np.random.default_rng(2).uniform(-0.2, 1.2, (2, 48, 64, 3)).astype(np.float32)
    source = write_sequence(frames, tmp_path / "f" / "shot.%04d.png", Fraction(24))
    expected = np.rint(np.clip(frames, 0, 1) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(read_frames(source, 0, 2), expected)


def test_exr_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    source = write_sequence(frames, tmp_path / "a" / "shot.%04d.exr", Fraction(24), fmt="exr")
    info = probe(source)
    assert (info.codec, info.bit_depth) == ("exr", 32)
    header = (tmp_path / "a" / "shot.1001.exr").read_bytes()
    compression = header.index(b"compression\x00compression\x00") + 24 + 4  # name, type, size: 1 byte follows
    assert header[compression] == 4  # PIZ (lossless), the default
    decoded = read_frames(source, 0, 3)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(np.rint(decoded * 255), frames)
    linear = rng.uniform(-0.5, 8.0, (2, 48, 64, 3)).astype(np.float32)  # float goes in unchanged, unclipped
    source = write_sequence(linear, tmp_path / "b" / "shot.%04d.exr", Fraction(24), fmt="exr")
    np.testing.assert_array_equal(read_frames(source, 0, 2), linear)


def test_mask_round_trip_is_bit_exact(tmp_path: Path) -> None:
    masks = np.array([0, 63, 127, 255], dtype=np.uint8)[np.random.default_rng(4).integers(0, 4, (6, 47, 63))]
    write_mask(masks, tmp_path / "quad.mkv")
    decoded = read_mask(tmp_path / "quad.mkv")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, masks)
    with pytest.raises(MediaInvalid, match=r"masks must be ffv1 gray, got prores yuv422p10le"):
        read_mask(Path(write_numbered("prores", tmp_path, Fraction(24), 2).path))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_ffv1_movie_is_lossless(tmp_path: Path, dtype: type) -> None:
    frames: np.ndarray = np.random.default_rng(5).integers(0, np.iinfo(dtype).max + 1, (3, 48, 64, 3)).astype(dtype)
    source = write_movie(frames, tmp_path / "lossless.mkv", Fraction(25), codec="ffv1")
    np.testing.assert_array_equal(read_frames(source, 0, 3), frames)


def test_prores_output_is_described_exactly(tmp_path: Path) -> None:
    frames = numbered_frames(12)
    rate = Fraction(30000, 1001)
    source = write_movie(frames, tmp_path / "sh010_v001.mov", rate, timecode="01:00:00:00")
    assert source == MediaSource(
        path=str((tmp_path / "sh010_v001.mov").resolve()), kind="movie", rate=float(rate), start=0, frames=12
    )
    info = probe(source)
    assert (info.codec, info.pix_fmt, info.bit_depth) == ("prores", "yuv422p10le", 10)
    assert (info.width, info.height, info.frames, info.rate, info.timecode) == (96, 64, 12, rate, "01:00:00:00")
    data = Path(source.path).read_bytes()  # each ProRes frame: size, "icpf", header size, version, creator
    header = data.index(b"icpf")
    assert data[header + 8 : header + 12] == b"apl0"
    decoded = read_frames(source, 3, 4)
    assert decoded.dtype == np.uint16
    assert frame_numbers(decoded) == [3, 4, 5, 6]


def test_float_frames_go_through_movies(tmp_path: Path) -> None:
    frames = numbered_frames(3).astype(np.float32) / 255
    frames[..., 0] *= 0.5  # distinct channels catch a G, B, R plane mix-up
    source = write_movie(frames, tmp_path / "float.mkv", Fraction(24), codec="ffv1")
    decoded = read_frames(source, 0, 3).astype(np.float64) / 65535
    np.testing.assert_allclose(decoded, frames, atol=1e-4)
    with pytest.raises(InvalidInput, match=r"float frames must lie in \[0, 1\]"):
        write_movie(frames * 2, tmp_path / "bright.mov", Fraction(24))


def test_missing_output_folder_is_storage_error(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "out.mov"
    with pytest.raises(StorageUnavailable, match=r"out\.mov: cannot write in .*absent \(No such file or directory\)"):
        write_movie(numbered_frames(2), target, Fraction(24))
    assert not (tmp_path / "absent").exists()
    with pytest.raises(StorageUnavailable, match=r"absent"):
        write_sequence(numbered_frames(2), tmp_path / "absent" / "v001" / "s.%04d.png", Fraction(24))
    assert not (tmp_path / "absent").exists()


def test_unwritable_system_folder_is_storage_error() -> None:
    with pytest.raises(StorageUnavailable, match=r"/proc/voidflow_out\.mov: cannot write in /proc"):
        write_movie(numbered_frames(2), Path("/proc/voidflow_out.mov"), Fraction(24))


def test_read_only_folder_is_storage_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if _can_create_file_in(folder):
            pytest.skip("this user (root) writes into read-only folders; the missing-folder and /proc tests still run")
        with pytest.raises(StorageUnavailable, match=r"locked \(Permission denied\)"):
            write_movie(numbered_frames(2), folder / "out.mov", Fraction(24))
        with pytest.raises(StorageUnavailable, match=r"Permission denied"):
            write_sequence(numbered_frames(2), folder / "v001" / "s.%04d.png", Fraction(24))
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def _can_create_file_in(folder: Path) -> bool:
    try:
        (folder / "probe").touch()
    except PermissionError:
        return False
    (folder / "probe").unlink()
    return True


def test_existing_outputs_are_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "out.mov"
    target.write_bytes(b"keep me")
    with pytest.raises(InvalidInput, match=r"out\.mov: exists; outputs are never overwritten"):
        write_movie(numbered_frames(2), target, Fraction(24))
    assert target.read_bytes() == b"keep me"
    (tmp_path / "v001").mkdir()
    with pytest.raises(InvalidInput, match=r"v001: exists; outputs are never overwritten"):
        write_sequence(numbered_frames(2), tmp_path / "v001" / "s.%04d.png", Fraction(24))
    mask = tmp_path / "mask.mkv"
    mask.write_bytes(b"old mask")
    with pytest.raises(InvalidInput, match=r"mask\.mkv: exists; outputs are never overwritten"):
        write_mask(np.zeros((1, 4, 4), np.uint8), mask)
    assert mask.read_bytes() == b"old mask"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.mkv", "out.mov", "v001"]
    assert list((tmp_path / "v001").iterdir()) == []


def test_encoder_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    too_wide = np.zeros((1, 2, 16386, 3), dtype=np.uint8)  # beyond libx264's limits
    with pytest.raises(MediaInvalid, match=r"encoding failed \(ffmpeg: \[libx264\] invalid width x height"):
        write_movie(too_wide, tmp_path / "wide.mov", Fraction(24), codec="h264")
    with pytest.raises(InvalidInput, match=r"h264 needs an even width and height, got 95x64"):
        write_movie(np.zeros((1, 64, 95, 3), np.uint8), tmp_path / "odd.mov", Fraction(24), codec="h264")
    assert list(tmp_path.iterdir()) == []


def test_bad_write_arguments(tmp_path: Path) -> None:
    frames = numbered_frames(2)
    with pytest.raises(InvalidInput, match=r"codec prores needs suffix \.mov"):
        write_movie(frames, tmp_path / "out.mp4", Fraction(24))
    with pytest.raises(InvalidInput, match=r"timecode must look like HH:MM:SS:FF, got '1:00:00'"):
        write_movie(frames, tmp_path / "out.mov", Fraction(24), timecode="1:00:00")
    with pytest.raises(InvalidInput, match=r"format exr needs suffix \.exr"):
        write_sequence(frames, tmp_path / "v" / "s.%04d.png", Fraction(24), fmt="exr")
    with pytest.raises(InvalidInput, match=r"one frame placeholder"):
        write_sequence(frames, tmp_path / "v" / "s.png", Fraction(24))
    with pytest.raises(InvalidInput, match=r"\(T, H, W, 3\)"):
        write_movie(frames[..., 0], tmp_path / "out.mov", Fraction(24))
    with pytest.raises(InvalidInput, match=r"rate must be positive, got 0"):
        write_movie(frames, tmp_path / "out.mov", Fraction(0))
    assert list(tmp_path.iterdir()) == []


def test_read_matte_takes_alpha_from_rgba_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    alpha = rng.integers(0, 256, (3, 48, 64), dtype=np.uint8)
    for index in range(3):
        rgba = np.dstack([rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), alpha[index]])
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"matte.{1001 + index:04d}.png")
    source = MediaSource(path=str(tmp_path / "matte.%04d.png"), kind="sequence", rate=24.0, first_number=1001)
    np.testing.assert_array_equal(read_matte(source, 0, 3), alpha)
    np.testing.assert_array_equal(read_matte(source, 1, 2), alpha[1:])


def test_read_matte_takes_alpha_from_prores_4444(tmp_path: Path) -> None:
    alpha = np.zeros((2, 48, 64), dtype=np.uint8)
    alpha[:, 10:30, 20:50] = 255
    for index in range(2):
        rgba = np.dstack([np.full((48, 64, 3), 90, np.uint8), alpha[index]])
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"in.{index:04d}.png")
    movie = tmp_path / "alpha.mov"
    (
        ffmpeg.input(str(tmp_path / "in.%04d.png"), framerate=24)
        .output(str(movie), vcodec="prores_ks", pix_fmt="yuva444p10le", **{"profile:v": "4444"})
        .global_args("-loglevel", "error")
        .run()
    )
    source = MediaSource(path=str(movie), kind="movie", rate=24.0)
    assert probe(source).pix_fmt == "yuva444p12le"  # ffmpeg decodes ProRes 4444 as 12-bit
    np.testing.assert_array_equal(read_matte(source, 0, 2), alpha)


def test_read_matte_takes_luma_from_gray_movie(tmp_path: Path) -> None:
    gray = np.random.default_rng(7).integers(0, 256, (4, 48, 64), dtype=np.uint8)
    write_mask(gray, tmp_path / "gray.mkv")
    source = MediaSource(path=str(tmp_path / "gray.mkv"), kind="movie", rate=24.0)
    np.testing.assert_array_equal(read_matte(source, 1, 3), gray[1:])


def test_hashes_follow_content(tmp_path: Path) -> None:
    frames = numbered_frames(4)
    source = write_sequence(frames, tmp_path / "v001" / "s.%04d.png", Fraction(24))
    whole = sha256_source(source)
    assert whole == sha256_source(source, 0, 4)
    assert sha256_source(source, 1, 2) != whole
    (tmp_path / "v001" / "s.1004.png").write_bytes((tmp_path / "v001" / "s.1003.png").read_bytes())
    assert sha256_source(source) != whole
    assert sha256_source(source, 0, 2) == sha256_source(source, 0, 2)
    with pytest.raises(MediaInvalid, match=r"frame 1005 missing"):
        sha256_source(source, 2, 3)
    with pytest.raises(MediaInvalid, match=r"frame 1009 missing"):
        sha256_source(source, 8)
    with pytest.raises(InvalidInput, match=r"count must be > 0, got 0"):
        sha256_source(source, 0, 0)
    movie = write_movie(frames, tmp_path / "m.mov", Fraction(24))
    assert sha256_source(movie) == sha256_file(Path(movie.path))
    with pytest.raises(MediaInvalid, match=r"gone\.mov: not found"):
        sha256_file(tmp_path / "gone.mov")


def test_atomic_write_renames_on_success_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from voidflow.void_ops.files import atomic_write

    target = tmp_path / "report.html"
    with atomic_write(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".report.tmp-")
        assert temporary.suffix == ".html"
        temporary.write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_write(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    with atomic_write(target, temporary=tmp_path / "report.html.partial") as temporary:
        temporary.write_text("two")
    assert target.read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# --- sequences with gaps ------------------------------------------------------------------------------------------


def _counter_sequence(folder: Path) -> MediaSource:
    """Ten PNG frames 1001..1010 whose every pixel holds the frame's position (0..9) times 20; 1004 is deleted and
    1007 is left empty (0 bytes), as a render farm leaves them."""
    frames = np.stack([np.full((8, 12, 3), 20 * index, np.uint8) for index in range(10)])
    source = write_sequence(frames, folder / "plate" / "plate.%04d.png", Fraction(24), first_number=1001)
    (folder / "plate" / "plate.1004.png").unlink()
    (folder / "plate" / "plate.1007.png").write_bytes(b"")
    return source


def test_sequence_gaps_name_missing_and_empty_files(tmp_path: Path) -> None:
    source = _counter_sequence(tmp_path)
    assert sequence_gaps(source, 0, 10) == (1004, 1007)
    assert sequence_gaps(source, 4, 2) == ()
    with pytest.raises(MediaInvalid, match=r"frame 1004 missing .*plate\.1004\.png"):
        read_frames(source, 0, 10)
    with pytest.raises(MediaInvalid, match=r"frame 1007 empty \(0 bytes\)"):
        read_frames(source, 4, 6)


def test_gaps_are_held_or_black_on_request(tmp_path: Path) -> None:
    source = _counter_sequence(tmp_path)
    held = read_frames(source, 0, 10, gaps="hold")
    assert [int(frame[0, 0, 0]) // 20 for frame in held] == [0, 1, 2, 2, 4, 5, 5, 7, 8, 9]
    black = read_frames(source, 0, 10, gaps="black")
    assert [int(frame.max()) // 20 for frame in black] == [0, 1, 2, 0, 4, 5, 0, 7, 8, 9]
    head = read_frames(source, 3, 3, gaps="hold")  # a gap at the head holds the first later frame
    assert [int(frame[0, 0, 0]) // 20 for frame in head] == [4, 4, 5]
    with pytest.raises(MediaInvalid, match="frame 1004 missing"):
        read_frames(source, 3, 1, gaps="hold")  # nothing to stand in from


def test_a_gap_keys_the_range_until_the_frame_appears(tmp_path: Path) -> None:
    from voidflow.void_ops.hashing import range_hash

    source = _counter_sequence(tmp_path)
    with pytest.raises(MediaInvalid, match="plate.1004.png missing"):
        range_hash(source, 0, 10)
    with_gaps = range_hash(source, 0, 10, allow_gaps=True)
    (tmp_path / "plate" / "plate.1004.png").write_bytes((tmp_path / "plate" / "plate.1003.png").read_bytes())
    assert range_hash(source, 0, 10, allow_gaps=True) != with_gaps  # the re-rendered frame reruns the shot
