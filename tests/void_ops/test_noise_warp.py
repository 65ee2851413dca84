"""Pass 2's warped noise: shapes, determinism, Gaussian statistics, motion following, optical flow, errors."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput
from voidflow.void_ops.void import noise_warp
from voidflow.void_ops.void.noise_warp import WarpSettings, noise_from_flow, optical_flow, warped_noise, window_noise
from voidflow.void_ops.void.values import padded_length, window_spans


def _texture(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, (height, width, 3) uint8, full range."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 1.5)
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def _panning(frames: int, height: int, width: int, *, dx: int, dy: int = 0) -> np.ndarray:
    """(frames, height, width, 3) uint8 whose content moves by (dx, dy) pixels per frame (right, down)."""
    margin_x, margin_y = abs(dx) * frames + 8, abs(dy) * frames + 8
    big = _texture(height + 2 * margin_y, width + 2 * margin_x)
    return np.stack(
        [
            big[margin_y - dy * t : margin_y - dy * t + height, margin_x - dx * t : margin_x - dx * t + width]
            for t in range(frames)
        ]
    )


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _zoom_flow(height: int, width: int, rate: float, steps: int) -> np.ndarray:
    """(steps, height, width, 2) flow of a zoom about the centre: rate > 0 spreads content out, < 0 gathers it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    flow = np.stack([(x - width / 2) * rate, (y - height / 2) * rate], axis=-1)
    return np.repeat(flow[None], steps, axis=0)


@pytest.fixture(scope="module")
def pan() -> np.ndarray:
    return _panning(17, 64, 96, dx=2)  # 2 px per frame = 1 latent pixel per latent frame (4 frames x 2 px / 8)


def test_shape_dtype_and_layout(pan: np.ndarray) -> None:
    noise = warped_noise(pan, 5, 8, 12, 16, seed=0)
    assert noise.shape == (1, 5, 16, 8, 12)
    assert noise.dtype == torch.float32
    assert noise.device.type == "cpu"


