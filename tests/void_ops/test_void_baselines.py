"""Golden slices of the tiny VOID passes (diffusers' way: a few output values pinned per pipeline).

The tiny model is built from a fixed seed in the real on-disk layout (``void_ops.void.tiny``), and pass 1 then pass
2 run one 20-frame shot with a fixed seed and prompt. A slice of each fill inside the removed region is compared
with ``tests/baselines/void/*.json`` within two 8-bit levels (CPU float32 kernels may round differently across
machines; a change in the value path, windows, conditioning or seeding moves far more). Regenerate after an intended
change with ``VOIDFLOW_UPDATE_BASELINES=1`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from voidflow.void_ops.void.backend import ModelSpec, VoidModel, VoidPass, VoidSettings
from voidflow.void_ops.void.noise_warp import WarpSettings
from voidflow.void_ops.void.tiny import TinyVoid, build_tiny_void
from voidflow.void_ops.void.values import PASS1, PASS2

BASELINES = Path(__file__).resolve().parents[1] / "baselines" / "void"
UPDATE = os.environ.get("VOIDFLOW_UPDATE_BASELINES") == "1"
SETTINGS = VoidSettings(height=64, width=96, min_frames=13, max_frames=45)
TOLERANCE = 2  # 8-bit levels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyVoid:
    return build_tiny_void(tmp_path_factory.mktemp("tiny-void-baseline"))


def _shot() -> tuple[np.ndarray, np.ndarray]:
    frames = np.random.default_rng(7).integers(0, 255, (20, 90, 160, 3), dtype=np.uint8)
    quadmask = np.full((20, 90, 160), 255, np.uint8)
    quadmask[:, 30:60, 40:80] = 0
    quadmask[:, 60:70, 40:80] = 127
    return frames, quadmask


def _slice(fill: np.ndarray) -> list[list[list[int]]]:
    """Frames 0, 9 and 19; a 4x4 patch of the red channel inside the removed region."""
    picked: list[list[list[int]]] = fill[[0, 9, 19], 40:48:2, 50:58:2, 0].astype(int).tolist()
    return picked


def _check(name: str, fill: np.ndarray) -> None:
    baseline = BASELINES / f"{name}.json"
    got = _slice(fill)
    if UPDATE:
        baseline.parent.mkdir(parents=True, exist_ok=True)
        baseline.write_text(json.dumps({"slice": got}, indent=None) + "\n")
    assert baseline.is_file(), f"no baseline {baseline.name}: run with VOIDFLOW_UPDATE_BASELINES=1 and review it"
    expected = np.array(json.loads(baseline.read_text())["slice"])
    worst = int(np.abs(np.array(got) - expected).max())
    assert worst <= TOLERANCE, f"{name}: slice differs from {baseline.name} by up to {worst} levels: {got}"


def test_pass1_and_pass2_slices_match_their_baselines(tiny: TinyVoid) -> None:
    first = dataclasses.replace(PASS1, steps=3, window=4, overlap=2)
    second = dataclasses.replace(PASS2, steps=3, window=4, overlap=2)
    pass1 = VoidModel(ModelSpec(str(tiny.base), str(tiny.pass1), first, device="cpu", dtype="float32"))
    pass2 = VoidModel(ModelSpec(str(tiny.base), str(tiny.pass2), second, device="cpu", dtype="float32"))
    frames, quadmask = _shot()
    fill = VoidPass(pass1, SETTINGS)(frames, quadmask, seed=11, prompt="an empty street")
    _check("pass1", fill)
    refined = VoidPass(pass2, SETTINGS, WarpSettings())(
        frames, quadmask, seed=11, prompt="an empty street", first_pass=fill
    )
    _check("pass2", refined)
