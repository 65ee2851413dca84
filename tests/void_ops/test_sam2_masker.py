"""SAM2 tracking (tiny config, random weights: shapes, coverage and determinism, not content) and the compose step."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput, ModelLoadError
from voidflow.void_ops.masking.compose import (
    AffectedRegion,
    affected_region,
    dilation_ring,
    quadmask_from_masks,
    union,
)
from voidflow.void_ops.masking.sam2_video import ObjectPrompts, Sam2Settings, Sam2VideoMasker
from voidflow.void_ops.masking.vlm import Interaction
from voidflow.void_ops.quadmask import AFFECTED, KEEP, OVERLAP, REMOVE
from voidflow.void_ops.shots import BoxPrompt, PointPrompt

TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"


def moving_square(frames: int = 8, height: int = 96, width: int = 128) -> np.ndarray:
    """A grey gradient with a white square moving right by 4 pixels a frame."""
    ramp = np.linspace(30, 120, width, dtype=np.float32)
    plate = np.repeat(np.broadcast_to(ramp, (height, width))[:, :, None], 3, axis=2)
    clip = np.repeat(plate[None], frames, axis=0).astype(np.uint8)
    for index in range(frames):
        clip[index, 30:60, 20 + 4 * index : 50 + 4 * index] = 255
    return clip


FRAMES = moving_square()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """SAM2 on a shared 2-core runner: one intra-op thread. With two, any other load on the machine makes
    OpenMP's spinning threads fight and a 3 s track can take 30 s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def masker() -> Sam2VideoMasker:
    return Sam2VideoMasker(Sam2Settings(config=TINY, image_size=256))


# --- tracking ----------------------------------------------------------------------------------------------------


def test_every_frame_gets_a_mask_including_frames_before_the_prompt(masker: Sam2VideoMasker) -> None:
    tracks = masker.track(FRAMES, {1: ObjectPrompts(points=(PointPrompt(5, 55.0, 45.0),))})
    (only,) = tracks.passes
    assert (only.start, only.objects) == (5, (1,))
    assert only.forward_frames == (5, 6, 7)
    assert only.reverse_frames == (5, 4, 3, 2, 1, 0)  # the backward pass the reference lacks (defect 7)
    assert tracks.working_size == (96, 128)
    (mask,) = tracks.masks.values()
    assert mask.shape == (8, 96, 128) and mask.dtype == np.bool_


def test_same_call_same_masks(masker: Sam2VideoMasker) -> None:
    points, boxes = [PointPrompt(5, 55.0, 45.0)], [BoxPrompt(5, 35.0, 25.0, 75.0, 65.0)]
    first = masker(FRAMES[2:], points, boxes, shot="sh010")
    second = masker(FRAMES[2:], points, boxes, shot="sh010")
    assert first.shape == (6, 96, 128) and first.dtype == np.bool_
    assert np.array_equal(first, second)


def test_several_objects_and_several_boxes_on_one_frame(masker: Sam2VideoMasker) -> None:
    prompts = {
        1: ObjectPrompts(boxes=(BoxPrompt(2, 25.0, 25.0, 60.0, 65.0), BoxPrompt(2, 80.0, 10.0, 120.0, 40.0))),
        7: ObjectPrompts(points=(PointPrompt(6, 60.0, 45.0), PointPrompt(6, 5.0, 5.0, positive=False))),
    }
    tracks = masker.track(FRAMES, prompts)
    assert set(tracks.masks) == {1, 7}
    assert all(mask.shape == (8, 96, 128) and mask.dtype == np.bool_ for mask in tracks.masks.values())
    early, late = tracks.passes  # one SAM2 state per earliest prompted frame
    assert (early.start, early.objects, early.reverse_frames, late.start, late.objects) == (2, (1,), (2, 1, 0), 6, (7,))
    assert late.forward_frames == (6, 7) and late.reverse_frames == (6, 5, 4, 3, 2, 1, 0)


