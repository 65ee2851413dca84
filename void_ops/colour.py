"""Plate colour spaces through OpenColorIO: which space a plate is in, and what the model sees of it.

Colour spaces are named by an OCIO config: a show's ``.ocio`` file, or OCIO's built-in ACES studio config
(:data:`BUILTIN_CONFIG`) when none is given. PyOpenColorIO is imported on first use, never at import time.

Scene- or display-referred (:func:`is_scene_referred`), decided by what the config says of the colour space:

- ``isData()`` (e.g. ``Raw``): display-referred (the pixels are passed through untouched);
- reference space type *display* (``sRGB - Display``, ``Rec.1886 Rec.709 - Display``): display-referred;
- encoding ``sdr-video``, ``hdr-video``, ``edr-video``, ``display-linear`` or ``data``: display-referred. In the
  studio config this covers the "Encoded" texture spaces (``sRGB Encoded Rec.709 (sRGB)``, ``Gamma 2.4 Encoded
  Rec.709``, ``Camera Rec.709``), which sit in the scene reference space but hold display-ready video values;
- encoding ``scene-linear`` or ``log`` (``ACEScg``, ``ACEScct``, ``ARRI LogC4``): scene-referred;
- no encoding (OCIO v1 configs): scene-referred when the reference space is the scene one. Declare the plate's
  space, and give such configs encodings, when that guess is wrong.

A plate's colour space (:func:`infer_plate_colour`): a declared name wins, unless the file's own evidence contradicts
it; otherwise it is inferred from the file, and a file whose evidence is not enough raises ``InvalidInput`` asking for
a declaration rather than guessing.

What the model sees (:class:`ModelView`): display-referred Rec.709/sRGB in [0, 1], the domain VOID was trained on.
Display-referred plates pass unchanged; scene-referred ones go to linear Rec.709, through a highlight roll-off
that is the identity below ``knee`` and approaches 1.0 above it, then through the sRGB OETF; the inverse undoes
each step.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput

__all__ = [
    "BUILTIN_CONFIG",
    "ColourTags",
    "ModelView",
    "PlateColour",
    "check_colourspace",
    "config_id",
    "infer_plate_colour",
    "is_scene_referred",
    "load_config",
    "to_colourspace",
    "video_tags_for",
]

BUILTIN_CONFIG = "ocio://studio-config-latest"
"""OCIO's built-in ACES studio config (shipped inside OpenColorIO 2.2+, no download)."""

_MODEL_VIEW_VERSION = "model-view-1"
# The roll-off's inverse clamps its input here, so that display white maps to a finite scene value.
_INVERSE_CEILING = 1.0 - 1e-6
_LINEAR_REC709 = ("Linear Rec.709 (sRGB)", "lin_rec709_scene", "lin_rec709", "Utility - Linear - sRGB")

_DISPLAY_ENCODINGS = frozenset({"sdr-video", "hdr-video", "edr-video", "display-linear", "data"})
# ffmpeg's names for "no value" in colour tags.
_UNSPECIFIED = frozenset({"", "unknown", "unspecified", "reserved"})

# Movie transfer tags (ffmpeg names) -> the display colour space of the studio config they encode for.
_MOVIE_TRANSFERS: dict[str, str] = {
    "bt709": "Rec.1886 Rec.709 - Display",
    "smpte170m": "Rec.1886 Rec.709 - Display",
    "bt470bg": "Rec.1886 Rec.709 - Display",
    "smpte240m": "Rec.1886 Rec.709 - Display",
    "bt2020-10": "Rec.1886 Rec.709 - Display",
    "bt2020-12": "Rec.1886 Rec.709 - Display",
    "iec61966-2-1": "sRGB - Display",
    "gamma22": "Gamma 2.2 Rec.709 - Display",
    "bt470m": "Gamma 2.2 Rec.709 - Display",
    "arib-std-b67": "Rec.2100-HLG - Display",
    "smpte2084": "Rec.2100-PQ - Display",
}
_VIDEO_TRANSFERS = frozenset(_MOVIE_TRANSFERS)

# EXR chromaticities (rx ry gx gy bx by wx wy) of the primaries sets we recognise, and their linear colour space.
_PRIMARIES: dict[str, tuple[tuple[float, ...], str]] = {
    "AP0": ((0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767), "ACES2065-1"),
    "AP1": ((0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767), "ACEScg"),
    "Rec.709": ((0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290), "Linear Rec.709 (sRGB)"),
    "Rec.2020": ((0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290), "Linear Rec.2020"),
    "P3-D65": ((0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290), "Linear P3-D65"),
}
_CHROMATICITY_TOLERANCE = 1e-3

