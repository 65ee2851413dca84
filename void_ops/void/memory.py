"""How much device memory a VOID pass needs, and the cheaper recipes a pass falls back to when a card runs short.

A pass tries the recipes of ``RECIPES`` in order and runs the first that fits (and does not run out of memory):

| recipe | what changes | cost |
|---|---|---|
| ``configured`` | nothing | fastest |
| ``vae_tiling`` | the VAE works in overlapping spatial tiles | ~2% pixel difference, decode 1.4x slower |
| ``offload`` | tiling; each component on the card only while it works | host copies of the weights |

The estimate is calibrated on one H100 (``benchmarks/results/void_shot_memory_h100.json``: 85 frames at 384x672 in
bfloat16 peak 17.0 GB above the resident weights untiled, 4.7 GB tiled, 1.0 GB while denoising) and scales with
the clip's pixels, the VAE's widest layer and the dtype, so it holds for the tiny test models too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RECIPES", "Footprint", "Recipe", "estimate_gb"]

_GB = 1e9
#: The calibration clip: 85 frames at 384x672, VAE widest layer 512 channels, bfloat16 (2 bytes).
_CALIBRATION_UNITS = 85 * 384 * 672 * 512 * 2
#: Peak bytes above the resident weights, per unit of (pixels x widest VAE channels x dtype bytes).
_UNTILED = 17.0 * _GB / _CALIBRATION_UNITS
_TILED = 4.7 * _GB / _CALIBRATION_UNITS
_DENOISE = 1.0 * _GB / _CALIBRATION_UNITS


@dataclass(frozen=True, slots=True)
class Recipe:
    """A way to run a pass with less memory; recorded with each run that used it."""

    name: str
    vae_tiling: bool = False
    offload: bool = False

    def as_dict(self) -> dict[str, object]:
        """Return the recipe for provenance."""
        return {"name": self.name, "vae_tiling": self.vae_tiling, "offload": self.offload}


RECIPES = (
    Recipe("configured"),
    Recipe("vae_tiling", vae_tiling=True),
    Recipe("offload", vae_tiling=True, offload=True),
)


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a loaded pass keeps on its device, in GB, and what scales its activations.

    Attributes:
        transformer_gb: transformer weights.
        vae_gb: VAE weights.
        text_encoder_gb: T5 weights (on the device only while a new prompt is encoded, unless resident).
        vae_channels: the VAE's widest layer.
        dtype_bytes: bytes per element of the compute dtype.
        text_encoder_resident: T5 stays on the device between prompts.
    """

    transformer_gb: float
    vae_gb: float
    text_encoder_gb: float
    vae_channels: int
    dtype_bytes: int
    text_encoder_resident: bool = False

    def as_dict(self) -> dict[str, object]:
        """Return the footprint for provenance."""
        return {name: getattr(self, name) for name in self.__slots__}


def estimate_gb(footprint: Footprint, frames: int, height: int, width: int, recipe: Recipe) -> float:
    """Peak device memory, in GB, of one pass over a padded clip of ``frames`` x ``height`` x ``width``."""
    units = frames * height * width * footprint.vae_channels * footprint.dtype_bytes
    vae_peak = units * (_TILED if recipe.vae_tiling else _UNTILED) / _GB
    denoise_peak = units * _DENOISE / _GB
    weights = footprint.transformer_gb + footprint.vae_gb
    if recipe.offload:
        return max(footprint.transformer_gb + denoise_peak, footprint.vae_gb + vae_peak, footprint.text_encoder_gb)
    if footprint.text_encoder_resident:
        return weights + footprint.text_encoder_gb + max(vae_peak, denoise_peak)
    return weights + max(vae_peak, denoise_peak, footprint.text_encoder_gb)
