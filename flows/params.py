"""Batch parameters and planning: cheap, and free of Prefect and Ray so ``voidflow plan`` starts fast."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voidflow.void_ops import media
from voidflow.void_ops.cutdiff import UNCHANGED, diff_shots
from voidflow.void_ops.exceptions import ConfigurationError, InvalidInput
from voidflow.void_ops.intake import Edit, Selection, plan_shots, read_edit
from voidflow.void_ops.masking.vlm import VlmMode
from voidflow.void_ops.media import ExrCompression
from voidflow.void_ops.pipeline import Backend, OutputFormat
from voidflow.void_ops.shots import MediaProbe, MediaSource, Shot
from voidflow.void_ops.sidecar import load_sidecar
from voidflow.void_ops.stages import STAGE_ORDER, Stage, forced_stages
from voidflow.void_ops.tracker import Tracker

if TYPE_CHECKING:
    from voidflow.infra.paths import PathMap
    from voidflow.void_ops.masking.sam2_video import Sam2Settings
    from voidflow.void_ops.void.backend import VoidConfig

__all__ = [
    "BASE_FOLDER",
    "PASS1_FILE",
    "PASS2_FILE",
    "SAM2_FILE",
    "STAGE_ORDER",
    "BatchRequest",
    "MaskOptions",
    "VoidOptions",
    "forced_stages",
    "plan",
]

#: Where ``voidflow models fetch`` puts the weights, relative to the models folder.
BASE_FOLDER = "CogVideoX-Fun-V1.5-5b-InP"
PASS1_FILE = "void-model/void_pass1.safetensors"
PASS2_FILE = "void-model/void_pass2.safetensors"
SAM2_FILE = "sam2/sam2.1_hiera_large.pt"


class VoidOptions(BaseModel):
    """The ``void`` backend's parameters (defaults: the released recipe; see void-reference.md section 6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    models_dir: Path | None = None
    base: Path | None = None
    pass1_weights: Path | None = None
    pass2_weights: Path | None = None
    pass2: bool = False
    pass1_steps: int = Field(default=30, ge=1)
    pass2_steps: int = Field(default=50, ge=1)
    pass1_guidance: float = Field(default=1.0, ge=1.0)
    pass2_guidance: float = Field(default=6.0, ge=1.0)
    pass2_mask_mode: Literal["binary", "trimask"] = "binary"
    height: int = 384
    width: int = 672
    fit: Literal["letterbox", "crop"] = "letterbox"
    min_frames: int = 85
    max_frames: int = 197
    window: int = Field(default=22, ge=2)
    overlap: int = Field(default=4, ge=0)
    memory_mode: Literal["full", "model_offload", "sequential_offload"] = "full"
    compile: bool = True  # voidflow's fast path on CUDA GPUs (compiled, cuDNN attention); False: eager diffusers
    memory_gb: float | None = Field(default=None, gt=0)  # per GPU; None: the card's own memory
    gpu_timeout_s: float = Field(default=3600.0, gt=0)  # one model call, its wait in the GPU's queue included
    # Where the VOID workers run: on GPUs ("auto" waits up to gpu_wait_s for an autoscaled GPU group to grow from
    # zero, then refuses the batch), or on CPUs only when asked ("cpu": float32, for tests and tiny models).
    device: Literal["auto", "cpu"] = "auto"
    gpu_wait_s: float = Field(default=600.0, ge=0)
    flow: Literal["dis", "raft"] = "dis"
    raft_weights: Path | None = None

    def config(self, *, pass2: bool) -> VoidConfig:
        """Resolve paths and build the typed configuration; ``pass2`` says whether any shot runs pass 2.

        Raises:
            ConfigurationError: a model folder or weights file is missing (named, with the option that sets it).
            InvalidInput: the geometry breaks VOID's rules (sizes, frame counts).
        """
        from voidflow.void_ops.void.backend import ModelSpec, VoidConfig, VoidSettings
        from voidflow.void_ops.void.noise_warp import WarpSettings
        from voidflow.void_ops.void.values import PASS1, PASS2

        models = self.models_dir or Path("models")
        base = self.base or models / BASE_FOLDER
        first = self.pass1_weights or models / PASS1_FILE
        second = self.pass2_weights or models / PASS2_FILE
        needed = [(base, "base"), (first, "pass1_weights")] + ([(second, "pass2_weights")] if pass2 else [])
        for path, option in needed:
            if not path.exists():
                raise ConfigurationError(f"{path}: not found (set the models folder or '{option}')")
        settings = VoidSettings(self.height, self.width, self.fit, self.min_frames, self.max_frames)
        recipe1 = dataclasses.replace(
            PASS1, steps=self.pass1_steps, guidance=self.pass1_guidance, window=self.window, overlap=self.overlap
        )
        recipe2 = dataclasses.replace(
            PASS2,
            steps=self.pass2_steps,
            guidance=self.pass2_guidance,
            mask_mode=self.pass2_mask_mode,
            window=self.window,
            overlap=self.overlap,
        )
        placement: dict[str, Any] = {
            "memory_mode": self.memory_mode,
            "compile": self.compile,
            "memory_gb": self.memory_gb,
        }
        return VoidConfig(
            settings=settings,
            pass1=ModelSpec(str(base), str(first), recipe1, **placement),
            pass2=ModelSpec(str(base), str(second), recipe2, **placement) if pass2 else None,
            warp=WarpSettings(flow=self.flow, raft_weights=str(self.raft_weights) if self.raft_weights else None),
        )


