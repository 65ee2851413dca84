"""Map the shared storage root between machines: the paths an edit names are the editor's, not the worker's.

An edit written on a Mac names ``/Volumes/show/...``; the same file is ``/mnt/show/...`` on a Linux workstation,
``S:\\...`` on Windows and ``/shows/...`` inside the cluster's containers. ``VOIDFLOW_PATH_MAP`` lists the
prefixes one machine rewrites, as ``FROM=TO`` pairs separated by ``;``::

    VOIDFLOW_PATH_MAP="/mnt/show=/shows;/Volumes/show=/shows;S:\\=/shows"

Rules (``map_path``):

- The longest matching ``FROM`` wins (``/mnt/show/vfx=/vfx`` beats ``/mnt/show=/shows``).
- Prefixes match whole path components only: ``/mnt/show`` maps ``/mnt/show`` and ``/mnt/show/a.mov``, never
  ``/mnt/showreel``. A trailing separator on either side is ignored.
- Windows prefixes (``C:\\...``, ``C:/...``, ``\\\\server\\share``) accept ``\\`` and ``/`` alike, and their drive
  letter in either case; every other character is compared exactly.
- The rest of the path is joined to ``TO`` with ``TO``'s separator (``\\`` for a Windows ``TO``, else ``/``).
- A path no prefix matches is returned unchanged.

Both functions are pure: settings read the variable and pass its text here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from voidflow.void_ops.exceptions import ConfigurationError, PathNotAllowed

__all__ = ["PathMap", "ensure_allowed", "map_path", "parse_allowed_roots", "parse_path_map"]

#: Parsed ``VOIDFLOW_PATH_MAP``: ``(from, to)`` pairs in the order written.
PathMap = tuple[tuple[str, str], ...]

_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")


def _is_windows(path: str) -> bool:
    return bool(_DRIVE.match(path)) or path.startswith("\\\\")


def _is_absolute(path: str) -> bool:
    return path.startswith("/") or _is_windows(path)


def _key(path: str) -> str:
    """Comparison form: Windows separators unified and the drive letter upper-cased; no trailing separator."""
    if _is_windows(path):
        path = path.replace("\\", "/")
        if _DRIVE.match(path):
            path = path[0].upper() + path[1:]
    stripped = path.rstrip("/")
    return stripped if stripped else "/"


def parse_path_map(text: str) -> PathMap:
    """Parse ``VOIDFLOW_PATH_MAP`` text into ``(from, to)`` pairs.

    Empty text (or only separators and spaces) gives an empty map. Spaces around entries and around ``=`` are
    dropped; empty entries (``a=b;;``) are ignored.

    Example:
        >>> parse_path_map("/mnt/show=/shows; /Volumes/show = /shows")
        (('/mnt/show', '/shows'), ('/Volumes/show', '/shows'))

    Raises:
        ConfigurationError: an entry has no ``=``, an empty or relative side, or a ``FROM`` that an earlier
            entry already maps elsewhere (the entry is named).
    """
    pairs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for raw in text.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        source, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not source or not target:
            raise ConfigurationError(f"VOIDFLOW_PATH_MAP: entry {entry!r} is not FROM=TO")
        for side in (source, target):
            if not _is_absolute(side):
                raise ConfigurationError(f"VOIDFLOW_PATH_MAP: entry {entry!r}: {side!r} is not an absolute path")
        key = _key(source)
        if key in seen and seen[key] != target:
            raise ConfigurationError(
                f"VOIDFLOW_PATH_MAP: entry {entry!r}: {source!r} is already mapped to {seen[key]!r}"
            )
        seen[key] = target
        pairs.append((source, target))
    return tuple(pairs)


def _rest(path_key: str, prefix_key: str) -> str | None:
    """What follows ``prefix_key`` in ``path_key`` ("" for the prefix itself), or None when it does not match."""
    if prefix_key == "/":
        return path_key.lstrip("/") if path_key.startswith("/") else None
    if path_key == prefix_key:
        return ""
    if path_key.startswith(prefix_key + "/"):
        return path_key[len(prefix_key) + 1 :]
    return None


def map_path(path: str, mapping: PathMap) -> str:
    """Rewrite ``path`` through the longest matching prefix of ``mapping``; unchanged when none matches.

    Examples:
        >>> rules = parse_path_map("/mnt/show=/shows;/mnt/show/vfx=/vfx;S:\\\\=/shows")
        >>> map_path("/mnt/show/ep01/a.mov", rules)
        '/shows/ep01/a.mov'
        >>> map_path("/mnt/show/vfx/sh010", rules)
        '/vfx/sh010'
        >>> map_path("s:\\\\ep01\\\\a.mov", rules)
        '/shows/ep01/a.mov'
        >>> map_path("/mnt/showreel/a.mov", rules)
        '/mnt/showreel/a.mov'
    """
    path_key = _key(path)
    best: tuple[int, str, str] | None = None
    for source, target in mapping:
        source_key = _key(source)
        rest = _rest(path_key, source_key)
        if rest is not None and (best is None or len(source_key) > best[0]):
            best = (len(source_key), target, rest)
    if best is None:
        return path
    _, target, rest = best
    separator = "\\" if _is_windows(target) else "/"
    stripped = target.rstrip("\\/")
    root = not stripped or (len(stripped) == 2 and bool(_DRIVE.match(stripped)))  # "/" or "C:\\"
    if not rest:
        return stripped + separator if root else stripped
    return stripped + separator + rest.replace("/", separator)


def parse_allowed_roots(text: str) -> tuple[str, ...]:
    """Parse ``VOIDFLOW_ALLOWED_ROOTS``: absolute folders separated by ``:`` (``;`` on Windows); empty allows all.

    Raises:
        ConfigurationError: a root is not absolute.
    """
    separator = ";" if ";" in text or _DRIVE.match(text) else ":"
    roots = tuple(part.strip() for part in text.split(separator) if part.strip())
    for root in roots:
        if not _is_absolute(root):
            raise ConfigurationError(f"VOIDFLOW_ALLOWED_ROOTS: '{root}' is not an absolute folder")
    return roots


def ensure_allowed(path: str | Path, roots: Sequence[str], *, what: str) -> None:
    """Refuse ``path`` unless it lies inside one of ``roots`` (after resolving ``..`` and symbolic links, so neither
    leads out); no roots allows every path. A printf frame pattern is checked by its folder.

    Raises:
        PathNotAllowed: the path is outside every root; the message names ``what``, the path and the roots.
    """
    if not roots:
        return
    given = Path(path).expanduser().absolute()
    # A file is resolved whole (a link to a file outside leads out; ``root/..`` is the folder above); a frame
    # pattern names no file, so its folder is.
    resolved = given.parent.resolve() / given.name if "%" in given.name else given.resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).expanduser().resolve()):
            return
    raise PathNotAllowed(f"{what} {path}: outside the allowed roots ({', '.join(roots)}); see VOIDFLOW_ALLOWED_ROOTS")
