"""Per-shot instructions from a sidecar file (YAML, JSON or CSV) and from ``voidflow`` metadata in the edit.

A YAML or JSON sidecar is keyed by shot name::

    shots:
      sh010:
        remove: the red ball
        prompt: A wooden floor in an empty room.
        matte: roto/sh010.%04d.png      # relative to the sidecar's folder; a movie or a sequence; or plate-alpha
        affected_ring: 24               # grow a 24 px "affected" ring around the object
        affected_matte: roto/sh010_shadow.%04d.png   # a roto of the affected region (127; 63 where it meets the matte)
        points: [{frame: 0, x: 320, y: 200}]
        boxes: [{frame: 0, box: [280, 160, 360, 240]}]
        seed: 7
        pass2: true                     # run VOID's pass 2 on this shot (default: the batch's --pass2)
        priority: 10                    # higher runs first; equal priorities run longest shot first (default 0)
        colourspace: ACEScg             # the plate's OCIO colour space (default: the batch's, else inferred)
        missing_frames: hold            # missing or empty frames of an image-sequence plate: skip, hold or black
      sh020:
        quadmask: masks/sh020_quadmask.mov   # a finished VOID quadmask (0/63/127/255): no matte, SAM2 or VLM

Mask fields (paths relative to the sidecar's folder; a movie, or a sequence as a printf pattern or ``####``; all
indexed like the plate: file index k covers plate index k):

- ``matte``: the object (white or alpha), or ``plate-alpha``.
- ``affected_matte``: the affected region (white or alpha, same forms as ``matte``); needs ``matte``. The affected
  class is the union of this roto and the ``affected_ring`` grown around the object; the ring never covers the
  object, so 63 (overlap) comes only from this roto.
- ``quadmask``: a finished quadmask, used alone (with ``matte``, ``affected_matte`` or ``affected_ring`` it is
  refused). Its first channel is read and quantised by VOID's value ranges, so a lossy movie still reads right.

``missing_frames`` says what to do with missing or empty frames of an image-sequence plate: ``skip`` the shot
(default), ``hold`` the previous frame, or fill with ``black``.

A CSV sidecar has a ``shot`` column and any of ``remove, prompt, matte, affected_ring, affected_matte, quadmask,
missing_frames, seed, pass2, priority, colourspace, points, boxes``; ``points`` and ``boxes`` hold the same lists as
JSON text. Empty cells mean "not set".

The same entry schema validates ``clip.metadata["voidflow"]`` and ``marker.metadata["voidflow"]`` in the edit.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voidflow.void_ops.exceptions import SidecarInvalid
from voidflow.void_ops.shots import PLATE_ALPHA, BoxPrompt, PointPrompt, ShotInstructions

__all__ = ["ShotEntry", "entry_to_instructions", "load_sidecar", "revise_prompts", "validate_entry"]

_CSV_COLUMNS = (
    "shot", "remove", "prompt", "matte", "affected_ring", "affected_matte", "quadmask", "missing_frames", "seed",
    "pass2", "priority", "colourspace", "points", "boxes",
)  # fmt: skip


class _Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frame: int = 0
    x: float
    y: float
    positive: bool = True


class _Box(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frame: int = 0
    box: tuple[float, float, float, float]

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = box
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got {list(box)}")
        return box


class ShotEntry(BaseModel):
    """One shot's instructions as written in a sidecar or in ``voidflow`` metadata."""

    model_config = ConfigDict(extra="forbid")
    shot: str | None = None
    remove: str = ""
    prompt: str = ""
    matte: str | None = None
    affected_ring: int = Field(default=0, ge=0, le=4096)
    affected_matte: str | None = Field(default=None, min_length=1)
    quadmask: str | None = Field(default=None, min_length=1)
    missing_frames: Literal["skip", "hold", "black"] = "skip"
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    pass2: bool | None = None
    priority: int = Field(default=0, ge=-1000, le=1000)
    colourspace: str | None = Field(default=None, min_length=1, max_length=200)
    points: list[_Point] = Field(default_factory=list)
    boxes: list[_Box] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_empty_cells(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value not in ("", None)}
        return data


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "entry"
    return f"field '{where}': {first['msg']} (got {first.get('input')!r})"


def _mask_conflict(entry: ShotEntry) -> str | None:
    """Why the entry's mask fields cannot go together ("field '<name>': <cause>"), or None when they can."""
    if entry.quadmask is not None:
        if entry.quadmask == PLATE_ALPHA:
            return f"field 'quadmask': {PLATE_ALPHA} is a matte, not a quadmask (use 'matte: {PLATE_ALPHA}')"
        given = [name for name in ("matte", "affected_matte") if getattr(entry, name)]
        given += ["affected_ring"] if entry.affected_ring else []
        if given:
            return f"field 'quadmask': a quadmask already holds every class; drop {', '.join(given)}"
    if entry.affected_matte and not entry.matte:
        return "field 'affected_matte': needs 'matte' (or 'matte: plate-alpha') for the object"
    return None


def validate_entry(data: object, *, where: str) -> ShotEntry:
    """Validate one shot entry.

    Args:
        data: the entry as parsed from YAML, JSON, CSV or edit metadata.
        where: the place to name in an error, e.g. ``"cut.yaml: shot 'sh010'"``.

    Raises:
        SidecarInvalid: the entry breaks the schema, or names mask fields that cannot go together (``quadmask``
            with any other mask field; ``affected_matte`` without ``matte``); the message names ``where``, the
            field and the value or cause.
    """
    try:
        entry = ShotEntry.model_validate(data)
    except ValidationError as error:
        raise SidecarInvalid(f"{where}: {_describe(error)}") from None
    conflict = _mask_conflict(entry)
    if conflict is not None:
        raise SidecarInvalid(f"{where}: {conflict}")
    return entry


