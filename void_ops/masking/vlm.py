"""The Gemini VLM facade: locate an object, reason about what it affects, and replay both offline.

Two questions are asked (``void-reference.md`` 8.2, with boxes instead of grid cells):

* ``locate(frames, description)``: boxes around one described object on a few keyframes, as ``BoxPrompt`` in
  plate pixels, ready for SAM2.
* ``reason(frames, primary, instruction, fps=...)``: what to remove with the object (integral belongings), what it
  affects (shadows, reflections, things it moves), and the scene without it, as a typed ``Interaction``.

Every call is reduced to a canonical request (model, settings, prompt text, and for each image or video the
SHA-256 of its source pixels plus the recipe that renders it) whose SHA-256 keys a ``VlmExchange``: the request
summary and the raw answer, storable and free of the API key. ``ReplayVlm`` answers from stored exchanges without
network access; hashing source pixels instead of encoded bytes keeps a replay valid across ffmpeg and OpenCV
versions. Answers are validated with pydantic; a non-JSON or off-schema answer is ``VlmResponseInvalid``, never
salvaged. HTTP 408, 429, 5xx and network failures are ``VlmRateLimited`` (retryable); the client never retries on
its own.

google-genai is imported only inside ``make_client`` and ``GeminiVlm`` calls.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voidflow.void_ops.exceptions import (
    ConfigurationError,
    InvalidInput,
    VlmRateLimited,
    VlmResponseInvalid,
    VoidflowError,
)
from voidflow.void_ops.masking import _vlm_request
from voidflow.void_ops.masking._vlm_request import keyframe_indices
from voidflow.void_ops.masking._vlm_settings import VLM_MODES, VlmMode, VlmSettings
from voidflow.void_ops.shots import BoxPrompt

if TYPE_CHECKING:
    from google import genai

__all__ = [
    "VLM_MODES",
    "AffectedObject",
    "Belonging",
    "BoxOnFrame",
    "GeminiVlm",
    "Interaction",
    "Located",
    "ReplayVlm",
    "StoredFirstVlm",
    "Vlm",
    "VlmExchange",
    "VlmMode",
    "VlmSettings",
    "keyframe_indices",
    "make_client",
    "to_box_prompts",
]

_log = logging.getLogger(__name__)

_EXCERPT = 300


# --- the answers (pydantic: the only outside data in void_ops) -------------------------------------------------
# Class docstrings and field descriptions are sent to the model as part of the response schema.

_Norm = Annotated[int, Field(ge=0, le=1000)]


class BoxOnFrame(BaseModel):
    """A box on one frame: box_2d = [ymin, xmin, ymax, xmax], integers normalised to 0..1000."""

    model_config = ConfigDict(frozen=True)

    frame: int = Field(ge=0, description="frame number as given in the request")
    box_2d: list[_Norm] = Field(min_length=4, max_length=4, description="[ymin, xmin, ymax, xmax], 0..1000")

    @model_validator(mode="after")
    def _ordered(self) -> BoxOnFrame:
        ymin, xmin, ymax, xmax = self.box_2d
        if not (ymin < ymax and xmin < xmax):
            raise ValueError(f"box_2d must have ymin < ymax and xmin < xmax, got {self.box_2d}")
        return self


class Located(BaseModel):
    """Boxes around the described object, on the given frames where it is visible."""

    model_config = ConfigDict(frozen=True)

    boxes: list[BoxOnFrame] = Field(max_length=64)


class Belonging(BaseModel):
    """Something integral to the removed object that disappears with it (a hat, a bike being ridden)."""

    model_config = ConfigDict(frozen=True)

    noun: str = Field(min_length=1, max_length=80)
    why: str = Field(max_length=400)


class AffectedObject(BaseModel):
    """Something the removed object affects: a visual_artifact (shadow, reflection) or a physical object it acts on."""

    model_config = ConfigDict(frozen=True)

    noun: str = Field(min_length=1, max_length=80)
    category: Literal["physical", "visual_artifact"]
    why: str = Field(max_length=400)
    will_move: bool
    first_appears_frame: int | None = Field(ge=0)
    boxes: list[BoxOnFrame] = Field(max_length=32)


class Interaction(BaseModel):
    """What must go with the removed object, what it affects, and the scene without it."""

    model_config = ConfigDict(frozen=True)

    integral_belongings: list[Belonging] = Field(max_length=3)
    affected_objects: list[AffectedObject] = Field(max_length=5)
    scene_description: str = Field(min_length=1, max_length=800)
    edit_instruction: str = Field(max_length=800)
    confidence: float = Field(ge=0.0, le=1.0)


_Answer = TypeVar("_Answer", Located, Interaction)


# --- records -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VlmExchange:
    """One request and its raw answer, as stored for provenance and replay (never holds the API key).

    Attributes:
        kind: ``"locate"`` or ``"reason"``.
        model: the model asked.
        request_sha256: SHA-256 of ``request_summary``; the replay key.
        request_summary: canonical JSON of the request: settings, prompt text, and per image or video its source
            pixels' SHA-256, rendered size and recipe.
        response_text: the model's raw text.
    """

    kind: str
    model: str
    request_sha256: str
    request_summary: str
    response_text: str

    def to_json(self) -> dict[str, str]:
        """Return the exchange as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> VlmExchange:
        """Rebuild an exchange from ``to_json`` output.

        Raises:
            InvalidInput: a field is missing or not a string.
        """
        names = ("kind", "model", "request_sha256", "request_summary", "response_text")
        bad = [name for name in names if not isinstance(data.get(name), str)]
        if bad:
            raise InvalidInput(f"stored VLM exchange lacks string fields {bad}")
        return cls(*(str(data[name]) for name in names))


