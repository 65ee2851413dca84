"""Makes ``voidflow.*`` importable from this checkout where voidflow is not installed (a bare GPU host).

Importing this module (scripts under ``benchmarks/`` do, first) registers ``voidflow`` as a namespace package whose
path is the repository root, so ``voidflow.void_ops`` is ``void_ops/`` here, exactly as the installed distribution
maps it (``pyproject.toml``'s package-dir). The processes this one starts need it too (a batch's Ray workers, which
otherwise die with "No module named 'voidflow'"): ``PYTHONPATH`` gets a private folder holding one link, ``voidflow``
to the repository root. Where voidflow is installed it changes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

__all__ = ["ROOT"]

ROOT = Path(__file__).resolve().parents[1]


def _register() -> None:
    package = types.ModuleType("voidflow")
    package.__path__ = [str(ROOT)]
    sys.modules["voidflow"] = package
    folder = Path(tempfile.mkdtemp(prefix="voidflow-checkout-"))
    (folder / "voidflow").symlink_to(ROOT, target_is_directory=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


if importlib.util.find_spec("voidflow") is None:
    _register()
