"""Pass 2's initial noise: Gaussian noise carried along the motion of pass 1's output (Go-with-the-Flow warping).

VOID's pass 2 starts from noise that moves with the picture instead of fresh noise (``void-reference.md`` section 7).
This module computes it in-process, with no downloads (defect 8), for the real padded frame count at the latent
grid (no 72-frame resample, no 480x720 crop), so it covers clips of any length that pass 1 accepts (defect 6).

How (after Burgert et al., "Go-with-the-Flow", 2025, as ported in ComfyUI's ``comfy_extras/void_noise_warp.py``):

1. Optical flow between consecutive frames, on frames scaled by ``flow_scale`` (DIS, or RAFT-large from local
   weights), brought back to full size.
2. A noise field of ``supersample`` x the latent grid (one sample per model pixel at the default 8) is advected
   frame to frame. Each sample moves to its rounded forward-flow target; targets that several samples reach
   combine them as ``sum(w_i n_i) / sqrt(sum(w_i^2))`` (still N(0, 1)), weights adding up. Targets nothing reaches
   pull the sample at their rounded backward position, or get fresh noise where that lies outside the frame.
3. A sample used k times (moved once and pulled, or pulled several times) is split variance-preservingly
   ("regaussianised"): each copy is ``n / sqrt(k)`` plus that copy's part of zero-sum fresh noise, so the copies are
   independent N(0, 1) yet sum to ``sqrt(k) n``; its weight is divided by k.
4. Latent frame k takes the field at pixel frame 4k (the VAE's 4x temporal compression, as the training script
   subsamples), area-pooled by ``supersample`` and multiplied by it (a sum of s^2 iid N(0, 1) over s), then each
   frame and channel is re-normalised to zero mean and unit variance (a recorded deviation from the reference).

Departures from the reference, all deliberate: copies are tracked by source index rather than by grouping equal
values (``torch.unique``); samples leaving the frame are dropped instead of being parked at their old position;
fresh samples weigh ``fresh_weight`` instead of 1/(number of placeholders); the field is 8x (not 32x) the latent
grid by default, so motion slower than half a model pixel per frame rounds to none (as with the reference's
``xy_mode='none'``, at a coarser step); DIS is the default flow because it needs no weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput, ModelLoadError

__all__ = ["TEMPORAL_COMPRESSION", "WarpSettings", "noise_from_flow", "optical_flow", "warped_noise", "window_noise"]

TEMPORAL_COMPRESSION = 4  # pixel frames per latent frame (after the first)
_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}  # cv2.DISOPTICAL_FLOW_PRESET_*
_RAFT_BATCH = 4  # frame pairs per RAFT call
_MIN_WEIGHT = 1e-6  # floor on a sample's weight (relative to the mean), so squared weights never underflow


@dataclass(frozen=True, slots=True)
class WarpSettings:
    """How pass 2's noise is warped; every number the method uses, so provenance records it.

    Attributes:
        flow: optical flow method: ``dis`` (OpenCV DIS, CPU, no weights) or ``raft`` (torchvision RAFT-large).
        raft_weights: local path of a torchvision ``raft_large`` state dict (``Raft_Large_Weights.C_T_SKHT_V2``);
            required when ``flow`` is ``raft``; never downloaded.
        flow_scale: frames are resized by this before flow (the reference uses 0.5), in (0, 1].
        supersample: noise samples per latent pixel along each axis (>= 1); the reference's inference uses 32,
            its training pools 8x8 pixel-space noise; cost grows with its square.
        dis_preset: DIS speed/quality preset: ``ultrafast``, ``fast`` or ``medium``.
        raft_iterations: RAFT refinement iterations (torchvision's default is 12).
        fresh_weight: weight of fresh noise where the frame disoccludes, relative to the mean weight 1 (> 0).

    Raises:
        ConfigurationError: a value is outside the range above, or ``flow`` is ``raft`` without ``raft_weights``.
    """

    flow: Literal["dis", "raft"] = "dis"
    raft_weights: str | None = None
    flow_scale: float = 0.5
    supersample: int = 8
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    raft_iterations: int = 12
    fresh_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.flow not in ("dis", "raft"):
            raise ConfigurationError(f"flow must be 'dis' or 'raft', got {self.flow!r}")
        if self.flow == "raft" and not self.raft_weights:
            raise ConfigurationError("raft_weights must name a local raft_large state dict when flow='raft', got None")
        if not 0 < self.flow_scale <= 1:
            raise ConfigurationError(f"flow_scale must be in (0, 1], got {self.flow_scale}")
        if isinstance(self.supersample, bool) or not isinstance(self.supersample, int) or self.supersample < 1:
            raise ConfigurationError(f"supersample must be an integer >= 1, got {self.supersample!r}")
        if self.dis_preset not in _DIS_PRESETS:
            raise ConfigurationError(f"dis_preset must be one of {sorted(_DIS_PRESETS)}, got {self.dis_preset!r}")
        if self.raft_iterations < 1:
            raise ConfigurationError(f"raft_iterations must be >= 1, got {self.raft_iterations}")
        if not self.fresh_weight > 0:
            raise ConfigurationError(f"fresh_weight must be > 0, got {self.fresh_weight}")


def optical_flow(frames: np.ndarray, settings: WarpSettings, *, device: str | torch.device = "cpu") -> np.ndarray:
    """Return the forward optical flow between consecutive frames, in pixels at the input size.

    Flow is computed on frames resized by ``settings.flow_scale`` (area interpolation), then resized back
    (bilinear) and its vectors scaled to full-size pixels. ``flow[i, y, x] = (dx, dy)`` says where the content at
    (x, y) in frame i is in frame i + 1.

    Args:
        frames: (T, H, W, 3) uint8 RGB, T >= 2.
        settings: method and its numbers.
        device: where RAFT runs (DIS always runs on the CPU).

    Returns:
        (T - 1, H, W, 2) float32 flow, x then y.

    Raises:
        InvalidInput: ``frames`` is not (T, H, W, 3) uint8 with T >= 2.
        ConfigurationError: ``raft`` without torchvision or without a readable weights file.
        ModelLoadError: the RAFT weights do not fit ``raft_large``.
    """
    _check_frames(frames, minimum=2)
    return np.stack(list(_flows(frames, settings, device)))


def noise_from_flow(
    flow: np.ndarray,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    channels: int,
    *,
    seed: int,
    settings: WarpSettings = WarpSettings(),
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Warp fresh Gaussian noise along a given flow (``warped_noise`` without the flow estimation).

    Args:
        flow: (T - 1, H, W, 2) float forward flow in pixels of H x W, as ``optical_flow`` returns; only the first
            4 * (latent_frames - 1) steps are used, and T - 1 may not be shorter.
        latent_frames, latent_height, latent_width, channels: the latent shape to produce.
        seed: seeds a fresh CPU ``torch.Generator`` (the global RNG is never used).
        settings: ``supersample`` and ``fresh_weight`` are used here.
        device: where the warping runs; random numbers are drawn on the CPU, so results depend only on the seed
            (bitwise on the CPU; on a GPU up to float summation order).

    Returns:
        (1, latent_frames, channels, latent_height, latent_width) float32 on the CPU, each frame and channel with
        zero mean and unit variance.

    Raises:
        InvalidInput: a shape or size is not positive, or ``flow`` is too short or not (N, H, W, 2).
    """
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise InvalidInput(f"flow must be (T-1, H, W, 2), got shape {flow.shape}")
    _check_latent(latent_frames, latent_height, latent_width, channels)
    steps = TEMPORAL_COMPRESSION * (latent_frames - 1)
    if len(flow) < steps:
        raise InvalidInput(f"flow must have >= 4 * (latent_frames - 1) = {steps} steps, got {len(flow)}")
    fields = (np.asarray(step, np.float32) for step in flow[:steps])
    raw = _pooled_noise(fields, latent_frames, latent_height, latent_width, channels, seed, settings, device)
    return _normalise(raw)


def warped_noise(
    frames: np.ndarray,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    channels: int,
    *,
    seed: int,
    settings: WarpSettings = WarpSettings(),
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Return pass 2's initial latents: Gaussian noise that follows the motion of ``frames``.

    Latent frame k is the warped field at pixel frame 4k (latent frame 0 at pixel frame 0; latent frame k
    summarises pixel frames 4k-3..4k, as the VAE compresses time), so ``latent_frames`` must be (T - 1) // 4 + 1.
    The noise covers the whole padded clip; pass 2 windows it like pass 1 (``window_noise``).
    Example: 85 frames at 384x672 with 16 channels -> (1, 22, 16, 48, 84).

    Args:
        frames: (T, H, W, 3) uint8 RGB: pass 1's output, padded to the model's length, at model resolution.
        latent_frames: latent length; must equal (T - 1) // 4 + 1.
        latent_height: latent rows; H / latent_height must equal W / latent_width (8 for VOID).
        latent_width: latent columns.
        channels: latent channels (16 for VOID).
        seed: seeds a fresh CPU ``torch.Generator`` (the global RNG is never used); same seed, same noise.
        settings: flow method and warping numbers.
        device: where RAFT and the warping run (random numbers are drawn on the CPU regardless).

    Returns:
        (1, latent_frames, channels, latent_height, latent_width) float32 on the CPU, laid out (B, F, C, H, W) as
        CogVideoX latents; every frame and channel has zero mean and unit variance.

    Raises:
        InvalidInput: ``frames`` is not (T, H, W, 3) uint8, ``latent_frames`` does not match T, the latent grid has
            another aspect ratio than the frames, or a size is not positive.
        ConfigurationError: ``raft`` without torchvision or without a readable weights file.
        ModelLoadError: the RAFT weights do not fit ``raft_large``.
    """
    _check_frames(frames, minimum=1)
    total, height, width = frames.shape[:3]
    expected = (total - 1) // TEMPORAL_COMPRESSION + 1
    if latent_frames != expected:
        raise InvalidInput(
            f"latent_frames must be (T-1)//4+1 = {expected} for T = {total} frames, got latent_frames={latent_frames}"
        )
    _check_latent(latent_frames, latent_height, latent_width, channels)
    if height * latent_width != width * latent_height:
        raise InvalidInput(
            f"latent grid {latent_height}x{latent_width} must have the aspect ratio of the frames, got {height}x{width}"
        )
    used = frames[: TEMPORAL_COMPRESSION * (latent_frames - 1) + 1]
    fields = _flows(used, settings, device) if len(used) > 1 else iter(())
    raw = _pooled_noise(fields, latent_frames, latent_height, latent_width, channels, seed, settings, device)
    return _normalise(raw)


def window_noise(noise: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Return latent frames [start, stop) of the noise for one multidiffusion window (a view, no copy).

    Pass 2 uses the same temporal windows as pass 1 (``void_ops.void.values.window_spans``: 22 latent frames,
    overlap 4), and the noise spans the whole padded latent length, so clips longer than 85 frames work (the
    reference fixes the noise at 22 latent frames: defect 6). Example: 32 latent frames -> windows [0, 22), [18, 32).

    Args:
        noise: (1, F, C, H, W) noise from ``warped_noise``.
        start: first latent frame, >= 0.
        stop: one past the last latent frame, start < stop <= F.

    Returns:
        (1, stop - start, C, H, W), sharing memory with ``noise``.

    Raises:
        InvalidInput: ``noise`` is not 5-D or the window is empty or outside [0, F].
    """
    if noise.ndim != 5:
        raise InvalidInput(f"noise must be (1, F, C, H, W), got shape {tuple(noise.shape)}")
    length = noise.shape[1]
    if not 0 <= start < stop <= length:
        raise InvalidInput(f"window [start, stop) must satisfy 0 <= start < stop <= {length}, got [{start}, {stop})")
    return noise[:, start:stop]


def _check_frames(frames: np.ndarray, *, minimum: int) -> None:
    """Raise InvalidInput unless ``frames`` is (T, H, W, 3) uint8 with T >= ``minimum``."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        raise InvalidInput(f"frames must be a (T, H, W, 3) RGB array, got shape {shape}")
    if frames.dtype != np.uint8:
        raise InvalidInput(f"frames must be uint8, got {frames.dtype}")
    if len(frames) < minimum or min(frames.shape[1:3]) < 1:
        raise InvalidInput(f"frames must hold >= {minimum} non-empty frames, got shape {frames.shape}")


def _check_latent(latent_frames: int, latent_height: int, latent_width: int, channels: int) -> None:
    """Raise InvalidInput unless every latent size is positive and a frame has >= 2 pixels (to normalise)."""
    sizes = {"latent_frames": latent_frames, "latent_height": latent_height, "latent_width": latent_width}
    for name, value in {**sizes, "channels": channels}.items():
        if value < 1:
            raise InvalidInput(f"{name} must be >= 1, got {value}")
    if latent_height * latent_width < 2:
        raise InvalidInput(f"latent_height * latent_width must be >= 2, got {latent_height}x{latent_width}")


def _flows(frames: np.ndarray, settings: WarpSettings, device: str | torch.device) -> Iterator[np.ndarray]:
    """Yield (H, W, 2) float32 full-size forward flows for consecutive pairs of (T, H, W, 3) uint8 frames."""
    import cv2

    height, width = frames.shape[1:3]
    small_h = max(1, round(height * settings.flow_scale))
    small_w = max(1, round(width * settings.flow_scale))
    small = np.stack([cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA) for frame in frames])
    pairs = _dis_flows(small, settings) if settings.flow == "dis" else _raft_flows(small, settings, device)
    gain = np.array([width / small_w, height / small_h], np.float32)
    for flow in pairs:
        if (small_h, small_w) != (height, width):
            flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        yield (flow * gain).astype(np.float32, copy=False)


def _dis_flows(frames: np.ndarray, settings: WarpSettings) -> Iterator[np.ndarray]:
    """Yield OpenCV DIS flows (h, w, 2) between consecutive (T, h, w, 3) uint8 frames."""
    import cv2

    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[settings.dis_preset])  # type: ignore[attr-defined]
    grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    for before, after in itertools.pairwise(grey):
        yield dis.calc(before, after, None)


def _raft_flows(frames: np.ndarray, settings: WarpSettings, device: str | torch.device) -> Iterator[np.ndarray]:
    """Yield torchvision RAFT-large flows (h, w, 2) between consecutive (T, h, w, 3) uint8 frames."""
    path = Path(str(settings.raft_weights))
    if not path.is_file():
        raise ConfigurationError(f"raft_weights: file not found, got {str(path)!r}")
    try:
        from torchvision.models.optical_flow import raft_large
    except ImportError as error:
        raise ConfigurationError(f"flow='raft' needs torchvision, which is not installed ({error})") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable or non-tensor file: report it with the setting that names it
        raise ConfigurationError(f"raft_weights: {str(path)!r} is not a readable state dict ({error})") from error
    model = raft_large(weights=None, progress=False)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ModelLoadError(f"raft_weights: {str(path)!r} does not fit raft_large ({error})") from error
    model = model.eval().to(device)
    height, width = frames.shape[1:3]
    pad = (0, -width % 8, 0, -height % 8)  # RAFT needs sides divisible by 8; replicate-pad keeps pixel units
    images = torch.from_numpy(frames).permute(0, 3, 1, 2)
    with torch.inference_mode():
        for first in range(0, len(frames) - 1, _RAFT_BATCH):
            last = min(first + _RAFT_BATCH, len(frames) - 1)
            batch = images[first : last + 1].to(device, torch.float32) / 127.5 - 1
            batch = F.pad(batch, pad, mode="replicate")
            flows = model(batch[:-1], batch[1:], num_flow_updates=settings.raft_iterations)[-1]
            yield from flows[:, :, :height, :width].permute(0, 2, 3, 1).float().cpu().numpy()


def _pooled_noise(
    flows: Iterator[np.ndarray],
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    channels: int,
    seed: int,
    settings: WarpSettings,
    device: str | torch.device,
) -> torch.Tensor:
    """Warp the supersampled field along ``flows`` and area-pool every 4th frame; not yet re-normalised.

    Returns (1, latent_frames, channels, latent_height, latent_width) float32 on the CPU whose entries are
    N(0, 1) (up to sampling error) without any normalisation.
    """
    scale = settings.supersample
    height, width = latent_height * scale, latent_width * scale
    device = torch.device(device)
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((channels, height * width), generator=generator).to(device)
    weight = torch.ones(height * width, device=device)
    rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    grid = torch.stack([cols.reshape(-1), rows.reshape(-1)])  # (2, P) x then y

    def pool(field: torch.Tensor) -> torch.Tensor:
        # Mean of s*s iid N(0, 1) samples times s: unit variance again.
        return F.avg_pool2d(field.view(1, channels, height, width), scale)[0].cpu() * scale

    out = torch.empty((1, latent_frames, channels, latent_height, latent_width))
    out[0, 0] = pool(noise)
    for step, flow in enumerate(flows, start=1):
        field = torch.from_numpy(np.ascontiguousarray(flow)).to(device).permute(2, 0, 1)[None]
        if field.shape[-2:] != (height, width):
            gain = torch.tensor([width / field.shape[-1], height / field.shape[-2]], device=device)
            field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)
            field = field * gain[None, :, None, None]
        noise, weight = _advect(noise, weight, field[0].reshape(2, -1), grid, (height, width), generator, settings)
        if step % TEMPORAL_COMPRESSION == 0:
            out[0, step // TEMPORAL_COMPRESSION] = pool(noise)
    return out


def _advect(
    noise: torch.Tensor,
    weight: torch.Tensor,
    flow: torch.Tensor,
    grid: torch.Tensor,
    size: tuple[int, int],
    generator: torch.Generator,
    settings: WarpSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the (C, P) field and its (P,) weights one frame along (2, P) flow, keeping every sample N(0, 1).

    Items are (source, target) pairs: every sample whose rounded forward target is inside the frame, then every
    target nothing reaches that pulls from its rounded backward position. Targets of several forward items merge
    them; targets nothing reaches and that pull from outside the frame get fresh noise.
    """
    height, width = size
    channels, count = noise.shape
    device = noise.device
    shift = flow.round().long()
    target = grid + shift
    inside = (target[0] >= 0) & (target[0] < width) & (target[1] >= 0) & (target[1] < height)
    moved_src = inside.nonzero().squeeze(1)
    moved_dst = (target[1] * width + target[0])[inside]
    reached = torch.zeros(count, dtype=torch.bool, device=device)
    reached[moved_dst] = True
    holes = (~reached).nonzero().squeeze(1)
    back = grid[:, holes] - shift[:, holes]
    found = (back[0] >= 0) & (back[0] < width) & (back[1] >= 0) & (back[1] < height)
    pull_dst, fresh_dst = holes[found], holes[~found]
    source = torch.cat([moved_src, (back[1] * width + back[0])[found]])

    # Regaussianise: a sample used k times gives k copies n/sqrt(k) + (xi_j - mean(xi)), weight w/k each.
    uses = torch.bincount(source, minlength=count)
    k = uses[source].to(noise.dtype)
    values = noise[:, source] / k.sqrt()
    shared = (k > 1).nonzero().squeeze(1)
    if len(shared):
        xi = torch.randn((channels, len(shared)), generator=generator).to(device)
        group = source[shared]
        sums = torch.zeros((channels, count), device=device).index_add_(1, group, xi)
        values[:, shared] += xi - sums[:, group] / uses[group].to(noise.dtype)
    weights = weight[source] / k

    moved = len(moved_src)
    item_w = weights[:moved]
    total = torch.zeros(count, device=device).index_add_(0, moved_dst, item_w)
    squares = torch.zeros(count, device=device).index_add_(0, moved_dst, item_w * item_w)
    merged = torch.zeros((channels, count), device=device).index_add_(1, moved_dst, values[:, :moved] * item_w)
    new_noise = merged / squares.clamp_min(torch.finfo(noise.dtype).tiny).sqrt()
    new_noise[:, pull_dst] = values[:, moved:]
    total[pull_dst] = weights[moved:]
    if len(fresh_dst):
        new_noise[:, fresh_dst] = torch.randn((channels, len(fresh_dst)), generator=generator).to(device)
        total[fresh_dst] = settings.fresh_weight
    total = (total / total.mean()).clamp_min(_MIN_WEIGHT)
    return new_noise, total


def _normalise(noise: torch.Tensor) -> torch.Tensor:
    """Shift and scale every (frame, channel) plane of (1, F, C, H, W) noise to zero mean and unit variance."""
    mean = noise.mean(dim=(-2, -1), keepdim=True)
    std = noise.std(dim=(-2, -1), keepdim=True, correction=0)
    return ((noise - mean) / std.clamp_min(1e-12)).contiguous()
