"""The fast path's switches that a CPU can exercise: a preferred attention kernel that falls back where it cannot
run, and the recompile limit the compiled blocks need (issue 18)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voidflow.void_ops.void.speed import RECOMPILE_LIMIT, attention_backend, compile_transformer


def test_a_preferred_attention_kernel_falls_back_where_it_cannot_run() -> None:
    """Batches prefer cuDNN attention on CUDA; on hardware without it they must not fail (this CPU has none)."""
    query = torch.randn(1, 2, 16, 8)
    expected = F.scaled_dot_product_attention(query, query, query)
    with attention_backend("cudnn", fallback=True):
        torch.testing.assert_close(F.scaled_dot_product_attention(query, query, query), expected)
    with attention_backend("cudnn"), pytest.raises(RuntimeError, match="No viable backend"):
        F.scaled_dot_product_attention(query, query, query)  # held strictly, as the benchmarks time it


def test_compiling_the_blocks_raises_dynamos_recompile_limit() -> None:
    """Up to 18 window shapes meet the shared block graph; Dynamo's default of 8 would run the rest eagerly."""
    import torch._dynamo.config as dynamo

    class _Blocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer_blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)])

    before = dynamo.recompile_limit
    try:
        dynamo.recompile_limit = 8
        compile_transformer(_Blocks())  # compiles lazily: nothing runs here
        assert dynamo.recompile_limit == RECOMPILE_LIMIT >= 18
    finally:
        dynamo.recompile_limit = before


def test_warm_runs_the_fewest_lengths_that_meet_every_window_shape() -> None:
    """``voidflow models warm``: one blank call per length, chosen so every multidiffusion window shape compiles."""
    from voidflow.void_ops.exceptions import InvalidInput
    from voidflow.void_ops.void.backend import VoidSettings, warm_lengths
    from voidflow.void_ops.void.values import latent_frames, window_spans

    settings = VoidSettings()
    every = warm_lengths(None, settings, window=22, overlap=4)
    assert every == [85, 93, 101, 109, 117, 125, 133, 141, 149]

    def shapes(length: int) -> set[int]:
        return {stop - start for start, stop in window_spans(latent_frames(length), window=22, overlap=4)}

    assert set().union(*map(shapes, every)) == set().union(*map(shapes, range(85, 198, 8)))  # all shapes met
    assert warm_lengths([300], settings, window=22, overlap=4) == [125]  # its 197 and 125-frame runs share shapes
    assert warm_lengths([85, 197, 198], settings, window=22, overlap=4) == [85, 109, 197]  # 198: two 109-frame runs
    with pytest.raises(InvalidInput, match="at least 1 frame, got 0"):
        warm_lengths([0], settings, window=22, overlap=4)
