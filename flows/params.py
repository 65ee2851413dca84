"""Batch parameters and planning: cheap, and free of Prefect and Ray so ``voidflow plan`` starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from void_ops import media
from void_ops.intake import Selection, plan_shots, read_edit
from void_ops.shots import MediaSource, Shot
from void_ops.sidecar import load_sidecar

__all__ = ["BACKENDS", "BatchRequest", "plan"]

#: Inpainting backends a batch can name (built in ``tasks.backends``).
BACKENDS = ("cleanplate",)


class BatchRequest(BaseModel):
    """The parameters of one batch (validated: they come from the command line or a deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    edit: Path
    out_dir: Path
    db_url: str
    sidecar: Path | None = None
    track: str | None = None
    select_all: bool = False
    backend: str = Field(default="cleanplate", pattern="^(" + "|".join(BACKENDS) + ")$")
    output: Literal["prores", "png", "exr"] = "prores"
    handles: int = Field(default=8, ge=0)
    seed: int = Field(default=0, ge=0)
    edl_rate: float | None = Field(default=None, gt=0)
    grow: int = Field(default=4, ge=0)
    feather: int = Field(default=4, ge=0)


def _frame_count(source: MediaSource) -> int:
    return media.probe(source).frames


def plan(request: BatchRequest) -> tuple[str, str, list[Shot]]:
    """Read the edit and sidecar and plan the shots: (edit path, edit hash, shots). Cheap; no Prefect or Ray.

    Raises:
        EditUnreadable, SidecarInvalid, InvalidInput: the edit, sidecar or selection is unusable.
    """
    edit = read_edit(request.edit, edl_rate=request.edl_rate)
    sidecar = load_sidecar(request.sidecar) if request.sidecar else None
    selection = Selection(track=request.track, everything=request.select_all)
    shots = plan_shots(edit, selection=selection, handles=request.handles, sidecar=sidecar, probe=_frame_count)
    return str(edit.path), edit.sha256, shots