class Vlm(Protocol):
    """What the mask pipeline needs from a VLM (``GeminiVlm`` live, ``ReplayVlm`` offline, or a test fake)."""

    settings: VlmSettings

    def locate(
        self, frames: Mapping[int, np.ndarray], description: str, *, shot: str = ""
    ) -> tuple[list[BoxPrompt], VlmExchange]: ...

    def reason(
        self, frames: np.ndarray, primary: np.ndarray, instruction: str, *, fps: float, shot: str = ""
    ) -> tuple[Interaction, VlmExchange]: ...


# --- the two VLMs ------------------------------------------------------------------------------------------------


class _VlmBase(ABC):
    settings: VlmSettings

    def locate(
        self, frames: Mapping[int, np.ndarray], description: str, *, shot: str = ""
    ) -> tuple[list[BoxPrompt], VlmExchange]:
        """Ask for boxes around the described object on up to ``settings.keyframes`` of ``frames``.

        Args:
            frames: frame index -> (H, W, 3) uint8 RGB plate frame, all the same size. When more than
                ``settings.keyframes`` are given, that many are picked evenly over the sorted indices.
            description: what to find ("the man in the red coat").
            shot: shot name for error messages.

        Returns:
            (boxes, exchange): ``BoxPrompt`` in plate pixels whose ``frame`` is one of the sent indices (empty when
            the object was not found), and the exchange to store.

        Raises:
            InvalidInput: no frames, frames of different sizes or not uint8 RGB, empty description.
            VlmRateLimited: HTTP 408, 429, 5xx or the network failed (retry later).
            VlmResponseInvalid: the answer is not JSON, breaks the schema, or names a frame that was not sent.
            ConfigurationError: credentials or model rejected; for ``ReplayVlm``, no stored exchange.
        """
        where = f"shot '{shot}': " if shot else ""
        request, keys, (height, width) = _vlm_request.locate_request(frames, description, self.settings, Located, where)
        exchange = self._answer(request, where)
        located = _parse(Located, exchange, where)
        unknown = sorted({box.frame for box in located.boxes} - set(keys))
        if unknown:
            raise _invalid(exchange, where, f"names frames {unknown}, which were not sent (sent {keys})")
        return to_box_prompts(located.boxes, width, height), exchange

    def reason(
        self, frames: np.ndarray, primary: np.ndarray, instruction: str, *, fps: float, shot: str = ""
    ) -> tuple[Interaction, VlmExchange]:
        """Ask what else must go with the object: belongings, affected objects, and the scene without it.

        Sends, in order: the task text, ``settings.reason_keyframes`` gridded keyframes, the first frame on which
        ``primary`` is set with a 40% red overlay (gridded), the clip as an inline mp4 (``settings.send_video``),
        and ``instruction``.

        Args:
            frames: (T, H, W, 3) uint8 RGB plate frames.
            primary: (T, H, W) bool, the object to remove (from SAM2).
            instruction: the artist's instruction ("remove the man and everything he causes").
            fps: the plate's frame rate, frames per second.
            shot: shot name for error messages.

        Returns:
            (interaction, exchange); boxes in the interaction are normalised 0..1000 on frame indices of
            ``frames`` (use ``to_box_prompts`` with the plate size).

        Raises:
            InvalidInput: shapes disagree, the primary mask is empty, fps is not positive, the request is too big.
            VlmRateLimited, VlmResponseInvalid, ConfigurationError: as for ``locate``; an answer whose frame
            numbers fall outside 0..T-1 is ``VlmResponseInvalid``.
        """
        where = f"shot '{shot}': " if shot else ""
        request = _vlm_request.reason_request(frames, primary, instruction, fps, self.settings, Interaction, where)
        exchange = self._answer(request, where)
        interaction = _parse(Interaction, exchange, where)
        count = len(frames)
        for item in interaction.affected_objects:
            frames_named = [box.frame for box in item.boxes]
            if item.first_appears_frame is not None:
                frames_named.append(item.first_appears_frame)
            if any(frame >= count for frame in frames_named):
                raise _invalid(exchange, where, f"'{item.noun}' names frames {frames_named} beyond 0..{count - 1}")
        return interaction, exchange

    @abstractmethod
    def _answer(self, request: _vlm_request.Request, where: str) -> VlmExchange:
        """Return the exchange for ``request`` (live call or stored answer)."""


