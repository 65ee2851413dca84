"""Writing files so a reader never sees half of one: write a temporary file beside the target, then rename it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "missing_or_empty"]


@contextlib.contextmanager
def atomic_write(path: Path, *, temporary: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body returns, rename it onto ``path`` (atomically).

    When the body or the rename raises, the temporary file is deleted and the error propagates; ``path`` is then
    untouched. The folder must exist (callers that may create it do so first, so those that must not can refuse).

    Args:
        path: the file to write; an existing file is replaced.
        temporary: the temporary file's path, in ``path``'s folder (so the rename stays on one file system).
            Default: hidden and unique, keeping the suffix for writers that choose a format by it:
            ``.<stem>.tmp-<32 hex><suffix>``.

    Example::

        with atomic_write(out / "report.html") as temporary:
            temporary.write_text(page)
    """
    temp = temporary or path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex}{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def missing_or_empty(path: Path) -> bool:
    """True where ``path`` is not there or holds zero bytes: a frame a render farm never wrote, or left empty."""
    try:
        return path.stat().st_size == 0
    except OSError:
        return True
