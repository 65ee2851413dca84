"""VOID: the reference's value tables, and pass 1 / pass 2 on tiny real models, alone and through the flow."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from voidflow.void_ops.exceptions import GpuOutOfMemory, InvalidInput
from voidflow.void_ops.frames import from_unit, to_unit
from voidflow.void_ops.void.backend import (
    KERNEL_TIMING_NONE,
    ModelSpec,
    PassInput,
    VoidModel,
    VoidPass,
    VoidSettings,
    finish_clip,
    prepare_clip,
)
from voidflow.void_ops.void.memory import RECIPES, estimate_gb
from voidflow.void_ops.void.noise_warp import WarpSettings, warped_noise
from voidflow.void_ops.void.tiny import TinyVoid, build_tiny_void
from voidflow.void_ops.void.values import (
    PASS1,
    PASS2,
    condition_from_quadmask,
    fit_frames,
    padded_length,
    pass1_condition,
    pass2_condition,
    pingpong,
    unfit_frames,
    vae_mask_input,
    window_spans,
    window_weights,
)

SMALL = VoidSettings(height=64, width=96, min_frames=13, max_frames=45)


def test_quadmask_value_path_table() -> None:
    """void-reference.md section 3: file value → loaded → pass 1 → pass 1 VAE input → pass 2 → pass 2 VAE input."""
    files = np.array([0, 63, 127, 255, 20, 90, 150, 230], np.uint8)  # the last four are lossy neighbours
    loaded = condition_from_quadmask(files)
    np.testing.assert_allclose(loaded[:4], [1.0, 192 / 255, 128 / 255, 0.0])
    np.testing.assert_array_equal(loaded[4:], loaded[:4])  # classes by ranges, never by equality
    first = pass1_condition(loaded)
    np.testing.assert_allclose(first[:4], [1.0, 1.0, 127 / 255, 0.0])  # overlap merges with remove
    np.testing.assert_allclose(vae_mask_input(first)[:, :4], [[0.0, 0.0, 128 / 255, 1.0]] * 3)
    assert vae_mask_input(first).shape == (3, 8)
    np.testing.assert_array_equal(pass2_condition(loaded)[:4], [1, 1, 1, 0])  # affected (0.502) > 0.5
    np.testing.assert_allclose(pass2_condition(loaded, "trimask")[:4], first[:4])


@pytest.mark.parametrize(
    ("frames", "length", "latent"),
    [
        (1, 85, 22),
        (46, 85, 22),
        (85, 85, 22),
        (86, 93, 24),
        (100, 101, 26),
        (120, 125, 32),
        (150, 157, 40),
        (197, 197, 50),
        (400, 197, 50),
    ],
)
def test_padding_table(frames: int, length: int, latent: int) -> None:
    assert padded_length(frames) == length
    assert (length - 1) // 4 + 1 == latent


def test_pingpong_repeats_the_turn_frame() -> None:
    assert pingpong(np.arange(4), 11).tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2]


@pytest.mark.parametrize(
    ("latent", "spans"),
    [
        (22, [(0, 22)]),
        (24, [(0, 22), (18, 24)]),
        (32, [(0, 22), (18, 32)]),
        (42, [(0, 22), (18, 40), (36, 42)]),
        (50, [(0, 22), (18, 40), (36, 50)]),
    ],
)
def test_window_table(latent: int, spans: list[tuple[int, int]]) -> None:
    assert window_spans(latent) == spans
    assert all((stop - start) % 2 == 0 for start, stop in spans)  # the 2-frame temporal patch
    total = np.zeros(latent, np.float32)
    for start, stop in spans:
        total[start:stop] += window_weights(start, stop, latent)
    np.testing.assert_allclose(total, 1.0)  # overlapping ramps sum to one everywhere


def test_long_shots_run_in_cross_faded_windows() -> None:
    from voidflow.void_ops.windows import frame_windows, windowed

    # As few windows as share 16 frames: full ones stepping by 181 and the last only as long as what is left; when
    # that is shorter than VOID's shortest run, the last two windows split the rest instead.
    assert frame_windows(197, 197, shortest=85) == [(0, 197)]
    assert frame_windows(198, 197, shortest=85) == [(0, 107), (91, 198)]
    assert frame_windows(300, 197, shortest=85) == [(0, 197), (181, 300)]
    assert frame_windows(378, 197, shortest=85) == [(0, 197), (181, 378)]
    assert frame_windows(400, 197, shortest=85) == [(0, 197), (181, 299), (282, 400)]
    assert frame_windows(400, 197) == [(0, 197), (181, 378), (362, 400)]  # no floor: the short remainder stays
    assert frame_windows(100, 90, shortest=85) == [(0, 85), (15, 100)]  # the floor: the last reaches back
    assert frame_windows(20, 29) == [(0, 20)]
    for frames in range(198, 1200, 7):  # cost: ceil((N - overlap) / (max - overlap)) windows, every frame covered
        spans = frame_windows(frames, 197, shortest=85)
        assert len(spans) == -(-(frames - 16) // 181) and spans[0][0] == 0 and spans[-1][1] == frames
        assert all(85 <= stop - start <= 197 for start, stop in spans)
        assert all(a[1] - b[0] == 16 for a, b in itertools.pairwise(spans[:-1]))  # exactly 16 ...
        assert spans[-2][1] - spans[-1][0] in (16, 17)  # ... and the last, which ends on the last frame
    calls: list[tuple[int, int]] = []

    def backend(start: int, stop: int) -> np.ndarray:
        calls.append((start, stop))
        return np.full((stop - start, 2, 2, 3), 100 + start, np.uint16)

    out = windowed(60, 29, backend, shortest=20, overlap=6)
    assert calls == [(0, 29), (23, 45), (38, 60)] and out.shape == (60, 2, 2, 3) and out.dtype == np.uint16
    values = out[:, 0, 0, 0].astype(int).tolist()
    assert values[:23] == [100] * 23 and values[29:38] == [123] * 9 and values[45:] == [138] * 15
    assert all(100 < v < 123 for v in values[23:29]) and all(123 < v < 138 for v in values[39:45])  # 6-frame fades
    assert np.all(np.diff(values) >= 0)
    calls.clear()
    values = windowed(100, 90, backend, shortest=85, overlap=16)[:, 0, 0, 0].astype(int).tolist()
    assert calls == [(0, 85), (15, 100)]  # the floor makes the last window reach back 70 frames
    assert values[:69] == [100] * 69 and values[85:] == [115] * 15  # it gives way until the last 16 frames of the first
    assert all(100 < v < 115 for v in values[70:84]) and np.all(np.diff(values) >= 0)
    with pytest.raises(InvalidInput):
        frame_windows(100, 16)


def test_ramp_weights() -> None:
    np.testing.assert_allclose(window_weights(0, 22, 42)[-4:], [0.8, 0.6, 0.4, 0.2])
    np.testing.assert_allclose(window_weights(18, 40, 42)[:4], [0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(window_weights(0, 22, 22), np.ones(22))


def test_fit_keeps_aspect_and_inverts() -> None:
    plate = np.zeros((2, 720, 1280, 3), np.float32)
    plate[:, 300:420, 600:680] = 1.0
    fitted, fit = fit_frames(plate, 384, 672, mode="letterbox")
    assert (fit.width, fit.height, fit.x, fit.y) == (672, 378, 0, 3)  # 16:9 inside 1.75:1, bars top and bottom
    assert fitted[:, :3].max() == 0 and fitted[:, -3:].max() == 0
    back = unfit_frames(fitted, fit)
    assert back.shape == plate.shape
    assert np.abs(back - plate)[:, 310:410, 610:670].max() < 0.05  # inside the square, away from its edges
    _, crop = fit_frames(plate, 384, 672, mode="crop")
    assert (crop.width, crop.height) == (683, 384) and crop.x == -6


def test_prepare_clip_pads_quantises_and_refuses() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (20, 90, 160, 3), dtype=np.uint8)
    quadmask = np.full((20, 90, 160), 250, np.uint8)  # "keep", slightly off after a lossy trip
    quadmask[:, 40:50, 70:90] = 5  # "remove"
    clip = prepare_clip(frames, quadmask, SMALL)
    assert clip.video.shape == (21, 64, 96, 3) and clip.frames == 20  # 20 frames pad to 21 (6 latent frames)
    assert set(np.unique(clip.quadmask)) <= {0, 63, 127, 255}
    assert clip.quadmask[:, :3].min() == 255  # letterbox bars read as keep
    np.testing.assert_array_equal(clip.video[20], clip.video[19])  # the ping-pong turn frame
    with pytest.raises(InvalidInput, match="longer than VOID's 45-frame run"):
        prepare_clip(np.zeros((46, 90, 160, 3), np.uint8), np.zeros((46, 90, 160), np.uint8), SMALL)
    edge = np.full((20, 90, 160), 255, np.uint8)
    edge[:, :, :4] = 0  # the mask touches the left edge, which a 1.5:1 crop of a 16:9 plate cuts
    with pytest.raises(InvalidInput, match="crop' cuts off part of the mask"):
        prepare_clip(frames, edge, dataclasses.replace(SMALL, fit="crop"))


class _StubModel:
    """A pass model that never runs: only its recipe is read."""

    def params(self) -> dict[str, object]:
        return {"window": 4, "overlap": 2, "steps": 1}

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        raise AssertionError("not called")

    def __call__(self, call: PassInput) -> np.ndarray:
        raise AssertionError("not called")


def test_one_pass_class_records_pass1_as_backend_and_pass2_as_refiner() -> None:
    """The provenance keys are those the two passes always recorded, so the ledger's stage keys still hit."""
    first, second = VoidPass(_StubModel(), SMALL), VoidPass(_StubModel(), SMALL, WarpSettings())
    assert list(first.params())[:2] == ["backend", "backend_version"] and first.params()["backend"] == "void"
    assert list(second.params())[:3] == ["refiner", "refiner_version", "height"]
    assert second.params()["refiner"] == "void-pass2" and second.params()["warp_flow"] == "dis"
    assert not any(key.startswith("warp_") for key in first.params())
    assert first.max_frames == second.max_frames == 45
    assert first.describe(100, 90, 160) == second.describe(100, 90, 160)
    with pytest.raises(InvalidInput, match=r"noise must be \(1, T_lat, C, h, w\) float32, got \(6, 4, 8, 12\)"):
        PassInput(prepare_clip(*_shot(0), SMALL), seed=0, prompt="a road", noise=np.zeros((6, 4, 8, 12), np.float32))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyVoid:
    return build_tiny_void(tmp_path_factory.mktemp("tiny-void"))