def test_frames_are_downscaled_to_max_side_and_masks_come_back_at_plate_size() -> None:
    small = Sam2VideoMasker(Sam2Settings(config=TINY, image_size=128, max_side=128))
    plate = moving_square(frames=3, height=200, width=300)
    tracks = small.track(plate, {1: ObjectPrompts(boxes=(BoxPrompt(0, 20.0, 30.0, 60.0, 70.0),))})
    assert tracks.working_size == (85, 128)  # what SAM2 read: longest side 128
    assert tracks.masks[1].shape == (3, 200, 300)
    (only,) = tracks.passes
    assert only.forward_frames == (0, 1, 2) and only.reverse_frames == ()  # prompt on frame 0: nothing before


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({}, "no objects to track"),
        ({1: ObjectPrompts()}, "object 1: needs at least one positive point or one box"),
        ({1: ObjectPrompts(points=(PointPrompt(2, 5.0, 5.0, positive=False),))}, "needs at least one positive"),
        ({1: ObjectPrompts(points=(PointPrompt(8, 5.0, 5.0),))}, r"frame 8 is outside the frames given \(0..7\)"),
        ({1: ObjectPrompts(points=(PointPrompt(-1, 5.0, 5.0),))}, "frame -1 is outside"),
        ({2: ObjectPrompts(points=(PointPrompt(0, 129.0, 5.0),))}, "object 2: .* lies outside the 128x96 frame"),
        ({1: ObjectPrompts(points=(PointPrompt(0, float("nan"), 5.0),))}, "non-finite"),
        ({1: ObjectPrompts(boxes=(BoxPrompt(0, 100.0, 10.0, 140.0, 20.0),))}, r"x1=140.0.* x1 <= 128"),
        ({1: ObjectPrompts(boxes=(BoxPrompt(0, 50.0, 10.0, 40.0, 20.0),))}, "0 <= x0 < x1"),
    ],
)
def test_bad_prompts_are_refused(masker: Sam2VideoMasker, prompts: Mapping[int, ObjectPrompts], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        masker.track(FRAMES, prompts, shot="sh030")
    assert str(raised.value).startswith("shot 'sh030': ")
    assert isinstance(raised.value, ValueError)


def test_bad_frames_and_empty_call_are_refused(masker: Sam2VideoMasker) -> None:
    with pytest.raises(InvalidInput, match="object 4: needs at least one positive point or one box"):
        masker(FRAMES, [], [], obj_id=4)
    with pytest.raises(InvalidInput, match=r"uint8 RGB, got float32 \(8, 96, 128, 3\)"):
        masker(FRAMES.astype(np.float32), [PointPrompt(0, 5.0, 5.0)], [])
    with pytest.raises(InvalidInput, match="uint8 RGB"):
        masker(FRAMES[..., 0], [PointPrompt(0, 5.0, 5.0)], [])


def test_settings_are_validated() -> None:
    with pytest.raises(InvalidInput, match="max_side must be at least 16 pixels, got 8"):
        Sam2Settings(max_side=8)
    with pytest.raises(InvalidInput, match="image_size must be a multiple of 32 from 64, got 100"):
        Sam2Settings(image_size=100)


def test_params_record_what_shapes_the_masks(masker: Sam2VideoMasker) -> None:
    params = masker.params()
    assert params["config"] == TINY and params["random_weights"] is True and params["checkpoint_sha256"] is None
    assert params["effective_image_size"] == 256 and params["propagation"] == "forward+reverse"
    assert "++model.fill_hole_area=0" in params["hydra_overrides"]  # type: ignore[operator]


def test_config_and_checkpoint_errors(tmp_path: Path) -> None:
    import torch

    with pytest.raises(ConfigurationError, match="file not found"):
        Sam2VideoMasker(Sam2Settings(config=TINY, checkpoint=str(tmp_path / "missing.pt")))
    with pytest.raises(ConfigurationError, match="configs/nope.yaml"):
        Sam2VideoMasker(Sam2Settings(config="configs/nope.yaml"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"not_a_sam2_weight": torch.zeros(1)}}, wrong)
    with pytest.raises(ModelLoadError, match=r"does not fit config .* missing keys .* 1 unexpected"):
        Sam2VideoMasker(Sam2Settings(config=TINY, checkpoint=str(wrong), image_size=128))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="unreadable"):
        Sam2VideoMasker(Sam2Settings(config=TINY, checkpoint=str(garbage), image_size=128))
    bare = tmp_path / "bare.pt"
    torch.save({"state": {}}, bare)
    with pytest.raises(ModelLoadError, match="no 'model' state dict"):
        Sam2VideoMasker(Sam2Settings(config=TINY, checkpoint=str(bare), image_size=128))


