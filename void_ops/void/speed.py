"""Making the VOID transformer fast on Hopper GPUs without changing what it computes (beyond bf16 rounding).

What each switch does:

* ``fuse_qkv``: one (d x 3d) matmul instead of three (d x d) per attention (diffusers' own fused processor).
* ``compile_transformer``: ``torch.compile`` of each transformer block (regional compilation: the 42 blocks share
  one compiled graph per input shape), fusing the norms, AdaLN modulation, RoPE and GELU around the matmuls. The
  blocks meet one shape per multidiffusion window length (22 latent frames, and the shorter last windows of 6 to 20)
  and classifier-free-guidance batch (1 for pass 1, 2 for pass 2): up to 18, more than Dynamo's default limit of 8
  recompiles, past which it would silently run the blocks eagerly; the limit is raised to ``RECOMPILE_LIMIT``.
* ``compile_vae``: ``torch.compile`` of the VAE's encoder and decoder: on an H100 at 85 frames, 384x672, encode
  2.6 s to 1.3 s and decode 3.0 s to 1.4 s, with far smaller peaks (fused GroupNorm/SiLU temporaries). The VAE works
  in frame chunks of fixed sizes at every padded length VOID uses (8k+5 frames: a first chunk of 13, then 8s; two
  latent frames per decode chunk), each made contiguous before the compiled call (a slice of the clip has strides
  that change with its length, and Dynamo guards on them), so it compiles once for all lengths: about 135 s on a
  first call, once per process, or seconds from a persisted compile cache (``void_ops.void.compile_cache``).
* ``attention_backend``: picks PyTorch's scaled-dot-product attention kernel (``cudnn`` on H100 is the fastest for
  head dim 64 at these sequence lengths; ``flash`` and ``efficient`` are the other fused kernels); a batch prefers
  ``cudnn`` and falls back to the others where it cannot run.
* ``stable_cache_keys``: makes Inductor's compile-cache keys the same in every process (both compile functions call
  it), so a GPU worker finds what ``voidflow models warm`` or another process compiled.
* ``to_fp8``: optional, not the default: stores the blocks' linear weights in float8 (e4m3, one scale per output
  row) and runs their matmuls in FP8 with per-row activation scales. Outputs drift more than bf16 rounding.
"""

from __future__ import annotations

import copyreg
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from voidflow.void_ops.exceptions import InvalidInput

__all__ = [
    "RECOMPILE_LIMIT",
    "AttentionKind",
    "Fp8Linear",
    "attention_backend",
    "compile_transformer",
    "compile_vae",
    "fuse_qkv",
    "memory_format_named",
    "stable_cache_keys",
    "to_fp8",
]

AttentionKind = Literal["default", "cudnn", "flash", "efficient", "math"]
#: Compiled graphs Dynamo keeps per code object (the blocks share one): 18 shapes at most, with room to spare.
RECOMPILE_LIMIT = 64


def fuse_qkv(transformer: Any) -> None:
    """Fuse each attention's Q, K and V projections into one matmul (in place).

    diffusers keeps the separate projections beside the fused one (to allow unfusing); they are dropped here,
    which saves 2.4 GB at full size.
    """
    transformer.fuse_qkv_projections()
    for block in transformer.transformer_blocks:
        attention = block.attn1
        del attention.to_q, attention.to_k, attention.to_v


def compile_transformer(transformer: Any, *, mode: str | None = None) -> None:
    """Compile every transformer block in place (one graph shared by all blocks; shapes marked static).

    Args:
        transformer: a diffusers ``CogVideoXTransformer3DModel``.
        mode: ``torch.compile`` mode (None for the default; ``max-autotune-no-cudagraphs`` searches matmul tiles).

    Raises Dynamo's recompile limit (process-wide) to at least ``RECOMPILE_LIMIT``.
    """
    import torch._dynamo.config as dynamo

    stable_cache_keys()
    dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
    for block in transformer.transformer_blocks:
        block.compile(fullgraph=True, dynamic=False, mode=mode)


