"""Compile caches that outlive a process: what ``torch.compile`` produced for VOID, kept in a folder per torch,
Triton and GPU, loaded before a worker's first compile and saved after a compile that made something new.

Without it every new GPU worker compiles for minutes before its first shot (the VAE alone about 135 s on an H200);
with it the first shot of a fresh process costs seconds more than a warm one (issue 18).

Layout under the cache root (``Settings.compile_cache``: a node's folder or a shared path)::

    <root>/<key>/artifacts-<sha256:16>.bin    bytes of torch.compiler.save_cache_artifacts() (Inductor graphs and
                                              kernels, AOTAutograd entries, autotuning results)
    <root>/<key>/artifacts-<sha256:16>.json   its manifest: the artifact keys it holds, its size, when and by what

    key = torch-<version>_triton-<version>_<gpu name>_sm<major><minor>    e.g.
          torch-2.11.0+cu130_triton-3.6.0_nvidia-h100-80gb-hbm3_sm90

Both, measured (``benchmarks/gpu_efficiency.py`` on an H100, 85-frame pass-1 shot, 15 s warm): torch's portable
artifacts alone (``save_cache_artifacts``/``load_cache_artifacts``, one file per save published by an atomic rename,
so another node sees a whole file or none) left a fresh process compiling for 113 s; a process that also finds
Inductor's and Triton's own caches in the folder (``<key>/inductor``, ``<key>/triton``: ``load`` points
``TORCHINDUCTOR_CACHE_DIR`` and ``TRITON_CACHE_DIR`` there unless they are set) ran its first shot in 34 s, 19 s
over warm, against 118 s cold. So the folder should be on the node's own disk (a baked image, a host path); the
artifact files are what travels between nodes, and provenance reads hits and misses from them.

A save writes a new file only when this process compiled an artifact no file of the folder holds; the files it
loaded or saved before whose artifacts the new one holds are then removed (never files another process saved
meanwhile, so concurrent workers never delete each other's work).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.files import atomic_write

__all__ = [
    "CacheLoad",
    "CacheState",
    "CacheUse",
    "CompileCache",
    "GraphCounts",
    "cache_key",
    "compiling_seconds",
    "device_key",
]

#: How a model call met the compile cache: ``hit`` (every graph it needed came from the cache, or from this
#: process's earlier calls), ``miss`` (it compiled a graph the cache lacked; saved after the call), ``off`` (nothing
#: compiled: the CPU, ``--no-compile``, or no cache folder set).
CacheState = Literal["hit", "miss", "off"]
_PREFIX = "artifacts-"
_DIGEST = 16  # hex characters of a file's SHA-256 in its name


def cache_key(torch_version: str, triton_version: str | None, gpu_name: str, capability: tuple[int, int]) -> str:
    """Name the cache folder of one torch, Triton and GPU combination (compiled kernels fit only that one).

    Every part is lower-cased with runs of characters other than letters, digits, ``.`` and ``+`` turned into
    ``-``. Example: ``cache_key("2.11.0+cu130", "3.6.0", "NVIDIA H100 80GB HBM3", (9, 0))`` →
    ``torch-2.11.0+cu130_triton-3.6.0_nvidia-h100-80gb-hbm3_sm90``.

    Raises:
        InvalidInput: a version or the GPU name is empty, or the capability is not two non-negative numbers.
    """
    if not torch_version or not gpu_name or (triton_version is not None and not triton_version):
        raise InvalidInput(
            f"a compile cache key needs torch and GPU names, got torch {torch_version!r}, triton {triton_version!r}, "
            f"GPU {gpu_name!r}"
        )
    if len(capability) != 2 or min(capability) < 0:
        raise InvalidInput(f"a GPU capability is (major, minor), got {capability!r}")

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9.+]+", "-", text.lower()).strip("-")

    triton = slug(triton_version) if triton_version else "none"
    return f"torch-{slug(torch_version)}_triton-{triton}_{slug(gpu_name)}_sm{capability[0]}{capability[1]}"


def device_key(device: Any) -> str:
    """The cache key of this process's torch and Triton on CUDA ``device`` (``cache_key``).

    Raises:
        InvalidInput: ``device`` is not a CUDA device (nothing is compiled elsewhere).
    """
    import torch

    target = torch.device(device)
    if target.type != "cuda":
        raise InvalidInput(f"compile caches are kept for CUDA GPUs only, got device {str(target)!r}")
    try:
        import triton

        triton_version: str | None = str(triton.__version__)
    except ImportError:
        triton_version = None
    capability = torch.cuda.get_device_capability(target)
    return cache_key(torch.__version__, triton_version, torch.cuda.get_device_name(target), capability)


@dataclass(frozen=True, slots=True)
class CacheLoad:
    """What a process loaded from its cache folder before compiling.

    Attributes:
        key: the folder's key.
        folder: the folder's path.
        files: artifact files loaded.
        artifacts: artifacts they held (graphs, kernels' entries, autotuning results).
        seconds: time spent loading.
        skipped: files not loaded, each with its reason (vanished, unreadable, damaged, refused by torch).
        inductor: the Inductor cache folder the process compiles into and finds compiled graphs in.
        triton: the Triton kernel cache folder.
    """

    key: str
    folder: str
    files: int
    artifacts: int
    seconds: float
    skipped: tuple[str, ...] = ()
    inductor: str = ""
    triton: str = ""

    def as_dict(self) -> dict[str, object]:
        """Return the load for provenance."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class GraphCounts:
    """Graphs this process handed to Inductor so far, by how Inductor's FX graph cache met them (torch's own
    counters); ``since`` gives one call's share.

    Attributes:
        found: graphs found compiled in the cache (Inductor's folder, or loaded artifacts).
        compiled: graphs compiled because the cache had none with their key.
        uncached: graphs compiled that Inductor cannot cache (it says why in its log).
    """

    found: int = 0
    compiled: int = 0
    uncached: int = 0

    @classmethod
    def now(cls) -> GraphCounts:
        """The process's counts so far (all zero where nothing was compiled)."""
        from torch._dynamo.utils import counters

        inductor = counters["inductor"]
        return cls(inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"], inductor["fxgraph_cache_bypass"])

    def since(self, before: GraphCounts) -> GraphCounts:
        """The counts added after ``before`` was taken."""
        return GraphCounts(self.found - before.found, self.compiled - before.compiled, self.uncached - before.uncached)

    def as_dict(self) -> dict[str, int]:
        """Return the counts for provenance."""
        return {"found": self.found, "compiled": self.compiled, "uncached": self.uncached}

    def __str__(self) -> str:
        return f"{self.compiled} graph(s) compiled, {self.found} found in the cache, {self.uncached} uncacheable"


def compiling_seconds() -> float:
    """Seconds this process's host spent compiling so far: every frame Dynamo compiled, from tracing to the compiled
    code or the cache entry found (torch's own timing); the GPU waits meanwhile. Zero where nothing compiled."""
    from torch._dynamo.utils import compilation_time_metrics

    return float(sum(compilation_time_metrics.get("_compile.compile_inner", ())))


@dataclass(frozen=True, slots=True)
class CacheUse:
    """How one model call used the compile cache, for provenance (``facts``).

    Attributes:
        graphs: the graphs the call handed to Inductor (None where nothing compiles: the CPU, ``--no-compile``).
    """

    state: CacheState
    key: str | None = None
    note: str = ""
    graphs: GraphCounts | None = None

    def facts(self) -> dict[str, object]:
        """``compile_cache`` (hit, miss or off), ``compile_cache_key``, ``compile_graphs`` (``GraphCounts``) where
        the call compiles, and ``compile_cache_note`` when there is one (why it is off, what was saved, why a save
        failed)."""
        facts: dict[str, object] = {"compile_cache": self.state, "compile_cache_key": self.key}
        if self.graphs is not None:
            facts["compile_graphs"] = self.graphs.as_dict()
        if self.note:
            facts["compile_cache_note"] = self.note
        return facts


@dataclass(frozen=True, slots=True)
class _File:
    """An artifact file this process loaded or saved, and the artifact keys it holds."""

    path: Path
    keys: frozenset[str]


class CompileCache:
    """One process's persistent compile cache: the folder ``root / key``.

    Load it once before the first compile (``load``), and ``save`` after each call that may have compiled; one
    instance per process (torch collects the artifacts of the whole process), shared by every model in it.

    Args:
        root: the cache root, shared by every torch, Triton and GPU combination.
        key: this process's combination (``device_key``).
    """

    def __init__(self, root: Path, key: str) -> None:
        self.root = Path(root)
        self.key = key
        self.folder = self.root / key
        self.loaded: CacheLoad | None = None
        self._known: set[str] = set()  # artifact keys of the files loaded and saved
        self._files: list[_File] = []

    def load(self) -> CacheLoad:
        """Load every artifact file of the folder into this process's compile caches; only the first call loads.

        A file that vanished (a newer save replaced it), cannot be read, does not match the digest in its name, or
        that torch refuses is skipped with the reason (``CacheLoad.skipped``); a missing folder loads nothing.
        """
        if self.loaded is not None:
            return self.loaded
        import torch

        # Inductor's and Triton's own caches are kept in the folder too (unless the operator pinned them): measured
        # on an H100, a fresh process whose artifacts alone were loaded still compiled for 113 s, one that found
        # these caches took 34 s for its first 85-frame shot (15 s warm; benchmarks/results/gpu_efficiency_*).
        for variable, name in (("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("TRITON_CACHE_DIR", "triton")):
            os.environ.setdefault(variable, str(self.folder / name))
        started = time.perf_counter()
        skipped: list[str] = []
        for manifest in sorted(self.folder.glob(f"{_PREFIX}*.json")):
            blob = manifest.with_suffix(".bin")
            try:
                data = blob.read_bytes()
            except OSError as error:
                skipped.append(f"{blob.name}: {error.strerror or error}")
                continue
            if hashlib.sha256(data).hexdigest()[:_DIGEST] != blob.stem.removeprefix(_PREFIX):
                skipped.append(f"{blob.name}: its bytes do not match the digest in its name")
                continue
            info = torch.compiler.load_cache_artifacts(data)
            if info is None:
                skipped.append(f"{blob.name}: torch {torch.__version__} could not read it")
                continue
            keys = _artifact_keys(info)
            self._files.append(_File(blob, keys))
            self._known |= keys
        self.loaded = CacheLoad(
            key=self.key,
            folder=str(self.folder),
            files=len(self._files),
            artifacts=len(self._known),
            seconds=round(time.perf_counter() - started, 3),
            skipped=tuple(skipped),
            inductor=os.environ["TORCHINDUCTOR_CACHE_DIR"],
            triton=os.environ["TRITON_CACHE_DIR"],
        )
        return self.loaded

    def save(self) -> CacheUse:
        """Save what this process compiled if any of it is new to the folder; say how the last call met the cache.

        Returns ``miss`` when the process holds artifacts no file of the folder has (it compiled them since the
        last save), after writing them as one new file (atomically: the bytes, then the manifest that makes them
        visible) and removing the files it loaded or saved before that the new one covers; ``hit`` otherwise. A
        failed write (a read-only or full disk) is noted, not raised: the call's result does not depend on the cache.
        """
        import torch

        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            return CacheUse("hit", self.key)
        data, info = saved
        keys = _artifact_keys(info)
        if keys <= self._known or any(keys <= held for held in self._held_elsewhere()):
            self._known |= keys
            return CacheUse("hit", self.key)
        digest = hashlib.sha256(data).hexdigest()[:_DIGEST]
        blob = self.folder / f"{_PREFIX}{digest}.bin"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_write(blob) as temporary:
                temporary.write_bytes(data)
            manifest = {
                "artifacts": sorted(keys),
                "bytes": len(data),
                "key": self.key,
                "torch": torch.__version__,
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            with atomic_write(blob.with_suffix(".json")) as temporary:
                temporary.write_text(json.dumps(manifest, indent=1) + "\n")
        except OSError as error:
            return CacheUse("miss", self.key, f"compiled, not saved: {error}")
        for old in [old for old in self._files if old.keys <= keys and old.path != blob]:
            old.path.with_suffix(".json").unlink(missing_ok=True)  # the manifest first: readers never see half
            old.path.unlink(missing_ok=True)
            self._files.remove(old)
        self._files.append(_File(blob, keys))
        self._known |= keys
        return CacheUse("miss", self.key, f"saved {len(data) / 1e6:.1f} MB as {blob.name}")

    def size_mb(self) -> float:
        """Megabytes of the artifact files in the folder now."""
        return round(sum(path.stat().st_size for path in self.folder.glob(f"{_PREFIX}*.bin")) / 1e6, 1)

    def _held_elsewhere(self) -> list[frozenset[str]]:
        """The artifact keys of each file other processes saved since this one loaded (their manifests)."""
        mine = {file.path.with_suffix(".json") for file in self._files}
        held = []
        for manifest in self.folder.glob(f"{_PREFIX}*.json"):
            if manifest in mine:
                continue
            try:
                held.append(frozenset(json.loads(manifest.read_text())["artifacts"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # vanished or unreadable: it holds nothing this process can count on
        return held


def _artifact_keys(info: Any) -> frozenset[str]:
    """Every artifact key of a torch ``CacheInfo``, prefixed by its kind (``inductor:…``, ``aot_autograd:…``)."""
    return frozenset(f"{kind}:{key}" for kind, keys in info.artifacts.items() for key in keys)
