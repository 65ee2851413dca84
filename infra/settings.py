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
| ``GEMINI_API_KEY`` (or ``VOIDFLOW_GEMINI_API_KEY``) | unset | the Gemini API key for the mask VLM (never stored) |
| ``VOIDFLOW_GEMINI_SECRET_BLOCK`` | unset | or: the name of a Prefect ``Secret`` block holding that key |
| ``VOIDFLOW_USER`` (or ``USER``) | unknown | who approves or rejects masks |
| ``VOIDFLOW_PATH_MAP`` | empty | ``from=to;…`` prefixes rewritten in edit and request paths on this host |
| ``VOIDFLOW_DB_TIMEOUT`` | 30 | ``db_timeout_s``: seconds a write waits for another process's lock on a SQLite ledger |
| ``VOIDFLOW_ALLOWED_ROOTS`` | empty (all) | ``/shows:/scratch``: the only folders read from and written to |
| ``HF_HUB_OFFLINE`` | unset | ``voidflow models fetch`` uses only the local Hugging Face cache |
| ``VOIDFLOW_WEBHOOK_URL`` | unset | where the end-of-batch summary is POSTed as JSON (Slack-compatible) |
| ``OCIO`` | unset: OCIO's built-in ACES studio config | the show's OCIO config (a ``.ocio`` file or ``ocio://`` URI) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from voidflow.infra.paths import parse_allowed_roots, parse_path_map
from voidflow.void_ops.exceptions import ConfigurationError

__all__ = ["Settings"]

_N = TypeVar("_N", int, float)


@dataclass(frozen=True, slots=True)
class Settings:
    """Effective settings of one voidflow process."""

    home: Path
    db_url: str
    prefect_api_url: str | None = None
    ray_address: str | None = None
    ray_cpus: int | None = None
    models_dir: Path | None = None
    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_secret_block: str | None = None
    user: str = "unknown"
    path_map: tuple[tuple[str, str], ...] = ()
    allowed_roots: tuple[str, ...] = ()
    webhook_url: str | None = field(default=None, repr=False)
    hf_offline: bool = False
    ocio: str | None = None
    db_timeout_s: float = 30.0

    def gemini_key(self) -> str | None:
        """The Gemini API key: the environment's, else the Prefect Secret block's; None when neither is set."""
        if self.gemini_api_key:
            return self.gemini_api_key
        if self.gemini_secret_block:
            from prefect.blocks.system import Secret

            block: Any = Secret.load(self.gemini_secret_block)
            return str(block.get())
        return None

    def shown(self) -> dict[str, object]:
        """The settings for display: every secret masked."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values["gemini_api_key"] = "***" if self.gemini_api_key else None
        values["webhook_url"] = "***" if self.webhook_url else None  # webhook URLs carry their token
        values["db_url"] = _mask_password(self.db_url)
        return {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("VOIDFLOW_HOME") or Path.home() / ".voidflow").expanduser().absolute()
        db_url = env.get("VOIDFLOW_DB_URL") or f"sqlite:///{home / 'voidflow.db'}"
        return cls(
            home=home,
            db_url=db_url,
            prefect_api_url=env.get("PREFECT_API_URL") or None,
            ray_address=env.get("VOIDFLOW_RAY_ADDRESS") or None,
            ray_cpus=_number(env, "VOIDFLOW_RAY_CPUS", int),
            models_dir=Path(env.get("VOIDFLOW_MODELS") or home / "models").expanduser().absolute(),
            gemini_api_key=env.get("GEMINI_API_KEY") or env.get("VOIDFLOW_GEMINI_API_KEY") or None,
            gemini_secret_block=env.get("VOIDFLOW_GEMINI_SECRET_BLOCK") or None,
            user=env.get("VOIDFLOW_USER") or env.get("USER") or env.get("LOGNAME") or "unknown",
            path_map=parse_path_map(env.get("VOIDFLOW_PATH_MAP") or ""),
            allowed_roots=parse_allowed_roots(env.get("VOIDFLOW_ALLOWED_ROOTS") or ""),
            hf_offline=(env.get("HF_HUB_OFFLINE") or "").lower() in ("1", "true", "yes"),
            webhook_url=env.get("VOIDFLOW_WEBHOOK_URL") or None,
            ocio=env.get("OCIO") or None,
            db_timeout_s=_number(env, "VOIDFLOW_DB_TIMEOUT", float) or 30.0,
        )


def _number(env: Mapping[str, str], name: str, kind: type[_N]) -> _N | None:
    """A positive number from the environment, or None where unset.

    Raises:
        ConfigurationError: the value is not a positive ``kind`` (one line naming the variable and the value).
    """
    text = env.get(name) or ""
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value <= 0:
        what = "whole number" if kind is int else "number"
        raise ConfigurationError(f"{name}={text!r}: expected a positive {what}")
    return value


def _mask_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
