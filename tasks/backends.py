"""Which masker and inpainting backend a shot uses, by name.

| backend | what it is |
|---|---|
| ``cleanplate`` | CPU: temporal median of unmasked pixels, then OpenCV inpainting (``void_ops.cleanplate``) |
"""

from __future__ import annotations

from void_ops.cleanplate import CleanPlate
from void_ops.exceptions import ConfigurationError
from void_ops.mattes import MatteMasker
from void_ops.pipeline import Inpainter, Masker
from void_ops.shots import Shot

__all__ = ["make_backend", "make_masker"]


def make_backend(name: str) -> Inpainter:
    """Build the named inpainting backend.

    Raises:
        ConfigurationError: no backend has that name.
    """
    if name == "cleanplate":
        return CleanPlate()
    raise ConfigurationError(f"unknown backend '{name}' (available: cleanplate)")


def make_masker(shot: Shot) -> Masker:
    """Build the masker for ``shot``: its matte when it has one.

    Raises:
        ConfigurationError: the shot gives nothing to make a mask from.
    """
    if shot.instructions.matte:
        return MatteMasker()
    raise ConfigurationError(
        f"shot '{shot.name}': no mask source: give a 'matte' in the sidecar or the clip's voidflow metadata"
    )
