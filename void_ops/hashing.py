"""Content hashes of files, streamed (no third-party imports, so model code on a bare GPU host can use it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from voidflow.void_ops.exceptions import MediaInvalid, StorageUnavailable

__all__ = ["sha256_file"]

_BLOCK = 1 << 22


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes, read in 4 MiB blocks.

    Raises:
        MediaInvalid: the file does not exist.
        StorageUnavailable: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
    except FileNotFoundError:
        raise MediaInvalid(f"{path}: not found") from None
    except OSError as error:
        raise StorageUnavailable(f"{path}: {error.strerror}") from error
    return digest.hexdigest()
