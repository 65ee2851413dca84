"""The ``passthrough`` backend: its fill is the plate, in the plate's dtype; ``make_backend`` builds it."""

from __future__ import annotations

import numpy as np
import pytest

from voidflow.tasks.backends import make_backend
from voidflow.void_ops.cleanplate import CleanPlate
from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput
from voidflow.void_ops.passthrough import Passthrough


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_fill_is_the_plate(dtype: type[np.generic]) -> None:
    rng = np.random.default_rng(0)
    frames = (rng.random((5, 8, 12, 3)) * 200).astype(dtype)
    quadmask = np.full((5, 8, 12), 255, np.uint8)
    quadmask[:, 2:5, 3:7] = 0
    fill = Passthrough()(frames, quadmask, seed=0, prompt="")
    assert fill.dtype == frames.dtype and np.array_equal(fill, frames)
    assert not np.shares_memory(fill, frames)
    with pytest.raises(InvalidInput, match="passthrough needs"):
        Passthrough()(frames, quadmask[:, :4], seed=0, prompt="")


def test_make_backend_builds_it() -> None:
    backend = make_backend("passthrough")
    assert isinstance(backend, Passthrough)
    assert backend.params() == {"backend": "passthrough", "backend_version": "1"}
    assert backend.describe(5, 8, 12) == {} and backend.max_frames is None


def test_one_pass_backends_and_a_second_pass() -> None:
    """Passthrough passes the plate through in a pass 2 too; cleanplate has one pass and says so; only the void
    backend is built for pass 2."""
    frames = np.zeros((3, 4, 6, 3), np.uint8)
    quadmask = np.full((3, 4, 6), 255, np.uint8)
    fill = Passthrough()(frames, quadmask, seed=0, prompt="", first_pass=frames + 1)
    assert np.array_equal(fill, frames)
    assert CleanPlate().max_frames is None
    with pytest.raises(InvalidInput, match="cleanplate has one pass"):
        CleanPlate()(frames, quadmask, seed=0, prompt="", first_pass=frames)
    with pytest.raises(ConfigurationError, match="no pass-2 model"):
        make_backend("cleanplate", "pass2")
