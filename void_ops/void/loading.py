"""Load VOID: a CogVideoX-Fun-V1.5-5b-InP base folder plus a ``void_pass1``/``void_pass2`` transformer state dict.

The base folder is in diffusers layout (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``). VOID's transformer is diffusers' ``CogVideoXTransformer3DModel`` with ``in_channels`` = 3 x the VAE's
latent channels (48 at full size: 16 noise + 16 VAE-encoded mask + 16 VAE-encoded video), built from the base config
and filled from the VOID file, whose keys and shapes must match the model exactly. Without a VOID file the base
transformer is widened from its 2L+1 input channels the way the reference does (``widen_patch_embedding``).

Every weight file read is hashed (SHA-256) on background threads, one per file, while the tensors load, so the
hashes cost at most the time of the largest file's hash beyond the load (SHA-256 runs at about 1.1 GB/s on one core
of the H100 host: 10 s for an 11.1 GB VOID file, while a warm page cache loads it onto the GPU in about 2 s).
Nothing here downloads: all loads are from local files.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput, ModelLoadError
from voidflow.void_ops.hashing import sha256_file

if TYPE_CHECKING:
    from diffusers.models import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5EncoderModel

__all__ = [
    "VoidModels",
    "WeightFile",
    "check_scheduler_config",
    "load_void_models",
    "transformer_config_for_void",
    "widen_patch_embedding",
]

_LAYOUT = "a CogVideoX-Fun base folder has transformer/, vae/, text_encoder/, tokenizer/, scheduler/"
_PATCH_KEY = "patch_embed.proj.weight"
_LISTED = 10  # names shown per kind of key mismatch
_HASH_THREADS = 8

# void-reference.md section 5: the CogVideoX-5B values VOID was trained with.
_SCHEDULER_SPEC: tuple[tuple[str, object], ...] = (
    ("prediction_type", "v_prediction"),
    ("rescale_betas_zero_snr", True),
    ("timestep_spacing", "trailing"),
    ("beta_schedule", "scaled_linear"),
    ("beta_start", 0.00085),
    ("beta_end", 0.012),
    ("num_train_timesteps", 1000),
    ("set_alpha_to_one", True),
)
_SCHEDULER_SPEC_IF_PRESENT: tuple[tuple[str, object], ...] = (("snr_shift_scale", 1.0),)


@dataclass(frozen=True, slots=True)
class WeightFile:
    """One weight file that was read, for provenance.

    Attributes:
        path: absolute path of the file (symlinks not resolved).
        sha256: hex SHA-256 of the file's bytes.
        bytes: size of the file in bytes.
    """

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class VoidModels:
    """VOID's components, loaded onto one device in one dtype, in eval mode with gradients off.

    Attributes:
        transformer: diffusers ``CogVideoXTransformer3DModel`` with ``in_channels`` = 3 x ``vae``'s latent channels
            (48 at full size); input (B, F, C, H, W) latents, channels ordered [noise, VAE(mask), VAE(video)].
        vae: diffusers ``AutoencoderKLCogVideoX`` from ``base/vae``.
        text_encoder: transformers ``T5EncoderModel`` from ``base/text_encoder``; None when not asked for.
        tokenizer: transformers ``T5Tokenizer`` from ``base/tokenizer`` (``model_max_length`` 226 at full size).
        scheduler_config: the raw ``base/scheduler/scheduler_config.json``, checked by ``check_scheduler_config``.
        transformer_config: the raw ``base/transformer/config.json``, including keys diffusers does not know (such
            as ``add_noise_in_inpaint_model``); ``in_channels`` is the base's, not the widened one.
        vae_scaling_factor: ``scaling_factor`` from ``base/vae/config.json`` (0.7 for the 5B family).
        weights: every weight file read, in load order: VAE, T5 (if loaded), then the transformer's base shards or
            the VOID file.
        checkpoint: absolute path of the VOID file used, or None when the transformer is the widened base.
    """

    transformer: CogVideoXTransformer3DModel
    vae: AutoencoderKLCogVideoX
    text_encoder: T5EncoderModel | None
    tokenizer: Any
    scheduler_config: dict[str, Any]
    transformer_config: dict[str, Any]
    vae_scaling_factor: float
    weights: tuple[WeightFile, ...]
    checkpoint: str | None


def widen_patch_embedding(weight: torch.Tensor, *, latent_channels: int, patch_volume: int) -> torch.Tensor:
    """Widen a base Fun-InP patch embedding from 2L+1 to 3L input channels, as the VOID reference initialises it.

    The CogVideoX 1.5 patch embedding flattens each patch channel-major, (C, p_t, p_h, p_w), so input channel c owns
    columns ``c*pv .. c*pv + pv - 1``. With L = ``latent_channels`` and pv = ``patch_volume``:

    - columns ``[0, L*pv)`` (noise latents) copy the base's columns ``[0, L*pv)``;
    - columns ``[L*pv, 2*L*pv)`` (VAE-encoded mask) are L copies of the base's single mask channel, columns
      ``[L*pv, L*pv + pv)``;
    - columns ``[2*L*pv, 3*L*pv)`` (VAE-encoded video) copy the base's last ``L*pv`` columns.

    So the widened embedding of ``[noise, m_1 .. m_L, video]`` equals the base embedding of
    ``[noise, m_1 + .. + m_L, video]``. At full size (L 16, pv 8) a (3072, 264) weight becomes (3072, 384).

    Args:
        weight: the base ``patch_embed.proj.weight``, shape (hidden, (2L+1)*pv).
        latent_channels: L, the VAE's latent channels (16 at full size).
        patch_volume: pv = patch_size * patch_size * patch_size_t (8 at full size).

    Returns:
        A new tensor of shape (hidden, 3L*pv), same dtype and device as ``weight``.

    Raises:
        InvalidInput: ``latent_channels`` or ``patch_volume`` is not a positive integer.
        ModelLoadError: ``weight`` is not 2-D with (2L+1)*pv columns.
    """
    for name, value in (("latent_channels", latent_channels), ("patch_volume", patch_volume)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"widen_patch_embedding: {name} must be a positive integer, got {value!r}")
    block = latent_channels * patch_volume
    columns = 2 * block + patch_volume
    if weight.ndim != 2 or weight.shape[1] != columns:
        raise ModelLoadError(
            f"{_PATCH_KEY}: a base Fun-InP weight is (hidden, (2*{latent_channels}+1)*{patch_volume} = {columns}), "
            f"got {tuple(weight.shape)}"
        )
    noise = weight[:, :block]
    mask = weight[:, block : block + patch_volume]
    video = weight[:, block + patch_volume :]
    return torch.cat([noise, mask.repeat(1, latent_channels), video], dim=1)


def _same(expected: object, got: object) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, int | float):
        return isinstance(got, int | float) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=0.0)
    return got == expected


def check_scheduler_config(config: Mapping[str, Any]) -> None:
    """Check a scheduler config against the values VOID was trained with (void-reference.md section 5).

    Required: ``prediction_type`` "v_prediction", ``rescale_betas_zero_snr`` true, ``timestep_spacing`` "trailing",
    ``beta_schedule`` "scaled_linear", ``beta_start`` 0.00085, ``beta_end`` 0.012, ``num_train_timesteps`` 1000,
    ``set_alpha_to_one`` true; and ``snr_shift_scale`` 1.0 when the key is present. A missing required key is a
    mismatch (diffusers' defaults differ from these values for several of them).

    Args:
        config: the scheduler config, e.g. the parsed ``scheduler/scheduler_config.json``.

    Raises:
        ModelLoadError: one or more values differ; the message names every such key, the value expected and the
            value found.
    """
    checks = [*_SCHEDULER_SPEC, *((key, value) for key, value in _SCHEDULER_SPEC_IF_PRESENT if key in config)]
    wrong = [
        f"{key} must be {expected!r}, got {config[key]!r}" if key in config else f"{key} must be {expected!r}, missing"
        for key, expected in checks
        if key not in config or not _same(expected, config[key])
    ]
    if wrong:
        raise ModelLoadError(f"scheduler config does not match VOID's training: {'; '.join(wrong)}")


def _transformer_init_keys() -> frozenset[str]:
    from diffusers.models import CogVideoXTransformer3DModel

    parameters = inspect.signature(CogVideoXTransformer3DModel.__init__).parameters
    return frozenset(name for name in parameters if name != "self")


def transformer_config_for_void(raw: Mapping[str, Any], *, latent_channels: int) -> dict[str, Any]:
    """Turn the base ``transformer/config.json`` into diffusers constructor arguments for VOID's transformer.

    Keys that ``CogVideoXTransformer3DModel`` does not take are dropped (``_class_name``, ``_diffusers_version``,
    VideoX-Fun's ``add_noise_in_inpaint_model``, ...); ``in_channels`` becomes ``3 * latent_channels``; everything
    else, ``patch_size_t`` included, is kept as it is.

    Args:
        raw: the parsed base transformer config.
        latent_channels: the VAE's latent channels (``vae/config.json`` ``latent_channels``; 16 at full size).

    Returns:
        A new dict for ``CogVideoXTransformer3DModel.from_config``.

    Raises:
        InvalidInput: ``latent_channels`` is not a positive integer.
        ModelLoadError: ``patch_size_t`` is missing or null (a CogVideoX 1.0 layout, not the 1.5 one VOID uses), or
            ``out_channels`` differs from ``latent_channels``.
    """
    if isinstance(latent_channels, bool) or not isinstance(latent_channels, int) or latent_channels < 1:
        raise InvalidInput(
            f"transformer_config_for_void: latent_channels must be a positive integer, got {latent_channels!r}"
        )
    known = _transformer_init_keys()
    config = {key: value for key, value in raw.items() if key in known}
    if config.get("patch_size_t") is None:
        raise ModelLoadError(
            f"transformer config: patch_size_t must be set (VOID uses CogVideoX 1.5's 3-D patches), "
            f"got {config.get('patch_size_t')!r}"
        )
    if config.get("out_channels") != latent_channels:
        raise ModelLoadError(
            f"transformer config: out_channels must equal the VAE's latent_channels {latent_channels}, "
            f"got {config.get('out_channels')!r}"
        )
    config["in_channels"] = 3 * latent_channels
    return config


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ConfigurationError(f"{path}: not found; {_LAYOUT}")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_require(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _weight_files(folder: Path, stem: str) -> tuple[Path, ...]:
    """The safetensors files of a diffusers/transformers folder: ``stem.safetensors``, or the shards its index names."""
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return (single,)
    index = folder / f"{stem}.safetensors.index.json"
    if not index.is_file():
        raise ConfigurationError(f"{single}: not found (nor a sharded {index.name}); {_LAYOUT}")
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConfigurationError(f"{index}: weight_map must be a non-empty object, got {weight_map!r}")
    return tuple(_require(folder / name) for name in sorted(set(weight_map.values())))


def _count(number: int, noun: str, plural: str) -> str:
    return f"{number} {noun if number == 1 else plural}"


def _listed(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_LISTED])
    return f"{shown}, and {len(names) - _LISTED} more" if len(names) > _LISTED else shown


def _check_fit(source: str, shapes: Mapping[str, tuple[int, ...]], model: torch.nn.Module) -> None:
    """Raise ModelLoadError naming every missing, unexpected and wrong-shaped key of ``shapes`` against ``model``."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    missing = sorted(expected.keys() - shapes.keys())
    unexpected = sorted(shapes.keys() - expected.keys())
    wrong = sorted(name for name in expected.keys() & shapes.keys() if tuple(shapes[name]) != expected[name])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {_count(len(missing), 'key', 'keys')} ({_listed(missing)})")
    if unexpected:
        parts.append(f"unexpected {_count(len(unexpected), 'key', 'keys')} ({_listed(unexpected)})")
    if wrong:
        details = (f"{name}: file {tuple(shapes[name])}, model {expected[name]}" for name in wrong)
        parts.append(f"{_count(len(wrong), 'shape mismatch', 'shape mismatches')} ({_listed(details)})")
    in_channels = getattr(model, "config", {}).get("in_channels")
    raise ModelLoadError(f"{source} does not fit {type(model).__name__}(in_channels={in_channels}): {'; '.join(parts)}")


def _load_safetensors(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, read straight onto ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device=str(device))
    except SafetensorError as error:  # a bad or truncated header; I/O errors and CUDA OOM pass through unchanged
        raise ModelLoadError(f"{path}: not a readable safetensors file ({error})") from error


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape from a safetensors header, without reading the tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except SafetensorError as error:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({error})") from error


def _load_transformer(
    config: Mapping[str, Any],
    files: tuple[Path, ...],
    *,
    void_file: bool,
    latent_channels: int,
    dtype: torch.dtype,
    device: torch.device,
) -> CogVideoXTransformer3DModel:
    from diffusers.models import CogVideoXTransformer3DModel

    # Built on the meta device: no memory and no random init; the loaded tensors are assigned as the parameters.
    with torch.device("meta"):
        model: CogVideoXTransformer3DModel = CogVideoXTransformer3DModel.from_config(dict(config))
    if void_file:
        (path,) = files
        source = str(path)
        _check_fit(source, _header_shapes(path), model)  # before reading 11 GB
        state = _load_safetensors(path, device)
    else:
        source = f"{files[0].parent} (base, widened)"
        state = {}
        for path in files:
            state.update(_load_safetensors(path, device))
        if _PATCH_KEY in state:
            patch_volume = int(config["patch_size"]) ** 2 * int(config["patch_size_t"])
            try:
                state[_PATCH_KEY] = widen_patch_embedding(
                    state[_PATCH_KEY], latent_channels=latent_channels, patch_volume=patch_volume
                )
            except ModelLoadError as error:
                raise ModelLoadError(f"{files[0].parent}: {error}") from None
    _check_fit(source, {name: tuple(tensor.shape) for name, tensor in state.items()}, model)
    state = {name: tensor.to(dtype) for name, tensor in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    still_meta = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if still_meta:  # non-persistent buffers are not in a state dict; the RoPE configs VOID uses have none
        raise ModelLoadError(
            f"{source}: {_count(len(still_meta), 'tensor', 'tensors')} left unloaded ({_listed(still_meta)})"
        )
    model.eval().requires_grad_(False)
    return model


def _check_t5_embeddings(encoder: T5EncoderModel, folder: Path) -> None:
    """T5's encoder must embed with the shared table; some transformers 5.x releases leave a second, random one.

    With T5-v1.1's ``tie_word_embeddings: false`` those releases do not tie ``encoder.embed_tokens`` to ``shared``,
    and a checkpoint holding only ``shared.weight`` then loads with random input embeddings and no error.
    """
    import transformers

    embed, shared = encoder.encoder.embed_tokens.weight, encoder.shared.weight
    if embed is not shared and not torch.equal(embed, shared):
        raise ModelLoadError(
            f"{folder}: encoder.embed_tokens.weight differs from shared.weight after loading; transformers "
            f"{transformers.__version__} did not tie T5's input embeddings (4.x and 5.24 do)"
        )


def _check_tokenizer_folder(folder: Path) -> None:
    if (folder / "tokenizer.json").is_file():
        return
    _require(folder / "spiece.model")
    missing = [name for name in ("sentencepiece", "google.protobuf") if not _module_available(name)]
    if missing:
        raise ConfigurationError(
            f"{folder}: converting spiece.model (no tokenizer.json) needs sentencepiece and protobuf installed, "
            f"missing {', '.join(missing)}"
        )


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


class _BackgroundHashes:
    """SHA-256 of files on background threads, one per file, while the caller loads them.

    hashlib releases the GIL, so the hashes run beside the loads; one thread per file bounds the wait by the largest
    file (about 10 s for an 11.1 GB VOID file at SHA-256's ~1.1 GB/s on one core) rather than by the sum of all.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        paths = list(paths)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(len(paths), _HASH_THREADS)), thread_name_prefix="void-sha256"
        )
        self._jobs: list[tuple[Path, Future[str]]] = [(path, self._pool.submit(sha256_file, path)) for path in paths]

    def __enter__(self) -> _BackgroundHashes:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)  # on an error, hash no further files

    def result(self) -> tuple[WeightFile, ...]:
        """Wait for every hash; re-raise the first error of the hashing thread."""
        return tuple(
            WeightFile(path=str(path), sha256=job.result(), bytes=path.stat().st_size) for path, job in self._jobs
        )


def load_void_models(
    base: Path,
    checkpoint: Path | None,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    text_encoder: bool = True,
) -> VoidModels:
    """Load VOID's transformer, VAE, T5 encoder and tokenizer from local files, checking every shape and key.

    The transformer is diffusers' ``CogVideoXTransformer3DModel`` built on the meta device from the base config with
    ``in_channels`` = 3 x the VAE's latent channels, then given the checkpoint's tensors directly (read by
    safetensors straight onto ``device``), so no random weights are ever allocated. With ``checkpoint`` None the
    base transformer (single file or shards) is widened instead (``widen_patch_embedding``); that is how the
    reference initialises training, not a usable VOID. The scheduler config is checked (``check_scheduler_config``).

    Args:
        base: the CogVideoX-Fun-V1.5-5b-InP folder (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``).
        checkpoint: ``void_pass1.safetensors`` or ``void_pass2.safetensors`` (a full transformer state dict), or None
            to use the widened base transformer.
        dtype: dtype of every parameter and buffer (transformer, VAE and T5 alike).
        device: where every model is placed.
        text_encoder: load the T5 encoder (about 9.5 GB in bf16 at full size); False leaves it None, for callers that
            pass prompt embeddings themselves. The tokenizer is loaded either way.

    Returns:
        The components in eval mode with ``requires_grad`` off, the raw scheduler and transformer configs, the VAE
        scaling factor and the SHA-256 of every weight file read (hashed while loading).

    Raises:
        ConfigurationError: ``base`` lacks a folder or file named above, a config is not a JSON object, or
            ``checkpoint`` does not exist.
        ModelLoadError: the scheduler config differs from VOID's values; the base transformer config is not a
            CogVideoX 1.5 one; the checkpoint (or widened base) has missing, unexpected or wrong-shaped keys (named in
            the message); a weight file is not readable safetensors; or the loaded T5 embeds with a table other than
            its ``shared.weight``.
    """
    from diffusers.models import AutoencoderKLCogVideoX
    from transformers import T5EncoderModel, T5Tokenizer

    base = Path(base).absolute()
    target = torch.device(device)
    if not base.is_dir():
        raise ConfigurationError(f"{base}: not a folder; {_LAYOUT}")

    scheduler_path = base / "scheduler" / "scheduler_config.json"
    scheduler_config = _read_json(scheduler_path)
    try:
        check_scheduler_config(scheduler_config)
    except ModelLoadError as error:
        raise ModelLoadError(f"{scheduler_path}: {error}") from None
    vae_config_path = base / "vae" / "config.json"
    vae_config = _read_json(vae_config_path)
    latent_channels = vae_config.get("latent_channels")
    scaling_factor = vae_config.get("scaling_factor")
    if isinstance(latent_channels, bool) or not isinstance(latent_channels, int) or latent_channels < 1:
        raise ConfigurationError(
            f"{vae_config_path}: latent_channels must be a positive integer, got {latent_channels!r}"
        )
    if isinstance(scaling_factor, bool) or not isinstance(scaling_factor, int | float) or scaling_factor <= 0:
        raise ConfigurationError(f"{vae_config_path}: scaling_factor must be a positive number, got {scaling_factor!r}")
    transformer_config_path = base / "transformer" / "config.json"
    raw_transformer = _read_json(transformer_config_path)
    try:
        config = transformer_config_for_void(raw_transformer, latent_channels=latent_channels)
    except ModelLoadError as error:
        raise ModelLoadError(f"{transformer_config_path}: {error}") from None

    vae_files = _weight_files(base / "vae", "diffusion_pytorch_model")
    text_files: tuple[Path, ...] = ()
    if text_encoder:
        _require(base / "text_encoder" / "config.json")
        text_files = _weight_files(base / "text_encoder", "model")
    _check_tokenizer_folder(base / "tokenizer")
    if checkpoint is None:
        transformer_files = _weight_files(base / "transformer", "diffusion_pytorch_model")
    else:
        checkpoint = Path(checkpoint).absolute()
        if not checkpoint.is_file():
            raise ConfigurationError(
                f"{checkpoint}: not found; expected a VOID transformer file such as void_pass1.safetensors"
            )
        transformer_files = (checkpoint,)

    with _BackgroundHashes((*vae_files, *text_files, *transformer_files)) as hashes:
        transformer = _load_transformer(
            config,
            transformer_files,
            void_file=checkpoint is not None,
            latent_channels=latent_channels,
            dtype=dtype,
            device=target,
        )
        vae = AutoencoderKLCogVideoX.from_pretrained(
            base / "vae",
            torch_dtype=dtype,
            local_files_only=True,
            low_cpu_mem_usage=_module_available("accelerate"),  # diffusers' default, minus its warning without it
        )
        vae = vae.to(target).eval().requires_grad_(False)
        encoder = None
        if text_encoder:
            encoder = T5EncoderModel.from_pretrained(base / "text_encoder", dtype=dtype, local_files_only=True)
            encoder.to(target)  # type: ignore[arg-type]  # transformers wraps .to in a decorator mypy misreads
            encoder.eval().requires_grad_(False)
            _check_t5_embeddings(encoder, base / "text_encoder")
        tokenizer = T5Tokenizer.from_pretrained(base / "tokenizer", local_files_only=True)
        weights = hashes.result()

    return VoidModels(
        transformer=transformer,
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        transformer_config=raw_transformer,
        vae_scaling_factor=float(scaling_factor),
        weights=weights,
        checkpoint=None if checkpoint is None else str(checkpoint),
    )
