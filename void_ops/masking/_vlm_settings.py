"""How the mask VLM is asked: the settings both the client (``vlm``) and the request builder (``_vlm_request``) read,
and the modes a batch may run it in.

Its own module so that ``vlm`` imports ``_vlm_request`` and both import this, with no circle between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from voidflow.void_ops.exceptions import InvalidInput

__all__ = ["VLM_MODES", "VlmMode", "VlmSettings"]

#: How a batch uses the VLM (``tasks.backends.make_vlm``): ``auto`` (stored answers first, the live API for new
#: questions when a key is set), ``replay`` (stored answers only) or ``off`` (SAM2 alone).
VlmMode = Literal["auto", "replay", "off"]
VLM_MODES: tuple[VlmMode, ...] = get_args(VlmMode)


@dataclass(frozen=True, slots=True)
class VlmSettings:
    """How the VLM is asked; every field is part of each request's hash.

    Attributes:
        model: the pinned Gemini model name.
        temperature: sampling temperature (0 for repeatable answers).
        api_version: the Gemini API version the client is built with (``make_client(api_version=...)``).
        keyframes: frames sent when locating an object.
        grid_rows: rows of the yellow grid drawn on reasoning keyframes; columns follow the aspect
            (``round(rows * width / height)``; for portrait frames rows and columns swap roles).
        reason_keyframes: gridded keyframes sent when reasoning (the reference sends 10).
        image_max_side: images are downscaled so their longest side is at most this before sending.
        send_video: also send the whole clip as an inline H.264 mp4.
        video_max_side: longest side of that mp4.
        max_request_bytes: refuse to send an inline request larger than this (base64 included); Gemini's inline
            limit is 20 MB.
    """

    model: str = "gemini-2.5-pro"
    temperature: float = 0.0
    api_version: str = "v1"
    keyframes: int = 4
    grid_rows: int = 8
    reason_keyframes: int = 10
    image_max_side: int = 1024
    send_video: bool = True
    video_max_side: int = 512
    max_request_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        if not self.model or not self.api_version:
            raise InvalidInput(
                f"VlmSettings.model and api_version must be set, got {self.model!r}, {self.api_version!r}"
            )
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput(f"VlmSettings.temperature must be in 0..2, got {self.temperature}")
        for name in ("keyframes", "grid_rows", "reason_keyframes"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"VlmSettings.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("image_max_side", "video_max_side"):
            if getattr(self, name) < 64:
                raise InvalidInput(f"VlmSettings.{name} must be at least 64 pixels, got {getattr(self, name)}")
