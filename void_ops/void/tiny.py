"""A tiny VOID on disk: random weights in exactly the folder and file layout of the real model, for tests on a CPU.

``build_tiny_void(root)`` writes::

    root/
      base/                                   the layout of alibaba-pai/CogVideoX-Fun-V1.5-5b-InP
        model_index.json
        transformer/config.json               in_channels 2*4+1 = 9, patch 2x2x2, RoPE, plus add_noise_in_inpaint_model
        transformer/diffusion_pytorch_model.safetensors   (bf16)
        vae/config.json                       4 latent channels, 8x spatial and 4x temporal compression, scaling 0.7
        vae/diffusion_pytorch_model.safetensors
        text_encoder/config.json              T5 encoder, d_model 32
        text_encoder/model.safetensors
        tokenizer/spiece.model                sentencepiece unigram, 200 pieces, trained here on made-up sentences
        tokenizer/tokenizer_config.json, special_tokens_map.json, added_tokens.json   (model_max_length 16)
        scheduler/scheduler_config.json       CogVideoXDDIMScheduler with the VOID values
      void_pass1.safetensors                  full transformer state dicts, in_channels 3*4 = 12, bf16
      void_pass2.safetensors

Everything is computed locally (no downloads) and is byte-for-byte the same for the same seed.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

__all__ = [
    "TINY",
    "TINY_LATENT_CHANNELS",
    "TINY_SCHEDULER",
    "TINY_TRANSFORMER",
    "TinyVoid",
    "VoidLayout",
    "build_tiny_void",
    "build_void_folder",
]

TINY_LATENT_CHANNELS = 4
"""Latent channels of the tiny VAE (16 at full size)."""

TINY_TRANSFORMER: dict[str, Any] = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,  # RoPE splits it 4 (t) + 6 (h) + 6 (w); each part must be even
    "in_channels": 2 * TINY_LATENT_CHANNELS + 1,
    "out_channels": TINY_LATENT_CHANNELS,
    "time_embed_dim": 16,
    "text_embed_dim": 32,
    "num_layers": 2,
    "sample_width": 12,  # latent size of a 96x64 clip
    "sample_height": 8,
    "sample_frames": 5,  # (2 latent frames - 1) * 4 + 1
    "patch_size": 2,
    "patch_size_t": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 16,
    "use_rotary_positional_embeddings": True,
    "use_learned_positional_embeddings": False,
    "patch_bias": False,
}
"""Constructor arguments of the tiny base transformer (``CogVideoXTransformer3DModel``), as in the real base."""

TINY_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
}
_VOCAB = 200  # sentencepiece pieces; the tokenizer adds 100 <extra_id_N> sentinels after them, as T5's does
_EXTRA_IDS = 100
_WORDS = [
    "a",
    "red",
    "car",
    "drives",
    "along",
    "the",
    "wet",
    "street",
    "at",
    "night",
    "while",
    "rain",
    "falls",
    "on",
    "glass",
    "people",
    "walk",
    "past",
    "shop",
    "windows",
    "dog",
    "runs",
    "across",
    "park",
    "green",
    "grass",
    "under",
    "blue",
    "sky",
    "bright",
    "sun",
    "old",
    "man",
    "reads",
    "paper",
    "bench",
    "child",
    "plays",
    "ball",
    "near",
    "fountain",
    "water",
    "splashes",
    "stone",
    "birds",
    "fly",
    "over",
    "river",
    "bridge",
    "boat",
    "moves",
    "slowly",
    "city",
    "lights",
    "reflect",
    "calm",
    "surface",
]
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "gu", "fe", "bo", "zi", "ha", "ju")


@dataclass(frozen=True, slots=True)
class TinyVoid:
    """Paths of a tiny VOID written by ``build_tiny_void``.

    Attributes:
        base: the CogVideoX-Fun base folder (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``).
        pass1: ``void_pass1.safetensors`` next to ``base``.
        pass2: ``void_pass2.safetensors`` next to ``base``.
    """

    base: Path
    pass1: Path
    pass2: Path


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for a block without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_transformers(
    root: Path,
    seed: int,
    config: dict[str, Any],
    latent_channels: int,
    *,
    device: str,
    base_weights: bool,
    passes: tuple[int, ...],
) -> tuple[Path, Path]:
    from diffusers.models import CogVideoXTransformer3DModel

    folder = root / "base" / "transformer"
    with _seeded(seed), torch.device(device):
        base = CogVideoXTransformer3DModel(**config)
    base.save_config(folder)
    written = json.loads((folder / "config.json").read_text())
    written["add_noise_in_inpaint_model"] = True  # a VideoX-Fun key the real base config carries; diffusers has none
    _write_json(folder / "config.json", written)
    if base_weights:
        _save_bf16(base, folder / "diffusion_pytorch_model.safetensors")
    del base

    void_config = {**config, "in_channels": 3 * latent_channels}
    paths = [root / f"void_pass{number}.safetensors" for number in (1, 2)]
    for number in passes:
        with _seeded(seed + number), torch.device(device):
            model = CogVideoXTransformer3DModel(**void_config)
        _save_bf16(model, paths[number - 1])
        del model
    return paths[0], paths[1]


def _save_bf16(model: torch.nn.Module, path: Path) -> Path:
    """Write a module's whole state dict as bf16 safetensors, the way the VOID and base transformer files are."""
    state = {name: tensor.to(torch.bfloat16).contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def _write_vae(folder: Path, seed: int, config: dict[str, Any], *, device: str) -> None:
    from diffusers.models import AutoencoderKLCogVideoX

    with _seeded(seed), torch.device(device):
        vae = AutoencoderKLCogVideoX(**config)
    vae.save_pretrained(folder, safe_serialization=True)


def _write_text_encoder(
    folder: Path, seed: int, config: dict[str, Any], *, device: str, dtype: torch.dtype = torch.float32
) -> None:
    from transformers import T5Config, T5EncoderModel
    from transformers.utils import logging

    t5 = T5Config(**config, feed_forward_proj="gated-gelu", architectures=["T5EncoderModel"])
    t5.tie_word_embeddings = False  # as in T5-v1.1-XXL's config
    with _seeded(seed), torch.device(device):
        model = T5EncoderModel(t5)
    model.set_input_embeddings(model.shared)  # T5's encoder reads the shared table; some transformers 5.x builds two
    model.to(dtype)  # type: ignore[arg-type]  # transformers wraps .to in a decorator mypy misreads
    bar = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # transformers draws a progress bar per save
    try:
        model.save_pretrained(folder)
    finally:
        if bar:
            logging.enable_progress_bar()


def _special(content: str, *, special: bool | None = None) -> dict[str, Any]:
    token: dict[str, Any] = {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }
    if special is not None:
        token["special"] = special
    return token


def _write_tokenizer(folder: Path, seed: int, max_length: int) -> None:
    """Train a sentencepiece unigram model and write the files a transformers 4.x ``T5Tokenizer`` saves."""
    import sentencepiece

    rng = random.Random(seed)
    made_up = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(300)]
    words = [*_WORDS, *made_up]
    sentences = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=_VOCAB,
        model_type="unigram",
        pad_id=0,  # T5's ids: <pad> 0, </s> 1, <unk> 2, no <s>
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,  # one thread keeps the trained model the same from run to run
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())

    sentinels = [f"<extra_id_{i}>" for i in range(_EXTRA_IDS)]
    sentinel_ids = {token: _VOCAB + _EXTRA_IDS - 1 - i for i, token in enumerate(sentinels)}  # <extra_id_0> is last
    decoder = {str(i): _special(token, special=True) for i, token in enumerate(("<pad>", "</s>", "<unk>"))}
    decoder |= {str(sentinel_ids[token]): _special(token, special=True) for token in reversed(sentinels)}
    _write_json(
        folder / "tokenizer_config.json",
        {
            "add_prefix_space": True,
            "added_tokens_decoder": decoder,
            "additional_special_tokens": sentinels,
            "clean_up_tokenization_spaces": True,
            "eos_token": "</s>",
            "extra_ids": _EXTRA_IDS,
            "legacy": True,
            "model_max_length": max_length,
            "pad_token": "<pad>",
            "sp_model_kwargs": {},
            "tokenizer_class": "T5Tokenizer",
            "unk_token": "<unk>",
        },
    )
    _write_json(
        folder / "special_tokens_map.json",
        {
            "additional_special_tokens": sentinels,
            "eos_token": _special("</s>"),
            "pad_token": _special("<pad>"),
            "unk_token": _special("<unk>"),
        },
    )
    _write_json(folder / "added_tokens.json", sentinel_ids)


