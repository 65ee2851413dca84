"""The vendored test data is a faithful copy of the shared data it stands in for."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import ROOT, VENDORED


def test_vendored_copy_matches_shared_data() -> None:
    shared = ROOT.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("../shared/data is not beside this checkout; the vendored copy is in use")
    copied = sorted(p for p in VENDORED.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(copied) >= 15
    for path in copied:
        original = shared / path.relative_to(VENDORED)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest(), path
