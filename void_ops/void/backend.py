"""The ``void`` backend: plate frames in, VOID's fill out, with every departure from the reference recorded.

The work splits so that only model-resolution clips ever reach a GPU process:

1. ``prepare_clip`` (CPU): fit the plate into 384x672 keeping its aspect (letterbox by default), quantise the
   quadmask, and ping-pong pad to VOID's length (``ModelClip``). Pass 2 also warps its initial noise along pass 1's
   motion here (``pass2_noise``: optical flow and noise advection on the CPU), so a GPU is leased for GPU work only.
2. ``VoidModel`` (GPU, loaded once): pass 1 from Gaussian noise, or pass 2 from the warped noise. One call carries a
   ``PassInput``, so a Ray actor adapter (``tasks.void_actors.ActorModel``) takes the same call. On a CUDA GPU it
   runs voidflow's fast path by default (fused QKV, compiled blocks and VAE, cuDNN attention) and keeps what it
   compiled in a persistent compile cache (``void_ops.void.compile_cache``).
3. ``finish_clip`` (CPU): trim the padding (the shot's exact frame count), undo the fit, back to the plate's dtype.

``VoidPass`` strings the three together as the ``void`` backend (``void_ops.pipeline.Inpainter``), one class for
both passes: pass 2 is pass 1 plus pass 1's fill and the noise warp.

The compositor then keeps the plate outside the grown, feathered mask (``void_ops.composite``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from voidflow.void_ops.exceptions import GpuOutOfMemory, InvalidInput
from voidflow.void_ops.frames import from_unit, to_unit
from voidflow.void_ops.quadmask import KEEP, quantise, region
from voidflow.void_ops.void.compile_cache import CacheUse, CompileCache, GraphCounts, compiling_seconds
from voidflow.void_ops.void.memory import RECIPES, Footprint, Recipe, estimate_gb
from voidflow.void_ops.void.values import (
    Fit,
    FitMode,
    PassSettings,
    condition_from_quadmask,
    fit_frames,
    latent_frames,
    padded_length,
    pass1_condition,
    pass2_condition,
    pingpong,
    unfit_frames,
)

if TYPE_CHECKING:
    from voidflow.void_ops.void.noise_warp import WarpSettings
    from voidflow.void_ops.void.speed import AttentionKind

__all__ = [
    "KERNEL_TIMING_CUDA",
    "KERNEL_TIMING_NONE",
    "ModelClip",
    "ModelSpec",
    "PassInput",
    "PassModel",
    "PassRun",
    "VoidConfig",
    "VoidModel",
    "VoidPass",
    "VoidSettings",
    "describe_clip",
    "finish_clip",
    "pass2_noise",
    "prepare_clip",
    "warm_lengths",
    "warm_passes",
]


@dataclass(frozen=True, slots=True)
class VoidSettings:
    """Clip geometry for VOID; every number is recorded in provenance.

    Attributes:
        height: model frame height (384 for the released weights).
        width: model frame width (672).
        fit: ``letterbox`` (whole plate, bars) or ``crop`` (fills the frame, edges cut; refused if the mask
            reaches a cut edge).
        min_frames: padded clips are at least this long (85 = one 22-latent-frame window).
        max_frames: longest shot one run takes (197).
    """

    height: int = 384
    width: int = 672
    fit: FitMode = "letterbox"
    min_frames: int = 85
    max_frames: int = 197

    def __post_init__(self) -> None:
        if self.height % 16 or self.width % 16:
            raise InvalidInput(f"model height and width must be multiples of 16, got {self.height}x{self.width}")
        for name in ("min_frames", "max_frames"):
            value = getattr(self, name)
            if (value - 1) % 4 or latent_frames(value) % 2:
                raise InvalidInput(f"{name} must be 4k+1 with an even latent length (85, 197, 13 ...), got {value}")

    def as_dict(self) -> dict[str, object]:
        """Return the settings for provenance."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class ModelClip:
    """A shot fitted, quantised and padded for the model.

    Attributes:
        video: (m, H, W, 3) float32 in [0, 1], the unmasked plate at model resolution, ping-pong padded to m.
        quadmask: (m, H, W) uint8 quadmask, quantised to {0, 63, 127, 255}, padded the same way.
        frames: the shot's own frame count F (outputs are trimmed back to it).
        fit: how the plate sits in the model frame.
    """

    video: np.ndarray
    quadmask: np.ndarray
    frames: int
    fit: Fit

    def params(self) -> dict[str, object]:
        """Return the clip geometry actually used, for provenance."""
        return {"input_frames": self.frames, "padded_frames": len(self.video), "fit": self.fit.as_dict()}


