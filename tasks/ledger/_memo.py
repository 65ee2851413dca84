"""The ledger's memos: file hashes by path, size and modification time, and VLM exchanges by request hash.

The hashing itself is pure and lives in ``void_ops.hashing``; this module only remembers its results.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from voidflow.infra.database import FileHash, VlmExchangeRow, retry_conflicts
from voidflow.tasks.ledger._base import LedgerBase
from voidflow.void_ops import hashing
from voidflow.void_ops.shots import MediaSource

__all__ = ["MemoLedger"]


class MemoLedger(LedgerBase):
    """The ledger's memo of file hashes and its store of VLM exchanges."""

    def file_hash(self, path: Path) -> str:
        """Return the file's sha256, reusing the memo while its size and modification time are unchanged.

        Raises:
            MediaInvalid: the file does not exist.
            StorageUnavailable: the file cannot be read, or the memo cannot be written.
        """
        status = path.stat()
        key = str(path.resolve())
        with self._unit() as session:
            memo = session.get(FileHash, key)
            if memo is not None and (memo.size, memo.mtime_ns) == (status.st_size, status.st_mtime_ns):
                return memo.sha256
        digest = hashing.sha256_file(path)
        memo = FileHash(path=key, size=status.st_size, mtime_ns=status.st_mtime_ns, sha256=digest)

        def write() -> None:
            with self._unit() as session:
                session.merge(memo)

        # another shot hashing the same file at the same moment wins the insert; merging again updates its row
        retry_conflicts(write, conflicts=(IntegrityError,), failure=f"could not memoise the hash of {path}")
        return digest

    def range_hash(self, source: MediaSource, first: int, count: int, *, allow_gaps: bool = False) -> str:
        """Content hash of frames [first, first + count) of a ``MediaSource`` (``hashing.range_hash``, with file
        hashes memoised; ``allow_gaps``: a missing or empty file stands as its name).

        Raises:
            MediaInvalid: a frame of a sequence is missing (named), and gaps are not allowed.
        """
        return hashing.range_hash(source, first, count, file_hash=self.file_hash, allow_gaps=allow_gaps)

    def store_exchange(
        self,
        *,
        request_sha256: str,
        kind: str,
        model: str,
        summary: str,
        response: str,
        stage_run_id: int | None = None,
    ) -> None:
        """Store a VLM exchange once per request hash (the same request later is answered from here)."""
        try:
            with self._unit() as session:
                if (
                    session.execute(
                        select(VlmExchangeRow.id).where(VlmExchangeRow.request_sha256 == request_sha256)
                    ).scalar_one_or_none()
                    is None
                ):
                    session.add(
                        VlmExchangeRow(
                            request_sha256=request_sha256,
                            kind=kind,
                            model=model,
                            request_summary=summary,
                            response_text=response,
                            stage_run_id=stage_run_id,
                        )
                    )
        except IntegrityError:  # stored concurrently by another shot: same request, same answer
            return

    def exchanges(self) -> list[VlmExchangeRow]:
        """Every stored VLM exchange."""
        with self._unit() as session:
            return list(session.execute(select(VlmExchangeRow)).scalars())