# OpenImageIO's colour-space names that are not names or aliases in the studio config.
_OIIO_NAMES: dict[str, str] = {
    "linear": "Linear Rec.709 (sRGB)",
    "lin_srgb": "Linear Rec.709 (sRGB)",
    "lin_rec709": "Linear Rec.709 (sRGB)",
    "lin_ap1": "ACEScg",
    "acescg": "ACEScg",
    "lin_ap0": "ACES2065-1",
    "aces2065-1": "ACES2065-1",
    "srgb": "sRGB Encoded Rec.709 (sRGB)",
    "srgb_rec709_scene": "sRGB Encoded Rec.709 (sRGB)",
}
# OIIO names that say "linear" without naming primaries: EXR chromaticities, when present, say more.
_GENERIC_LINEAR = frozenset({"linear", "lin_srgb", "lin_rec709", "scene_linear"})

_INTEGER_IMAGE_CODECS = frozenset({"png", "tiff", "mjpeg", "jpeg", "jpg", "bmp", "targa"})
_DPX_LOG = ("printing density", "logarithmic", "adx")
_DPX_VIDEO = frozenset(
    {
        "unspecified video",
        "smpte 274m",
        "itu-r 709-4",
        "itu-r 601-5 system b or g",
        "itu-r 601-5 system m",
        "ntsc composite video",
        "pal composite video",
    }
)


@dataclass(frozen=True, slots=True)
class ColourTags:
    """A movie's colour tags with ffmpeg's names; None = unspecified.

    ffmpeg's own spellings of "no value" (``"unknown"``, ``"unspecified"``, ``"reserved"``, ``""``) become None.

    Attributes:
        primaries: ``"bt709"``, ``"smpte170m"``, ``"bt470bg"``, ``"bt2020"``, ...
        transfer: ``"bt709"``, ``"smpte170m"``, ``"iec61966-2-1"`` (sRGB), ``"linear"``, ``"arib-std-b67"``,
            ``"smpte2084"``, ...
        matrix: ``"bt709"``, ``"smpte170m"``, ``"bt470bg"``, ``"bt2020nc"``, ``"rgb"``, ...
        range: ``"tv"`` (video range) or ``"pc"`` (full range).

    Raises:
        InvalidInput: ``range`` is neither ``"tv"`` nor ``"pc"``.
    """

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None

    def __post_init__(self) -> None:
        for field in ("primaries", "transfer", "matrix", "range"):
            value = getattr(self, field)
            if value is not None and value.strip().lower() in _UNSPECIFIED:
                object.__setattr__(self, field, None)
        if self.range not in (None, "tv", "pc"):
            raise InvalidInput(f"ColourTags.range must be 'tv' or 'pc', got {self.range!r}")

    @property
    def is_empty(self) -> bool:
        """True when no field is specified."""
        return self.primaries is None and self.transfer is None and self.matrix is None and self.range is None


def video_tags_for(height: int, tags: ColourTags) -> ColourTags:
    """Fill a movie's unspecified colour tags the way NLEs do, keeping every field the file gives.

    Args:
        height: The picture height in pixels. 720 and above is HD: BT.709 primaries, transfer and matrix. Below is
            SD: BT.601 (``smpte170m``) for all three.
        tags: The file's own tags.

    Returns:
        Tags with no None field; ``range`` is ``"tv"`` unless the file says ``"pc"``. For example
        ``video_tags_for(1080, ColourTags(range="pc"))`` is ``ColourTags("bt709", "bt709", "bt709", "pc")``.

    Raises:
        InvalidInput: ``height`` is not positive.
    """
    if height <= 0:
        raise InvalidInput(f"video_tags_for: height must be positive, got {height}")
    default = "bt709" if height >= 720 else "smpte170m"
    return ColourTags(
        primaries=tags.primaries or default,
        transfer=tags.transfer or default,
        matrix=tags.matrix or default,
        range=tags.range or "tv",
    )


@dataclass(frozen=True, slots=True)
class PlateColour:
    """A plate's colour space and why we believe it.

    Attributes:
        name: The colour space's canonical name in the OCIO config.
        source: ``"declared"`` (sidecar, metadata or command line) or ``"inferred"`` from the file.
        evidence: One line, e.g. ``"EXR chromaticities are AP1 (ACEScg)"`` or ``"movie tags bt709/bt709/bt709"``.
        scene_referred: False for display and video encodings, whose pixels the model sees unchanged.
    """

    name: str
    source: Literal["declared", "inferred"]
    evidence: str
    scene_referred: bool


def load_config(spec: str | None = None) -> Any:
    """Load an OCIO config, once per spec (and, for a file, per content).

    Args:
        spec: None or :data:`BUILTIN_CONFIG` for OCIO's built-in studio config, another ``ocio://`` URI, or the
            path of a ``.ocio`` file. A file is re-read when its bytes change.

    Returns:
        The validated ``PyOpenColorIO.Config``.

    Raises:
        ConfigurationError: OpenColorIO is missing, or the config cannot be read, parsed or validated; the message
            names the spec and OCIO's reason.
    """
    uri = spec or BUILTIN_CONFIG
    if uri.startswith("ocio://"):
        return _load_config(uri, "")
    path, digest = _config_file(uri)
    return _load_config(str(path), digest)