def compile_vae(vae: Any) -> None:
    """Compile the VAE's encoder and decoder in place (graph breaks allowed: its causal conv cache branches).

    Each is handed its frame chunk made contiguous first. diffusers passes a slice of the whole clip, whose strides
    depend on the clip's length; Dynamo guards on strides, so without the copy every padded length compiled the VAE
    again (minutes on a GPU) and a warm-up at some lengths did not cover the others.
    """
    stable_cache_keys()
    for part in (vae.encoder, vae.decoder):
        compiled = torch.compile(part.forward, dynamic=False)
        part.forward = functools.partial(_contiguous_call, compiled)


def stable_cache_keys() -> None:
    """Make the compile-cache key of a graph the same in every process (process-wide; calling again changes nothing).

    Inductor and AOTAutograd key a compiled graph by pickling its inputs' metadata, which includes each tensor's
    memory format. ``torch.memory_format`` objects pickle as a bare global name with no module, so pickle names
    the first loaded module it can reach the object through: which one depends on what the process imported first.
    A plain process and a GPU worker of the batch's Ray service named different modules, so every input's key
    differed and the worker compiled again what the warm-up had cached (on an H100, the tiny VOID: a plain process
    found 8 of 8 graphs, the worker 0; only the ``memory_format`` field's hash differed,
    ``benchmarks/results/warm_reuse_h100_memory_format.json``). A reducer naming ``memory_format_named`` pins the
    bytes, as torch itself does for ``torch.layout``. Caches written before this were keyed the other way: such a
    node compiles once more.
    """
    copyreg.pickle(torch.memory_format, _reduce_memory_format)


def memory_format_named(name: str) -> torch.memory_format:
    """The memory format ``torch.<name>``, e.g. ``contiguous_format`` (what a pickled memory format is rebuilt by).

    Raises:
        InvalidInput: ``name`` is not one of torch's memory formats.
    """
    found = getattr(torch, name, None)
    if not isinstance(found, torch.memory_format):
        raise InvalidInput(f"torch has no memory format named {name!r}")
    return found


def _reduce_memory_format(memory_format: torch.memory_format) -> tuple[Any, tuple[str]]:
    return memory_format_named, (str(memory_format).removeprefix("torch."),)


def _contiguous_call(compiled: Any, sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    return compiled(sample.contiguous(), *args, **kwargs)


@contextmanager
def attention_backend(kind: AttentionKind, *, fallback: bool = False) -> Iterator[None]:
    """Run the body with PyTorch's SDPA held to one kernel (``default`` leaves PyTorch's choice).

    With ``fallback`` the kernel is only preferred: where it cannot run (cuDNN attention needs an Ampere or newer
    GPU and cuDNN 9; no fused kernel runs on a CPU) PyTorch takes flash, then memory-efficient, then math attention,
    instead of raising. Batches use that; benchmarks hold the kernel strictly, to time it.
    """
    if kind == "default":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    if not fallback:
        with sdpa_kernel([backends[kind]]):
            yield
        return
    order = [backends[kind], *(backend for backend in backends.values() if backend != backends[kind])]
    with sdpa_kernel(order, set_priority=True):
        yield


class Fp8Linear(nn.Module):
    """A linear layer computing in float8 e4m3 with per-row scales (weights quantised once, inputs per call)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
        self.register_buffer("weight_fp8", (weight / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.out_dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        scale = rows.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
        quantised = (rows / scale).to(torch.float8_e4m3fn)
        weight: Any = self.weight_fp8
        weight_scale: Any = self.weight_scale
        out = torch._scaled_mm(
            quantised,
            weight.t(),
            scale_a=scale,
            scale_b=weight_scale,
            bias=self.bias,
            out_dtype=self.out_dtype,
        )
        return out.reshape(*shape[:-1], -1)


def to_fp8(transformer: Any) -> int:
    """Replace the linear layers inside the transformer blocks with ``Fp8Linear`` (in place); return how many."""
    count = 0
    for block in transformer.transformer_blocks:
        for module in list(block.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
                    setattr(module, child_name, Fp8Linear(child))
                    count += 1
    return count