def _models(tiny: TinyVoid, steps: int = 3) -> tuple[VoidModel, VoidModel]:
    first = dataclasses.replace(PASS1, steps=steps, window=4, overlap=2)
    second = dataclasses.replace(PASS2, steps=steps, window=4, overlap=2)
    return (
        VoidModel(ModelSpec(str(tiny.base), str(tiny.pass1), first, device="cpu", dtype="float32")),
        VoidModel(ModelSpec(str(tiny.base), str(tiny.pass2), second, device="cpu", dtype="float32")),
    )


def _shot(seed: int) -> tuple[np.ndarray, np.ndarray]:
    frames = np.random.default_rng(seed).integers(0, 255, (20, 90, 160, 3), dtype=np.uint8)
    quadmask = np.full((20, 90, 160), 255, np.uint8)
    quadmask[:, 30:60, 40:80] = 0
    quadmask[:, 60:70, 40:80] = 127
    return frames, quadmask


def test_passes_run_the_steps_asked_and_keep_shape(tiny: TinyVoid) -> None:
    pass1, pass2 = _models(tiny, steps=3)
    calls: list[int] = []
    pass1.models.transformer.register_forward_hook(lambda _m, args, _o: calls.append(1))
    frames, quadmask = _shot(0)
    fill = VoidPass(pass1, SMALL)(frames, quadmask, seed=1, prompt="an empty street")
    assert fill.shape == frames.shape and fill.dtype == np.uint8  # trimmed back from 21 padded frames
    assert len(calls) == 3 * 2  # 3 steps x 2 windows over 6 latent frames (4 wide, 2 overlap)
    second = VoidPass(pass2, SMALL, WarpSettings())
    refined = second(frames, quadmask, seed=1, prompt="an empty street", first_pass=fill)
    assert refined.shape == frames.shape and second.name == "void-pass2"
    params = pass2.params()
    assert params["steps"] == 3 and params["guidance"] == 6.0 and params["mask_mode"] == "binary"
    assert set(params["weights"]) >= {"void_pass2.safetensors", "vae/diffusion_pytorch_model.safetensors"}
    with pytest.raises(InvalidInput, match="needs a background prompt"):
        VoidPass(pass1, SMALL)(frames, quadmask, seed=1, prompt="")
    with pytest.raises(InvalidInput, match="void-pass2 needs pass 1's fill"):
        second(frames, quadmask, seed=1, prompt="an empty street")
    with pytest.raises(InvalidInput, match="void takes no first_pass"):
        VoidPass(pass1, SMALL)(frames, quadmask, seed=1, prompt="an empty street", first_pass=fill)


