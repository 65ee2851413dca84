"""Sidecars in YAML, JSON and CSV; a bad entry names the file, the shot and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voidflow.void_ops.exceptions import SidecarInvalid
from voidflow.void_ops.shots import BoxPrompt, PointPrompt
from voidflow.void_ops.sidecar import load_sidecar

ENTRY = {
    "remove": "the boom mic",
    "prompt": "An empty street at dusk.",
    "matte": "roto/sh010.####.png",
    "affected_ring": 12,
    "seed": 7,
    "points": [{"frame": 3, "x": 10, "y": 20}],
    "boxes": [{"frame": 0, "box": [1, 2, 30, 40]}],
}


def _check(instructions, folder: Path) -> None:  # type: ignore[no-untyped-def]
    assert instructions.remove == "the boom mic"
    assert instructions.matte == str(folder / "roto/sh010.%04d.png")
    assert instructions.affected_ring == 12 and instructions.seed == 7
    assert instructions.points == (PointPrompt(3, 10.0, 20.0, True),)
    assert instructions.boxes == (BoxPrompt(0, 1.0, 2.0, 30.0, 40.0),)


def test_yaml_json_and_csv_agree(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"shots": {"sh010": ENTRY}}))
    (tmp_path / "a.yaml").write_text(
        "shots:\n  sh010:\n" + "".join(f"    {key}: {json.dumps(value)}\n" for key, value in ENTRY.items())
    )
    row = {**ENTRY, "points": json.dumps(ENTRY["points"]), "boxes": json.dumps(ENTRY["boxes"])}
    header = "shot," + ",".join(row)
    cells = ",".join('"' + str(v).replace('"', '""') + '"' for v in row.values())
    (tmp_path / "a.csv").write_text(f"{header}\nsh010,{cells}\nsh020,,,,,,,\n")
    for name in ("a.json", "a.yaml", "a.csv"):
        entries = load_sidecar(tmp_path / name)
        _check(entries["sh010"], tmp_path)
    assert load_sidecar(tmp_path / "a.csv")["sh020"].remove == ""


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"affected_ring": -3}, "shot 'sh010': field 'affected_ring': Input should be greater than or equal to 0"),
        ({"colour": "red"}, "shot 'sh010': field 'colour': Extra inputs are not permitted"),
        ({"boxes": [{"box": [5, 5, 1, 1]}]}, "shot 'sh010': field 'boxes.0.box': Value error, box must be"),
        ({"points": [{"x": 1}]}, "shot 'sh010': field 'points.0.y': Field required"),
    ],
)
def test_bad_entries_name_shot_and_field(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"shots": {"sh010": entry}}))
    with pytest.raises(SidecarInvalid) as caught:
        load_sidecar(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_unparsable_and_misshapen_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("shots: [unclosed\n")
    with pytest.raises(SidecarInvalid, match="broken.yaml: not valid YAML"):
        load_sidecar(broken)
    flat = tmp_path / "flat.json"
    flat.write_text('{"sh010": {}}')
    with pytest.raises(SidecarInvalid, match="one key 'shots'"):
        load_sidecar(flat)
    columns = tmp_path / "cols.csv"
    columns.write_text("name,remove\nsh010,x\n")
    with pytest.raises(SidecarInvalid, match="CSV columns must include 'shot'"):
        load_sidecar(columns)
    with pytest.raises(SidecarInvalid, match="sidecar not found"):
        load_sidecar(tmp_path / "none.yaml")
    with pytest.raises(SidecarInvalid, match="unsupported sidecar type '.txt'"):
        load_sidecar(tmp_path / "notes.txt")


def test_mask_fields_and_missing_frames_in_yaml_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "shots:\n"
        "  sh010: {matte: roto/o.####.png, affected_matte: roto/shadow.mov, affected_ring: 4, missing_frames: hold}\n"
        "  sh020: {quadmask: masks/q.%04d.png, missing_frames: black}\n"
        "  sh030: {matte: plate-alpha, affected_matte: plate-alpha}\n"
    )
    (tmp_path / "a.csv").write_text(
        "shot,matte,affected_matte,quadmask,missing_frames\n"
        "sh010,roto/o.####.png,roto/shadow.mov,,hold\n"
        "sh020,,,masks/q.%04d.png,black\n"
        "sh030,plate-alpha,plate-alpha,,\n"
    )
    for name in ("a.yaml", "a.csv"):
        entries = load_sidecar(tmp_path / name)
        first, second, third = entries["sh010"], entries["sh020"], entries["sh030"]
        assert (first.matte, first.affected_matte, first.quadmask, first.missing_frames) == (
            str(tmp_path / "roto/o.%04d.png"),
            str(tmp_path / "roto/shadow.mov"),
            None,
            "hold",
        )
        assert (second.matte, second.quadmask, second.missing_frames) == (
            None,
            str(tmp_path / "masks/q.%04d.png"),
            "black",
        )
        assert (third.matte, third.affected_matte, third.missing_frames) == ("plate-alpha", "plate-alpha", "skip")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"quadmask": "q.mov", "affected_matte": "a.mov", "matte": "m.mov"},
            "field 'quadmask': a quadmask already holds every class; drop matte, affected_matte",
        ),
        (
            {"quadmask": "q.mov", "affected_ring": 8},
            "field 'quadmask': a quadmask already holds every class; drop affected_ring",
        ),
        ({"quadmask": "plate-alpha"}, "field 'quadmask': plate-alpha is a matte, not a quadmask"),
        ({"affected_matte": "a.mov"}, "field 'affected_matte': needs 'matte' (or 'matte: plate-alpha') for the object"),
        ({"missing_frames": "repeat"}, "field 'missing_frames': Input should be 'skip', 'hold' or 'black'"),
    ],
)
def test_mask_fields_that_cannot_go_together(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"shots": {"sh010": entry}}))
    with pytest.raises(SidecarInvalid) as caught:
        load_sidecar(path)
    assert str(caught.value).startswith(f"{path}: shot 'sh010': {message}")
    assert "\n" not in str(caught.value)