def config_id(spec: str | None) -> str:
    """A stable identifier of a config for provenance.

    Args:
        spec: As for :func:`load_config`.

    Returns:
        For ``ocio://`` URIs (the default included) the config's own name, which carries its version
        (``"studio-config-v5.0.0_aces-v2.1_ocio-v2.6"``); for a file ``"<resolved path> sha256:<hex digest>"``.

    Raises:
        ConfigurationError: As for :func:`load_config`.
    """
    uri = spec or BUILTIN_CONFIG
    if uri.startswith("ocio://"):
        return str(load_config(uri).getName())
    path, digest = _config_file(uri)
    return f"{path} sha256:{digest}"


def check_colourspace(config: Any, name: str, *, what: str) -> str:
    """The canonical name of a colour space of ``config``; aliases, roles and case are resolved.

    Args:
        config: A ``PyOpenColorIO.Config``.
        name: A colour-space name, alias or role (``"acescg"``, ``"lin_ap1_scene"``, ``"scene_linear"``).
        what: Who gave the name, for the message (``"sidecar colourspace"``, ``"--colourspace"``).

    Returns:
        The name as the config spells it (``"ACEScg"``).

    Raises:
        InvalidInput: The config has no such colour space; the message names ``what``, the value and the config,
            lists up to three close matches, and says so when the name is a display or a view.
    """
    space = config.getColorSpace(name) if name else None
    if space is not None:
        return str(space.getName())
    message = f"{what}: unknown colour space {name!r} in OCIO config {config.getName()!r}"
    spellings: dict[str, str] = {}
    for space in _all_spaces(config):
        for spelling in (space.getName(), *space.getAliases()):
            spellings.setdefault(str(spelling).lower(), str(space.getName()))
    close = difflib.get_close_matches(name.lower(), list(spellings), n=6, cutoff=0.6)
    suggestions = list(dict.fromkeys(spellings[match] for match in close))[:3]
    if suggestions:
        message += f"; close matches: {', '.join(repr(s) for s in suggestions)}"
    displays = [str(d) for d in config.getDisplays()]
    if name in displays:
        message += " (that is a display, not a colour space)"
    elif any(name in [str(v) for v in config.getViews(d)] for d in displays):
        message += " (that is a view, not a colour space)"
    raise InvalidInput(message)


def is_scene_referred(config: Any, name: str) -> bool:
    """Whether a colour space holds scene-referred values (linear or log) rather than display-ready ones.

    The rule (module docstring): data and display-reference spaces, and the encodings ``sdr-video``,
    ``hdr-video``, ``edr-video``, ``display-linear`` and ``data``, are display-referred; ``scene-linear`` and
    ``log`` are scene-referred; a space without an encoding is scene-referred when it sits in the scene reference
    space. The studio config gives: ``ACEScg`` and ``ACEScct`` True; ``sRGB Encoded Rec.709 (sRGB)``,
    ``Gamma 2.4 Encoded Rec.709``, ``Camera Rec.709``, ``Rec.1886 Rec.709 - Display``, ``Raw`` False.

    Args:
        config: A ``PyOpenColorIO.Config``.
        name: A colour-space name, alias or role of ``config``.

    Returns:
        True for scene-referred spaces.

    Raises:
        InvalidInput: ``name`` is not a colour space of ``config``.
    """
    ocio = _ocio()
    space = config.getColorSpace(check_colourspace(config, name, what="is_scene_referred"))
    if space.isData() or space.getReferenceSpaceType() == ocio.REFERENCE_SPACE_DISPLAY:
        return False
    return str(space.getEncoding()).lower() not in _DISPLAY_ENCODINGS


