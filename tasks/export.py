"""Ledger exports for analysis: one Parquet row per stage run.

| column | type | meaning |
|---|---|---|
| ``batch_id``, ``batch_kind``, ``parent_batch`` | string | the batch, ``run``/``rerun``, the batch it reruns |
| ``shot``, ``track``, ``version`` | string | the shot, its track, and the version the batch delivered |
| ``stage``, ``attempt``, ``state`` | string, int, string | which stage; ``done``, ``failed``, ``cached``, ``running`` |
| ``key``, ``cached_from`` | string, int | the stage key; for a cache hit, the run whose outputs it reused |
| ``started_at``, ``finished_at``, ``seconds`` | timestamp, timestamp, double | timings (UTC) |
| ``host``, ``gpu``, ``seed``, ``code_version`` | string, string, int, string | where and with what it ran |
| ``error_class``, ``error_message`` | string | why a failed run failed |
| ``params`` | string | the parameters actually used, as JSON |
| ``artifacts`` | string | the files written (path, sha256, bytes, frames, fps, size), as JSON |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from voidflow.infra.database import Batch
from voidflow.void_ops.exceptions import InvalidInput
from voidflow.void_ops.files import atomic_write

__all__ = ["SCHEMA", "stage_rows", "write_parquet"]

SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("batch_kind", pa.string()),
        ("parent_batch", pa.string()),
        ("shot", pa.string()),
        ("track", pa.string()),
        ("version", pa.string()),
        ("stage", pa.string()),
        ("attempt", pa.int32()),
        ("state", pa.string()),
        ("key", pa.string()),
        ("cached_from", pa.int64()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("seconds", pa.float64()),
        ("host", pa.string()),
        ("gpu", pa.string()),
        ("seed", pa.int64()),
        ("code_version", pa.string()),
        ("error_class", pa.string()),
        ("error_message", pa.string()),
        ("params", pa.string()),
        ("artifacts", pa.string()),
    ]
)


def stage_rows(batch: Batch) -> list[dict[str, Any]]:
    """One dict per stage run of the batch, with the columns of ``SCHEMA``."""
    rows = []
    for shot in batch.shots:
        for run in shot.stage_runs:
            seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
            artifacts = [
                {
                    "kind": a.kind,
                    "path": a.path,
                    "sha256": a.sha256,
                    "bytes": a.bytes,
                    "frames": a.frames,
                    "fps": a.fps,
                    "width": a.width,
                    "height": a.height,
                }
                for a in run.artifacts
            ]
            rows.append(
                {
                    "batch_id": batch.id,
                    "batch_kind": batch.kind,
                    "parent_batch": batch.parent_id,
                    "shot": shot.name,
                    "track": shot.track,
                    "version": shot.version,
                    "stage": run.stage,
                    "attempt": run.attempt,
                    "state": run.state,
                    "key": run.key,
                    "cached_from": run.cached_from_id,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "seconds": seconds,
                    "host": run.host,
                    "gpu": run.gpu,
                    "seed": run.seed,
                    "code_version": run.code_version,
                    "error_class": run.error_class,
                    "error_message": run.error_message,
                    "params": json.dumps(run.params, sort_keys=True, default=str),
                    "artifacts": json.dumps(artifacts),
                }
            )
    return rows


def write_parquet(batch: Batch, path: Path) -> tuple[Path, int]:
    """Write the batch's stage runs to ``path`` (atomically); return the path and the row count.

    Raises:
        InvalidInput: ``path`` does not end in ``.parquet``.
    """
    if path.suffix != ".parquet":
        raise InvalidInput(f"{path}: the export must be a .parquet file")
    rows = stage_rows(batch)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        pq.write_table(table, temporary)
    return path, len(rows)
