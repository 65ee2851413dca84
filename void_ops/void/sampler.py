"""VOID's denoising loop on diffusers components: conditioning, windowed DDIM with v-prediction, decoding.

Layouts: pixel clips enter as (T, H, W, 3) float32 in [0, 1] at the model resolution and padded length; latents are
(1, T_lat, C, h, w) as CogVideoX lays them out (B, F, C, H, W), h = H/8, w = W/8, T_lat = (T-1)/4 + 1 (even).
The transformer sees ``[noisy latents (C) | VAE(mask) (C) | VAE(video) (C)]`` on the channel axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.void.loading import VoidModels
from voidflow.void_ops.void.values import PassSettings, latent_frames, vae_mask_input, window_spans, window_weights

__all__ = ["MemoryMode", "VoidSampler"]

MemoryMode = Literal["full", "model_offload", "sequential_offload"]


class VoidSampler:
    """Runs VOID passes on loaded components, keeping them where the memory mode says.

    Args:
        models: components from ``load_void_models`` (on the CPU for the offload modes).
        device: where the work runs (``cuda``, ``cuda:1``, ``cpu``).
        dtype: compute dtype (bfloat16 on GPUs, float32 in CPU tests).
        memory_mode: ``full`` keeps everything on ``device``; ``model_offload`` moves each component there only
            while it runs; ``sequential_offload`` also streams the transformer block by block.
        vae_tiling: encode and decode in overlapping spatial tiles (diffusers' tiling): far less memory, results
            differ slightly from the untiled reference near tile seams. Off by default.
        text_encoder_resident: in ``full`` mode, keep T5 on the device between prompts (9.5 GB at full size)
            instead of moving it there for each new prompt. Off by default.
    """

    def __init__(
        self,
        models: VoidModels,
        *,
        device: str | torch.device,
        dtype: torch.dtype,
        memory_mode: MemoryMode = "full",
        vae_tiling: bool = False,
        text_encoder_resident: bool = False,
    ) -> None:
        self.models = models
        if vae_tiling and models.vae is not None:
            models.vae.enable_tiling()
        self.device = torch.device(device)
        self.dtype = dtype
        self.memory_mode = memory_mode
        self._loaded = (memory_mode, vae_tiling)  # what ``use_recipe`` returns to
        self._rope: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._prompts: dict[str, torch.Tensor] = {}  # T5 embeddings by prompt, kept on the CPU
        transformer: Any = models.transformer
        if memory_mode == "sequential_offload" and self.device.type == "cuda":
            transformer.enable_group_offload(
                onload_device=self.device,
                offload_device=torch.device("cpu"),
                offload_type="block_level",
                num_blocks_per_group=1,
            )
        elif memory_mode == "full":
            modules: tuple[Any, ...] = (transformer, models.vae)
            for module in modules:
                module.to(self.device, dtype)
        text_encoder: Any = models.text_encoder
        self.text_encoder_resident = text_encoder_resident and memory_mode == "full"
        if text_encoder is not None:
            text_encoder.to(self.device if self.text_encoder_resident else "cpu")

    def use_recipe(self, *, vae_tiling: bool, offload: bool) -> None:
        """Switch to a memory recipe (``void_ops.void.memory``) for the next calls, or back to the loaded one.

        ``offload`` turns ``full`` into ``model_offload``: each component comes onto the device only while it
        works. Switching back moves the components home again.
        """
        loaded_mode, loaded_tiling = self._loaded
        vae: Any = self.models.vae
        components: tuple[Any, ...] = (self.models.transformer, vae)
        if self.text_encoder_resident:
            components += (self.models.text_encoder,)
        if vae_tiling or loaded_tiling:
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        if offload and loaded_mode == "full":
            self.memory_mode = "model_offload"
            for module in components:
                module.to("cpu")
        elif self.memory_mode != loaded_mode:
            self.memory_mode = loaded_mode
            for module in components:
                module.to(self.device, self.dtype)

    @contextmanager
    def _on_device(self, module: torch.nn.Module, *, resident: bool) -> Iterator[torch.nn.Module]:
        """Keep ``module`` on the device for the body; offload modes move it back afterwards.

        ``resident`` modules stay on the device in ``full`` mode; the transformer streams itself in
        ``sequential_offload`` mode (group offloading hooks) and is never moved whole.
        """
        streamed = module is self.models.transformer and self.memory_mode == "sequential_offload"
        if (resident and self.memory_mode == "full") or streamed:
            yield module
            return
        module.to(self.device, self.dtype)
        try:
            yield module
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """Encode ``prompt`` with T5: (1, max_text_seq_length, text_embed_dim) in the compute dtype.

        T5 is on the device only while it encodes (it is the largest component after the transformer).

        Raises:
            InvalidInput: the models were loaded without a text encoder.
        """
        if self.models.text_encoder is None:
            raise InvalidInput("this VOID model was loaded without its text encoder; prompts cannot be encoded")
        config: Any = self.models.transformer.config
        length = int(config.max_text_seq_length)
        tokens = self.models.tokenizer(
            [prompt],
            padding="max_length",
            max_length=length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        if prompt not in self._prompts:
            with self._on_device(self.models.text_encoder, resident=self.text_encoder_resident) as encoder:
                self._prompts[prompt] = encoder(tokens.input_ids.to(self.device))[0].to("cpu", self.dtype)
        return self._prompts[prompt].to(self.device)

    def _scheduler(self, kind: str) -> Any:
        from diffusers import CogVideoXDDIMScheduler, DDIMScheduler

        cls = DDIMScheduler if kind == "ddim" else CogVideoXDDIMScheduler
        return cls.from_config(self.models.scheduler_config)  # type: ignore[no-untyped-call]

    def _rotary(self, frames: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE for a window of ``frames`` latent frames on an ``height`` x ``width`` latent grid (CogVideoX 1.5)."""
        key = (frames, height, width)
        if key not in self._rope:
            from diffusers.models.embeddings import get_3d_rotary_pos_embed

            config: Any = self.models.transformer.config
            p, p_t = int(config.patch_size), int(config.patch_size_t)
            cos, sin = get_3d_rotary_pos_embed(
                embed_dim=config.attention_head_dim,
                crops_coords=None,
                grid_size=(height // p, width // p),
                temporal_size=math.ceil(frames / p_t),
                grid_type="slice",
                max_size=(config.sample_height // p, config.sample_width // p),
                device=self.device,
            )
            self._rope[key] = (cos.to(self.device), sin.to(self.device))
        return self._rope[key]

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE-encode (1, 3, T, H, W) pixels with ``.mode()`` and the scaling factor → (1, T_lat, C, h, w)."""
        vae: Any
        with self._on_device(self.models.vae, resident=True) as vae:
            latents: torch.Tensor = vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mode()
        return (latents * self.models.vae_scaling_factor).permute(0, 2, 1, 3, 4)

    @torch.inference_mode()
    def conditioning(
        self, video: np.ndarray, condition: np.ndarray, settings: PassSettings, *, seed: int
    ) -> torch.Tensor:
        """Build the inpaint latents, (1, T_lat, 2C, h, w): VAE(1 - mask) then VAE(unmasked video).

        Args:
            video: (T, H, W, 3) float32 in [0, 1], the *unmasked* input (object included), padded.
            condition: (T, H, W) float32 mask after the pass's thresholds (1 remove … 0 keep).
            settings: the pass (its noise augmentation strength).
            seed: seeds the global RNG that the reference's noise augmentation draws from.
        """
        mask = torch.from_numpy(vae_mask_input(condition))[None]
        pixels = torch.from_numpy(np.ascontiguousarray(video.transpose(3, 0, 1, 2)))[None] * 2 - 1
        if self.models.transformer_config.get("add_noise_in_inpaint_model"):
            torch.manual_seed(seed)
            noise = torch.randn_like(pixels) * settings.noise_aug_strength
            pixels = torch.where(pixels == -1, pixels, pixels + noise)
        # One encode of a batch of two: the VAE normalises each sample on its own, so this equals two encodes.
        both = self._encode(torch.cat([mask, pixels]))
        return torch.cat([both[:1], both[1:]], dim=2)

    def _predict(
        self,
        latents: torch.Tensor,
        inpaint: torch.Tensor,
        embeds: torch.Tensor,
        timestep: torch.Tensor,
        guidance: float,
    ) -> torch.Tensor:
        """One transformer call on one window, with classifier-free guidance when ``embeds`` holds two prompts."""
        batch = embeds.shape[0]
        hidden = torch.cat([latents, inpaint], dim=2).expand(batch, -1, -1, -1, -1).to(self.dtype)
        rope = self._rotary(latents.shape[1], latents.shape[3], latents.shape[4])
        output: torch.Tensor = self.models.transformer(
            hidden_states=hidden,
            encoder_hidden_states=embeds,
            timestep=timestep.expand(batch),
            image_rotary_emb=rope,
            return_dict=False,
        )[0]
        output = output.float()
        if batch == 2:
            unconditional, conditional = output.chunk(2)
            return unconditional + guidance * (conditional - unconditional)
        return output

    @torch.inference_mode()
    def denoise(
        self,
        inpaint: torch.Tensor,
        prompt_embeds: torch.Tensor,
        settings: PassSettings,
        *,
        generator: torch.Generator,
        initial_noise: torch.Tensor | None = None,
        negative_embeds: torch.Tensor | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Run the pass's DDIM steps with temporal multidiffusion; return clean latents (1, T_lat, C, h, w) float32.

        Args:
            inpaint: (1, T_lat, 2C, h, w) from ``conditioning``.
            prompt_embeds: (1, L, D) from ``encode_prompt``.
            settings: steps, guidance, scheduler and windows.
            generator: the shot's own CPU generator (never the global RNG) for the initial noise, so a seed gives
                the same noise on every device.
            initial_noise: (1, T_lat, C, h, w) structured noise (pass 2's warped noise) instead of Gaussian noise.
            negative_embeds: (1, L, D), required when ``settings.guidance`` > 1.
            on_step: called with (step, total) after every step, for progress.

        Raises:
            InvalidInput: shapes disagree, T_lat is odd, or guidance > 1 without negative embeddings.
        """
        _, length, channels2, height, width = inpaint.shape
        channels = channels2 // 2
        if length % 2:
            raise InvalidInput(f"latent length must be even for the 2-frame temporal patch, got {length}")
        shape = (1, length, channels, height, width)
        if initial_noise is not None and tuple(initial_noise.shape) != shape:
            raise InvalidInput(f"initial_noise must be {shape}, got {tuple(initial_noise.shape)}")
        embeds = prompt_embeds
        if settings.guidance > 1:
            if negative_embeds is None:
                raise InvalidInput(f"{settings.name}: guidance {settings.guidance} needs negative prompt embeddings")
            embeds = torch.cat([negative_embeds, prompt_embeds])
        scheduler = self._scheduler(settings.scheduler)
        scheduler.set_timesteps(settings.steps, device=self.device)
        if initial_noise is None:
            initial_noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents: torch.Tensor = initial_noise.to(self.device, torch.float32) * scheduler.init_noise_sigma
        inpaint = inpaint.to(self.device, self.dtype)
        spans = window_spans(length, window=settings.window, overlap=settings.overlap)
        weights = [
            torch.from_numpy(window_weights(start, stop, length, overlap=settings.overlap)).to(self.device)
            for start, stop in spans
        ]
        with self._on_device(self.models.transformer, resident=True):
            for step, timestep in enumerate(scheduler.timesteps, start=1):
                if len(spans) == 1:
                    noise = self._predict(latents, inpaint, embeds, timestep, settings.guidance)
                    latents = scheduler.step(noise, timestep, latents, return_dict=False)[0]
                else:
                    canvas = torch.zeros_like(latents)
                    total = torch.zeros(length, device=self.device)
                    for (start, stop), weight in zip(spans, weights, strict=True):
                        window = latents[:, start:stop]
                        noise = self._predict(window, inpaint[:, start:stop], embeds, timestep, settings.guidance)
                        stepped = scheduler.step(noise, timestep, window, return_dict=False)[0]
                        canvas[:, start:stop] += stepped * weight[None, :, None, None, None]
                        total[start:stop] += weight
                    latents = canvas / total[None, :, None, None, None]
                if on_step is not None:
                    on_step(step, len(scheduler.timesteps))
        return latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Decode (1, T_lat, C, h, w) latents to (T, H, W, 3) float32 frames in [0, 1]."""
        vae: Any
        with self._on_device(self.models.vae, resident=True) as vae:
            scaled = latents.permute(0, 2, 1, 3, 4).to(self.device, self.dtype) / self.models.vae_scaling_factor
            frames = vae.decode(scaled).sample
        frames = (frames.float().clamp(-1, 1) + 1) / 2
        pixels: np.ndarray = frames[0].permute(1, 2, 3, 0).cpu().numpy()
        return pixels

    @staticmethod
    def latent_shape(frames: int, height: int, width: int, channels: int) -> tuple[int, int, int, int, int]:
        """Return the latent shape (1, T_lat, C, h, w) for a padded clip of ``frames`` x ``height`` x ``width``."""
        return (1, latent_frames(frames), channels, height // 8, width // 8)
