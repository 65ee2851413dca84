"""Makes ``voidflow.*`` importable from this checkout where voidflow is not installed (a bare GPU host).

Importing this module (scripts under ``benchmarks/`` do, first) registers ``voidflow`` as a namespace package whose
path is the repository root, so ``voidflow.void_ops`` is ``void_ops/`` here, exactly as the installed distribution
maps it (``pyproject.toml``'s package-dir). Where voidflow is installed it changes nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

__all__ = ["ROOT"]

ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("voidflow") is None:
    _package = types.ModuleType("voidflow")
    _package.__path__ = [str(ROOT)]
    sys.modules["voidflow"] = _package