@dataclass(frozen=True, slots=True)
class VoidLayout:
    """The sizes of a VOID to write: constructor arguments of each component.

    Attributes:
        transformer: ``CogVideoXTransformer3DModel`` arguments of the *base* (its ``in_channels`` is 2C+1).
        vae: ``AutoencoderKLCogVideoX`` arguments.
        text_encoder: ``T5Config`` arguments (``d_model`` must equal the transformer's ``text_embed_dim``).
    """

    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]


TINY = VoidLayout(
    transformer=TINY_TRANSFORMER,
    vae={
        "down_block_types": ("CogVideoXDownBlock3D",) * 4,
        "up_block_types": ("CogVideoXUpBlock3D",) * 4,
        "block_out_channels": (8, 8, 8, 8),
        "latent_channels": TINY_LATENT_CHANNELS,
        "layers_per_block": 1,
        "norm_num_groups": 2,
        "temporal_compression_ratio": 4,
        "scaling_factor": 0.7,
    },
    text_encoder={
        "vocab_size": 320,  # >= 200 pieces + 100 sentinels, as T5's 32128 covers 32000 + 100
        "d_model": TINY_TRANSFORMER["text_embed_dim"],
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
    },
)
"""The tiny VOID the tests load on a CPU."""


def build_void_folder(
    root: Path,
    layout: VoidLayout,
    *,
    seed: int = 0,
    device: str = "cpu",
    base_weights: bool = True,
    passes: tuple[int, ...] = (1, 2),
    text_encoder_dtype: torch.dtype = torch.float32,
) -> TinyVoid:
    """Write a VOID of ``layout``'s sizes (base folder plus both pass checkpoints) under ``root``, random weights.

    Every file sits where the real one does and holds the same kind of content (diffusers and transformers layouts,
    bf16 transformer weights, a sentencepiece tokenizer without ``tokenizer.json``). The caller's CPU random state
    is left untouched; on the CPU the same seed gives the same bytes.

    Args:
        root: folder to write into; created if missing. Existing files of the same names are overwritten.
        layout: the component sizes (``TINY``, or the full model's for GPU benchmarks).
        seed: seed for every random weight and the tokenizer corpus.
        device: where the random weights are made (``cuda`` makes a full-size model in seconds).
        base_weights: also write the base transformer's weights, which a run from a VOID checkpoint never reads
            (benchmarks leave the 11 GB out).
        passes: the VOID checkpoints to write (a pass-1 benchmark needs only ``(1,)``).
        text_encoder_dtype: T5's stored dtype (the released T5-XXL is bfloat16: 9.5 GB, not 19).

    Returns:
        The paths of the base folder and the two VOID checkpoints.
    """
    from diffusers.schedulers.scheduling_ddim_cogvideox import CogVideoXDDIMScheduler

    root = Path(root)
    base = root / "base"
    base.mkdir(parents=True, exist_ok=True)
    latent = int(layout.vae["latent_channels"])
    pass1, pass2 = _write_transformers(
        root, seed * 1000, layout.transformer, latent, device=device, base_weights=base_weights, passes=passes
    )
    _write_vae(base / "vae", seed * 1000 + 10, layout.vae, device=device)
    _write_text_encoder(
        base / "text_encoder", seed * 1000 + 20, layout.text_encoder, device=device, dtype=text_encoder_dtype
    )
    _write_tokenizer(base / "tokenizer", seed, int(layout.transformer["max_text_seq_length"]))
    CogVideoXDDIMScheduler(**TINY_SCHEDULER).save_config(base / "scheduler")
    _write_json(
        base / "model_index.json",
        {
            "_class_name": "CogVideoXFunInpaintPipeline",
            "_diffusers_version": "0.31.0",
            "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
            "text_encoder": ["transformers", "T5EncoderModel"],
            "tokenizer": ["transformers", "T5Tokenizer"],
            "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
            "vae": ["diffusers", "AutoencoderKLCogVideoX"],
        },
    )
    return TinyVoid(base=base, pass1=pass1, pass2=pass2)


def build_tiny_void(root: Path, *, seed: int = 0) -> TinyVoid:
    """Write the tiny VOID (``TINY``) under ``root``: small enough to load and run on a CPU in well under a second.

    The same seed gives the same bytes.
    """
    return build_void_folder(root, TINY, seed=seed)
