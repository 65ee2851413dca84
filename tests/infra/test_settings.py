"""Settings: the only reader of environment variables."""

from __future__ import annotations

from voidflow.infra.settings import Settings


def test_the_db_timeout_is_read_once_into_settings() -> None:
    assert Settings.from_env({"VOIDFLOW_HOME": "/tmp/vf"}).db_timeout_s == 30.0
    assert Settings.from_env({"VOIDFLOW_HOME": "/tmp/vf", "VOIDFLOW_DB_TIMEOUT": "2.5"}).db_timeout_s == 2.5
    assert Settings.from_env({"VOIDFLOW_HOME": "/tmp/vf", "VOIDFLOW_DB_TIMEOUT": ""}).db_timeout_s == 30.0


def test_bad_numbers_are_one_line_configuration_errors() -> None:
    import pytest

    from voidflow.void_ops.exceptions import ConfigurationError

    for name, text, kind in (
        ("VOIDFLOW_RAY_CPUS", "two", "whole number"),
        ("VOIDFLOW_RAY_CPUS", "0", "whole number"),
        ("VOIDFLOW_RAY_CPUS", "1.5", "whole number"),
        ("VOIDFLOW_DB_TIMEOUT", "soon", "number"),
        ("VOIDFLOW_DB_TIMEOUT", "-3", "number"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            Settings.from_env({"VOIDFLOW_HOME": "/tmp/h", name: text})
        assert str(refused.value) == f"{name}={text!r}: expected a positive {kind}"
    settings = Settings.from_env({"VOIDFLOW_HOME": "/tmp/h", "VOIDFLOW_RAY_CPUS": "6", "VOIDFLOW_DB_TIMEOUT": "2.5"})
    assert (settings.ray_cpus, settings.db_timeout_s) == (6, 2.5)