class _Recording:
    """A real pass model, keeping the calls it was given: what would cross to a GPU worker."""

    def __init__(self, model: VoidModel) -> None:
        self.model = model
        self.calls: list[PassInput] = []

    def params(self) -> dict[str, object]:
        return self.model.params()

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return self.model.latent_shape(frames, height, width)

    def __call__(self, call: PassInput) -> np.ndarray:
        self.calls.append(call)
        return self.model(call)


def test_pass2_noise_is_warped_before_the_model_call(tiny: TinyVoid) -> None:
    """Issue 18: pass 2's optical flow and noise warping run where the backend runs (a shot task, before a GPU is
    leased); the call carries only the noise, exactly what the warp gives on the CPU for the padded fill."""
    pass1, pass2 = _models(tiny, steps=2)
    frames, quadmask = _shot(0)
    fill = VoidPass(pass1, SMALL)(frames, quadmask, seed=4, prompt="an empty street")
    recording = _Recording(pass2)
    refined = VoidPass(recording, SMALL, WarpSettings())(
        frames, quadmask, seed=4, prompt="an empty street", first_pass=fill
    )
    (call,) = recording.calls
    length = len(prepare_clip(frames, quadmask, SMALL).video)
    first = pingpong(fit_frames(to_unit(fill), SMALL.height, SMALL.width, mode=SMALL.fit)[0], length)
    assert pass2.latent_shape(length, SMALL.height, SMALL.width) == (6, 4, 8, 12)  # 21 frames, 64x96, 4 channels
    expected = warped_noise(from_unit(first, np.uint8), 6, 8, 12, 4, seed=4, settings=WarpSettings())
    assert call.noise is not None and call.noise.shape == (1, 6, 4, 8, 12)
    np.testing.assert_array_equal(call.noise, expected.numpy())
    np.testing.assert_array_equal(refined, finish_clip(pass2(call), call.clip, frames.dtype))  # what the call gave
    with pytest.raises(InvalidInput, match=r"pass2: initial noise \(6, 4, 8, 10\) does not match .* \(6, 4, 8, 12\)"):
        pass2(PassInput(call.clip, 4, "an empty street", np.zeros((1, 6, 4, 8, 10), np.float32)))


