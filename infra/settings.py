"""voidflow's settings: the only place that reads environment variables.

Read once at the entry point (``Settings.from_env()``) and passed down as arguments. Precedence, highest first:
environment variables (``VOIDFLOW_*``, plus ``PREFECT_API_URL``), then the defaults below.

| Variable | Default | Meaning |
|---|---|---|
| ``VOIDFLOW_HOME`` | ``~/.voidflow`` | state folder: the embedded database, Prefect's home, logs |
| ``VOIDFLOW_DB_URL`` | ``sqlite:///$VOIDFLOW_HOME/voidflow.db`` | provenance database (SQLAlchemy URL) |
| ``PREFECT_API_URL`` | unset: a temporary local Prefect server | Prefect API to report to |
| ``VOIDFLOW_RAY_ADDRESS`` | unset: a local Ray | Ray cluster to join |
| ``VOIDFLOW_RAY_CPUS`` | all cores | CPUs of the local Ray |
| ``VOIDFLOW_MODELS`` | ``$VOIDFLOW_HOME/models`` | model weights: the CogVideoX-Fun base and the VOID checkpoints |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Effective settings of one voidflow process."""

    home: Path
    db_url: str
    prefect_api_url: str | None = None
    ray_address: str | None = None
    ray_cpus: int | None = None
    models_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("VOIDFLOW_HOME") or Path.home() / ".voidflow").expanduser().absolute()
        db_url = env.get("VOIDFLOW_DB_URL") or f"sqlite:///{home / 'voidflow.db'}"
        cpus = env.get("VOIDFLOW_RAY_CPUS")
        return cls(
            home=home,
            db_url=db_url,
            prefect_api_url=env.get("PREFECT_API_URL") or None,
            ray_address=env.get("VOIDFLOW_RAY_ADDRESS") or None,
            ray_cpus=int(cpus) if cpus else None,
            models_dir=Path(env.get("VOIDFLOW_MODELS") or home / "models").expanduser().absolute(),
        )