@dataclass(frozen=True, slots=True)
class PassInput:
    """One call of a VOID pass, as it travels to the device (plain data: a Ray actor call carries it as is).

    Attributes:
        clip: the prepared shot (``prepare_clip``).
        seed: the shot's seed: a fresh CPU generator is made from it (and it seeds the global RNG for the
            reference's noise augmentation), so results do not depend on batch order.
        prompt: the background prompt (the scene after removal).
        noise: pass 2 only: its initial noise, (1, T_lat, C, h, w) float32 (``pass2_noise``: Gaussian noise warped
            along pass 1's motion, made before the call); None for pass 1 (fresh Gaussian noise from the seed).
        noise_s: seconds the caller spent making ``noise`` (on the CPU, before leasing a GPU), for provenance.

    Raises:
        InvalidInput: ``noise`` is not a 5-D float32 array of batch 1.
    """

    clip: ModelClip
    seed: int
    prompt: str
    noise: np.ndarray | None = None
    noise_s: float = 0.0

    def __post_init__(self) -> None:
        noise = self.noise
        if noise is not None and (noise.ndim != 5 or noise.shape[0] != 1 or noise.dtype != np.float32):
            raise InvalidInput(
                f"a pass call's noise must be (1, T_lat, C, h, w) float32, got {noise.shape} {noise.dtype}"
            )


def describe_clip(
    frames: int, height: int, width: int, settings: VoidSettings, window: int, overlap: int
) -> dict[str, object]:
    """Return the geometry VOID will use for a shot of ``frames`` x ``height`` x ``width``: the shot windows
    (for shots longer than ``max_frames``), and per run the padded length, latent frames, multidiffusion windows
    and the fit (no pixels needed)."""
    from voidflow.void_ops.void.values import window_spans
    from voidflow.void_ops.windows import frame_windows

    shot_windows = frame_windows(frames, settings.max_frames, shortest=settings.min_frames)
    longest = max(stop - start for start, stop in shot_windows)
    length = padded_length(longest, min_length=settings.min_frames, max_length=settings.max_frames)
    runs = [padded_length(stop - start, min_length=settings.min_frames, max_length=settings.max_frames)
            for start, stop in shot_windows]  # fmt: skip
    _, fit = fit_frames(np.zeros((1, height, width), np.uint8), settings.height, settings.width, mode=settings.fit)
    return {
        "input_frames": frames,
        "shot_windows": [list(span) for span in shot_windows],
        "padded_frames_by_window": runs,
        "padded_frames": length,
        "latent_frames": latent_frames(length),
        "windows": [list(span) for span in window_spans(latent_frames(length), window=window, overlap=overlap)],
        "fit": fit.as_dict(),
    }


def warm_lengths(frames: Sequence[int] | None, settings: VoidSettings, *, window: int, overlap: int) -> list[int]:
    """The padded lengths to run once each so that every shape shots of ``frames`` frames meet gets compiled.

    A shot runs as shot windows (``void_ops.windows.frame_windows``), each padded to a VOID length; the compiled
    transformer blocks meet one shape per multidiffusion window length, the VAE the same chunks at every length.
    Of the runs the shots need, the shortest that brings a new window length is kept. Example (VOID's defaults,
    window 22, overlap 4): every length (``frames`` None) → [85, 93, 101, 109, 117, 125, 133, 141, 149] (latent
    windows 22, then last windows of 6, 8, ... 20); ``[300]`` → [125] (its runs of 197 and 125 frames both meet
    windows of 22 and 14 latent frames, so the shorter one compiles both).

    Raises:
        InvalidInput: a frame count is below 1.
    """
    from voidflow.void_ops.void.values import window_spans
    from voidflow.void_ops.windows import frame_windows

    lowest, highest = settings.min_frames, settings.max_frames
    if frames is None:
        runs = {padded_length(n, min_length=lowest, max_length=highest) for n in range(lowest, highest + 1)}
    else:
        runs = {
            padded_length(stop - start, min_length=lowest, max_length=highest)
            for count in frames
            for start, stop in frame_windows(_positive(count), highest, shortest=lowest)
        }
    chosen: list[int] = []
    covered: set[int] = set()
    for length in sorted(runs):
        shapes = {stop - start for start, stop in window_spans(latent_frames(length), window=window, overlap=overlap)}
        if shapes - covered:
            chosen.append(length)
            covered |= shapes
    return chosen