def infer_plate_colour(
    config: Any,
    *,
    file: str,
    kind: Literal["movie", "sequence"],
    codec: str,
    is_float: bool,
    tags: ColourTags,
    attributes: Mapping[str, object],
    declared: str | None,
    declared_by: str = "declared",
) -> PlateColour:
    """Resolve a plate's colour space from a declaration or from the file's evidence.

    A declared name is validated, then checked against the evidence. Two contradictions raise:

    - a scene-linear space declared for an integer movie tagged with a video transfer (``bt709``,
      ``smpte170m``, ``iec61966-2-1``, ...). Log spaces are accepted: camera log is often tagged ``bt709``;
    - a scene-reference space declared for an EXR whose ``chromaticities`` name one of AP0, AP1, Rec.709,
      Rec.2020, P3-D65, when the two do not share primaries. The test is done by OCIO: the three pure primaries of
      the EXR's linear space (e.g. ``ACEScg`` for AP1), converted to the declared space, must each leave the other
      two channels at the declared space's encoding of black. Unknown chromaticities, and display-reference spaces,
      are not checked.

    Without a declaration, the evidence is read in this order:

    1. ``attributes["oiio:ColorSpace"]`` when it names a colour space of the config (OIIO's names such as
       ``lin_rec709``, ``lin_ap1_scene``, ``srgb_rec709_scene`` are mapped). Skipped for DPX, where OIIO derives
       it from ``dpx:Transfer`` (read below instead), and skipped for generic ``linear`` names when the EXR has
       chromaticities.
    2. Movies: the transfer tag. ``bt709``, ``smpte170m``, ``bt470bg``, ``bt2020-10`` or none ->
       ``Rec.1886 Rec.709 - Display``; ``iec61966-2-1`` -> ``sRGB - Display``; ``arib-std-b67`` ->
       ``Rec.2100-HLG - Display`` and ``smpte2084`` -> ``Rec.2100-PQ - Display`` (HDR video, passed to the model
       unchanged); ``linear`` or anything else raises.
    3. EXR: ``chromaticities`` (AP1 -> ``ACEScg``, AP0 -> ``ACES2065-1``, Rec.709 -> ``Linear Rec.709 (sRGB)``,
       Rec.2020 -> ``Linear Rec.2020``, P3-D65 -> ``Linear P3-D65``, each value within 1e-3); a float EXR without
       them -> ``Linear Rec.709 (sRGB)`` (OpenEXR's default primaries); unknown chromaticities raise.
    4. DPX: ``dpx:Transfer``. Printing density, logarithmic or ADX raises (a log DPX needs a declared space);
       a video transfer (``ITU-R 709-4``, ``SMPTE 274M``, BT.601, composite, unspecified video) ->
       ``Rec.1886 Rec.709 - Display``, as for a movie; anything else (undefined, user defined, linear) raises.
    5. Integer PNG, TIFF, JPEG, BMP and Targa -> ``sRGB Encoded Rec.709 (sRGB)``. Anything else raises.

    Args:
        config: A ``PyOpenColorIO.Config``.
        file: The plate's path or pattern, named by every message.
        kind: ``"movie"`` or ``"sequence"``.
        codec: ffmpeg's codec name (``"prores"``, ``"exr"``, ``"dpx"``, ``"png"``, ``"tiff"``, ``"mjpeg"``).
        is_float: Whether the samples are floating point (half or float).
        tags: A movie's colour tags; ignored for sequences.
        attributes: The first image's header attributes as OpenImageIO names them.
        declared: A colour-space name from the sidecar, metadata or command line, or None.
        declared_by: Who declared it, for evidence and messages (``"sidecar colourspace"``).

    Returns:
        The colour space, its source, one line of evidence and whether it is scene-referred.

    Raises:
        InvalidInput: The declared name is unknown or contradicts the file, or the evidence does not settle the
            colour space; the message names ``file``.
    """
    chromaticities = _chromaticities(file, attributes)
    if declared is not None:
        name = check_colourspace(config, declared, what=f"{file}: {declared_by}")
        _check_declared(config, file, name, declared_by, kind=kind, is_float=is_float, tags=tags, chroma=chromaticities)
        spelled = repr(declared) if declared == name else f"{declared!r} ({name})"
        return _plate(config, name, "declared", f"{declared_by} {spelled}")
    oiio_name = attributes.get("oiio:ColorSpace")
    if isinstance(oiio_name, str) and codec != "dpx":
        generic = oiio_name.lower() in _GENERIC_LINEAR
        if not (generic and chromaticities is not None):
            resolved = _resolve_oiio_name(config, oiio_name)
            if resolved is not None:
                return _plate(config, resolved, "inferred", f"OIIO oiio:ColorSpace {oiio_name!r}")
    if kind == "movie":
        return _infer_movie(config, file, tags)
    if codec == "exr":
        return _infer_exr(config, file, is_float, chromaticities)
    if codec == "dpx":
        return _infer_dpx(config, file, attributes.get("dpx:Transfer"))
    if not is_float and codec.lower() in _INTEGER_IMAGE_CODECS:
        return _inferred(config, file, "sRGB Encoded Rec.709 (sRGB)", f"integer {codec} sequence (sRGB convention)")
    depth = "float" if is_float else "integer"
    raise InvalidInput(f"{file}: cannot infer the colour space of a {depth} {codec} {kind}; declare it")


