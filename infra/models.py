"""The model folder: fetch the weights from the Hugging Face Hub, lock their hashes, verify them later.

Layout under the models folder (``$VOIDFLOW_MODELS``), as the ``void`` backend reads it::

    CogVideoX-Fun-V1.5-5b-InP/        alibaba-pai/CogVideoX-Fun-V1.5-5b-InP, the whole repository (diffusers layout)
    void-model/void_pass1.safetensors netflix/void-model
    void-model/void_pass2.safetensors netflix/void-model
    sam2/sam2.1_hiera_large.pt        facebook/sam2.1-hiera-large
    raft/raft_large_C_T_SKHT_V2-ff5fadd5.pth   torchvision's RAFT weights: not on the Hub, placed by hand
    voidflow-models.lock.json         {"<relative path>": {"sha256": "...", "bytes": N}} for every file above

``fetch`` online downloads straight into the folder (``local_dir``; the Hub keeps its small bookkeeping under
``<target>/.cache/huggingface/``, which the lock leaves out). ``fetch(offline=True)`` never opens a connection
(``local_files_only=True``): each file comes from a Hugging Face cache (``cache_dir``, default the Hub's own,
filled beforehand by ``hf download`` or a connected ``fetch``) and is copied into place; a file missing from the
cache but already in the folder is kept, unless it no longer matches the lock. The lock is written only after
every source is in place; ``verify`` re-hashes every locked file against it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from voidflow.void_ops.exceptions import ConfigurationError
from voidflow.void_ops.files import atomic_write
from voidflow.void_ops.hashing import sha256_file

__all__ = ["LOCK_FILE", "SOURCES", "ModelSource", "Report", "fetch", "read_lock", "verify"]

#: The lock's name inside the models folder.
LOCK_FILE = "voidflow-models.lock.json"

_HUB_METADATA = ".cache"  # where huggingface_hub keeps local_dir bookkeeping, inside each target folder
_PARTIAL = ".voidflow-partial"  # a copy in progress; renamed into place when complete


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where one folder of the models folder comes from.

    Attributes:
        repo_id: Hugging Face repository (``owner/name``); for a manual source, the URL to download from by hand.
        files: files of the repository to fetch (paths inside it, kept under ``target``); None for all of them.
        target: folder under the models folder (a relative POSIX path).
        manual: not on the Hub: ``fetch`` never downloads it; it locks the files if they are in place and
            reports them as ``manual`` either way.
        revision: branch, tag or commit of the repository (``main``: the newest).
    """

    repo_id: str
    files: tuple[str, ...] | None
    target: str
    manual: bool = False
    revision: str = "main"


SOURCES: tuple[ModelSource, ...] = (
    ModelSource("netflix/void-model", ("void_pass1.safetensors", "void_pass2.safetensors"), "void-model"),
    ModelSource("alibaba-pai/CogVideoX-Fun-V1.5-5b-InP", None, "CogVideoX-Fun-V1.5-5b-InP"),
    ModelSource("facebook/sam2.1-hiera-large", ("sam2.1_hiera_large.pt",), "sam2"),
    # torchvision's Raft_Large_Weights.C_T_SKHT_V2; torchvision downloads it from here, the Hub does not have it.
    ModelSource(
        "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        ("raft_large_C_T_SKHT_V2-ff5fadd5.pth",),
        "raft",
        manual=True,
    ),
)

Report = Callable[[str], None]