def _positive(frames: int) -> int:
    if frames < 1:
        raise InvalidInput(f"a shot has at least 1 frame, got {frames}")
    return frames


def prepare_clip(frames: np.ndarray, quadmask: np.ndarray, settings: VoidSettings) -> ModelClip:
    """Fit, quantise and pad a shot for VOID.

    Args:
        frames: (F, H, W, 3) plate frames, uint8, uint16 or float32.
        quadmask: (F, H, W) uint8 quadmask at plate size.
        settings: model geometry.

    Raises:
        InvalidInput: shapes disagree, the shot is longer than ``max_frames``, or ``crop`` would cut the mask.
    """
    count = len(frames)
    if quadmask.shape != frames.shape[:3]:
        raise InvalidInput(f"quadmask {quadmask.shape} does not match frames {frames.shape[:3]}")
    if count > settings.max_frames:
        raise InvalidInput(
            f"{count} frames is longer than VOID's {settings.max_frames}-frame run; split the shot into windows"
        )
    video, fit = fit_frames(to_unit(frames), settings.height, settings.width, mode=settings.fit)
    # Bars and cut edges must read as "keep": fit the inverted mask (zeros pad), then invert back.
    inverted, _ = fit_frames(KEEP - quantise(quadmask), settings.height, settings.width, mode=settings.fit)
    fitted_mask = quantise(KEEP - inverted)
    if settings.fit == "crop":
        kept = region(fitted_mask).sum() * (fit.plate_width * fit.plate_height) / (fit.width * fit.height)
        if kept + 0.5 < region(quadmask).sum() * 0.98:
            raise InvalidInput("fit 'crop' cuts off part of the mask; use fit 'letterbox' for this shot")
    length = padded_length(count, min_length=settings.min_frames, max_length=settings.max_frames)
    return ModelClip(pingpong(video, length), pingpong(fitted_mask, length), count, fit)


def finish_clip(output: np.ndarray, clip: ModelClip, dtype: np.dtype[Any]) -> np.ndarray:
    """Turn model output (m, H, W, 3) float in [0, 1] into the shot's fill: trimmed to F frames, at plate size and
    in the plate's dtype."""
    return from_unit(unfit_frames(output[: clip.frames], clip.fit), dtype)


def pass2_noise(
    first_pass: np.ndarray, latent: tuple[int, int, int, int], *, seed: int, warp: WarpSettings
) -> np.ndarray:
    """Pass 2's initial noise: Gaussian noise from ``seed`` warped along the motion of pass 1's fill.

    Runs on the CPU (OpenCV DIS flow, or RAFT on the CPU, and the advection), bit for bit what the model computed
    inside its call before (``noise_warp.warped_noise`` on the CPU).

    Args:
        first_pass: pass 1's fill fitted and padded like the clip, (m, H, W, 3) float in [0, 1].
        latent: the clip's latent shape (T_lat, C, h, w) (``PassModel.latent_shape``).
        seed: the shot's seed.
        warp: how the noise is warped.

    Returns:
        (1, T_lat, C, h, w) float32, each latent frame and channel of zero mean and unit variance.

    Raises:
        InvalidInput: the frames and the latent shape disagree (length or aspect).
        ConfigurationError, ModelLoadError: RAFT without torchvision or usable weights.
    """
    from voidflow.void_ops.void.noise_warp import warped_noise

    frames, channels, height, width = latent
    noise = warped_noise(from_unit(first_pass, np.uint8), frames, height, width, channels, seed=seed, settings=warp)
    result: np.ndarray = noise.numpy()
    return result


