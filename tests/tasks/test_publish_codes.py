"""The shot code table: the mapping hook from voidflow shot names to tracker shot codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from voidflow.infra.settings import Settings
from voidflow.tasks.publish import shot_codes
from voidflow.void_ops.exceptions import ConfigurationError
from voidflow.void_ops.tracker import ShotCodes


def test_tables_in_yaml_json_and_csv_map_names_and_leave_the_rest(tmp_path: Path) -> None:
    (tmp_path / "codes.yaml").write_text("sh010: EP01_SH010\nsh020: SQ020/sh020\n")
    (tmp_path / "codes.json").write_text('{"sh010": "EP01_SH010"}')
    (tmp_path / "codes.csv").write_text("shot,code\nsh010, EP01_SH010\n")
    for name in ("codes.yaml", "codes.json", "codes.csv"):
        codes = ShotCodes.load(tmp_path / name)
        assert (codes("sh010"), codes("sh030")) == ("EP01_SH010", "sh030")
    settings = Settings.from_env({"VOIDFLOW_TRACKER_CODES": str(tmp_path / "codes.yaml")})
    assert shot_codes(settings)("sh020") == "SQ020/sh020"
    assert shot_codes(Settings.from_env({}))("sh020") == "sh020"


def test_a_bad_table_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- sh010\n- sh020\n")
    (tmp_path / "cols.csv").write_text("name,tracker\nsh010,X\n")
    for name in ("list.yaml", "cols.csv", "missing.yaml"):
        with pytest.raises(ConfigurationError) as error:
            ShotCodes.load(tmp_path / name)
        assert str(error.value).startswith(f"{tmp_path / name}: ") and "\n" not in str(error.value)
