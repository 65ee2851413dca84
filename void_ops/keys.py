"""Stage keys: one hash of everything a stage's output depends on.

A stage's key covers the content hashes of its inputs (plate range, matte, quadmask, fill), every parameter it
uses (weight hashes included), and the op's version. Two runs with the same key produce the same output, so the
second is a cache hit; change any input, parameter or version and the key changes, and so do the keys of every
stage downstream (their inputs include this stage's output hash).

Parameters that do not change the output (where a worker ran, which actor served it, a failed attempt's
traceback) are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

__all__ = ["VOLATILE", "stage_key"]

#: Parameter names that never change a stage's output.
VOLATILE = frozenset({"actor", "traceback", "host", "qc"})


def stage_key(stage: str, *, version: str, inputs: Mapping[str, str], params: Mapping[str, object]) -> str:
    """Return the hex sha256 of a stage's inputs, parameters and op version.

    Args:
        stage: ``mask``, ``pass1``, ``pass2`` or ``deliver``.
        version: the op's version (``masker_version``, ``backend_version`` … bumped when its output changes).
        inputs: content hashes by role, e.g. ``{"plate": …, "quadmask": …}``.
        params: every number and name the stage uses; keys in ``VOLATILE`` are ignored.

    Example: ``stage_key("mask", version="1", inputs={"plate": "ab…"}, params={"threshold": 128})``.
    """
    stable = {name: value for name, value in params.items() if name not in VOLATILE}
    document = {"stage": stage, "version": version, "inputs": dict(inputs), "params": stable}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
