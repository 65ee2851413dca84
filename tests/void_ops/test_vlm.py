"""The Gemini facade against a loopback stub, with the real google-genai client; replay without any network."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from collections.abc import Iterator

import numpy as np
import pytest

from tests.vlm_stub import Canned, VlmStub, answer, running_stub
from voidflow.void_ops.exceptions import (
    ConfigurationError,
    InvalidInput,
    VlmRateLimited,
    VlmResponseInvalid,
    VoidflowError,
    is_retryable,
)
from voidflow.void_ops.masking.vlm import (
    BoxOnFrame,
    GeminiVlm,
    Interaction,
    ReplayVlm,
    VlmExchange,
    VlmSettings,
    keyframe_indices,
    make_client,
    to_box_prompts,
)
from voidflow.void_ops.shots import BoxPrompt

KEY = "sk-test-PLANTED-KEY-123"
SETTINGS = VlmSettings(reason_keyframes=3, image_max_side=128, video_max_side=64)
FRAMES = np.random.default_rng(0).integers(0, 256, (12, 90, 160, 3), dtype=np.uint8)
PRIMARY = np.zeros(FRAMES.shape[:3], bool)
PRIMARY[2:, 20:50, 30:70] = True
LOCATED = {"boxes": [{"frame": 4, "box_2d": [100, 250, 500, 750]}, {"frame": 11, "box_2d": [0, 0, 1000, 1000]}]}
SHADOW: dict[str, object] = {
    "noun": "shadow",
    "category": "visual_artifact",
    "why": "cast by the man",
    "will_move": False,
    "first_appears_frame": None,
    "boxes": [{"frame": 5, "box_2d": [600, 100, 900, 400]}],
}
BALL: dict[str, object] = {
    "noun": "ball",
    "category": "physical",
    "why": "kicked by the man",
    "will_move": True,
    "first_appears_frame": 3,
    "boxes": [],
}
INTERACTION: dict[str, object] = {
    "integral_belongings": [{"noun": "hat", "why": "worn by the man"}],
    "affected_objects": [SHADOW, BALL],
    "scene_description": "An empty street at dusk.",
    "edit_instruction": "Remove the man and his shadow.",
    "confidence": 0.7,
}
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[VlmStub]:
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    with running_stub() as running:
        yield running


@pytest.fixture
def vlm(stub: VlmStub) -> GeminiVlm:
    return GeminiVlm(make_client(KEY, base_url=stub.base_url, api_version=SETTINGS.api_version), SETTINGS)


def all_frames() -> dict[int, np.ndarray]:
    return dict(enumerate(FRAMES))


def parts_of(stub: VlmStub, index: int = -1) -> list[dict[str, object]]:
    contents = stub.requests[index].body["contents"]
    assert isinstance(contents, list) and len(contents) == 1
    return list(contents[0]["parts"])


def mime_types(parts: list[dict[str, object]]) -> list[str]:
    found = []
    for part in parts:
        inline = part.get("inlineData")
        if isinstance(inline, dict):
            found.append(str(inline.get("mimeType") or inline.get("mime_type")))
    return found


def texts(parts: list[dict[str, object]]) -> list[str]:
    return [str(part["text"]) for part in parts if "text" in part]


# --- live calls --------------------------------------------------------------------------------------------------


def test_locate_returns_boxes_in_plate_pixels(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(LOCATED)))
    boxes, exchange = vlm.locate(all_frames(), "the man in the red coat", shot="sh010")
    assert boxes == [BoxPrompt(4, 40.0, 9.0, 120.0, 45.0), BoxPrompt(11, 0.0, 0.0, 160.0, 90.0)]
    assert (exchange.kind, exchange.model, exchange.response_text) == ("locate", "gemini-2.5-pro", json.dumps(LOCATED))
    assert len(exchange.request_sha256) == 64
    summary = json.loads(exchange.request_summary)
    assert summary["model"] == "gemini-2.5-pro" and summary["kind"] == "locate"
    assert [part["frame"] for part in summary["parts"] if "mime_type" in part] == [0, 4, 7, 11]


def test_request_is_json_mode_with_schema_temperature_and_pinned_model(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(LOCATED)))
    vlm.locate(all_frames(), "the man")
    (request,) = stub.requests
    assert request.path == "/v1/models/gemini-2.5-pro:generateContent"
    assert (request.version, request.model) == ("v1", "gemini-2.5-pro")
    config = request.body["generationConfig"]
    assert isinstance(config, dict)
    assert config["temperature"] == 0.0
    assert config["responseMimeType"] == "application/json"
    assert "boxes" in config["responseSchema"]["properties"]
    assert request.headers["x-goog-api-key"] == KEY  # sent where it belongs, and only there
    parts = parts_of(stub)
    assert mime_types(parts) == ["image/jpeg"] * SETTINGS.keyframes
    assert "Frame 4:" in texts(parts) and "Object: the man" in texts(parts)[0]


def test_reason_returns_a_typed_interaction(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(INTERACTION)))
    interaction, exchange = vlm.reason(FRAMES, PRIMARY, "remove the man", fps=24.0)
    assert isinstance(interaction, Interaction)
    assert interaction.integral_belongings[0].noun == "hat"
    shadow, ball = interaction.affected_objects
    assert (shadow.category, shadow.boxes[0].box_2d, ball.will_move, ball.first_appears_frame) == (
        "visual_artifact",
        [600, 100, 900, 400],
        True,
        3,
    )
    assert interaction.scene_description == "An empty street at dusk."
    assert exchange.kind == "reason"
    parts = parts_of(stub)
    # 3 gridded keyframes, the red overlay frame, the clip, in that order; the instruction last.
    assert mime_types(parts) == ["image/jpeg"] * 4 + ["video/mp4"]
    assert texts(parts)[-1] == "Instruction: remove the man"
    assert "Frame 2, the object to remove in red (gridded):" in texts(parts)  # first frame the primary is set
    assert stub.requests[0].body["generationConfig"]["responseSchema"]["title"] == "Interaction"


def test_reason_can_leave_the_video_out(stub: VlmStub) -> None:
    settings = VlmSettings(reason_keyframes=2, image_max_side=96, send_video=False)
    vlm = GeminiVlm(make_client(KEY, base_url=stub.base_url), settings)
    stub.push(answer(json.dumps(INTERACTION)))
    vlm.reason(FRAMES, PRIMARY, "remove the man", fps=25.0)
    assert mime_types(parts_of(stub)) == ["image/jpeg"] * 3


@pytest.mark.parametrize(
    ("canned", "error"),
    [
        (Canned(429, {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}), VlmRateLimited),
        (Canned(500, {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}), VlmRateLimited),
        (Canned(503, "upstream unavailable"), VlmRateLimited),
        (Canned(403, {"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}), ConfigurationError),
        (Canned(400, {"error": {"code": 400, "message": "too big", "status": "INVALID_ARGUMENT"}}), InvalidInput),
    ],
)
def test_http_failures_map_to_the_exception_tree(
    vlm: GeminiVlm, stub: VlmStub, canned: Canned, error: type[VoidflowError]
) -> None:
    stub.push(canned)
    with pytest.raises(error, match=f"HTTP {canned.status}") as raised:
        vlm.locate(all_frames(), "the man", shot="sh020")
    assert is_retryable(raised.value) == (error is VlmRateLimited)
    assert "shot 'sh020'" in str(raised.value) and "\n" not in str(raised.value)
    assert len(stub.requests) == 1  # the client does not retry on its own


def test_unreachable_service_is_transient(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.stop()
    with pytest.raises(VlmRateLimited, match="could not reach"):
        vlm.locate(all_frames(), "the man")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "```json\n" + json.dumps(LOCATED) + "\n```",  # fenced: not salvaged
        "Here are the boxes: " + json.dumps(LOCATED),  # prose around JSON: not salvaged
        json.dumps({"boxes": [{"frame": 4, "box_2d": [1, 2, 3]}]}),  # three numbers
        json.dumps({"boxes": [{"frame": 4, "box_2d": [500, 0, 100, 10]}]}),  # ymin > ymax
        json.dumps({"boxes": [{"frame": 4, "box_2d": [0, 0, 10, 1001]}]}),  # beyond 1000
        json.dumps({"boxes": [{"frame": 5, "box_2d": [0, 0, 10, 10]}]}),  # frame 5 was not sent
        json.dumps({"frames": []}),
    ],
)
def test_invalid_locate_answers_are_permanent_and_quote_the_raw_text(vlm: GeminiVlm, stub: VlmStub, text: str) -> None:
    stub.push(answer(text))
    with pytest.raises(VlmResponseInvalid) as raised:
        vlm.locate(all_frames(), "the man")
    message = str(raised.value)
    assert repr(text[:300]) in message and "\n" not in message
    assert not is_retryable(raised.value)


@pytest.mark.parametrize(
    "change",
    [
        {"confidence": 2.0},
        {"affected_objects": [{**SHADOW, "category": "sound"}]},
        {"affected_objects": [{**SHADOW, "boxes": [{"frame": 12, "box_2d": [0, 0, 9, 9]}]}]},  # frames are 0..11
        {"affected_objects": [{**SHADOW, "first_appears_frame": 40}]},
        {"scene_description": ""},
    ],
)
def test_invalid_reason_answers(vlm: GeminiVlm, stub: VlmStub, change: dict[str, object]) -> None:
    stub.push(answer(json.dumps({**INTERACTION, **change})))
    with pytest.raises(VlmResponseInvalid, match="raw text"):
        vlm.reason(FRAMES, PRIMARY, "remove the man", fps=24.0)


def test_answers_without_text_are_invalid(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(
        Canned(200, "<html>proxy login</html>"),
        Canned(200, {"promptFeedback": {"blockReason": "SAFETY"}}),
        Canned(200, {"candidates": [{"finishReason": "MAX_TOKENS", "content": {"role": "model", "parts": []}}]}),
    )
    for expected in ("'<html>proxy login</html>'", "SAFETY", "MAX_TOKENS"):
        with pytest.raises(VlmResponseInvalid, match=expected):
            vlm.locate(all_frames(), "the man")


def test_long_raw_text_is_cut_at_300_characters(vlm: GeminiVlm, stub: VlmStub) -> None:
    text = '{"boxes": "' + "".join(f"{i % 10}" for i in range(1000))
    stub.push(answer(text))
    with pytest.raises(VlmResponseInvalid) as raised:
        vlm.locate(all_frames(), "the man")
    assert repr(text[:300]) in str(raised.value) and text[:301] not in str(raised.value)


def test_the_api_key_never_leaks(vlm: GeminiVlm, stub: VlmStub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"code": 429, "message": f"quota exceeded for key {KEY}", "status": "RESOURCE_EXHAUSTED"}}
    stub.push(
        Canned(429, echo),
        Canned(401, {"error": {"code": 401, "message": f"bad key {KEY}", "status": "UNAUTHENTICATED"}}),
        Canned(500, f"proxy error for x-goog-api-key: {KEY}"),
        answer(f"I saw the key {KEY}"),
        answer(json.dumps(LOCATED)),
        answer(json.dumps({**INTERACTION, "edit_instruction": f"use {KEY}"})),
    )
    errors: list[VoidflowError] = []
    for _ in range(4):
        with pytest.raises(VoidflowError) as raised:
            vlm.locate(all_frames(), "the man")
        errors.append(raised.value)
    _, located = vlm.locate(all_frames(), "the man")
    _, reasoned = vlm.reason(FRAMES, PRIMARY, "remove the man", fps=24.0)
    assert [type(error) for error in errors] == [VlmRateLimited, ConfigurationError, VlmRateLimited, VlmResponseInvalid]
    for error in errors:
        assert KEY not in str(error) and KEY.encode() not in pickle.dumps(error)
    for error in errors[:3]:
        assert error.__cause__ is None and error.__context__ is None  # no chained SDK error holding the request
    for exchange in (located, reasoned):
        assert KEY not in json.dumps(exchange.to_json())
    assert "<redacted>" in reasoned.response_text
    assert not [record for record in caplog.records if KEY in record.getMessage()]


def test_same_request_same_hash(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(LOCATED)), answer(json.dumps(LOCATED)))
    _, first = vlm.locate(all_frames(), "the man")
    _, second = vlm.locate(dict(reversed(list(all_frames().items()))), "the man")
    assert first == second


# --- replay ------------------------------------------------------------------------------------------------------


def test_replay_reproduces_live_results_offline(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(LOCATED)), answer(json.dumps(INTERACTION)))
    boxes, located = vlm.locate(all_frames(), "the man")
    interaction, reasoned = vlm.reason(FRAMES, PRIMARY, "remove the man", fps=24.0)
    stub.stop()
    stored = [VlmExchange.from_json(json.loads(json.dumps(exchange.to_json()))) for exchange in (located, reasoned)]
    replay = ReplayVlm(stored, SETTINGS)
    assert replay.locate(all_frames(), "the man") == (boxes, located)
    assert replay.reason(FRAMES, PRIMARY, "remove the man", fps=24.0) == (interaction, reasoned)
    assert len(stub.requests) == 2


def test_replay_misses_when_prompt_model_or_pixels_change(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(LOCATED)), answer(json.dumps(INTERACTION)))
    _, located = vlm.locate(all_frames(), "the man")
    _, reasoned = vlm.reason(FRAMES, PRIMARY, "remove the man", fps=24.0)
    stub.stop()
    replay = ReplayVlm([located, reasoned], SETTINGS)
    with pytest.raises(ConfigurationError, match="no stored VLM exchange .* rerun with the VLM enabled"):
        replay.locate(all_frames(), "the woman")
    with pytest.raises(ConfigurationError, match=r"\(gemini-2.5-flash, locate\)"):
        ReplayVlm([located], VlmSettings(model="gemini-2.5-flash")).locate(all_frames(), "the man")
    touched = FRAMES.copy()
    touched[7, 0, 0, 0] ^= 1
    with pytest.raises(ConfigurationError, match="reason"):
        replay.reason(touched, PRIMARY, "remove the man", fps=24.0)
    with pytest.raises(ConfigurationError):
        replay.reason(FRAMES, PRIMARY, "remove the man", fps=25.0)


def test_replay_validates_stored_text_again(vlm: GeminiVlm, stub: VlmStub) -> None:
    stub.push(answer(json.dumps(LOCATED)))
    _, located = vlm.locate(all_frames(), "the man")
    stub.stop()
    broken = dataclasses.replace(located, response_text="{oops")
    with pytest.raises(VlmResponseInvalid, match="'{oops'"):
        ReplayVlm([located, broken], SETTINGS).locate(all_frames(), "the man")  # the later exchange wins
    with pytest.raises(InvalidInput, match="lacks string fields"):
        VlmExchange.from_json({"kind": "locate"})


# --- inputs and helpers ------------------------------------------------------------------------------------------


def test_bad_inputs_never_reach_the_service(vlm: GeminiVlm, stub: VlmStub) -> None:
    with pytest.raises(InvalidInput, match="no frames"):
        vlm.locate({}, "the man")
    with pytest.raises(InvalidInput, match="description is empty"):
        vlm.locate(all_frames(), "  ")
    with pytest.raises(InvalidInput, match="one size"):
        vlm.locate({0: FRAMES[0], 1: FRAMES[1, :50]}, "the man")
    with pytest.raises(InvalidInput, match="empty on all 12 frames"):
        vlm.reason(FRAMES, np.zeros_like(PRIMARY), "remove the man", fps=24.0)
    with pytest.raises(InvalidInput, match="primary must be bool"):
        vlm.reason(FRAMES, PRIMARY[:, :10], "remove the man", fps=24.0)
    with pytest.raises(InvalidInput, match="fps must be positive, got 0"):
        vlm.reason(FRAMES, PRIMARY, "remove the man", fps=0.0)
    assert stub.requests == []


def test_oversized_requests_are_refused_before_sending(stub: VlmStub) -> None:
    vlm = GeminiVlm(make_client(KEY, base_url=stub.base_url), VlmSettings(max_request_bytes=10_000))
    with pytest.raises(InvalidInput, match="above max_request_bytes"):
        vlm.locate(all_frames(), "the man")
    assert stub.requests == []


def test_settings_are_validated() -> None:
    with pytest.raises(InvalidInput, match="keyframes must be at least 1, got 0"):
        VlmSettings(keyframes=0)
    with pytest.raises(InvalidInput, match="temperature"):
        VlmSettings(temperature=-1.0)
    with pytest.raises(ConfigurationError, match="api_key is empty"):
        make_client("")


def test_keyframes_and_box_conversion() -> None:
    assert keyframe_indices(48, 4) == [0, 16, 31, 47]
    assert keyframe_indices(3, 10) == [0, 1, 2]
    assert keyframe_indices(5, 1) == [0]
    box = BoxOnFrame(frame=3, box_2d=[100, 250, 500, 750])
    assert to_box_prompts([box], 160, 90) == [BoxPrompt(3, 40.0, 9.0, 120.0, 45.0)]
    assert Interaction.model_validate(INTERACTION).affected_objects[1].boxes == []


def test_fit_size_scales_down_to_the_longest_side_keeps_aspect_and_never_upscales() -> None:
    from voidflow.void_ops.frames import fit_size

    assert fit_size(1080, 1920, 1024) == (576, 1024)
    assert fit_size(1920, 1080, 1024) == (1024, 576)
    assert fit_size(240, 320, 1024) == (240, 320)  # never upscales
    assert fit_size(1081, 1919, 4096, even=True) == (1080, 1918)  # even sides, even without scaling
    assert fit_size(1080, 1920, 100, even=True) == (56, 100)
    assert fit_size(3, 4000, 64, even=True) == (2, 64)  # never below 2 when even
    assert fit_size(3, 4000, 64) == (1, 64)