class GeminiVlm(_VlmBase):
    """Gemini through google-genai: JSON mode with a pydantic response schema, pinned model, no SDK retries.

    Thread-safe as far as the client is (google-genai's sync client may be shared). The client holds the API key:
    build it where it is used (inside the worker) rather than shipping it between processes.
    """

    def __init__(self, client: genai.Client, settings: VlmSettings = VlmSettings()) -> None:
        """Wrap a client from ``make_client`` (or any ``genai.Client``) with the settings to ask with."""
        self._client = client
        self.settings = settings
        # Only used to scrub the key from server-provided text that ends up in messages or exchanges.
        self._secret: str | None = getattr(getattr(client, "_api_client", None), "api_key", None) or None

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "<redacted>") if self._secret else text

    def _answer(self, request: _vlm_request.Request, where: str) -> VlmExchange:
        from google.genai import errors, types

        parts: list[types.Part] = []
        inline = 0
        for part in request.parts:
            if isinstance(part, str):
                parts.append(types.Part.from_text(text=part))
                inline += len(part.encode())
            else:
                data = part.render()
                parts.append(types.Part.from_bytes(data=data, mime_type=part.mime_type))
                inline += 4 * math.ceil(len(data) / 3)
        if inline > self.settings.max_request_bytes:
            raise InvalidInput(
                f"{where}VLM {request.kind} request is {inline / 1e6:.1f} MB inline, above max_request_bytes "
                f"{self.settings.max_request_bytes / 1e6:.1f} MB; lower video_max_side, image_max_side or keyframes"
            )
        config = types.GenerateContentConfig(
            temperature=self.settings.temperature,
            candidate_count=1,
            response_mime_type="application/json",
            response_schema=request.schema,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        label = f"{where}VLM {request.kind} request {request.sha256[:12]} to {self.settings.model}"
        started = time.monotonic()
        response: Any = None
        failure: VoidflowError | None = None
        try:
            response = self._client.models.generate_content(
                model=self.settings.model, contents=types.Content(role="user", parts=parts), config=config
            )
        except errors.APIError as error:
            failure = self._api_failure(error, label)
        except _transport_errors() as error:
            failure = VlmRateLimited(f"{label} could not reach the service: {type(error).__name__}: {error}")
        except json.JSONDecodeError as error:  # HTTP 200 whose body is not the API's JSON (a proxy page, say)
            failure = VlmResponseInvalid(f"{label} got an HTTP body that is not JSON: {error.doc[:_EXCERPT]!r}")
        if failure is not None:
            # Raised outside the handler so no traceback chain carries the SDK's request (and its key header).
            raise type(failure)(" ".join(self._redact(str(failure)).split()))
        text = response.text
        if not text:
            raise VlmResponseInvalid(f"{label} got no text back (finish: {_finish_reason(response)})")
        _log.info(
            "%s answered in %.1f s (%d bytes sent, %d chars back)",
            label,
            time.monotonic() - started,
            inline,
            len(text),
        )
        return VlmExchange(request.kind, self.settings.model, request.sha256, request.summary, self._redact(text))

    @staticmethod
    def _api_failure(error: Any, label: str) -> VoidflowError:
        code = int(getattr(error, "code", 0) or 0)
        detail = f"HTTP {code} {getattr(error, 'status', '') or ''}: {str(getattr(error, 'message', '') or '')[:200]}"
        detail = " ".join(detail.split())
        if code in (408, 429) or code >= 500:
            return VlmRateLimited(f"{label} refused for now: {detail}")
        if code in (400, 413):
            return InvalidInput(f"{label} rejected as malformed or too large: {detail}")
        return ConfigurationError(f"{label} rejected (credentials, access or model name): {detail}")


class ReplayVlm(_VlmBase):
    """Answer from stored exchanges, keyed by request hash; no network, no rendering, no ffmpeg.

    The request is rebuilt and hashed exactly as ``GeminiVlm`` would; the stored raw text is validated again.
    When several stored exchanges share a hash, the last one given wins.
    """

    def __init__(self, exchanges: Iterable[VlmExchange], settings: VlmSettings = VlmSettings()) -> None:
        """Index ``exchanges`` by ``request_sha256``."""
        self.settings = settings
        self._store = {exchange.request_sha256: exchange for exchange in exchanges}

    def _answer(self, request: _vlm_request.Request, where: str) -> VlmExchange:
        stored = self._store.get(request.sha256)
        if stored is None:
            raise ConfigurationError(
                f"{where}no stored VLM exchange for request {request.sha256} ({self.settings.model}, {request.kind}); "
                "rerun with the VLM enabled"
            )
        return stored


class StoredFirstVlm(_VlmBase):
    """Answer from stored exchanges when the same request was asked before; ask the live VLM otherwise.

    This is how reruns stay reproducible and cheap: an unchanged shot replays its stored answers offline, while a
    changed prompt, frame, setting or model is a new request that goes to the live VLM (and is stored after).

    Args:
        exchanges: stored exchanges (from the ledger).
        live: the live VLM, or None when none is available.
        settings: must be the live VLM's settings (they are part of every request hash).
        unavailable: why there is no live VLM, for the error a missing stored answer raises.
    """

    def __init__(
        self,
        exchanges: Iterable[VlmExchange],
        live: GeminiVlm | None,
        settings: VlmSettings = VlmSettings(),
        *,
        unavailable: str = "no VLM is available",
    ) -> None:
        self.settings = settings
        self._store = {exchange.request_sha256: exchange for exchange in exchanges}
        self._live = live
        self._unavailable = unavailable

    def _answer(self, request: _vlm_request.Request, where: str) -> VlmExchange:
        stored = self._store.get(request.sha256)
        if stored is not None:
            return stored
        if self._live is None:
            raise ConfigurationError(
                f"{where}the VLM must be asked ({request.kind}, {self.settings.model}) and no stored answer fits, "
                f"but {self._unavailable}"
            )
        return self._live._answer(request, where)


def make_client(
    api_key: str, *, base_url: str | None = None, api_version: str = "v1", timeout_s: float = 300.0
) -> genai.Client:
    """Build a google-genai client for the Gemini API (never Vertex AI), without SDK-level retries.

    Args:
        api_key: the Gemini API key (from ``infra`` settings; void_ops reads no environment).
        base_url: another endpoint, e.g. ``http://127.0.0.1:<port>`` for a test stub; None for Google's.
        api_version: API version path segment; pass ``VlmSettings.api_version``.
        timeout_s: per-request timeout in seconds (a video request to a thinking model can take minutes).

    Raises:
        ConfigurationError: the key is empty or the timeout is not positive.
    """
    from google import genai
    from google.genai import types

    if not api_key:
        raise ConfigurationError("make_client: api_key is empty")
    if not timeout_s > 0:
        raise ConfigurationError(f"make_client: timeout_s must be positive, got {timeout_s}")
    options = types.HttpOptions(base_url=base_url, api_version=api_version, timeout=round(timeout_s * 1000))
    return genai.Client(vertexai=False, api_key=api_key, http_options=options)


def to_box_prompts(boxes: Sequence[BoxOnFrame], width: int, height: int) -> list[BoxPrompt]:
    """Convert 0..1000 boxes to plate pixels.

    Example: ``BoxOnFrame(frame=3, box_2d=[100, 250, 500, 750])`` on a 160x90 plate becomes
    ``BoxPrompt(frame=3, x0=40.0, y0=9.0, x1=120.0, y1=45.0)``.
    """
    return [
        BoxPrompt(
            frame=box.frame,
            x0=box.box_2d[1] * width / 1000,
            y0=box.box_2d[0] * height / 1000,
            x1=box.box_2d[3] * width / 1000,
            y1=box.box_2d[2] * height / 1000,
        )
        for box in boxes
    ]


# --- reading answers ---------------------------------------------------------------------------------------------


def _parse(schema: type[_Answer], exchange: VlmExchange, where: str) -> _Answer:
    """Validate the raw text as JSON of ``schema``; no repair, no extraction from prose or code fences."""
    try:
        data = json.loads(exchange.response_text)
    except json.JSONDecodeError as error:
        raise _invalid(exchange, where, f"is not JSON ({error.msg} at char {error.pos})") from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        at = ".".join(str(step) for step in first["loc"]) or "top level"
        problem = f"breaks the {schema.__name__} schema at {at}: {first['msg']} ({error.error_count()} errors)"
        raise _invalid(exchange, where, problem) from None


def _invalid(exchange: VlmExchange, where: str, problem: str) -> VlmResponseInvalid:
    excerpt = exchange.response_text[:_EXCERPT]
    return VlmResponseInvalid(
        f"{where}VLM {exchange.kind} answer from {exchange.model} (request {exchange.request_sha256[:12]}) "
        f"{problem}; raw text: {excerpt!r}"
    )


def _finish_reason(response: Any) -> str:
    candidates = getattr(response, "candidates", None) or []
    if candidates:
        return str(getattr(candidates[0], "finish_reason", None))
    feedback = getattr(response, "prompt_feedback", None)
    return f"prompt blocked: {getattr(feedback, 'block_reason', None)}"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP library google-genai uses (httpx or its fork httpx2)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx", "httpx2"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)