def test_a_matching_checkpoint_loads_and_replaces_the_random_weights(masker: Sam2VideoMasker, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "seed0.pt"
    torch.save({"model": masker._predictor.state_dict()}, path)
    loaded = Sam2VideoMasker(Sam2Settings(config=TINY, image_size=256, checkpoint=str(path), seed=1))
    assert loaded.params()["checkpoint_sha256"] and loaded.params()["random_weights"] is False
    points = [PointPrompt(1, 30.0, 45.0)]
    assert np.array_equal(loaded(FRAMES[:3], points, []), masker(FRAMES[:3], points, []))


# --- compose -----------------------------------------------------------------------------------------------------


def test_quadmask_combine_table_and_first_frame_rule() -> None:
    primary = np.array([[[True, True], [False, False]]] * 2)
    affected = np.array([[[False, True], [True, False]]] * 2)
    quad = quadmask_from_masks(primary, affected)
    assert quad.dtype == np.uint8
    assert quad[1].tolist() == [[REMOVE, OVERLAP], [AFFECTED, KEEP]]
    assert quad[0].tolist() == [[REMOVE, OVERLAP], [KEEP, KEEP]]  # grey starts at frame 1; overlap stays
    kept = quadmask_from_masks(primary, affected, clear_affected_on_first_frame=False)
    assert kept[0].tolist() == [[REMOVE, OVERLAP], [AFFECTED, KEEP]]
    with pytest.raises(InvalidInput, match="affected mask must be a \\(T, H, W\\) bool array, got uint8"):
        quadmask_from_masks(primary, affected.astype(np.uint8))
    with pytest.raises(InvalidInput, match="differ in shape"):
        quadmask_from_masks(primary, affected[:1])


def test_dilation_ring() -> None:
    primary = np.zeros((2, 9, 9), bool)
    primary[1, 4, 4] = True
    ring = dilation_ring(primary, 2)
    assert not ring[0].any() and not ring[1, 4, 4]
    assert ring[1, 4, 2] and ring[1, 4, 6] and ring[1, 2, 4] and ring[1, 5, 5]
    assert not ring[1, 4, 1] and not ring[1, 2, 2]  # 3 pixels out, and the ellipse's corner
    assert dilation_ring(primary, 1)[1].sum() == 4
    assert not dilation_ring(primary, 0).any()
    with pytest.raises(InvalidInput, match="width_px must be >= 0, got -1"):
        dilation_ring(primary, -1)
    with pytest.raises(InvalidInput, match="primary mask must be"):
        dilation_ring(primary[0], 2)


def test_union() -> None:
    a, b = np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool)
    a[0, 0, 0], b[0, 1, 1] = True, True
    assert union({1: a, 2: b}).sum() == 2
    with pytest.raises(InvalidInput, match="at least one mask"):
        union({})
    with pytest.raises(InvalidInput, match="differ in shape"):
        union({1: a, 2: b[:, :1]})


class BoxFiller:
    """A fake segmenter: each object's mask is its boxes, filled on every frame; records the prompts it got."""

    def __init__(self) -> None:
        self.seen: dict[int, ObjectPrompts] = {}

    def segment_objects(
        self, frames: np.ndarray, prompts_by_object: Mapping[int, ObjectPrompts], *, shot: str = ""
    ) -> dict[int, np.ndarray]:
        self.seen = dict(prompts_by_object)
        out = {}
        for obj_id, prompts in prompts_by_object.items():
            mask = np.zeros(frames.shape[:3], bool)
            for box in prompts.boxes:
                mask[:, round(box.y0) : round(box.y1), round(box.x0) : round(box.x1)] = True
            out[obj_id] = mask
        return out


def interaction(*objects: dict[str, object]) -> Interaction:
    return Interaction.model_validate(
        {
            "integral_belongings": [],
            "affected_objects": list(objects),
            "scene_description": "A road.",
            "edit_instruction": "Remove the car.",
            "confidence": 0.5,
        }
    )


def affected(noun: str, boxes: list[dict[str, object]], first: int | None = None) -> dict[str, object]:
    return {
        "noun": noun,
        "category": "visual_artifact",
        "why": "",
        "will_move": False,
        "first_appears_frame": first,
        "boxes": boxes,
    }


def test_affected_region_tracks_vlm_boxes_and_respects_first_appearance() -> None:
    segmenter = BoxFiller()
    answer = interaction(
        affected("shadow", [{"frame": 1, "box_2d": [500, 0, 1000, 250]}]),
        affected("ball", []),
        affected("dust", [{"frame": 6, "box_2d": [0, 500, 250, 1000]}], first=3),
    )
    region = affected_region(segmenter, FRAMES, answer, shot="sh040")
    assert isinstance(region, AffectedRegion)
    assert region.segmented == ("shadow", "dust") and region.skipped == ("ball: the VLM gave no boxes",)
    assert segmenter.seen[1].boxes == (BoxPrompt(1, 0.0, 48.0, 32.0, 96.0),)  # 0..1000 -> plate pixels
    assert set(segmenter.seen) == {1, 3}
    assert region.mask.shape == (8, 96, 128)
    assert region.mask[0, 48:, :32].all() and not region.mask[0, :24, 64:].any()  # dust absent before frame 3
    assert region.mask[3, :24, 64:].all()
    assert not affected_region(segmenter, FRAMES, interaction(affected("ball", []))).mask.any()


def test_affected_region_with_real_sam2(masker: Sam2VideoMasker) -> None:
    answer = interaction(affected("shadow", [{"frame": 4, "box_2d": [600, 100, 900, 500]}], first=1))
    region = affected_region(masker, FRAMES, answer)
    assert region.mask.shape == (8, 96, 128) and region.mask.dtype == np.bool_
    assert not region.mask[0].any()  # cleared before first_appears_frame
    quad = quadmask_from_masks(np.zeros_like(region.mask), region.mask)
    assert set(np.unique(quad)) <= {AFFECTED, KEEP}