def _weight_name(path: str, base: str) -> str:
    """Name a weight file for provenance: relative to the base folder when inside it (``vae/...``), else its name."""
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return Path(path).name


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to load one VOID pass on one device; recorded in provenance.

    Attributes:
        base: the CogVideoX-Fun-V1.5-5b-InP folder (diffusers layout).
        checkpoint: ``void_pass1.safetensors`` or ``void_pass2.safetensors``; None runs the widened base.
        settings: the pass recipe (``PASS1`` or ``PASS2``).
        device: ``cuda``, ``cuda:N`` or ``cpu``.
        dtype: ``bfloat16`` (GPUs) or ``float32``.
        memory_mode: ``full``, ``model_offload`` or ``sequential_offload``.
        compile: voidflow's fast path, on CUDA devices only (the default there): fused QKV, compiled transformer
            blocks and VAE, cuDNN attention. False runs plain eager diffusers with PyTorch's attention choice. Other
            devices ignore it (provenance records what ran).
        memory_gb: device memory the pass may use, for choosing its recipe (``void_ops.void.memory``); None: the
            card's own memory on CUDA, no limit on the CPU.
        text_encoder_resident: keep T5 on the device between prompts (``full`` mode; a GPU holding one pass).
    """

    base: str
    checkpoint: str | None
    settings: PassSettings
    device: str = "cuda"
    dtype: str = "bfloat16"
    memory_mode: str = "full"
    compile: bool = True
    memory_gb: float | None = None
    text_encoder_resident: bool = False


#: What ``kernel_s`` measures on CUDA, and why there is none elsewhere (recorded with each run).
KERNEL_TIMING_CUDA = (
    "CUDA events around the call's device phases (VAE encode, T5, denoising, VAE decode), less the host seconds "
    "spent compiling inside them (compile_s)"
)
KERNEL_TIMING_NONE = "none: the pass ran on the CPU (no GPU kernels to time)"


@dataclass(frozen=True, slots=True)
class PassRun:
    """How one call of a pass ran: the recipe used, the recipes passed over and why, when it held the device
    (wall-clock epoch seconds, so runs on different hosts line up), how much of that the GPU worked, and how the
    call met the compile cache.

    Attributes:
        kernel_s: CUDA only: seconds of GPU time between events recorded around the device phases (VAE encode, T5,
            denoising, decode), summed, less ``compile_s`` (compiling happens inside the phases while the GPU
            waits); host work between the phases (array copies, padding) is left out, other gaps inside a phase
            are not. None on the CPU.
        compile_s: host seconds the call spent compiling (``compiling_seconds``; found-in-cache graphs too); None
            where nothing compiles (the CPU, ``--no-compile``).
        attention: the attention kernel the transformer preferred (``cudnn`` on the fast path, else ``default``:
            PyTorch's choice).
    """

    recipe: Recipe
    passed_over: tuple[str, ...]
    started: float
    finished: float
    estimate_gb: float
    peak_gb: float | None = None  # measured on CUDA: the most device memory the run held
    kernel_s: float | None = None
    attention: str = "default"
    cache: CacheUse = field(default_factory=lambda: CacheUse("off"))
    compile_s: float | None = None

    def facts(self) -> dict[str, object]:
        """Return the run for provenance: the recipe, times, memory, ``kernel_s`` and ``kernel_busy_fraction``
        (``kernel_s`` over the call's seconds; None off CUDA, ``kernel_timing`` says why), the attention kernel and
        the compile cache's state (``CacheUse.facts``)."""
        seconds = self.finished - self.started
        busy = None if self.kernel_s is None or seconds <= 0 else min(1.0, self.kernel_s / seconds)
        return {
            "recipe": self.recipe.as_dict(),
            "passed_over": list(self.passed_over),
            "started": self.started,
            "finished": self.finished,
            "seconds": round(seconds, 3),
            "estimate_gb": round(self.estimate_gb, 3),
            "peak_gb": None if self.peak_gb is None else round(self.peak_gb, 3),
            "kernel_s": None if self.kernel_s is None else round(self.kernel_s, 3),
            "kernel_busy_fraction": None if busy is None else round(busy, 4),
            "kernel_timing": KERNEL_TIMING_NONE if self.kernel_s is None else KERNEL_TIMING_CUDA,
            "compile_s": None if self.compile_s is None else round(self.compile_s, 3),
            "attention": self.attention,
            **self.cache.facts(),
        }


@dataclass(frozen=True, slots=True)
class VoidConfig:
    """Everything a batch needs to run the ``void`` backend.

    Attributes:
        settings: clip geometry.
        pass1: how to load pass 1.
        pass2: how to load pass 2 (None when the batch runs no pass 2).
        warp: pass 2's optical flow and noise warping.
    """

    settings: VoidSettings
    pass1: ModelSpec
    pass2: ModelSpec | None = None
    warp: WarpSettings | None = None


class _KernelClock:
    """CUDA events around the device phases of one call; ``seconds`` sums their GPU time (None off CUDA)."""

    def __init__(self, device: Any) -> None:
        self._device = device
        self._pairs: list[tuple[Any, Any]] = []

    @contextmanager
    def phase(self) -> Iterator[None]:
        """Time the body's GPU work on the device's current stream."""
        if self._device.type != "cuda":
            yield
            return
        import torch

        stream = torch.cuda.current_stream(self._device)
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        stop = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record(stream)
        try:
            yield
        finally:
            stop.record(stream)
            self._pairs.append((start, stop))

    def seconds(self) -> float | None:
        """GPU seconds inside the phases, after waiting for them to finish; None off CUDA."""
        if self._device.type != "cuda":
            return None
        if self._pairs:
            self._pairs[-1][1].synchronize()
        return sum(float(start.elapsed_time(stop)) for start, stop in self._pairs) / 1000


class VoidModel:
    """One VOID pass loaded once on one device; call it on ``PassInput``s (pass 2's carries its warped noise).

    On a CUDA device with ``spec.compile`` (the default) it runs voidflow's fast path: Q/K/V fused, transformer
    blocks and VAE compiled, cuDNN attention preferred (PyTorch's other kernels where it cannot run). What it
    compiles is saved in ``compile_cache`` (shared by every model of the process), which is loaded here, before the
    first compile.

    Args:
        spec: what to load and how.
        compile_cache: the process's persistent compile cache; None keeps compiled code in this process only.
    """

    def __init__(self, spec: ModelSpec, compile_cache: CompileCache | None = None) -> None:
        import torch

        from voidflow.void_ops.void.loading import load_void_models
        from voidflow.void_ops.void.sampler import VoidSampler

        dtype = getattr(torch, spec.dtype)
        load_device = spec.device if spec.memory_mode == "full" else "cpu"
        checkpoint = Path(spec.checkpoint) if spec.checkpoint else None
        self.models = load_void_models(Path(spec.base), checkpoint, dtype=dtype, device=load_device)
        self.sampler = VoidSampler(
            self.models,
            device=spec.device,
            dtype=dtype,
            memory_mode=spec.memory_mode,  # type: ignore[arg-type]
            text_encoder_resident=spec.text_encoder_resident,
        )
        self.settings = spec.settings
        fast = spec.compile and self.sampler.device.type == "cuda"
        self.attention: AttentionKind = "cudnn" if fast else "default"
        self._params = {
            **spec.settings.as_dict(),
            "device": spec.device,
            "dtype": spec.dtype,
            "memory_mode": spec.memory_mode,
            "compile": fast,
            "checkpoint": spec.checkpoint,
            "add_noise_in_inpaint_model": bool(self.models.transformer_config.get("add_noise_in_inpaint_model")),
            "weights": {_weight_name(w.path, spec.base): w.sha256 for w in self.models.weights},
        }
        self.compile_cache = compile_cache if fast else None
        self._compiles = fast
        if not spec.compile:
            off = "compilation is off (--no-compile)"
        elif not fast:
            off = f"nothing is compiled on {self.sampler.device.type} (the fast path is for CUDA GPUs)"
        else:
            off = "no compile cache folder is set: compiled code lives and dies with this process"
        self._cache_off = CacheUse("off", None, off)  # how calls meet the cache when there is none
        if fast:
            from voidflow.void_ops.void.speed import compile_transformer, compile_vae, fuse_qkv

            if self.compile_cache is not None:
                self.compile_cache.load()  # before the first compile (compilation itself waits for the first call)
            fuse_qkv(self.models.transformer)
            compile_transformer(self.models.transformer)
            compile_vae(self.models.vae)
        self.footprint = _footprint(self.models, dtype.itemsize, resident_t5=self.sampler.text_encoder_resident)
        self.memory_gb = spec.memory_gb
        if self.memory_gb is None and self.sampler.device.type == "cuda":
            self.memory_gb = torch.cuda.get_device_properties(self.sampler.device).total_memory / 1e9
        self.last_run: PassRun | None = None

    def params(self) -> dict[str, object]:
        """Return the pass recipe, placement and weight hashes actually used, for provenance."""
        return dict(self._params)

    @property
    def latent_geometry(self) -> tuple[int, int]:
        """The VAE's latent channels and spatial compression (16 and 8 at full size)."""
        config: Any = self.models.vae.config
        return int(config.latent_channels), 2 ** (len(config.block_out_channels) - 1)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The latent shape (T_lat, C, h, w) of a padded clip of ``frames`` x ``height`` x ``width`` (the VAE's 4x
        temporal and 2^(levels-1) spatial compression). Example at full size: 85 x 384 x 672 -> (22, 16, 48, 84)."""
        channels, scale = self.latent_geometry
        return latent_frames(frames), channels, height // scale, width // scale

    def _run(
        self, call: PassInput, recipe: Recipe, on_step: Callable[[int, int], None] | None, clock: _KernelClock
    ) -> np.ndarray:
        """The pass itself, with ``recipe``'s memory savings; ``__call__`` picks the recipe."""
        import torch

        from voidflow.void_ops.void.speed import attention_backend

        self.sampler.use_recipe(vae_tiling=recipe.vae_tiling, offload=recipe.offload)
        settings = self.settings
        clip, seed = call.clip, call.seed
        condition = condition_from_quadmask(clip.quadmask)
        if settings.name == "pass1":
            condition = pass1_condition(condition)
        else:
            condition = pass2_condition(condition, settings.mask_mode)
        with clock.phase():
            inpaint = self.sampler.conditioning(clip.video, condition, settings, seed=seed)
        with clock.phase():
            embeds = self.sampler.encode_prompt(call.prompt)
            negative = self.sampler.encode_prompt(settings.negative_prompt) if settings.guidance > 1 else None
        noise = None if call.noise is None else torch.from_numpy(call.noise)
        generator = torch.Generator("cpu").manual_seed(seed)
        with clock.phase(), attention_backend(self.attention, fallback=True):
            latents = self.sampler.denoise(
                inpaint,
                embeds,
                settings,
                generator=generator,
                initial_noise=noise,
                negative_embeds=negative,
                on_step=on_step,
            )
        with clock.phase():
            return self.sampler.decode(latents)

    def __call__(
        self, call: PassInput, *, on_step: Callable[[int, int], None] | None = None, budget_gb: float | None = None
    ) -> np.ndarray:
        """Run the pass on ``call.clip``; return (m, H, W, 3) float32 frames in [0, 1] (still padded).

        The recipes of ``void_ops.void.memory.RECIPES`` are tried in order: one whose estimate exceeds the budget is
        passed over, one that runs out of memory is passed over after the cache is emptied, and the first that
        completes is recorded in ``last_run`` with the reasons the others were passed over, the GPU time of its
        device phases and how it met the compile cache (saved after the call when it compiled anything new).

        Args:
            call: the prepared shot, seed and prompt (and pass 2's warped noise).
            on_step: progress callback (step, total).
            budget_gb: device memory this call may use; None: the spec's ``memory_gb`` (the card's memory).

        Raises:
            GpuOutOfMemory: no recipe fits or every one ran out of memory (retryable elsewhere, e.g. a larger card).
            InvalidInput: pass 2's noise does not have the clip's latent shape.
        """
        import torch

        budget = budget_gb if budget_gb is not None else self.memory_gb
        frames, height, width = call.clip.quadmask.shape
        if call.noise is not None and call.noise.shape[1:] != self.latent_shape(frames, height, width):
            raise InvalidInput(
                f"{self.settings.name}: initial noise {call.noise.shape[1:]} does not match the clip's latent shape "
                f"{self.latent_shape(frames, height, width)}"
            )
        passed_over: list[str] = []
        for recipe in RECIPES:
            need = estimate_gb(self.footprint, frames, height, width, recipe)
            if budget is not None and need > budget:
                passed_over.append(f"{recipe.name}: needs ~{need:.4g} GB of {budget:.4g} GB")
                continue
            started = time.time()
            cuda = self.sampler.device.type == "cuda"
            clock = _KernelClock(self.sampler.device)
            graphs = GraphCounts.now() if self._compiles else None
            compiling = compiling_seconds() if self._compiles else None
            if cuda:
                torch.cuda.reset_peak_memory_stats(self.sampler.device)
            try:
                output = self._run(call, recipe, on_step, clock)
            except torch.OutOfMemoryError as error:
                passed_over.append(f"{recipe.name}: {str(error).splitlines()[0][:300]}")
                if cuda:
                    torch.cuda.empty_cache()
                continue
            finally:
                self.sampler.use_recipe(vae_tiling=False, offload=False)
            finished = time.time()
            peak = torch.cuda.max_memory_allocated(self.sampler.device) / 1e9 if cuda else None
            cache = self.compile_cache.save() if self.compile_cache is not None else self._cache_off
            if graphs is not None:
                cache = dataclasses.replace(cache, graphs=GraphCounts.now().since(graphs))
            compile_s = None if compiling is None else max(0.0, compiling_seconds() - compiling)
            kernel_s = clock.seconds()
            if kernel_s is not None and compile_s:
                kernel_s = max(0.0, kernel_s - compile_s)
            self.last_run = PassRun(
                recipe, tuple(passed_over), started, finished, need, peak, kernel_s, self.attention, cache, compile_s
            )
            return output
        where = f"{self.settings.name} on {self._params['device']}"
        raise GpuOutOfMemory(f"{where}: no memory recipe fits ({'; '.join(passed_over)})")

    def warm(self, frames: int, height: int, width: int, *, prompt: str = "warm-up") -> PassRun:
        """Compile what a clip of ``frames`` padded frames at ``height`` x ``width`` needs (every multidiffusion
        window shape, the VAE's chunks): one call on a blank clip with one denoising step (the compiled graphs are
        the same at any step count), saved to the compile cache like any call. Returns how it ran (``last_run``).

        Raises:
            InvalidInput: ``frames`` is not one of VOID's padded lengths (4k+1 with an even latent length).
        """
        if frames < 1 or (frames - 1) % 4 or latent_frames(frames) % 2:
            raise InvalidInput(f"warm: {frames} is not a padded length (4k+1 with an even latent length: 85, 93 ...)")
        clip = ModelClip(
            np.zeros((frames, height, width, 3), np.float32),
            np.full((frames, height, width), KEEP, np.uint8),
            frames,
            fit_frames(np.zeros((1, height, width), np.uint8), height, width, mode="letterbox")[1],
        )
        noise = None
        if self.settings.name == "pass2":
            noise = np.zeros((1, *self.latent_shape(frames, height, width)), np.float32)
        steps, self.settings = self.settings, dataclasses.replace(self.settings, steps=1)
        try:
            self(PassInput(clip, 0, prompt, noise))
        finally:
            self.settings = steps
        assert self.last_run is not None
        return self.last_run


def warm_passes(
    specs: dict[str, ModelSpec],
    lengths: Sequence[int],
    settings: VoidSettings,
    cache: CompileCache | None,
    report: Callable[[str, int, PassRun], None],
) -> None:
    """Load each pass of ``specs`` as a GPU worker does, one at a time, and compile it at each padded length of
    ``lengths`` (``warm_lengths``) with ``VoidModel.warm``, into ``cache``; ``report`` hears of each call (pass
    name, length, how it ran) as it ends.

    Raises:
        InvalidInput: a length is not one of VOID's padded lengths.
    """
    import torch

    for name, spec in specs.items():
        model = VoidModel(spec, cache)
        for length in lengths:
            report(name, length, model.warm(length, settings.height, settings.width))
        del model  # the next pass gets the whole card
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _footprint(models: Any, dtype_bytes: int, *, resident_t5: bool) -> Footprint:
    """What ``models`` keep on their device, in GB, and the VAE's widest layer."""

    def size_gb(module: Any) -> float:
        return sum(p.numel() for p in module.parameters()) * dtype_bytes / 1e9 if module is not None else 0.0

    return Footprint(
        transformer_gb=size_gb(models.transformer),
        vae_gb=size_gb(models.vae),
        text_encoder_gb=size_gb(models.text_encoder),
        vae_channels=max(models.vae.config.block_out_channels),
        dtype_bytes=dtype_bytes,
        text_encoder_resident=resident_t5,
    )


class PassModel(Protocol):
    """What ``VoidPass`` runs: a ``VoidModel`` in this process, or ``tasks.void_actors.ActorModel`` on the pool."""

    def params(self) -> dict[str, object]: ...

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]: ...

    def __call__(self, call: PassInput) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class VoidPass:
    """The ``void`` backend (``void_ops.pipeline.Inpainter``): one VOID pass, parameterised by its settings.

    Pass 1 (``warp`` None) fills from Gaussian noise. Pass 2 (``warp`` set) refines pass 1's fill, handed in as
    ``first_pass``, from noise warped along its motion, computed here on the CPU before the model is called (so
    a pooled model leases its GPU for GPU work only). Either way the plate is fitted, quantised and padded
    (``prepare_clip``), run on ``model`` and brought back (``finish_clip``).

    Attributes:
        model: the pass's model (``VoidModel``, or an adapter with its call).
        settings: clip geometry.
        warp: pass 2's noise warping; None for pass 1.
        version: the backend's version; bump when its output changes.
    """

    model: PassModel
    settings: VoidSettings = field(default_factory=VoidSettings)
    warp: WarpSettings | None = None
    version: str = "1"

    @property
    def name(self) -> str:
        """``void`` (pass 1) or ``void-pass2``."""
        return "void" if self.warp is None else "void-pass2"

    @property
    def max_frames(self) -> int:
        """Longest shot one run takes; longer shots run in cross-faded windows (``void_ops.pipeline.windowed``)."""
        return self.settings.max_frames

    @property
    def min_frames(self) -> int:
        """Shortest run VOID costs: shorter clips are padded up to it, so a shot's last window is never shorter."""
        return self.settings.min_frames

    def params(self) -> dict[str, object]:
        """Return the backend's geometry (pass 2: and warp settings) and the model pass's recipe, for provenance.

        Pass 1 names itself as ``backend``, pass 2 as ``refiner`` (the keys recorded since the two were apart)."""
        role = "backend" if self.warp is None else "refiner"
        warp = (
            {} if self.warp is None else {f"warp_{key}": value for key, value in dataclasses.asdict(self.warp).items()}
        )
        return {
            role: self.name,
            f"{role}_version": self.version,
            **self.settings.as_dict(),
            **warp,
            **self.model.params(),
        }

    def describe(self, frames: int, height: int, width: int) -> dict[str, object]:
        """Padding, latent length, windows and fit for a shot of this size."""
        recipe = self.model.params()
        return describe_clip(
            frames, height, width, self.settings, int(str(recipe["window"])), int(str(recipe["overlap"]))
        )

    def __call__(
        self, frames: np.ndarray, quadmask: np.ndarray, *, seed: int, prompt: str, first_pass: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the fill, (F, H, W, 3) in the plate's dtype, from the plate, the quadmask and (pass 2) pass 1's fill.

        Raises:
            InvalidInput: no prompt; a ``first_pass`` missing for pass 2 or given to pass 1; shapes disagree; the
                shot is longer than ``max_frames``; or ``crop`` would cut the mask.
        """
        if not prompt:
            raise InvalidInput("the void backend needs a background prompt (the scene after removal): set 'prompt'")
        if (first_pass is None) != (self.warp is None):
            wanted = "needs pass 1's fill as first_pass" if self.warp is not None else "takes no first_pass"
            raise InvalidInput(f"{self.name} {wanted}")
        clip = prepare_clip(frames, quadmask, self.settings)
        noise, noise_s = None, 0.0
        if first_pass is not None and self.warp is not None:
            started = time.perf_counter()
            geometry = self.settings.height, self.settings.width
            first, _ = fit_frames(to_unit(first_pass), *geometry, mode=self.settings.fit)
            latent = self.model.latent_shape(len(clip.video), *geometry)
            noise = pass2_noise(pingpong(first, len(clip.video)), latent, seed=seed, warp=self.warp)
            noise_s = time.perf_counter() - started
        output = self.model(PassInput(clip, seed, prompt, noise, noise_s))
        return finish_clip(output, clip, frames.dtype)