def test_a_pass_on_the_cpu_records_no_kernel_time_and_no_compile_cache(tiny: TinyVoid) -> None:
    """Issue 18: kernel busy and the compile cache are GPU facts; on the CPU each run says why it has none."""
    pass1, _ = _models(tiny, steps=1)
    call = PassInput(prepare_clip(*_shot(0), SMALL), seed=0, prompt="a road")
    pass1(call)
    assert pass1.last_run is not None
    facts = pass1.last_run.facts()
    assert (facts["kernel_s"], facts["kernel_busy_fraction"], facts["kernel_timing"]) == (
        None,
        None,
        KERNEL_TIMING_NONE,
    )
    assert (facts["compile_cache"], facts["compile_cache_key"]) == ("off", None)
    assert facts["compile_cache_note"] == "nothing is compiled on cpu (the fast path is for CUDA GPUs)"
    assert facts["attention"] == "default" and pass1.params()["compile"] is False  # what ran, not what was asked
    eager = VoidModel(
        ModelSpec(str(tiny.base), str(tiny.pass1), pass1.settings, device="cpu", dtype="float32", compile=False)
    )
    eager(call)
    assert eager.last_run is not None
    assert eager.last_run.facts()["compile_cache_note"] == "compilation is off (--no-compile)"


def test_a_shot_does_not_depend_on_batch_order(tiny: TinyVoid) -> None:
    """The reference shares one generator across videos (defect 2); here a seed fixes a shot's result."""
    pass1, _ = _models(tiny, steps=2)
    backend = VoidPass(pass1, SMALL)
    a, b = _shot(0), _shot(1)
    first_a = backend(*a, seed=5, prompt="a road")
    backend(*b, seed=5, prompt="a road")
    torch.manual_seed(1234)  # disturbing the global RNG changes nothing either
    np.testing.assert_array_equal(backend(*a, seed=5, prompt="a road"), first_a)
    assert not np.array_equal(backend(*a, seed=6, prompt="a road"), first_a)


