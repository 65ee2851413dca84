"""A shot's plate as the stages see it: its media facts, its colour space, and the model view.

``plate_view(shot, settings)`` is read once per stage. It decides the plate's colour space (the shot's sidecar or
clip ``colourspace``, else its track's, else the batch's ``--plate-colourspace``, else inferred from the file; a
declaration is checked against the file's evidence) and builds the invertible ``ModelView`` between the plate's
space and what the models, SAM2, the VLM and the pictures see (display-referred Rec.709/sRGB in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voidflow.void_ops import media
from voidflow.void_ops.colour import ModelView, PlateColour, infer_plate_colour, load_config
from voidflow.void_ops.exceptions import InvalidInput, VoidflowError
from voidflow.void_ops.shots import Shot

__all__ = ["ColourSettings", "PlateView", "plate_view"]


@dataclass(frozen=True, slots=True)
class ColourSettings:
    """A batch's colour choices.

    Attributes:
        config: the show's OCIO config (a ``.ocio`` path or an ``ocio://`` URI); None for OCIO's built-in ACES
            studio config.
        plate_space: the colour space every plate is declared in unless its sidecar says otherwise; None to infer
            each plate's from its file.
        knee: where the model view's highlight roll-off starts (scene-linear Rec.709 value).
    """

    config: str | None = None
    plate_space: str | None = None
    knee: float = 0.8


@dataclass(frozen=True, slots=True)
class PlateView:
    """A shot's plate facts, colour space and model view."""

    info: media.MediaInfo
    colour: PlateColour
    view: ModelView

    def params(self) -> dict[str, object]:
        """What provenance records of the plate's colour and geometry: the view's parameters, how the space was
        decided, and the pixel aspect the model desqueezes by."""
        return {
            **self.view.params(),
            "plate_space_source": self.colour.source,
            "evidence": self.colour.evidence,
            "pixel_aspect": str(self.info.pixel_aspect),
        }

    def to_model(self, frames: np.ndarray) -> np.ndarray:
        """Plate pixels as the models see them (unchanged for display-referred plates)."""
        return self.view.to_model(frames)

    def from_model(self, frames: np.ndarray, plate: np.ndarray) -> np.ndarray:
        """Model-view pixels back in the plate's space, for a fill composited into ``plate``.

        Display-referred plates: unchanged. Scene-referred plates: the exact inverse, clipped first to [0, 1]
        (float arithmetic in a backend can stray a hair outside) and capped afterwards at the brightest value the
        plate holds, so a fill painted at display white does not become a scene value far above anything in the
        shot.
        """
        if not self.view.scene_referred:
            return frames
        restored = self.view.from_model(np.clip(frames.astype(np.float32, copy=False), 0.0, 1.0), reuse=True)
        np.minimum(restored, np.float32(max(float(plate.max()), 0.0)), out=restored)  # a new array: capped in place
        return restored


def plate_view(shot: Shot, settings: ColourSettings) -> PlateView:
    """Decide the shot's plate colour space and build its model view.

    Raises:
        InvalidInput: the shot has no media; the declared colour space is unknown in the config or contradicts
            the file's tags or header (one line naming the shot, the file and the value).
        ConfigurationError: the OCIO config cannot be loaded.
        MediaInvalid: the plate cannot be read.
    """
    if shot.media is None:
        raise InvalidInput(f"shot '{shot.name}': no media")
    info = media.probe(shot.media)
    declared = shot.instructions.colourspace or settings.plate_space
    declared_by = "shot/track colourspace" if shot.instructions.colourspace else "batch --plate-colourspace"
    config = load_config(settings.config)
    attributes: dict[str, object] = dict(info.attributes)
    if isinstance(chroma := attributes.get("chromaticities"), str):
        attributes["chromaticities"] = tuple(float(number) for number in chroma.split())
    try:
        colour = infer_plate_colour(
            config,
            file=shot.media.path,
            kind=shot.media.kind,
            codec=info.codec,
            is_float=info.is_float,
            tags=info.colour,
            attributes=attributes,
            declared=declared,
            declared_by=declared_by,
        )
    except VoidflowError as error:
        raise type(error)(f"shot '{shot.name}': {error}") from None
    view = ModelView(settings.config, colour.name, colour.scene_referred, knee=settings.knee)
    return PlateView(info, colour, view)
