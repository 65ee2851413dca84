"""Which masker and inpainting backend (for pass 1, and VOID's pass 2) a shot uses.

| backend | what it is |
|---|---|
| ``cleanplate`` | CPU: temporal median of unmasked pixels, then OpenCV inpainting (``void_ops.cleanplate``) |
| ``void`` | VOID pass 1 (and optionally pass 2) on resident Ray actors (``tasks.void_actors``) |
| ``passthrough`` | CPU: no pixel work (the fill is the plate): dry-runs the pipeline, conform and delivery; the \
orchestration benchmark (``void_ops.passthrough``) |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from voidflow.void_ops.cleanplate import CleanPlate
from voidflow.void_ops.exceptions import ConfigurationError
from voidflow.void_ops.masking._vlm_settings import VlmMode
from voidflow.void_ops.masking.masker import SegmentMasker
from voidflow.void_ops.masking.vlm import GeminiVlm, StoredFirstVlm, Vlm, VlmExchange, VlmSettings, make_client
from voidflow.void_ops.mattes import MatteMasker, QuadmaskMasker
from voidflow.void_ops.passthrough import Passthrough
from voidflow.void_ops.pipeline import Backend, Inpainter, Masker
from voidflow.void_ops.shots import Shot
from voidflow.void_ops.void.backend import PassModel, VoidConfig, VoidPass

__all__ = ["make_backend", "make_masker", "make_vlm", "needs_segmenter"]


def make_backend(
    name: Backend,
    stage: Literal["pass1", "pass2"] = "pass1",
    *,
    void: VoidConfig | None = None,
    model: PassModel | None = None,
) -> Inpainter:
    """Build the named inpainting backend for ``stage``; ``void`` runs the pass through ``model`` (a
    ``tasks.void_actors.ActorModel``), pass 2 with the configuration's noise warp.

    Raises:
        ConfigurationError: no backend has that name; ``void`` has no configuration or model for the stage; or
            pass 2 is asked of a backend other than ``void``.
    """
    if stage == "pass2" and (name != "void" or void is None or model is None):
        raise ConfigurationError("pass 2 asked for, but the batch started no pass-2 model")
    if name == "cleanplate":
        return CleanPlate()
    if name == "passthrough":
        return Passthrough()
    if name == "void":
        if void is None or model is None:
            raise ConfigurationError("the void backend needs its model configuration and the batch's GPU workers")
        return VoidPass(model, void.settings, void.warp if stage == "pass2" else None)
    raise ConfigurationError(f"unknown backend '{name}' (available: cleanplate, passthrough, void)")


def make_masker(
    shot: Shot, *, sam2_actor: str | None = None, sam2_max_side: int = 1024, vlm: Vlm | None = None
) -> Masker:
    """Build the masker for ``shot``: its own quadmask when it has one; else its matte (with its affected matte and
    ring); else SAM2 on the named actor (with the VLM when one is given).

    Raises:
        ConfigurationError: the shot has no quadmask or matte and the batch started no SAM2 model.
    """
    if shot.instructions.quadmask:
        return QuadmaskMasker()
    if shot.instructions.matte:
        return MatteMasker()
    if sam2_actor is None:
        raise ConfigurationError(f"shot '{shot.name}': no matte, and the batch started no SAM2 model to make a mask")
    from voidflow.tasks.void_actors import ActorSegmenter

    return SegmentMasker(ActorSegmenter(sam2_actor, sam2_max_side), vlm)


def needs_segmenter(shot: Shot) -> bool:
    """Whether the shot's mask comes from SAM2 (it has neither a quadmask nor a matte)."""
    return not (shot.instructions.quadmask or shot.instructions.matte)


def make_vlm(
    mode: VlmMode,
    settings: VlmSettings,
    stored: Sequence[VlmExchange],
    *,
    api_key: str | None,
    base_url: str | None = None,
) -> Vlm | None:
    """The VLM a batch's shots use.

    | mode | VLM |
    |---|---|
    | ``auto`` | stored answers first, the live Gemini API for new questions; none without an API key (SAM2 alone) |
    | ``replay`` | stored answers only: a question never asked before fails the shot |
    | ``off`` | none (SAM2 alone; shots without points, boxes or a matte fail) |
    """
    if mode == "off":
        return None
    if mode == "replay":
        return StoredFirstVlm(
            stored, None, settings, unavailable="the batch replays stored answers only (--vlm replay)"
        )
    if not api_key:
        return None
    live = GeminiVlm(make_client(api_key, base_url=base_url, api_version=settings.api_version), settings)
    return StoredFirstVlm(stored, live, settings)