def _check_relative(value: str, what: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ConfigurationError(f"model source {what} {value!r}: must be a relative POSIX path inside the folder")
    return path


class _Hashes:
    """sha256 of files, computed once per file state (size and mtime) within one call."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._seen:
            self._seen[key] = sha256_file(path)
        return self._seen[key]


def read_lock(models_dir: Path) -> dict[str, dict[str, object]]:
    """Read ``voidflow-models.lock.json``: ``{relative path: {"sha256": str, "bytes": int}}``.

    Raises:
        ConfigurationError: the lock is missing, not JSON, or not of that shape (the file is named).
    """
    lock = models_dir / LOCK_FILE
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{lock}: missing (run `voidflow models fetch`)") from None
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"{lock}: unreadable ({error})") from None
    if not isinstance(data, dict) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("bytes"), int)
        and not isinstance(entry.get("bytes"), bool)
        for entry in data.values()
    ):
        raise ConfigurationError(f"{lock}: not a voidflow models lock ({{path: {{sha256, bytes}}}} expected)")
    return data


def _files_under(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` (following links), without the Hub's ``.cache`` bookkeeping."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts[0] == _HUB_METADATA or path.name.endswith(_PARTIAL) or not path.is_file():
            continue
        yield path


def _copy_into(source: Path, destination: Path, hashes: _Hashes) -> bool:
    """Make ``destination`` a copy of ``source`` (resolved through links); return whether it was written."""
    real = source.resolve()
    if (
        destination.is_file()
        and not destination.is_symlink()
        and destination.stat().st_size == real.stat().st_size
        and hashes(destination) == hashes(real)
    ):
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(destination, temporary=destination.with_name(destination.name + _PARTIAL)) as partial:
        shutil.copyfile(real, partial)
    return True


def _hub_errors() -> tuple[type[Exception], ...]:
    """What the Hub raises for a repository or file it cannot deliver (HTTP, transport, cache and disk errors)."""
    from huggingface_hub import errors

    found: list[type[Exception]] = [OSError, ValueError, errors.HTTPError, errors.EntryNotFoundError]
    found += [getattr(errors, name) for name in ("XetDownloadError",) if hasattr(errors, name)]
    try:
        import httpx2  # the Hub's HTTP client from huggingface_hub 1.x on

        found.append(httpx2.HTTPError)
    except ImportError:
        pass
    return tuple(found)


class _Fetcher:
    """One ``fetch`` call: the options, the previous lock, and the file hashes seen so far."""

    def __init__(
        self,
        models_dir: Path,
        *,
        offline: bool,
        cache_dir: Path | None,
        endpoint: str | None,
        previous: Mapping[str, Mapping[str, object]],
        report: Report,
    ) -> None:
        self.models_dir = models_dir
        self.offline = offline
        self.cache_dir = cache_dir
        self.endpoint = endpoint
        self.previous = previous
        self.report = report
        self.hashes = _Hashes()

    def damaged(self, relative: str) -> bool:
        """Whether the file is locked and its bytes on disk no longer match the lock."""
        entry = self.previous.get(relative)
        path = self.models_dir / relative
        if entry is None or not path.is_file():
            return False
        return path.stat().st_size != entry["bytes"] or self.hashes(path) != entry["sha256"]

    def hub_error(self, source: ModelSource, name: str, error: Exception) -> ConfigurationError:
        where = f"the Hugging Face cache {self.cache_dir}" if self.cache_dir else "the Hugging Face cache"
        if self.offline:
            why = (
                f"not in {where} nor in {self.models_dir / source.target}, and offline "
                f"(fill the cache on a connected machine: hf download {source.repo_id}{' ' + name if name else ''})"
            )
        else:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            why = f"{type(error).__name__}: {first}".rstrip(": ")
        return ConfigurationError(f"{source.repo_id}: {name or 'whole repository'}: {why}")

    def fetch(self, source: ModelSource) -> list[str]:
        """Put ``source`` in place; return the relative paths of its files."""
        target = _check_relative(source.target, "target")
        for name in source.files or ():
            _check_relative(name, "file")
        if source.manual:
            return self._manual(source, target)
        if source.files is None:
            return self._whole_repo(source, target)
        return [self._one_file(source, target, name) for name in source.files]

    def _manual(self, source: ModelSource, target: PurePosixPath) -> list[str]:
        present = [str(target / name) for name in source.files or () if (self.models_dir / target / name).is_file()]
        missing = [str(target / name) for name in source.files or () if str(target / name) not in present]
        if missing:
            self.report(f"{source.target}: manual: place {', '.join(missing)} by hand (from {source.repo_id})")
        else:
            self.report(f"{source.target}: manual: {', '.join(present)} in place")
        return present

    def _one_file(self, source: ModelSource, target: PurePosixPath, name: str) -> str:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        relative = str(target / name)
        destination = self.models_dir / relative
        try:
            if self.offline:
                cached = hf_hub_download(
                    source.repo_id,
                    name,
                    revision=source.revision,
                    cache_dir=self.cache_dir,
                    local_files_only=True,
                )
                written = _copy_into(Path(str(cached)), destination, self.hashes)
                self.report(f"{relative}: {'copied from the cache' if written else 'up to date'}")
            else:
                hf_hub_download(
                    source.repo_id,
                    name,
                    revision=source.revision,
                    cache_dir=self.cache_dir,
                    local_dir=self.models_dir / target,
                    endpoint=self.endpoint,
                    force_download=self.damaged(relative),
                )
                self.report(f"{relative}: fetched from {source.repo_id}")
        except LocalEntryNotFoundError as error:
            if not (self.offline and destination.is_file()):
                raise self.hub_error(source, name, error) from None
            self._keep(source, relative)
        except _hub_errors() as error:
            raise self.hub_error(source, name, error) from None
        return relative

    def _whole_repo(self, source: ModelSource, target: PurePosixPath) -> list[str]:
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        folder = self.models_dir / target
        try:
            if self.offline:
                snapshot = Path(
                    str(
                        snapshot_download(
                            source.repo_id, revision=source.revision, cache_dir=self.cache_dir, local_files_only=True
                        )
                    )
                )
                written = sum(
                    _copy_into(path, folder / path.relative_to(snapshot), self.hashes)
                    for path in _files_under(snapshot)
                )
                self.report(f"{source.target}/: {written} file(s) copied from the cache")
            else:
                # The Hub trusts a file it downloaded before; one changed since then is downloaded again.
                damaged = {
                    path: self.hashes(path)
                    for path in _files_under(folder)
                    if self.damaged(path.relative_to(self.models_dir).as_posix())
                }
                snapshot_download(
                    source.repo_id,
                    revision=source.revision,
                    cache_dir=self.cache_dir,
                    local_dir=folder,
                    endpoint=self.endpoint,
                )
                for path, before in damaged.items():
                    if path.is_file() and self.hashes(path) == before:
                        hf_hub_download(
                            source.repo_id,
                            path.relative_to(folder).as_posix(),
                            revision=source.revision,
                            cache_dir=self.cache_dir,
                            local_dir=folder,
                            endpoint=self.endpoint,
                            force_download=True,
                        )
                self.report(f"{source.target}/: fetched from {source.repo_id}")
        except LocalEntryNotFoundError as error:
            if not (self.offline and folder.is_dir() and any(_files_under(folder))):
                raise self.hub_error(source, "", error) from None
            for path in _files_under(folder):
                self._keep(source, path.relative_to(self.models_dir).as_posix())
        except _hub_errors() as error:
            raise self.hub_error(source, "", error) from None
        return [path.relative_to(self.models_dir).as_posix() for path in _files_under(folder)]

    def _keep(self, source: ModelSource, relative: str) -> None:
        """Offline, with no cached copy: keep the file in the folder unless it no longer matches the lock."""
        if self.damaged(relative):
            raise ConfigurationError(
                f"{source.repo_id}: {relative}: sha256 no longer matches the lock and no cached copy can replace it "
                "(fetch online, or fill the Hugging Face cache first)"
            )
        self.report(f"{relative}: kept (not in the cache; already in the models folder)")


def _write_lock(models_dir: Path, entries: Mapping[str, Mapping[str, object]]) -> Path:
    lock = models_dir / LOCK_FILE
    with atomic_write(lock, temporary=lock.with_name(lock.name + ".partial")) as partial:
        partial.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n", encoding="utf-8")
    return lock


def fetch(
    models_dir: Path,
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
    sources: Iterable[ModelSource] = SOURCES,
    endpoint: str | None = None,
    report: Report | None = None,
) -> Path:
    """Put every source's files under ``models_dir`` and write the lock; return the lock's path.

    Files already in place are not downloaded again (the Hub checks them online; offline they are compared with
    the cache). A file that no longer matches the previous lock is downloaded (or copied) again, so the lock never
    blesses a damaged file. Lock entries of folders outside ``sources`` are kept.

    Args:
        models_dir: the models folder (created if missing).
        offline: never open a connection (``local_files_only=True``); set it when ``HF_HUB_OFFLINE`` is set.
        cache_dir: the Hugging Face cache to take files from offline (default: the Hub's own cache).
        sources: what to fetch (default ``SOURCES``).
        endpoint: a Hub mirror's URL (default: the Hub's, or ``HF_ENDPOINT``).
        report: called with one line per file or folder: what was done (``manual`` for sources placed by hand).

    Raises:
        ConfigurationError: a repository or file cannot be had (one line naming the repository and the file),
            or a target or file name is not a relative path.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    sources = tuple(sources)
    try:
        previous: Mapping[str, Mapping[str, object]] = read_lock(models_dir)
    except ConfigurationError:
        previous = {}
    fetcher = _Fetcher(
        models_dir,
        offline=offline,
        cache_dir=Path(cache_dir) if cache_dir else None,
        endpoint=endpoint,
        previous=previous,
        report=report or (lambda line: None),
    )
    fetched = [relative for source in sources for relative in fetcher.fetch(source)]
    targets = tuple(PurePosixPath(source.target) for source in sources)
    kept = {
        relative: dict(entry)
        for relative, entry in previous.items()
        if not any(PurePosixPath(relative).is_relative_to(target) for target in targets)
    }
    entries: dict[str, Mapping[str, object]] = dict(kept)
    for relative in fetched:
        path = models_dir / relative
        entries[relative] = {"sha256": fetcher.hashes(path), "bytes": path.stat().st_size}
    return _write_lock(models_dir, entries)


def verify(models_dir: Path) -> list[str]:
    """Re-hash every file of the lock; return one line per problem (empty when every file matches).

    Example problems: ``"void-model/void_pass1.safetensors: sha256 mismatch"``,
    ``"sam2/sam2.1_hiera_large.pt: missing"``, ``"raft/x.pth: size mismatch (10 bytes, lock says 12)"``, and a
    missing or unreadable lock (named).
    """
    models_dir = Path(models_dir)
    try:
        lock = read_lock(models_dir)
    except ConfigurationError as error:
        return [str(error)]
    hashes = _Hashes()
    problems: list[str] = []
    for relative, entry in sorted(lock.items()):
        path = models_dir / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif (size := path.stat().st_size) != entry["bytes"]:
            problems.append(f"{relative}: size mismatch ({size} bytes, lock says {entry['bytes']})")
        elif hashes(path) != entry["sha256"]:
            problems.append(f"{relative}: sha256 mismatch")
    return problems
