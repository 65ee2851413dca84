"""The fast path's switches that a CPU can exercise: a preferred attention kernel that falls back where it cannot
run, the recompile limit the compiled blocks need, and compile-cache keys that do not depend on the process
(issue 18)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.void.speed import (
    RECOMPILE_LIMIT,
    attention_backend,
    compile_transformer,
    memory_format_named,
    stable_cache_keys,
)


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


@pytest.mark.parametrize("name", ["pass1", "pass2"])
def test_after_a_warm_up_the_shots_of_a_mix_compile_nothing_new(tmp_path, name: str) -> None:
    """A node warmed for a batch's lengths (``voidflow models warm``, ``throughput.py --warm``) must not compile
    again during the batch: on a GPU each VAE compile costs minutes. The VAE was handed slices of the whole clip, whose
    strides change with its length, so every length the warm-up skipped compiled the VAE again (found on an H100:
    the 12-shot batch was still compiling after nine minutes). The tiny model compiles on the CPU the same way."""
    import dataclasses

    import numpy as np
    import torch._dynamo
    import torch._dynamo.utils as dynamo_utils

    from voidflow.void_ops.void.backend import ModelSpec, VoidModel, VoidPass, VoidSettings, warm_lengths
    from voidflow.void_ops.void.noise_warp import WarpSettings
    from voidflow.void_ops.void.speed import compile_vae, fuse_qkv
    from voidflow.void_ops.void.tiny import build_tiny_void
    from voidflow.void_ops.void.values import PASS1, PASS2

    torch._dynamo.reset()  # graphs another test compiled for the same code would hide new ones
    tiny = build_tiny_void(tmp_path / "void")
    settings = VoidSettings(height=64, width=96, min_frames=13, max_frames=29)
    recipe = dataclasses.replace(PASS1 if name == "pass1" else PASS2, window=4, overlap=2, steps=2)
    model = VoidModel(ModelSpec(str(tiny.base), str(tiny.pass1), recipe, device="cpu", dtype="float32"))
    fuse_qkv(model.models.transformer)  # the CUDA fast path, which a CPU model leaves off
    compile_transformer(model.models.transformer)
    compile_vae(model.models.vae)
    shots = [17, 21, 29]  # padded runs of 21 and 29 frames (6 and 8 latent frames; the VAE in chunks of 13 and 8)
    lengths = warm_lengths(shots, settings, window=4, overlap=2)
    assert lengths == [21]  # every run's latent windows are 4 frames long: one warm length meets them all
    for length in lengths:
        model.warm(length, settings.height, settings.width)  # as warm_passes does, on a compiled model

    def graphs() -> int:
        return int(dynamo_utils.counters["stats"]["unique_graphs"])

    warmed = graphs()
    assert warmed > 0  # the warm-up compiled
    void = VoidPass(model, settings, None if name == "pass1" else WarpSettings())
    rng = np.random.default_rng(0)
    for frames in shots:
        plate = rng.integers(0, 256, (frames, 72, 120, 3), dtype=np.uint8)
        quadmask = np.full((frames, 72, 120), 255, np.uint8)
        quadmask[:, 20:50, 30:80] = 0
        first_pass = None if name == "pass1" else rng.integers(0, 256, plate.shape, dtype=np.uint8)
        void(plate, quadmask, seed=1, prompt="an empty street", first_pass=first_pass)
        assert graphs() == warmed, f"a {frames}-frame shot compiled {graphs() - warmed} graph(s) after the warm-up"


_COMPILE_ONE_BLOCK = """
import json, sys
if sys.argv[1] == "torch-reached-first-through-another-module":
    import first_importer
    first_importer.load()
import torch
from voidflow.void_ops.void.compile_cache import GraphCounts
from voidflow.void_ops.void.speed import compile_transformer

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.nn.functional.gelu(self.linear(x)) * 2

class Blocks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer_blocks = torch.nn.ModuleList([Block()])

torch.manual_seed(0)
blocks = Blocks()
compile_transformer(blocks)
before = GraphCounts.now()
with torch.inference_mode():
    blocks.transformer_blocks[0](torch.randn(2, 8))
print(json.dumps(GraphCounts.now().since(before).as_dict()))
"""


def test_a_process_finds_graphs_another_compiled_whatever_it_imported_first(tmp_path) -> None:
    """A warmed node is only worth having if every process finds its graphs. Inductor keys a graph by pickling its
    inputs' metadata, and pickle names a memory format by the first loaded module it can reach it through, which
    depends on import order: a GPU worker of the batch's Ray service reached torch through another module than the
    warm-up, and compiled everything again (found on an H100, ``warm_reuse_h100_memory_format.json``). Here one
    process compiles a block; a second, which reached torch through a module it loaded earlier, must find it."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "first_importer.py").write_text("def load():\n    global torch\n    import torch\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "TRITON_CACHE_DIR": str(tmp_path / "triton"),
    }

    def compile_in_a_fresh_process(import_order: str) -> dict[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE_ONE_BLOCK, import_order], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    assert compile_in_a_fresh_process("plain") == {"found": 0, "compiled": 1, "uncached": 0}
    assert compile_in_a_fresh_process("torch-reached-first-through-another-module") == {
        "found": 1,
        "compiled": 0,
        "uncached": 0,
    }


def test_memory_formats_still_pickle_to_themselves() -> None:
    """``stable_cache_keys`` changes how every memory format pickles in the process (Ray ships some): each must come
    back as itself, and a name that is no memory format must say so."""
    import pickle

    stable_cache_keys()
    for memory_format in (torch.contiguous_format, torch.channels_last, torch.channels_last_3d, torch.preserve_format):
        assert pickle.loads(pickle.dumps(memory_format)) is memory_format
    with pytest.raises(InvalidInput, match="no memory format named 'float32'"):
        memory_format_named("float32")