def test_a_pass_short_of_memory_falls_back_to_cheaper_recipes_and_records_them(tiny: TinyVoid) -> None:
    """Issue 8: out of memory is retried with a cheaper recipe; the recipe used and the reasons are recorded."""
    pass1, _ = _models(tiny, steps=2)
    frames, quadmask = _shot(0)
    clip = prepare_clip(frames, quadmask, SMALL)
    need = {r.name: estimate_gb(pass1.footprint, len(clip.video), SMALL.height, SMALL.width, r) for r in RECIPES}
    assert need["configured"] > need["vae_tiling"] > need["offload"] > 0
    call = PassInput(clip, seed=3, prompt="a road")
    first = pass1(call)
    assert pass1.last_run is not None
    assert pass1.last_run.recipe.name == "configured" and pass1.last_run.passed_over == ()

    tiled = pass1(call, budget_gb=(need["configured"] + need["vae_tiling"]) / 2)
    run = pass1.last_run
    assert run.recipe.name == "vae_tiling" and run.passed_over[0].startswith("configured: needs ~")
    np.testing.assert_allclose(tiled, first, atol=2e-3)  # frames smaller than a tile: tiling changes nothing
    assert pass1.models.vae.use_tiling is False  # back to the loaded recipe after the call

    offloaded = pass1(call, budget_gb=(need["vae_tiling"] + need["offload"]) / 2)
    assert pass1.last_run.recipe.as_dict() == {"name": "offload", "vae_tiling": True, "offload": True}
    np.testing.assert_allclose(offloaded, first, atol=2e-3)
    assert pass1.sampler.memory_mode == "full"

    with pytest.raises(GpuOutOfMemory, match=r"pass1 on cpu: no memory recipe fits \(configured: needs .*offload"):
        pass1(call, budget_gb=need["offload"] / 2)


def _small_void(tiny: TinyVoid) -> dict[str, object]:
    """VoidOptions fields for the tiny models on small clips (two steps, 4-latent windows)."""
    geometry = {"height": 64, "width": 96, "min_frames": 13, "max_frames": 29, "window": 4, "overlap": 2}
    return {"base": tiny.base, "pass1_weights": tiny.pass1, "pass1_steps": 2, "device": "cpu", **geometry}


def _void_request(small_demo, db_url: str, tmp_path: Path, options: object):  # type: ignore[no-untyped-def]
    from voidflow.flows.params import BatchRequest

    return BatchRequest(
        edit=small_demo.edit,
        sidecar=small_demo.sidecar,
        out_dir=tmp_path / "out",
        db_url=db_url,
        backend="void",
        output="png",
        void=options,
    )


