"""How long planning a rerun takes over a ledger of 10,000 stage runs (target: under 1 s on a 2-core machine).

Seeds an SQLite ledger (or ``--db-url``) with 50 batches x 50 shots x 4 stages, the newest batch holding 10 failed
shots, then times what ``voidflow rerun --batch ID --failed --dry-run`` does after start-up: load the batch, pick
the failed shots, and plan every stage (the mask key is recomputed from the plate and matte content). Prints one
JSON object as its last line; ``--smoke`` seeds 5 batches instead of 50 (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)
from voidflow.infra.database import Batch, ShotRow, StageRun, engine_for, ensure_schema
from voidflow.tasks.backends import make_masker
from voidflow.tasks.batch import load_batch
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.planner import plan_rerun, rerun_shots
from voidflow.tasks.shots import mask_inputs
from voidflow.void_ops import media
from voidflow.void_ops.keys import stage_key
from voidflow.void_ops.shots import MediaSource, Shot, ShotInstructions

BATCHES, SHOTS, STAGES, FAILED = 50, 50, ("mask", "pass1", "pass2", "deliver"), 10


def seed(url: str, folder: Path, batches: int = BATCHES) -> tuple[str, dict[str, Shot]]:
    """Fill the ledger with ``batches`` batches; return the newest batch's ID and its shots as planned."""
    frames = np.zeros((12, 32, 48, 3), np.uint8)
    plate = media.write_movie(frames, folder / "plate.mkv", Fraction(24), codec="ffv1")
    matte = media.write_sequence(frames, folder / "roto" / "roto.%04d.png", Fraction(24), first_number=1001)
    source = MediaSource(plate.path, "movie", 24.0, 0, 12)
    shots = {
        f"sh{n:04d}": Shot(
            f"sh{n:04d}",
            "V1",
            n,
            "plate",
            "clip",
            source,
            24.0,
            2,
            8,
            (2, 2),
            12 * n,
            "ready",
            instructions=ShotInstructions(matte=matte.path),
        )
        for n in range(SHOTS)
    }
    ledger = Ledger(url)
    edit = ledger.record_edit(folder / "cut.otio", "0" * 64, 24.0, [])
    first = next(iter(shots.values()))
    params = make_masker(first).params(first)
    mask_key = stage_key(
        "mask", version=str(params["masker_version"]), inputs=mask_inputs(ledger, first), params=params
    )
    newest = ""
    with engine_for(url).begin() as connection:
        for b in range(batches):
            newest = uuid.uuid4().hex
            connection.execute(
                insert(Batch),
                [
                    {
                        "id": newest,
                        "state": "failed" if b == batches - 1 else "done",
                        "kind": "run",
                        "edit_id": edit,
                        "edit_path": str(folder / "cut.otio"),
                        "edit_sha256": "0" * 64,
                        "out_dir": str(folder),
                        "backend": "void",
                        "params": {},
                        "host": "bench",
                        "code_version": "bench",
                    }
                ],
            )
            rows = (
                connection.execute(
                    insert(ShotRow).returning(ShotRow.id),
                    [
                        {
                            "batch_id": newest,
                            "name": name,
                            "track": "V1",
                            "clip_index": i,
                            "clip_name": "plate",
                            "media": plate.path,
                            "rate": 24.0,
                            "source_start": 2,
                            "duration": 8,
                            "head": 2,
                            "tail": 2,
                            "record_start": 12 * i,
                            "state": "failed" if b == batches - 1 and i < FAILED else "done",
                            "reason": "",
                            "version": "v001",
                        }
                        for i, name in enumerate(shots)
                    ],
                )
                .scalars()
                .all()
            )
            runs = []
            for i, shot_id in enumerate(rows):
                for stage in STAGES:
                    failed = b == batches - 1 and i < FAILED and stage == "pass1"
                    runs.append(
                        {
                            "shot_id": shot_id,
                            "stage": stage,
                            "attempt": 1,
                            "state": "failed" if failed else "done",
                            "key": mask_key if stage == "mask" else uuid.uuid4().hex * 2,
                            "token": uuid.uuid4().hex,
                            "host": "bench",
                            "code_version": "bench",
                            "params": {"steps": 30},
                            "error_class": "GpuOutOfMemory" if failed else None,
                            "error_message": "CUDA out of memory" if failed else None,
                        }
                    )
            connection.execute(insert(StageRun), runs)
    return newest, shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", help="ledger to seed (default: a fresh SQLite file)")
    parser.add_argument("--smoke", action="store_true", help="5 batches instead of 50 (checks the script)")
    parser.add_argument("--out", type=Path, help="write the JSON result here too")
    args = parser.parse_args()
    batches = 5 if args.smoke else BATCHES
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        url = args.db_url or f"sqlite:///{folder / 'ledger.db'}"
        ensure_schema(url)
        batch_id, shots = seed(url, folder, batches)
        ledger = Ledger(url)
        began = time.perf_counter()
        batch = load_batch(ledger, batch_id)
        rows = rerun_shots(batch, failed=True)
        plans = plan_rerun(ledger, rows, shots=shots, pass2=True)
        seconds = time.perf_counter() - began
        result = {
            "stage_runs": batches * SHOTS * len(STAGES),
            "rerun_shots": len(plans),
            "plan_s": round(seconds, 3),
            "target_s": 1.0,
            "database": url.split(":", 1)[0],
            "first_plan": plans[0].as_dict(),
        }
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
