"""Content hashes: files streamed, folders walked, ordered parts combined, frame ranges of a clip's media.

Only the standard library at run time, so model code on a bare GPU host can use it. The ledger keeps a memo of file
hashes (by path, size and modification time) and passes it in as ``file_hash``; everything here is pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from voidflow.void_ops.exceptions import MediaInvalid, StorageUnavailable
from voidflow.void_ops.files import missing_or_empty

if TYPE_CHECKING:
    from voidflow.void_ops.shots import MediaSource

__all__ = ["content_hash", "range_hash", "sha256_file", "sha256_path"]

_BLOCK = 1 << 22


def _stream(digest: hashlib._Hash, path: Path) -> None:
    """Feed a file's bytes into ``digest`` in 4 MiB blocks, with the errors ``sha256_file`` documents."""
    try:
        with path.open("rb") as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
    except FileNotFoundError:
        raise MediaInvalid(f"{path}: not found") from None
    except OSError as error:
        raise StorageUnavailable(f"{path}: {error.strerror}") from error


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes, read in 4 MiB blocks.

    Raises:
        MediaInvalid: the file does not exist.
        StorageUnavailable: the file cannot be read.
    """
    digest = hashlib.sha256()
    _stream(digest, path)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """Return the hex SHA-256 of a file, or of a folder's files (an edit bundle such as ``.otiod``).

    A folder hashes, for each file under it in sorted order, its POSIX path relative to the folder and then its
    bytes, so renaming, moving or editing any file changes the hash. A file hashes as ``sha256_file``.

    Raises:
        MediaInvalid: the file does not exist.
        StorageUnavailable: a file cannot be read.
    """
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(child.relative_to(path).as_posix().encode())
        _stream(digest, child)
    return digest.hexdigest()


def content_hash(parts: Iterable[str]) -> str:
    """Combine ordered parts (content hashes, or short facts such as a frame range) into one hex SHA-256.

    Each part is followed by a NUL, so ``["ab", "c"]`` and ``["a", "bc"]`` hash differently.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def range_hash(
    source: MediaSource,
    first: int,
    count: int,
    *,
    file_hash: Callable[[Path], str] = sha256_file,
    allow_gaps: bool = False,
) -> str:
    """Content hash of frames [first, first + count) of a clip's media (0-based indices into the media).

    A movie combines its whole file's hash with the range (any byte may affect any frame); a sequence combines the
    hashes of the files of the range, in order. ``file_hash`` hashes one file (the ledger passes its memo).

    Example: frames 2..4 of ``sh010.%04d.exr`` starting at file 1001 hash files 1003, 1004 and 1005.
    With ``allow_gaps`` a missing or empty file stands as its name (so the hash changes when it appears).

    Raises:
        MediaInvalid: the movie, or a file of the sequence in the range, is missing (named).
        StorageUnavailable: a file cannot be read.
    """
    if source.kind == "movie":
        return content_hash([file_hash(Path(source.path)), f"{first}+{count}"])
    files = [source.file_for_index(index) for index in range(first, first + count)]
    absent = [file for file in files if missing_or_empty(file)]
    if absent and not allow_gaps:
        raise MediaInvalid(f"{source.path}: frame {absent[0].name} missing ({absent[0]})")
    return content_hash([f"gap:{file.name}" if file in absent else file_hash(file) for file in files])