def test_latent_frames_must_follow_the_vae(pan: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match=r"\(T-1\)//4\+1 = 5 for T = 17 frames, got latent_frames=4"):
        warped_noise(pan, 4, 8, 12, 16, seed=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda f: warped_noise(f.astype(np.float32), 5, 8, 12, 16, seed=0), "frames must be uint8, got float32"),
        (lambda f: warped_noise(f[..., 0], 5, 8, 12, 16, seed=0), r"frames must be a \(T, H, W, 3\)"),
        (lambda f: warped_noise(f, 5, 8, 13, 16, seed=0), "latent grid 8x13 must have the aspect ratio"),
        (lambda f: warped_noise(f, 5, 8, 12, 0, seed=0), "channels must be >= 1, got 0"),
        (lambda f: optical_flow(f[:1], WarpSettings()), "frames must hold >= 2"),
    ],
)
def test_inputs_are_checked(pan: np.ndarray, call: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        call(pan)  # type: ignore[operator]


def test_same_seed_same_noise_other_seed_other_noise(pan: np.ndarray) -> None:
    state = torch.get_rng_state()
    first = warped_noise(pan, 5, 8, 12, 16, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither used nor advanced
    assert torch.equal(first, warped_noise(pan, 5, 8, 12, 16, seed=7))
    other = warped_noise(pan, 5, 8, 12, 16, seed=8)
    assert abs(_corr(first.numpy(), other.numpy())) < 0.1


def test_every_frame_and_channel_is_normalised(pan: np.ndarray) -> None:
    noise = warped_noise(pan, 5, 8, 12, 16, seed=0)[0].double()
    assert noise.mean(dim=(-2, -1)).abs().max() < 1e-5
    assert (noise.std(dim=(-2, -1), correction=0) - 1).abs().max() < 1e-5


@pytest.mark.parametrize(("rate", "supersample"), [(0.05, 8), (-0.05, 8), (0.05, 1)])
def test_warping_keeps_the_field_gaussian_before_normalising(rate: float, supersample: int) -> None:
    # Zooming in (expansion: copies must be regaussianised) and out (contraction: merges, fresh noise at the
    # edges) over a 16 x 48 x 84 latent field (the 384 x 672 model grid), without the final re-normalisation.
    # At supersample 1 the latent grid is the warped field itself, so per-sample errors cannot average out.
    flows = iter(_zoom_flow(96, 168, rate, 8))
    settings = WarpSettings(supersample=supersample)
    raw = noise_warp._pooled_noise(flows, 3, 48, 84, 16, 0, settings, "cpu")[0].numpy().astype(np.float64)
    for frame in raw:
        assert abs(frame.mean()) < 0.05
        assert abs(frame.std() - 1) < 0.05
        assert 2.8 < ((frame - frame.mean()) ** 4).mean() / frame.var() ** 2 < 3.2  # Gaussian kurtosis
        assert abs(_corr(frame[:, :, 1:], frame[:, :, :-1])) < 0.05  # neighbours stay independent
        assert abs(_corr(frame[:, 1:], frame[:, :-1])) < 0.05
    assert np.abs(raw.mean(axis=(2, 3))).max() < 0.1  # per channel over 48 x 84: about 6 standard errors
    assert np.abs(raw.std(axis=(2, 3)) - 1).max() < 0.05


def test_noise_follows_a_pan(pan: np.ndarray) -> None:
    noise = warped_noise(pan, 5, 8, 12, 16, seed=0)[0].numpy()
    for before, after in itertools.pairwise(noise):
        assert _corr(after[:, :, 1:], before[:, :, :-1]) > 0.5  # shifted right by one latent pixel
        assert abs(_corr(after, before)) < 0.2


def test_static_clip_keeps_its_noise(pan: np.ndarray) -> None:
    still = np.repeat(pan[:1], 17, axis=0)
    noise = warped_noise(still, 5, 8, 12, 16, seed=0)[0].numpy()
    for before, after in itertools.pairwise(noise):
        assert _corr(after, before) > 0.9


def test_noise_from_flow_matches_warped_noise(pan: np.ndarray) -> None:
    flow = optical_flow(pan, WarpSettings())
    assert torch.equal(noise_from_flow(flow, 5, 8, 12, 16, seed=3), warped_noise(pan, 5, 8, 12, 16, seed=3))
    with pytest.raises(InvalidInput, match=r"flow must have >= 4 \* \(latent_frames - 1\) = 20 steps, got 16"):
        noise_from_flow(flow, 6, 8, 12, 16, seed=3)


def test_dis_recovers_a_translation() -> None:
    frames = _panning(3, 96, 160, dx=3, dy=-2)
    flow = optical_flow(frames, WarpSettings())
    assert flow.shape == (2, 96, 160, 2)
    assert flow.dtype == np.float32
    assert abs(np.median(flow[..., 0]) - 3) < 0.5
    assert abs(np.median(flow[..., 1]) + 2) < 0.5


def test_raft_needs_weights() -> None:
    with pytest.raises(ConfigurationError, match="raft_weights must name a local raft_large state dict"):
        WarpSettings(flow="raft")


def test_raft_weights_must_exist(tmp_path: Path) -> None:
    settings = WarpSettings(flow="raft", raft_weights=str(tmp_path / "raft_large.pth"))
    with pytest.raises(ConfigurationError, match="raft_weights: file not found"):
        optical_flow(np.zeros((2, 16, 16, 3), np.uint8), settings)


def test_raft_without_torchvision_is_a_configuration_error(tmp_path: Path) -> None:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torchvision is installed")
    weights = tmp_path / "raft_large.pth"
    weights.write_bytes(b"")
    settings = WarpSettings(flow="raft", raft_weights=str(weights))
    with pytest.raises(ConfigurationError, match="flow='raft' needs torchvision"):
        optical_flow(np.zeros((2, 16, 16, 3), np.uint8), settings)


def test_raft_runs_from_local_weights(tmp_path: Path) -> None:
    optical = pytest.importorskip("torchvision.models.optical_flow")
    weights = tmp_path / "raft_large.pth"
    torch.save(optical.raft_large(weights=None).state_dict(), weights)  # random weights: shapes only
    settings = WarpSettings(flow="raft", raft_weights=str(weights), raft_iterations=2)
    flow = optical_flow(_panning(3, 260, 260, dx=2), settings)
    assert flow.shape == (2, 260, 260, 2)
    assert flow.dtype == np.float32


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"flow": "farneback"}, "flow must be 'dis' or 'raft', got 'farneback'"),
        ({"flow_scale": 0.0}, r"flow_scale must be in \(0, 1\], got 0.0"),
        ({"supersample": 0}, "supersample must be an integer >= 1, got 0"),
        ({"dis_preset": "slow"}, "dis_preset must be one of"),
        ({"fresh_weight": 0.0}, "fresh_weight must be > 0, got 0.0"),
    ],
)
def test_settings_are_checked(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        WarpSettings(**changes)  # type: ignore[arg-type]


def test_settings_are_provenance_ready() -> None:
    record = dataclasses.asdict(WarpSettings())
    assert json.loads(json.dumps(record)) == record
    assert record["flow"] == "dis"
    assert record["flow_scale"] == 0.5
    assert record["supersample"] == 8


def test_windows_cover_clips_longer_than_85_frames() -> None:
    frames = padded_length(120)  # 125 frames -> 32 latent frames, two windows
    noise = torch.randn(1, (frames - 1) // 4 + 1, 4, 2, 3)
    spans = window_spans(noise.shape[1])
    assert spans == [(0, 22), (18, 32)]
    pieces = [window_noise(noise, start, stop) for start, stop in spans]
    assert [piece.shape[1] for piece in pieces] == [22, 14]
    assert torch.equal(pieces[1], noise[:, 18:32])
    assert pieces[0].data_ptr() == noise.data_ptr()  # a view
    for start, stop in [(-1, 5), (5, 5), (30, 33)]:
        with pytest.raises(InvalidInput, match=r"window \[start, stop\) must satisfy 0 <= start < stop <= 32"):
            window_noise(noise, start, stop)
    with pytest.raises(InvalidInput, match="noise must be"):
        window_noise(noise[0], 0, 1)


def test_module_imports_no_orchestration() -> None:
    code = (
        "import sys, voidflow.void_ops.void.noise_warp; "
        "print(','.join(m for m in ('prefect', 'ray', 'sqlalchemy', 'ffmpeg') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
