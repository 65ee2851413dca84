"""``VOIDFLOW_COMPILE_CACHE``: where GPU workers keep VOID's compiled code (issue 18)."""

from __future__ import annotations

from pathlib import Path

from voidflow.infra.settings import Settings


def test_the_compile_cache_defaults_under_home_and_can_be_switched_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert Settings.from_env({"VOIDFLOW_HOME": str(home)}).compile_cache == home / "compile-cache"
    shared = Settings.from_env({"VOIDFLOW_HOME": str(home), "VOIDFLOW_COMPILE_CACHE": str(tmp_path / "shared")})
    assert shared.compile_cache == tmp_path / "shared"
    for off in ("off", "OFF", " off "):
        assert Settings.from_env({"VOIDFLOW_HOME": str(home), "VOIDFLOW_COMPILE_CACHE": off}).compile_cache is None
    assert Settings(home=home, db_url="sqlite://").compile_cache is None  # built by hand: no cache unless given
    assert Settings.from_env({"VOIDFLOW_HOME": str(home)}).shown()["compile_cache"] == str(home / "compile-cache")