@dataclass(frozen=True, slots=True)
class ModelView:
    """The documented, invertible transform between a plate's colour space and what the models see.

    The models (VOID, SAM2, the VLM) and the review pictures see display-referred Rec.709/sRGB in [0, 1].

    - Display-referred plates: the identity; the pixels are already what VOID was trained on.
    - Scene-referred plates (linear, log): OCIO plate space -> ``Linear Rec.709 (sRGB)``; negative values
      (out of gamut) are clipped to 0; then a highlight roll-off; then the sRGB piecewise OETF.

    The roll-off, with ``k = knee`` and ``c = 1 - k``, is ``y = x`` for ``x <= k`` and
    ``y = 1 - c**2 / (x - k + c)`` above: exposure is unchanged below the knee, the slope is 1 on both sides of it
    (C1), and ``y`` rises monotonically towards display white 1.0 without reaching it. Its inverse is
    ``x = k - c + c**2 / (1 - y)``; ``y`` is clamped to ``1 - 1e-6`` first, so display white maps back to a finite
    maximum, ``params()["inverse_max"]`` (``k - c + c**2 * 1e6``, about 4.0e4 for knee 0.8). A hyperbolic
    shoulder is used rather than ``1 - c * exp(-(x - k) / c)``: with C1 at the knee the exponential reaches
    float32's 1.0 near scene value 4, so brighter highlights could not come back; this one round-trips float32
    linear Rec.709 values up to about 15 within 1e-4 relative (measured 3e-5 at 6.0), losing precision gradually
    above.

    Attributes:
        config_spec: The OCIO config spec (:func:`load_config`).
        plate_space: The plate's colour space in that config.
        scene_referred: Whether the plate space is scene-referred (:func:`is_scene_referred`).
        knee: Linear Rec.709 value where the roll-off starts, in (0, 1).

    Raises:
        InvalidInput: ``knee`` is not in (0, 1).
    """

    config_spec: str | None
    plate_space: str
    scene_referred: bool
    knee: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 < self.knee < 1.0:
            raise InvalidInput(f"ModelView.knee must lie in (0, 1), got {self.knee}")

    def to_model(self, frames: np.ndarray) -> np.ndarray:
        """Frames in the plate's space as the models see them.

        Args:
            frames: (T, H, W, 3) float in the plate's colour space.

        Returns:
            Display-referred plates: ``frames`` itself, unchanged, whatever its dtype. Scene-referred plates: a new
            (T, H, W, 3) float32 array in [0, 1) (negatives clipped to 0; NaN stays NaN).

        Raises:
            InvalidInput: ``frames`` is not a float (T, H, W, 3) array.
            ConfigurationError: The config cannot be loaded or has no linear Rec.709 colour space.
        """
        if not self.scene_referred:
            return frames
        _check_frames(frames, "ModelView.to_model")
        config = load_config(self.config_spec)
        out = to_colourspace(frames, config_spec=self.config_spec, src=self.plate_space, dst=_linear_rec709(config))
        for frame in out:  # frame by frame: the curves' temporaries stay one frame large
            np.maximum(frame, 0.0, out=frame)
            _roll_off(frame, self.knee)
            _srgb_oetf(frame)
        return out

    def from_model(self, frames: np.ndarray, *, reuse: bool = False) -> np.ndarray:
        """Frames the models made, back in the plate's space: the exact inverse of :meth:`to_model`.

        Args:
            frames: (T, H, W, 3) float in [0, 1], display-referred.
            reuse: ``frames`` may be overwritten with the result when it is a C-contiguous float32 array (a caller
                done with them saves a copy of the shot); by default they are left alone.

        Returns:
            Display-referred plates: ``frames`` itself. Scene-referred plates: a float32 array in the plate's space
            (new, or ``frames`` reused); values at or above the roll-off's ``1 - 1e-6`` become
            ``params()["inverse_max"]``.

        Raises:
            InvalidInput: ``frames`` is not a float (T, H, W, 3) array, or has values outside [0, 1].
            ConfigurationError: The config cannot be loaded or has no linear Rec.709 colour space.
        """
        if not self.scene_referred:
            return frames
        _check_frames(frames, "ModelView.from_model")
        if frames.size and (float(np.nanmin(frames)) < 0.0 or float(np.nanmax(frames)) > 1.0):
            low, high = float(np.nanmin(frames)), float(np.nanmax(frames))
            raise InvalidInput(f"ModelView.from_model: frames must lie in [0, 1], got [{low:.6g}, {high:.6g}]")
        in_place = reuse and frames.dtype == np.float32 and frames.flags.c_contiguous and frames.flags.writeable
        out = frames if in_place else np.array(frames, dtype=np.float32, order="C", copy=True)
        for frame in out:
            _srgb_eotf(frame)
            _inverse_roll_off(frame, self.knee)
        config = load_config(self.config_spec)
        _convert(out, self.config_spec, _linear_rec709(config), self.plate_space)  # in place: no second copy
        return out

    def _inverse_max(self) -> float:
        """The largest linear Rec.709 value :meth:`from_model` returns (display white's image)."""
        # the same float32 arithmetic as the inverse itself
        k, c, s = np.float32(self.knee), np.float32(1.0 - self.knee), np.float32(_INVERSE_CEILING - self.knee)
        return float(k + s * c / (c - s))

    def params(self) -> dict[str, object]:
        """The transform's parameters for provenance.

        Returns:
            ``config`` (:func:`config_id`), ``plate_space``, ``scene_referred``, ``knee``, ``inverse_max``,
            ``transform`` (:meth:`describe`) and ``version``.

        Raises:
            ConfigurationError: The config cannot be loaded.
        """
        return {
            "config": config_id(self.config_spec),
            "plate_space": self.plate_space,
            "scene_referred": self.scene_referred,
            "knee": self.knee,
            "inverse_max": self._inverse_max() if self.scene_referred else None,
            "transform": self.describe(),
            "version": _MODEL_VIEW_VERSION,
        }

    def describe(self) -> str:
        """One line saying what the models see of this plate."""
        if not self.scene_referred:
            return f"identity: {self.plate_space} is display-referred, the models see its pixels unchanged"
        return (
            f"{self.plate_space} -> Linear Rec.709 (sRGB), negatives clipped -> highlight roll-off above "
            f"{self.knee:g} (identity below, asymptote 1.0, C1) -> sRGB OETF"
        )


