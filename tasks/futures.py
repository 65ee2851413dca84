"""Waiting on shot tasks: the first to finish, however many are pending (no ``ray.get`` in a loop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

__all__ = ["first_finished", "submission_window"]


def first_finished(futures: Sequence[Any]) -> Any:
    """Block until one of ``futures`` (Prefect futures from the ``RayTaskRunner``) has finished; return it.

    Its result is fetched once (``wait``), so its final state is known without asking the Prefect API, whose copy
    can lag behind. A future whose Ray worker died is finished too: its state is then ``Crashed``.
    """
    by_ref = {future.wrapped_future: future for future in futures}
    ready, _ = ray.wait(list(by_ref), num_returns=1)
    finished = by_ref[ready[0]]
    finished.wait()
    return finished


def submission_window() -> int:
    """How many shot tasks the scheduler keeps handed to Ray: two per CPU of the cluster.

    Each running shot holds its plate in memory; the window bounds that on edits of hundreds of shots, while
    keeping enough shots prepared on the CPUs to feed every GPU.
    """
    return max(4, 2 * int(ray.cluster_resources().get("CPU", 2)))
