"""The benchmark scripts still run: each one's ``--smoke`` mode (the same code on tiny models on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_windows_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "windows.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/windows.py", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    assert json.loads(result.stdout.splitlines()[-1]) == document
    assert set(document["denoise_s_by_frames"]) == {"29", "30", "44"}
    # The shipped planner's short last window is padded to fewer frames than the baseline's full window.
    assert document["plans"]["shipped"]["30"]["padded"] == [29, 21]
    assert document["plans"]["even_windows"]["30"]["padded"] == [29, 29]
    assert all(value > 0 for value in document["denoise_s_by_padded_frames"].values())


def test_void_forward_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "forward.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/void_forward.py", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    assert set(document["eager_forward_s"]) == {"49", "85", "197"} and document["smoke"] is True