def _mask_path(path: str | None, base: Path) -> str | None:
    """A mask field's path: ``####`` becomes ``%04d``; a relative path is resolved against ``base``."""
    if not path:
        return None
    path = path.replace("####", "%04d")
    if path == PLATE_ALPHA or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def entry_to_instructions(entry: ShotEntry, *, base: Path) -> ShotInstructions:
    """Turn a validated entry into instructions; relative mask paths (``matte``, ``affected_matte``, ``quadmask``)
    are resolved against ``base``."""
    return ShotInstructions(
        remove=entry.remove,
        prompt=entry.prompt,
        points=tuple(PointPrompt(p.frame, p.x, p.y, p.positive) for p in entry.points),
        boxes=tuple(BoxPrompt(b.frame, *b.box) for b in entry.boxes),
        matte=_mask_path(entry.matte, base),
        affected_ring=entry.affected_ring,
        affected_matte=_mask_path(entry.affected_matte, base),
        quadmask=_mask_path(entry.quadmask, base),
        missing_frames=entry.missing_frames,
        seed=entry.seed,
        pass2=entry.pass2,
        priority=entry.priority,
        colourspace=entry.colourspace,
    )


_MASK_FIELDS = ("matte", "affected_matte", "quadmask")


def _read_rows(path: Path) -> dict[str, object]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows: dict[str, object] = {}
        reader = csv.DictReader(text.splitlines())
        unknown = set(reader.fieldnames or ()) - set(_CSV_COLUMNS)
        if "shot" not in (reader.fieldnames or ()) or unknown:
            raise SidecarInvalid(
                f"{path}: CSV columns must include 'shot' and only {', '.join(_CSV_COLUMNS)}; got {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            name = (row.get("shot") or "").strip()
            if not name:
                raise SidecarInvalid(f"{path}: line {line}: empty 'shot' cell")
            for column in ("points", "boxes"):
                if row.get(column):
                    try:
                        row[column] = json.loads(row[column])
                    except json.JSONDecodeError as error:
                        raise SidecarInvalid(f"{path}: shot '{name}': field '{column}': not JSON ({error})") from None
            rows[name] = row
        return rows
    try:
        document = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        first_line = str(error).splitlines()[0]
        raise SidecarInvalid(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {first_line}") from None
    if not isinstance(document, dict) or not isinstance(document.get("shots"), dict) or set(document) != {"shots"}:
        raise SidecarInvalid(f"{path}: expected a mapping with one key 'shots' mapping shot names to entries")
    return dict(document["shots"])


def load_sidecar(path: Path) -> dict[str, ShotInstructions]:
    """Read and validate a sidecar file.

    Args:
        path: a ``.yaml``/``.yml``, ``.json`` or ``.csv`` file.

    Returns:
        Instructions by shot name. Mask paths (``matte``, ``affected_matte``, ``quadmask``) are absolute.

    Raises:
        SidecarInvalid: the file is missing, unparsable, or an entry breaks the schema (the message names the
            file, the shot and the field).
    """
    if path.suffix.lower() not in (".yaml", ".yml", ".json", ".csv"):
        raise SidecarInvalid(f"{path}: unsupported sidecar type '{path.suffix}' (use .yaml, .json or .csv)")
    if not path.is_file():
        raise SidecarInvalid(f"{path}: sidecar not found")
    entries = {}
    for name, data in _read_rows(path).items():
        where = f"{path}: shot '{name}'"
        if not isinstance(data, Mapping):
            raise SidecarInvalid(f"{where}: expected a mapping of fields, got {type(data).__name__}")
        entry = validate_entry(dict(data), where=where)
        entries[str(name)] = entry_to_instructions(entry, base=path.parent.resolve())
    return entries


def revise_prompts(
    source: Path | None,
    shot: str,
    *,
    points: list[dict[str, object]],
    boxes: list[dict[str, object]],
    remove: str | None = None,
) -> str:
    """A sidecar (YAML text) like ``source`` but with new object prompts for one shot, as a reviewer gave them.

    The shot's ``points`` and ``boxes`` are replaced (and ``remove`` when given). They now say where the object is,
    so SAM2 tracks it from them: a ``matte``, ``affected_matte`` or ``quadmask`` the entry had is dropped (the
    ``affected_ring`` stays). Every other entry is kept as written, with its mask paths made absolute so that the
    new sidecar can live in another folder.

    Raises:
        SidecarInvalid: ``source`` is unreadable, or the revised entry breaks the schema (the message names the
            field, e.g. ``field 'points.0.x'``).
    """
    rows = {} if source is None else _read_rows(source)
    base = source.parent.resolve() if source is not None else Path.cwd()
    shots: dict[str, object] = {}
    for name, data in rows.items():
        entry = dict(data) if isinstance(data, Mapping) else data
        if isinstance(entry, dict):
            for field in _MASK_FIELDS:
                entry[field] = _mask_path(entry.get(field) or None, base)
            entry = {key: value for key, value in entry.items() if value not in ("", None)}
        shots[str(name)] = entry
    old = shots.get(shot)
    revised = {k: v for k, v in old.items() if k not in (*_MASK_FIELDS, "shot")} if isinstance(old, dict) else {}
    revised |= {"points": points, "boxes": boxes} | ({"remove": remove} if remove is not None else {})
    validate_entry(revised, where=f"shot '{shot}'")
    shots[shot] = revised
    return yaml.safe_dump({"shots": shots}, sort_keys=False, allow_unicode=True)