class MaskOptions(BaseModel):
    """How masks are made for shots without a matte: SAM2 tracks the object, the VLM reasons about its effects."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
    sam2_checkpoint: Path | None = None
    sam2_random_weights: bool = False
    sam2_max_side: int = Field(default=1024, ge=16)
    sam2_image_size: int | None = None
    sam2_threshold: float = 0.0
    vlm: VlmMode = "auto"
    vlm_model: str = "gemini-2.5-pro"
    vlm_base_url: str | None = None
    gate: bool = False

    def sam2_settings(self, models_dir: Path | None) -> Sam2Settings:
        """The SAM2 settings, the checkpoint defaulting to ``<models>/sam2/sam2.1_hiera_large.pt``.

        Raises:
            ConfigurationError: the checkpoint is missing (``sam2_random_weights`` is for tests only).
        """
        from voidflow.void_ops.masking.sam2_video import Sam2Settings

        checkpoint = None
        if not self.sam2_random_weights:
            checkpoint = self.sam2_checkpoint or (models_dir or Path("models")) / SAM2_FILE
            if not checkpoint.is_file():
                raise ConfigurationError(f"{checkpoint}: SAM2 checkpoint not found (set masks.sam2_checkpoint)")
        return Sam2Settings(
            config=self.sam2_config,
            checkpoint=str(checkpoint) if checkpoint else None,
            max_side=self.sam2_max_side,
            image_size=self.sam2_image_size,
            threshold=self.sam2_threshold,
        )


class BatchRequest(BaseModel):
    """The parameters of one batch (validated: they come from the command line or a deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    edit: Path
    out_dir: Path
    db_url: str  # without its password, always (``_no_password``): the processes that connect add it back
    sidecar: Path | None = None
    track: str | None = None
    select_all: bool = False
    backend: Backend = "cleanplate"  # built in ``tasks.backends``
    output: OutputFormat = "prores"
    first_frame: int = Field(default=1001, ge=0)  # a sequence delivery's first file number (the show's)
    exr_compression: ExrCompression = "piz"
    plate_colourspace: str | None = Field(default=None, min_length=1)  # every plate's, unless its sidecar says
    ocio: str | None = Field(default=None, min_length=1)  # the show's OCIO config; None: OCIO's ACES studio config
    handles: int = Field(default=8, ge=0)
    seed: int = Field(default=0, ge=0)
    edl_rate: float | None = Field(default=None, gt=0)
    grow: int = Field(default=4, ge=0)
    feather: int = Field(default=4, ge=0)
    void: VoidOptions = VoidOptions()
    masks: MaskOptions = MaskOptions()
    previous_edit: Path | None = None
    previous_sidecar: Path | None = None
    conform_qc_failed: bool = False
    shot_timeout_s: float = Field(default=4 * 3600.0, gt=0)  # one shot, all its stages; past it the shot fails
    only_shots: tuple[str, ...] | None = None
    force_from: Stage | None = None
    parent_batch: str | None = None
    publish: Tracker | None = None  # the tracker delivered versions go to (a name: its secrets stay in settings)
    priority: int = 0  # across batches sharing the GPU service: higher first (nightly 0, an artist's rerun 10)

    @field_validator("db_url")
    @classmethod
    def _no_password(cls, url: str) -> str:
        """A request is a Prefect parameter (stored with every flow run and deployment): it never holds the
        database password, which each process takes from its own ``VOIDFLOW_DB_URL`` (``remember_password``)."""
        from voidflow.infra.database import public_url

        return public_url(url) if url else url


def _probe_media(source: MediaSource) -> MediaProbe:
    """What planning needs from the media file: its length and its own start timecode (one probe per clip)."""
    info = media.probe(source)
    return MediaProbe(frames=info.frames, timecode=info.timecode)


def _plan_edit(
    edit: Edit, sidecar_path: Path | None, request: BatchRequest, mapping: PathMap, roots: tuple[str, ...]
) -> list[Shot]:
    from voidflow.infra.paths import ensure_allowed, map_path

    def probe(source: MediaSource) -> MediaProbe:
        ensure_allowed(source.path, roots, what="media")  # before the file is opened
        return _probe_media(source)

    def resolve(path: str) -> str:
        return map_path(path, mapping) if mapping else path

    sidecar = load_sidecar(sidecar_path) if sidecar_path else None
    if sidecar and mapping:
        sidecar = {
            name: dataclasses.replace(
                entry,
                matte=resolve(entry.matte) if entry.matte else None,
                affected_matte=resolve(entry.affected_matte) if entry.affected_matte else None,
                quadmask=resolve(entry.quadmask) if entry.quadmask else None,
            )
            for name, entry in sidecar.items()
        }
    selection = Selection(track=request.track, everything=request.select_all)
    return plan_shots(edit, selection=selection, handles=request.handles, sidecar=sidecar, probe=probe, resolve=resolve)


def plan(
    request: BatchRequest,
    *,
    allowed_roots: tuple[str, ...] = (),
    path_map: PathMap = (),
) -> tuple[Edit, list[Shot]]:
    """Read the edit and sidecar and plan the shots. Cheap; no Prefect or Ray.

    With ``previous_edit`` (a nightly run after an edit changed), shots ``diff_shots`` finds unchanged are skipped
    and conform uses their newest delivered versions. With ``only_shots`` (a rerun), every other shot is skipped
    with the reason "not in this rerun".

    Args:
        request: the batch's parameters.
        allowed_roots: the only folders the edit, sidecar and output folder may lie in (``Settings.allowed_roots``,
            read by the entry point); empty: anywhere.
        path_map: where this host mounts the shared storage (``Settings.path_map``): prefixes rewritten in the
            media and matte paths the edit and sidecar name; empty: paths as written.

    Raises:
        EditUnreadable, SidecarInvalid, InvalidInput: the edit, sidecar or selection is unusable, or
            ``only_shots`` names a shot the edit does not have.
        PathNotAllowed: the edit, sidecar, previous edit or sidecar, or output folder lies outside ``allowed_roots``
            (a shot whose media does is skipped with that reason, its media never opened).
    """
    from voidflow.infra.paths import ensure_allowed

    ensure_allowed(request.edit, allowed_roots, what="edit")
    ensure_allowed(request.out_dir, allowed_roots, what="output folder")
    for name, given in (("sidecar", request.sidecar), ("previous edit", request.previous_edit),
                        ("previous sidecar", request.previous_sidecar)):  # fmt: skip
        if given is not None:
            ensure_allowed(given, allowed_roots, what=name)
    edit = read_edit(request.edit, edl_rate=request.edl_rate)
    shots = _plan_edit(edit, request.sidecar, request, path_map, allowed_roots)
    if request.previous_edit is not None:
        previous = read_edit(request.previous_edit, edl_rate=request.edl_rate)
        old = _plan_edit(previous, request.previous_sidecar, request, path_map, allowed_roots)
        unchanged = {change.shot for change in diff_shots(old, shots) if not change.needs_work}
        note = f"{UNCHANGED} ({request.previous_edit.name})"
        shots = [
            dataclasses.replace(shot, status="skipped", reason=note)
            if shot.status == "ready" and shot.name in unchanged
            else shot
            for shot in shots
        ]
    if request.only_shots is not None:
        unknown = sorted(set(request.only_shots) - {shot.name for shot in shots})
        if unknown:
            raise InvalidInput(f"{edit.path.name}: no shots named {', '.join(unknown)}")
        shots = [
            shot
            if shot.name in request.only_shots
            else dataclasses.replace(shot, status="skipped", reason="not in this rerun")
            for shot in shots
        ]
    return edit, shots
