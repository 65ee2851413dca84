"""Persistent compile caches (issue 18): the key, a save in one process served as a hit in the next, and the
seconds a call spent compiling.

The round trip compiles a small function with the real ``torch.compile`` (Inductor's CPU backend) in two fresh
processes, each with its own empty Inductor cache, so the only thing they share is the voidflow cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.void.compile_cache import CacheUse, CompileCache, GraphCounts, cache_key, device_key

# One process: load the folder, compile what argv names (f, or f then g), save after each; print what happened.
_PROCESS = """
import json, sys, torch
from voidflow.void_ops.void.compile_cache import CompileCache, GraphCounts, compiling_seconds
cache = CompileCache(sys.argv[1], "cpu-test")
loaded = cache.load()
uses = []
for name in sys.argv[2:]:
    scale = 2.0 if name == "f" else 3.0
    before, started = GraphCounts.now(), compiling_seconds()
    compiled = torch.compile(lambda x: (x.sin() * scale + 1).relu(), dynamic=False)
    compiled(torch.ones(8, 8))
    use = cache.save()
    graphs, compile_s = GraphCounts.now().since(before).as_dict(), compiling_seconds() - started
    compiled(torch.ones(8, 8))  # compiled already: no compiling
    uses.append([use.state, use.note, graphs, compile_s, compiling_seconds() - started - compile_s])
print(json.dumps({"loaded": loaded.as_dict(), "uses": uses}))
"""


def _process(root: Path, inductor: Path, *names: str) -> dict[str, object]:
    """Run ``_PROCESS`` in a fresh interpreter whose Inductor cache is ``inductor`` (empty: nothing compiled)."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor), "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _PROCESS, str(root), *names],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return answer


def _files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_the_key_names_torch_triton_and_the_gpu() -> None:
    assert (
        cache_key("2.11.0+cu130", "3.6.0", "NVIDIA H100 80GB HBM3", (9, 0))
        == "torch-2.11.0+cu130_triton-3.6.0_nvidia-h100-80gb-hbm3_sm90"
    )
    assert cache_key("2.13.0", None, "NVIDIA H200", (9, 0)) == "torch-2.13.0_triton-none_nvidia-h200_sm90"
    other_card = cache_key("2.11.0+cu130", "3.6.0", "NVIDIA A100-SXM4-80GB", (8, 0))
    assert other_card == "torch-2.11.0+cu130_triton-3.6.0_nvidia-a100-sxm4-80gb_sm80"
    with pytest.raises(InvalidInput, match="needs torch and GPU names"):
        cache_key("2.11.0", "3.6.0", "", (9, 0))
    with pytest.raises(InvalidInput, match=r"capability is \(major, minor\), got \(9,\)"):
        cache_key("2.11.0", "3.6.0", "NVIDIA H100", (9,))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="for CUDA GPUs only, got device 'cpu'"):
        device_key("cpu")


def test_a_compile_saved_by_one_process_is_a_hit_in_the_next(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    folder = root / "cpu-test"

    first = _process(root, tmp_path / "inductor-1", "f")
    assert first["loaded"] == {
        "key": "cpu-test", "folder": str(folder), "files": 0, "artifacts": 0,
        "seconds": first["loaded"]["seconds"], "skipped": [],  # type: ignore[index]
        # an Inductor cache the environment pins is kept; Triton's, unpinned here, goes in the folder
        "inductor": str(tmp_path / "inductor-1"), "triton": str(folder / "triton"),
    }  # fmt: skip
    [(state, note, graphs, compile_s, again_s)] = first["uses"]  # type: ignore[misc]
    assert graphs == {"found": 0, "compiled": 1, "uncached": 0}  # what provenance counts for a call
    # the host seconds a call spent compiling, which a GPU call's kernel time leaves out: some, then none
    assert compile_s > 0 and again_s == 0
    (blob,) = [name for name in _files(folder) if name.endswith(".bin")]
    assert state == "miss" and note.endswith(f"as {blob}")
    assert _files(folder) == [blob, blob.replace(".bin", ".json")]  # no temporary file left behind
    data = (folder / blob).read_bytes()
    assert blob == f"artifacts-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    manifest = json.loads((folder / blob).with_suffix(".json").read_text())
    assert manifest["bytes"] == len(data) and manifest["key"] == "cpu-test"
    assert any(key.startswith("inductor:") for key in manifest["artifacts"])

    # A fresh process with an empty Inductor cache: f comes from the folder (hit, nothing written); g is new (miss),
    # saved as one file holding f's artifacts too, which replaces the file it loaded.
    second = _process(root, tmp_path / "inductor-2", "f", "g")
    loaded = second["loaded"]
    assert (loaded["files"], loaded["artifacts"]) == (1, len(manifest["artifacts"]))  # type: ignore[index]
    [(hit, hit_note, found, *_), (miss, _, compiled, *_)] = second["uses"]  # type: ignore[misc]
    assert (hit, hit_note, found) == ("hit", "", {"found": 1, "compiled": 0, "uncached": 0})
    assert (miss, compiled) == ("miss", {"found": 0, "compiled": 1, "uncached": 0})
    (newer,) = [name for name in _files(folder) if name.endswith(".bin")]
    assert newer != blob and len(_files(folder)) == 2
    held = set(json.loads((folder / newer).with_suffix(".json").read_text())["artifacts"])
    assert set(manifest["artifacts"]) < held


def test_damaged_files_are_skipped_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # load() points unset ones at the folder
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    folder = tmp_path / "key"
    folder.mkdir()
    (folder / "artifacts-0123456789abcdef.bin").write_bytes(b"not what its name says")
    (folder / "artifacts-0123456789abcdef.json").write_text("{}")
    junk = b"bytes torch cannot read"
    name = f"artifacts-{hashlib.sha256(junk).hexdigest()[:16]}"
    (folder / f"{name}.bin").write_bytes(junk)
    (folder / f"{name}.json").write_text("{}")
    (folder / "artifacts-fedcba9876543210.json").write_text("{}")  # its bytes vanished (a newer save replaced them)
    loaded = CompileCache(tmp_path, "key").load()
    assert (loaded.files, loaded.artifacts) == (0, 0)
    reasons = sorted(loaded.skipped)
    assert reasons[0] == "artifacts-0123456789abcdef.bin: its bytes do not match the digest in its name"
    assert reasons[1].startswith(f"{name}.bin: torch ") and reasons[1].endswith("could not read it")
    assert reasons[2] == "artifacts-fedcba9876543210.bin: No such file or directory"


def test_cache_use_facts_say_why_the_cache_is_off() -> None:
    off = CacheUse("off", None, "nothing is compiled on cpu (the fast path is for CUDA GPUs)")
    assert off.facts() == {
        "compile_cache": "off",
        "compile_cache_key": None,
        "compile_cache_note": "nothing is compiled on cpu (the fast path is for CUDA GPUs)",
    }
    assert CacheUse("hit", "k").facts() == {"compile_cache": "hit", "compile_cache_key": "k"}
    counted = CacheUse("hit", "k", graphs=GraphCounts(found=3))
    assert counted.facts()["compile_graphs"] == {"found": 3, "compiled": 0, "uncached": 0}
    assert str(GraphCounts(1, 2, 0)) == "2 graph(s) compiled, 1 found in the cache, 0 uncacheable"