#: Pixels handed to an OCIO processor at once (``to_colourspace``): 16 MiB of float RGB.
_OCIO_CHUNK = 1 << 20


def to_colourspace(frames: np.ndarray, *, config_spec: str | None, src: str, dst: str) -> np.ndarray:
    """Convert frames between two colour spaces of a config with an OCIO CPU processor.

    Used e.g. to encode a scene-linear plate as ACEScct for a movie delivery. The processor is float32 with OCIO's
    lossless optimisation (exact log/exp/pow, not the fast approximations), cached per config, source and target.
    Between a scene- and a display-reference space OCIO goes through the config's default view transform.

    Args:
        frames: (..., 3) float array, usually (T, H, W, 3); it is not modified.
        config_spec: As for :func:`load_config`.
        src: The colour space ``frames`` are in (name, alias or role).
        dst: The colour space to convert to.

    Returns:
        A new C-contiguous float32 array of the same shape.

    Raises:
        InvalidInput: ``frames`` is not a float array with 3 channels last, or ``src``/``dst`` is unknown.
        ConfigurationError: The config cannot be loaded.
    """
    if not isinstance(frames, np.ndarray) or frames.ndim < 1 or frames.shape[-1] != 3 or frames.dtype.kind != "f":
        shape, dtype = getattr(frames, "shape", None), getattr(frames, "dtype", type(frames).__name__)
        raise InvalidInput(f"to_colourspace: frames must be a float array with 3 channels last, got {shape} {dtype}")
    out = np.array(frames, dtype=np.float32, order="C", copy=True)
    _convert(out, config_spec, src, dst)
    return out


def _convert(out: np.ndarray, config_spec: str | None, src: str, dst: str) -> None:
    """``to_colourspace`` in place on ``out``, a C-contiguous float32 (..., 3) array."""
    config = load_config(config_spec)
    source = check_colourspace(config, src, what="to_colourspace src")
    target = check_colourspace(config, dst, what="to_colourspace dst")
    if source == target or not out.size:
        return
    processor = _cpu_processor(config_spec, config_id(config_spec), source, target)
    pixels = out.reshape(-1, 3)
    # In chunks: OCIO copies the buffer it is handed (four times its size at the peak), so a whole shot at once
    # would hold four more copies of it. Pixels are independent: the result is the same bit for bit.
    for start in range(0, len(pixels), _OCIO_CHUNK):
        processor.applyRGB(pixels[start : start + _OCIO_CHUNK])


# --- OCIO loading -----------------------------------------------------------------------------------------------


@functools.cache
def _ocio() -> Any:
    try:
        import PyOpenColorIO
    except ImportError as error:
        raise ConfigurationError(f"OpenColorIO: cannot import PyOpenColorIO ({error}); install opencolorio") from None
    return PyOpenColorIO


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _config_file(spec: str) -> tuple[Path, str]:
    path = Path(spec).expanduser().resolve()
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise ConfigurationError(f"OCIO config {spec!r}: cannot read the file ({_one_line(error)})") from None
    return path, digest


@functools.lru_cache(maxsize=16)
def _load_config(source: str, digest: str) -> Any:
    """Load and validate a config; ``digest`` (a file's sha256, empty for URIs) keys the cache on content."""
    ocio = _ocio()
    try:
        config = ocio.Config.CreateFromFile(source)
        config.validate()
    except Exception as error:  # OCIO raises its own exception classes
        raise ConfigurationError(f"OCIO config {source!r}: cannot load ({_one_line(error)})") from None
    return config


