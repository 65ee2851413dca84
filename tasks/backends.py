"""Which masker, inpainting backend and refiner a shot uses.

| backend | what it is |
|---|---|
| ``cleanplate`` | CPU: temporal median of unmasked pixels, then OpenCV inpainting (``void_ops.cleanplate``) |
| ``void`` | VOID pass 1 (and optionally pass 2) on resident Ray actors (``tasks.void_actors``) |
"""

from __future__ import annotations

from void_ops.cleanplate import CleanPlate
from void_ops.exceptions import ConfigurationError
from void_ops.mattes import MatteMasker
from void_ops.pipeline import Inpainter, Masker, Refiner
from void_ops.shots import Shot
from void_ops.void.backend import VoidConfig, VoidInpainter, VoidRefiner

__all__ = ["make_backend", "make_masker", "make_refiner"]


def make_backend(name: str, *, void: VoidConfig | None = None, actor: str | None = None) -> Inpainter:
    """Build the named inpainting backend; ``void`` runs on the named pass-1 actor.

    Raises:
        ConfigurationError: no backend has that name, or ``void`` has no configuration or actor.
    """
    if name == "cleanplate":
        return CleanPlate()
    if name == "void":
        if void is None or actor is None:
            raise ConfigurationError("the void backend needs its model configuration and a pass-1 actor")
        from tasks.void_actors import ActorModel

        return VoidInpainter(ActorModel(actor), void.settings)
    raise ConfigurationError(f"unknown backend '{name}' (available: cleanplate, void)")


def make_refiner(void: VoidConfig, actor: str) -> Refiner:
    """Build VOID's pass 2 on the named pass-2 actor."""
    from tasks.void_actors import ActorModel

    return VoidRefiner(ActorModel(actor), void.warp, void.settings)


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