def test_void_backend_through_the_flow(small_demo, tiny: TinyVoid, db_url: str, tmp_path: Path, ray_cluster) -> None:  # type: ignore[no-untyped-def]
    from voidflow.flows.batch import run_batch
    from voidflow.flows.params import VoidOptions
    from voidflow.tasks.ledger import Ledger
    from voidflow.void_ops import media
    from voidflow.void_ops.intake import named_clips, read_edit
    from voidflow.void_ops.shots import MediaSource

    options = VoidOptions(pass2_weights=tiny.pass2, pass2=True, pass2_steps=2, **_small_void(tiny))
    # Random weights paint noise that flickers: QC fails it, conform takes it anyway.
    result = run_batch(
        _void_request(small_demo, db_url, tmp_path, options).model_copy(update={"conform_qc_failed": True})
    )
    assert (result.state, result.done) == ("done", ("sh010", "sh020", "sh030")), result
    (batch,) = Ledger(db_url).batches(result.batch_id)
    shot = batch.shots[0]
    stages = [(run.stage, run.state) for run in shot.stage_runs]
    assert stages == [("mask", "done"), ("pass1", "done"), ("pass2", "done"), ("deliver", "done")]
    pass1, pass2 = shot.stage_runs[1].params, shot.stage_runs[2].params
    assert (pass1["steps"], pass1["guidance"], pass1["mask_mode"], pass1["seed"]) == (2, 1.0, "trimask", 0)
    assert (pass2["steps"], pass2["guidance"], pass2["mask_mode"]) == (2, 6.0, "binary")
    assert pass1["weights"]["void_pass1.safetensors"] == media.sha256_file(tiny.pass1)
    assert pass2["warp_flow"] == "dis" and pass2["warp_supersample"] == 8
    # Where and how each call ran: the shared service's one (CPU) GPU worker, the configured memory recipe, timed.
    runs = pass1["gpu_runs"]
    assert len(runs) == 3 and len({run["gpu"] for run in runs}) == 1
    assert re.fullmatch(r"voidflow-void-[0-9a-f]{12}-gpu0", runs[0]["gpu"])
    assert all(run["recipe"]["name"] == "configured" and run["seconds"] > 0 for run in runs)
    # A CPU worker times no kernels and compiles nothing, and says so; pass 2's noise was made before each call.
    assert {(run["kernel_s"], run["kernel_busy_fraction"], run["compile_cache"]) for run in runs} == {
        (None, None, "off")
    }
    assert runs[0]["compile_cache_note"] == "nothing is compiled on cpu (the fast path is for CUDA GPUs)"
    assert pass1["compile"] is False and "noise_cpu_s" not in runs[0]
    assert all(run["noise_cpu_s"] >= 0 for run in pass2["gpu_runs"]) and len(pass2["gpu_runs"]) == 3
    # 44 frames (handles included) are longer than the 29-frame run: cross-faded shot windows stepping by 29 - 16,
    # the last one only as long as what is left (18 frames, padded to 21); the full ones are 8 latent frames in
    # multidiffusion windows of 4 overlapping by 2, letterboxed.
    assert pass1["input_frames"] == 44 and pass1["shot_windows"] == [[0, 29], [13, 42], [26, 44]]
    assert pass1["padded_frames_by_window"] == [29, 29, 21]
    assert (pass1["padded_frames"], pass1["latent_frames"]) == (29, 8)
    assert pass1["windows"] == [[0, 4], [2, 6], [4, 8]]
    assert pass1["fit"]["mode"] == "letterbox" and pass1["fit"]["width"] == 96
    clip = dict(named_clips(read_edit(result.conformed).timeline))["sh010"]
    ref = clip.media_reference
    pattern = ref.target_url_for_image_number(0).replace("file://", "").replace(".1001.", ".%04d.")
    frames = round(ref.available_range.duration.value)
    delivered = media.read_frames(MediaSource(pattern, "sequence", 24.0, first_number=1001), 0, frames)
    assert frames == 44 and delivered.shape == (44, 180, 320, 3)  # one piece: the plate range's exact count and size
    qc = batch.shots[0].stage_runs[-1].params["qc"]
    assert qc["changed_outside"] == 0 and qc["flicker"] > qc["max_flicker"] and not qc["passed"]
    assert Ledger(db_url).version_status("sh010", "v001") == "qc_failed"