@functools.lru_cache(maxsize=64)
def _cpu_processor(spec: str | None, identity: str, src: str, dst: str) -> Any:
    """A CPU processor from ``src`` to ``dst``; ``identity`` (the config id) keys the cache on content."""
    try:
        return _cpu(load_config(spec), src, dst)
    except ConfigurationError:
        raise
    except Exception as error:
        raise ConfigurationError(
            f"OCIO config {identity!r}: no processor {src!r} -> {dst!r} ({_one_line(error)})"
        ) from None


def _cpu(config: Any, src: str, dst: str) -> Any:
    # Lossless optimisation: OCIO's default one swaps log/exp/pow for fast approximations (about 1e-5 relative).
    ocio = _ocio()
    processor = config.getProcessor(src, dst)
    return processor.getOptimizedCPUProcessor(ocio.BIT_DEPTH_F32, ocio.BIT_DEPTH_F32, ocio.OPTIMIZATION_LOSSLESS)


def _all_spaces(config: Any) -> list[Any]:
    ocio = _ocio()
    return list(config.getColorSpaces(ocio.SEARCH_REFERENCE_SPACE_ALL, ocio.COLORSPACE_ALL))


def _linear_rec709(config: Any) -> str:
    for name in _LINEAR_REC709:
        space = config.getColorSpace(name)
        if space is not None:
            return str(space.getName())
    raise ConfigurationError(
        f"OCIO config {config.getName()!r}: the model view needs a linear Rec.709 colour space, found none of "
        f"{', '.join(repr(n) for n in _LINEAR_REC709)}"
    )


# --- inference --------------------------------------------------------------------------------------------------


def _plate(config: Any, name: str, source: Literal["declared", "inferred"], evidence: str) -> PlateColour:
    return PlateColour(name=name, source=source, evidence=evidence, scene_referred=is_scene_referred(config, name))


def _inferred(config: Any, file: str, name: str, evidence: str) -> PlateColour:
    space = config.getColorSpace(name)
    if space is None:
        raise InvalidInput(
            f"{file}: {evidence} means colour space {name!r}, which OCIO config {config.getName()!r} lacks; declare it"
        )
    return _plate(config, str(space.getName()), "inferred", evidence)


def _resolve_oiio_name(config: Any, oiio_name: str) -> str | None:
    space = config.getColorSpace(oiio_name) or config.getColorSpace(_OIIO_NAMES.get(oiio_name.lower(), ""))
    return None if space is None else str(space.getName())


def _chromaticities(file: str, attributes: Mapping[str, object]) -> tuple[float, ...] | None:
    value = attributes.get("chromaticities")
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 8:
        raise InvalidInput(f"{file}: EXR chromaticities must be 8 numbers (rx ry gx gy bx by wx wy), got {value!r}")
    return numbers


def _primaries_set(chroma: tuple[float, ...]) -> str | None:
    for label, (reference, _) in _PRIMARIES.items():
        if all(abs(a - b) <= _CHROMATICITY_TOLERANCE for a, b in zip(chroma, reference, strict=True)):
            return label
    return None


def _infer_movie(config: Any, file: str, tags: ColourTags) -> PlateColour:
    shown = "/".join(t or "unspecified" for t in (tags.primaries, tags.transfer, tags.matrix))
    evidence = f"movie tags {shown}"
    if tags.transfer is None:
        return _inferred(config, file, "Rec.1886 Rec.709 - Display", f"{evidence} (untagged video is Rec.709)")
    if tags.transfer in _MOVIE_TRANSFERS:
        name = _MOVIE_TRANSFERS[tags.transfer]
        note = " (HDR video, passed to the model unchanged)" if tags.transfer in ("arib-std-b67", "smpte2084") else ""
        return _inferred(config, file, name, evidence + note)
    if tags.transfer == "linear":
        raise InvalidInput(
            f"{file}: movie transfer is tagged 'linear', which names no primaries; declare its colour space "
            "(e.g. 'ACEScg' or 'Linear Rec.709 (sRGB)')"
        )
    raise InvalidInput(
        f"{file}: movie transfer tag {tags.transfer!r} is not one voidflow maps; declare its colour space"
    )


def _infer_exr(config: Any, file: str, is_float: bool, chroma: tuple[float, ...] | None) -> PlateColour:
    if chroma is None:
        if not is_float:
            raise InvalidInput(f"{file}: integer EXR without chromaticities; declare its colour space")
        evidence = "float EXR without chromaticities (OpenEXR's default primaries are Rec.709)"
        return _inferred(config, file, "Linear Rec.709 (sRGB)", evidence)
    label = _primaries_set(chroma)
    if label is None:
        known = ", ".join(_PRIMARIES)
        shown = " ".join(f"{v:.4g}" for v in chroma)
        raise InvalidInput(f"{file}: EXR chromaticities [{shown}] match none of {known}; declare its colour space")
    name = _PRIMARIES[label][1]
    return _inferred(config, file, name, f"EXR chromaticities are {label} ({name})")


