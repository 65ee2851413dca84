"""Settings: the only reader of environment variables."""

from __future__ import annotations

from voidflow.infra.settings import Settings


def test_the_db_timeout_is_read_once_into_settings() -> None:
    assert Settings.from_env({"VOIDFLOW_HOME": "/tmp/vf"}).db_timeout_s == 30.0
    assert Settings.from_env({"VOIDFLOW_HOME": "/tmp/vf", "VOIDFLOW_DB_TIMEOUT": "2.5"}).db_timeout_s == 2.5
    assert Settings.from_env({"VOIDFLOW_HOME": "/tmp/vf", "VOIDFLOW_DB_TIMEOUT": ""}).db_timeout_s == 30.0