def test_a_hung_gpu_call_times_out_and_quarantines_its_gpu(
    small_demo, tiny: TinyVoid, db_url: str, tmp_path: Path, ray_cluster
) -> None:  # type: ignore[no-untyped-def]
    """Issue 8: a model call past its timeout fails its shot with the reason, its GPU is quarantined, and every
    other shot is refused with that reason instead of waiting forever; every shot ends in a final state."""
    from voidflow.flows.batch import run_batch
    from voidflow.flows.params import VoidOptions
    from voidflow.tasks.ledger import Ledger

    result = run_batch(
        _void_request(small_demo, db_url, tmp_path, VoidOptions(gpu_timeout_s=0.05, **_small_void(tiny)))
    )
    assert result.done == () and set(result.failed) == {"sh010", "sh020", "sh030"}
    (batch,) = Ledger(db_url).batches(result.batch_id)
    reasons = {shot.name: shot.reason for shot in batch.shots if shot.state == "failed"}
    assert set(reasons) == set(result.failed)
    quarantined = r"every GPU of the service is quarantined \(voidflow-void-[0-9a-f]{12}-gpu0: a call hung past its"
    assert all(re.search(quarantined, reason) for reason in reasons.values()), reasons
    hung = [run for shot in batch.shots for run in shot.stage_runs if run.stage == "pass1" and run.state == "failed"]
    # The hung call; a call already queued on its worker, if one was, lost with it (the worker is killed) or, on a
    # loaded machine, past its own timeout first; then the hung shot's retry and the two other shots (or their
    # retries), each refused at once.
    classes = sorted(run.error_class or "" for run in hung)
    assert classes.count("StageTimeout") >= 1 and classes.count("NoDeviceFits") == 3, classes
    assert set(classes) <= {"StageTimeout", "NoDeviceFits", "WorkerLost"}, classes
    assert classes.count("StageTimeout") + classes.count("WorkerLost") <= 2, classes  # at most two on one worker


def test_no_gpu_refuses_the_void_batch_instead_of_running_it_on_cpus(  # type: ignore[no-untyped-def]
    small_demo, tiny: TinyVoid, db_url: str, tmp_path: Path, ray_cluster
) -> None:
    """Issue 17: on a cluster whose GPU group is at zero (this test cluster has none), the batch waits gpu_wait_s
    for a GPU, then refuses in one line, naming --device cpu; the batch is left interrupted for ``resume``."""
    from voidflow.flows.batch import run_batch
    from voidflow.flows.params import VoidOptions
    from voidflow.tasks.ledger import Ledger
    from voidflow.void_ops.exceptions import ConfigurationError

    options = VoidOptions(**{**_small_void(tiny), "device": "auto", "gpu_wait_s": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"found no GPU in the Ray cluster after 0.5 s .*--device cpu$"):
        run_batch(_void_request(small_demo, db_url, tmp_path, options))
    (batch,) = Ledger(db_url).batches(limit=1)
    assert batch.state == "interrupted"
    assert not (tmp_path / "out" / "shots" / "sh010" / "v001").exists()


def test_warm_runs_one_blank_step_per_length_and_keeps_the_recipe(tiny: TinyVoid) -> None:
    """What ``voidflow models warm`` calls on a GPU node: a blank one-step call (pass 2 with blank noise)."""
    pass1, pass2 = _models(tiny, steps=3)
    calls: list[int] = []
    pass2.models.transformer.register_forward_hook(lambda _m, args, _o: calls.append(1))
    run = pass2.warm(21, SMALL.height, SMALL.width)
    assert run.recipe.name == "configured" and run.cache.state == "off"
    assert len(calls) == 2 and pass2.settings.steps == 3  # one step over both 4-latent windows; the recipe kept
    assert pass1.warm(13, SMALL.height, SMALL.width).recipe.name == "configured"
    with pytest.raises(InvalidInput, match="warm: 15 is not a padded length"):
        pass1.warm(15, SMALL.height, SMALL.width)