def _infer_dpx(config: Any, file: str, transfer: object) -> PlateColour:
    value = str(transfer).strip() if transfer is not None else ""
    lowered = value.lower()
    if any(word in lowered for word in _DPX_LOG):
        raise InvalidInput(
            f"{file}: log DPX (dpx:Transfer {value!r}) needs a declared colour space (e.g. ACEScct, ARRI LogC4)"
        )
    if lowered in _DPX_VIDEO:
        return _inferred(config, file, "Rec.1886 Rec.709 - Display", f"DPX transfer {value!r} (video)")
    shown = repr(value) if value else "missing"
    raise InvalidInput(
        f"{file}: DPX transfer {shown} does not say how the values are encoded; declare its colour space"
    )


def _check_declared(
    config: Any,
    file: str,
    name: str,
    declared_by: str,
    *,
    kind: str,
    is_float: bool,
    tags: ColourTags,
    chroma: tuple[float, ...] | None,
) -> None:
    space = config.getColorSpace(name)
    encoding = str(space.getEncoding()).lower()
    if kind == "movie" and not is_float and encoding == "scene-linear" and tags.transfer in _VIDEO_TRANSFERS:
        raise InvalidInput(
            f"{file}: {declared_by} {name!r} is scene-linear, but the movie is integer video tagged transfer "
            f"{tags.transfer!r}; declare the space it was encoded in (a display or camera log space) or fix the tag"
        )
    if chroma is None:
        return
    label = _primaries_set(chroma)
    if label is None:
        return
    linear = config.getColorSpace(_PRIMARIES[label][1])
    ocio = _ocio()
    scene = ocio.REFERENCE_SPACE_SCENE
    if linear is None or space.isData() or space.getReferenceSpaceType() != scene:
        return
    if not _shares_primaries(config, str(linear.getName()), name):
        raise InvalidInput(
            f"{file}: {declared_by} {name!r} has primaries other than the EXR chromaticities ({label}, as in "
            f"{linear.getName()!r}); declare a colour space with {label} primaries or fix the header"
        )


def _shares_primaries(config: Any, linear: str, other: str) -> bool:
    """Whether ``other`` encodes the primaries of the linear space ``linear`` channel by channel."""
    if linear == other:
        return True
    probe = np.array([[0.0, 0.0, 0.0], [0.18, 0.0, 0.0], [0.0, 0.18, 0.0], [0.0, 0.0, 0.18]], dtype=np.float32)
    _cpu(config, linear, other).applyRGB(probe)
    black = probe[0]
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        if not np.allclose(probe[channel + 1, others], black[others], rtol=0.0, atol=1e-4):
            return False
    return True


# --- the model view's curves (in place, float32) ----------------------------------------------------------------


def _check_frames(frames: np.ndarray, what: str) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype.kind != "f":
        shape, dtype = getattr(frames, "shape", None), getattr(frames, "dtype", type(frames).__name__)
        raise InvalidInput(f"{what}: frames must be a (T, H, W, 3) float array, got {shape} {dtype}")


def _roll_off(x: np.ndarray, knee: float) -> None:
    # y = min(x, k) + c * t / (t + c) with t = max(x - k, 0): the same as 1 - c**2 / (x - k + c) above the knee
    k, c = np.float32(knee), np.float32(1.0 - knee)
    t = x - k
    np.maximum(t, 0.0, out=t)
    np.minimum(x, k, out=x)
    d = t + c
    t *= c
    t /= d
    x += t


def _inverse_roll_off(y: np.ndarray, knee: float) -> None:
    # x = min(y, k) + c * s / (c - s) with s = y - k above the knee, clamped so that y <= 1 - 1e-6
    k, c = np.float32(knee), np.float32(1.0 - knee)
    s = y - k
    np.clip(s, 0.0, np.float32(_INVERSE_CEILING - knee), out=s)
    np.minimum(y, k, out=y)
    d = c - s
    s *= c
    s /= d
    y += s


def _srgb_oetf(x: np.ndarray) -> None:
    low = x <= np.float32(0.0031308)
    linear = x * np.float32(12.92)
    np.power(x, np.float32(1 / 2.4), out=x)
    x *= np.float32(1.055)
    x -= np.float32(0.055)
    np.copyto(x, linear, where=low)


def _srgb_eotf(v: np.ndarray) -> None:
    low = v <= np.float32(0.04045)
    linear = v / np.float32(12.92)
    v += np.float32(0.055)
    v /= np.float32(1.055)
    np.power(v, np.float32(2.4), out=v)
    np.copyto(v, linear, where=low)
