"""VOID loading on a tiny random VOID written in the real on-disk layout (``void_ops.void.tiny``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers.models import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from safetensors.torch import load_file, save_file

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput, ModelLoadError
from voidflow.void_ops.void.loading import (
    VoidModels,
    check_scheduler_config,
    load_void_models,
    transformer_config_for_void,
    widen_patch_embedding,
)
from voidflow.void_ops.void.tiny import TINY_LATENT_CHANNELS, TINY_TRANSFORMER, TinyVoid, build_tiny_void

L = TINY_LATENT_CHANNELS  # 4
PV = 8  # 2 x 2 x 2 patch
PATCH = "patch_embed.proj.weight"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyVoid:
    return build_tiny_void(tmp_path_factory.mktemp("tiny_void"))


@pytest.fixture(scope="module")
def pass1(tiny: TinyVoid) -> VoidModels:
    return load_void_models(tiny.base, tiny.pass1, dtype=torch.float32)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_base(tiny: TinyVoid, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny.base, tmp_path / "base"))


def _checkpoint(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "void_pass1.safetensors"
    save_file(state, str(path))
    return path


def _base_transformer(tiny: TinyVoid) -> CogVideoXTransformer3DModel:
    model = CogVideoXTransformer3DModel(**TINY_TRANSFORMER)
    state = load_file(tiny.base / "transformer" / "diffusion_pytorch_model.safetensors")
    model.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=True)
    return model.eval()


def test_pass1_loads_strictly_with_hashes(tiny: TinyVoid, pass1: VoidModels) -> None:
    assert pass1.transformer.config.in_channels == 3 * L == 12
    assert pass1.transformer.patch_embed.proj.weight.shape == (32, 12 * PV)
    assert pass1.checkpoint == str(tiny.pass1)
    assert pass1.vae_scaling_factor == 0.7
    read = [
        tiny.base / "vae" / "diffusion_pytorch_model.safetensors",
        tiny.base / "text_encoder" / "model.safetensors",
        tiny.pass1,
    ]
    assert [w.path for w in pass1.weights] == [str(path) for path in read]
    assert [w.sha256 for w in pass1.weights] == [_sha256(path) for path in read]
    assert [w.bytes for w in pass1.weights] == [path.stat().st_size for path in read]

    file = load_file(tiny.pass1)
    model = pass1.transformer.state_dict()
    assert model.keys() == file.keys()
    assert all(torch.equal(model[name], file[name].float()) for name in file)
    assert pass1.transformer_config["add_noise_in_inpaint_model"] is True  # raw config keeps VideoX-Fun keys
    assert pass1.transformer_config["in_channels"] == 2 * L + 1
    check_scheduler_config(pass1.scheduler_config)
    assert pass1.text_encoder is not None
    for module in (pass1.transformer, pass1.vae, pass1.text_encoder):
        assert not module.training
        assert all(p.dtype == torch.float32 and not p.requires_grad for p in module.parameters())
        assert all(p.device.type == "cpu" for p in module.parameters())


def test_pass2_loads_its_own_weights_in_bf16_without_t5(tiny: TinyVoid, pass1: VoidModels) -> None:
    models = load_void_models(tiny.base, tiny.pass2, text_encoder=False)  # default dtype: bf16
    assert models.text_encoder is None
    assert [Path(w.path).name for w in models.weights] == [
        "diffusion_pytorch_model.safetensors",
        "void_pass2.safetensors",
    ]
    assert models.weights[-1].sha256 == _sha256(tiny.pass2)
    assert models.transformer.dtype == torch.bfloat16
    assert models.vae.dtype == torch.bfloat16
    assert torch.equal(models.transformer.patch_embed.proj.weight, load_file(tiny.pass2)[PATCH])
    assert not torch.equal(
        models.transformer.patch_embed.proj.weight.float(), pass1.transformer.patch_embed.proj.weight
    )


def test_tokenizer_pads_and_truncates_to_16(tiny: TinyVoid, pass1: VoidModels) -> None:
    import sentencepiece

    tokenizer = pass1.tokenizer
    assert tokenizer.model_max_length == 16
    short = "a red car at night"
    encoded = tokenizer(short, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(tiny.base / "tokenizer" / "spiece.model"))
    ids = [*pieces.encode(short), tokenizer.eos_token_id]  # the converted tokenizer splits exactly as sentencepiece
    assert encoded.input_ids.shape == (1, 16)
    assert len(ids) < 16
    assert encoded.input_ids[0].tolist() == ids + [tokenizer.pad_token_id] * (16 - len(ids))
    assert encoded.attention_mask[0].tolist() == [1] * len(ids) + [0] * (16 - len(ids))

    long = " ".join([short] * 5)
    truncated = tokenizer(long, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    assert truncated.input_ids.shape == (1, 16)
    assert truncated.input_ids[0, -1].item() == tokenizer.eos_token_id == 1
    assert truncated.attention_mask.all()

    assert pass1.text_encoder is not None
    with torch.inference_mode():
        hidden = pass1.text_encoder(encoded.input_ids, attention_mask=encoded.attention_mask).last_hidden_state
    assert hidden.shape == (1, 16, TINY_TRANSFORMER["text_embed_dim"])


def test_transformer_forward(pass1: VoidModels) -> None:
    config = pass1.transformer.config
    frames, height, width = 2, 8, 12
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=None,
        grid_size=(height // 2, width // 2),
        temporal_size=frames // 2,
        grid_type="slice",
        max_size=(config.sample_height // 2, config.sample_width // 2),
    )
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, frames, 3 * L, height, width, generator=generator)
    text = torch.randn(1, 16, 32, generator=generator)
    with torch.inference_mode():
        output = pass1.transformer(
            hidden_states=latents,
            encoder_hidden_states=text,
            timestep=torch.tensor([500]),
            image_rotary_emb=(cos, sin),
            return_dict=False,
        )[0]
    assert output.shape == (1, frames, L, height, width)
    assert torch.isfinite(output).all()


def test_widen_is_column_exact() -> None:
    base = torch.arange((2 * L + 1) * PV, dtype=torch.float32).expand(3, -1)  # each column holds its own index
    wide = widen_patch_embedding(base, latent_channels=L, patch_volume=PV)
    noise = list(range(L * PV))
    mask = list(range(L * PV, L * PV + PV)) * L
    video = list(range(L * PV + PV, (2 * L + 1) * PV))
    assert wide.shape == (3, 3 * L * PV)
    assert wide[0].long().tolist() == noise + mask + video
    assert torch.equal(wide[1], wide[0])


@pytest.mark.parametrize("shape", [(32, 12 * PV), (32, 9 * PV - 1), (9 * PV,)])
def test_widen_rejects_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ModelLoadError, match=r"patch_embed\.proj\.weight: .*got \(" + ", ".join(map(str, shape))):
        widen_patch_embedding(torch.zeros(shape), latent_channels=L, patch_volume=PV)
    with pytest.raises(InvalidInput, match="latent_channels must be a positive integer, got 0"):
        widen_patch_embedding(torch.zeros(shape), latent_channels=0, patch_volume=PV)


def test_base_only_widens_9_to_12_channels(tiny: TinyVoid) -> None:
    models = load_void_models(tiny.base, None, dtype=torch.float32, text_encoder=False)
    assert models.checkpoint is None
    assert models.transformer.config.in_channels == 12
    base_file = tiny.base / "transformer" / "diffusion_pytorch_model.safetensors"
    assert [w.path for w in models.weights][-1] == str(base_file)
    assert models.weights[-1].sha256 == _sha256(base_file)

    base_state = {name: tensor.float() for name, tensor in load_file(base_file).items()}
    wide = models.transformer.state_dict()
    assert wide.keys() == base_state.keys()
    assert all(torch.equal(wide[name], base_state[name]) for name in base_state if name != PATCH)
    old, new = base_state[PATCH], wide[PATCH]
    assert torch.equal(new[:, : L * PV], old[:, : L * PV])
    for channel in range(L):
        start = (L + channel) * PV
        assert torch.equal(new[:, start : start + PV], old[:, L * PV : L * PV + PV])
    assert torch.equal(new[:, 2 * L * PV :], old[:, L * PV + PV :])

    # Through the real patch embedding (channel-major flattening): [noise, m1..m4, video] embeds as the base embeds
    # [noise, m1+..+m4, video]. A permuted widening (mask copies interleaved per column) must not pass.
    base = _base_transformer(tiny)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 3 * L, 8, 12, generator=generator)
    text = torch.randn(1, 16, 32, generator=generator)
    x_base = torch.cat([x[:, :, :L], x[:, :, L : 2 * L].sum(2, keepdim=True), x[:, :, 2 * L :]], dim=2)
    with torch.inference_mode():
        expected = base.patch_embed(text, x_base)
        assert torch.allclose(models.transformer.patch_embed(text, x), expected, atol=1e-5)
        permuted = torch.cat(
            [old[:, : L * PV], old[:, L * PV : L * PV + PV].repeat_interleave(L, 1), old[:, -L * PV :]], 1
        )
        models.transformer.patch_embed.proj.weight.copy_(permuted)
        assert not torch.allclose(models.transformer.patch_embed(text, x), expected, atol=1e-3)


def test_sharded_base_transformer(tiny: TinyVoid, tmp_path: Path) -> None:
    base = _copy_base(tiny, tmp_path)
    folder = base / "transformer"
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    names = sorted(state)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[:30]}
    shards["diffusion_pytorch_model-00002-of-00002.safetensors"] = names[30:]
    for shard, keys in shards.items():
        save_file({key: state[key] for key in keys}, str(folder / shard), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {key: shard for shard, keys in shards.items() for key in keys}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))

    models = load_void_models(base, None, dtype=torch.float32, text_encoder=False)
    assert [Path(w.path).name for w in models.weights[1:]] == list(shards)
    assert [w.sha256 for w in models.weights[1:]] == [_sha256(folder / shard) for shard in shards]
    single = load_void_models(tiny.base, None, dtype=torch.float32, text_encoder=False).transformer.state_dict()
    sharded = models.transformer.state_dict()
    assert all(torch.equal(sharded[name], single[name]) for name in single)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("rename", r"missing 1 key \(proj_out\.weight\); unexpected 1 key \(proj_out\.weights\)"),
        ("drop", r": missing 1 key \(norm_final\.weight\)$"),
        ("narrow", r"1 shape mismatch \(patch_embed\.proj\.weight: file \(32, 72\), model \(32, 96\)\)"),
    ],
)
def test_checkpoint_that_does_not_fit_is_refused_by_name(
    tiny: TinyVoid, tmp_path: Path, change: str, message: str
) -> None:
    state = load_file(tiny.pass1)
    if change == "rename":
        state["proj_out.weights"] = state.pop("proj_out.weight")
    elif change == "drop":
        del state["norm_final.weight"]
    else:
        state[PATCH] = load_file(tiny.base / "transformer" / "diffusion_pytorch_model.safetensors")[PATCH]
    path = _checkpoint(tmp_path, state)
    with pytest.raises(ModelLoadError, match=message) as caught:
        load_void_models(tiny.base, path, dtype=torch.float32, text_encoder=False)
    assert str(caught.value).startswith(f"{path} does not fit CogVideoXTransformer3DModel(in_channels=12): ")


def test_long_key_lists_are_cut_to_ten(tiny: TinyVoid, tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, {"proj_out.bias": load_file(tiny.pass1)["proj_out.bias"]})
    with pytest.raises(ModelLoadError, match=r"missing 63 keys \((?:[^,]+, ){10}and 53 more\)") as caught:
        load_void_models(tiny.base, path, text_encoder=False)
    assert "norm_final.bias" in str(caught.value)


def test_unreadable_checkpoint(tiny: TinyVoid, tmp_path: Path) -> None:
    path = tmp_path / "void_pass1.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=f"{path}: not a readable safetensors file"):
        load_void_models(tiny.base, path, text_encoder=False)
    with pytest.raises(ConfigurationError, match=f"{tmp_path / 'void_pass2.safetensors'}: not found"):
        load_void_models(tiny.base, tmp_path / "void_pass2.safetensors", text_encoder=False)


@pytest.mark.parametrize("missing", ["vae/config.json", "scheduler/scheduler_config.json", "tokenizer/spiece.model"])
def test_missing_base_file_names_the_path(tiny: TinyVoid, tmp_path: Path, missing: str) -> None:
    base = _copy_base(tiny, tmp_path)
    (base / missing).unlink()
    expected = f"{base / missing}: not found; a CogVideoX-Fun base folder has transformer/, vae/, text_encoder/"
    with pytest.raises(ConfigurationError, match=expected):
        load_void_models(base, tiny.pass1)


def test_missing_text_encoder_matters_only_when_asked_for(tiny: TinyVoid, tmp_path: Path) -> None:
    base = _copy_base(tiny, tmp_path)
    (base / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(ConfigurationError, match=f"{base / 'text_encoder' / 'model.safetensors'}: not found"):
        load_void_models(base, tiny.pass1)
    assert load_void_models(base, tiny.pass1, text_encoder=False).text_encoder is None


def test_scheduler_config_is_checked(tiny: TinyVoid, pass1: VoidModels, tmp_path: Path) -> None:
    good = pass1.scheduler_config
    with pytest.raises(ModelLoadError, match="prediction_type must be 'v_prediction', got 'epsilon'"):
        check_scheduler_config({**good, "prediction_type": "epsilon"})
    with pytest.raises(ModelLoadError, match="snr_shift_scale must be 1.0, got 3.0"):
        check_scheduler_config({**good, "snr_shift_scale": 3.0})
    with pytest.raises(ModelLoadError, match="rescale_betas_zero_snr must be True, missing"):
        check_scheduler_config({key: value for key, value in good.items() if key != "rescale_betas_zero_snr"})
    with pytest.raises(ModelLoadError, match="num_train_timesteps must be 1000, got True"):
        check_scheduler_config({**good, "num_train_timesteps": True})
    check_scheduler_config({key: value for key, value in good.items() if key != "snr_shift_scale"})

    base = _copy_base(tiny, tmp_path)
    path = base / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**good, "prediction_type": "epsilon"}))
    with pytest.raises(ModelLoadError, match=f"{path}: .*prediction_type must be 'v_prediction', got 'epsilon'"):
        load_void_models(base, tiny.pass1, text_encoder=False)


def test_transformer_config_for_void(pass1: VoidModels) -> None:
    raw = pass1.transformer_config
    assert transformer_config_for_void(raw, latent_channels=L)["in_channels"] == 12
    config = transformer_config_for_void({**raw, "out_channels": 16}, latent_channels=16)  # full-size channels
    assert config["in_channels"] == 48
    assert config["patch_size_t"] == 2
    assert "add_noise_in_inpaint_model" not in config
    assert "_class_name" not in config
    assert raw["in_channels"] == 9  # the input is not modified
    with pytest.raises(ModelLoadError, match="patch_size_t must be set .*got None"):
        transformer_config_for_void({**raw, "patch_size_t": None}, latent_channels=L)
    with pytest.raises(ModelLoadError, match="out_channels must equal the VAE's latent_channels 16, got 4"):
        transformer_config_for_void(raw, latent_channels=16)


def test_t5_with_untied_input_embeddings_is_refused(tiny: TinyVoid, tmp_path: Path) -> None:
    base = _copy_base(tiny, tmp_path)
    weights = base / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    state["encoder.embed_tokens.weight"] = state["shared.weight"] + 1  # a second, different input table
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(
        ModelLoadError, match=r"text_encoder: encoder\.embed_tokens\.weight differs from shared\.weight"
    ):
        load_void_models(base, tiny.pass1, dtype=torch.float32)
