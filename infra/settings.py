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
| ``VOIDFLOW_COMPILE_CACHE`` | ``$VOIDFLOW_HOME/compile-cache`` | VOID's compiled code per torch, Triton and GPU (a \
node's folder or a shared path, read where each GPU worker runs); ``off``: every worker compiles from scratch |
| ``GEMINI_API_KEY`` (or ``VOIDFLOW_GEMINI_API_KEY``) | unset | the Gemini API key for the mask VLM (never stored) |
| ``VOIDFLOW_GEMINI_SECRET_BLOCK`` | unset | or: the name of a Prefect ``Secret`` block holding that key |
| ``VOIDFLOW_USER`` (or ``USER``) | unknown | who approves or rejects masks |
| ``VOIDFLOW_PATH_MAP`` | empty | ``from=to;…`` prefixes rewritten in edit and request paths on this host |
| ``VOIDFLOW_DB_TIMEOUT`` | 30 | ``db_timeout_s``: seconds a write waits for another process's lock on a SQLite ledger |
| ``VOIDFLOW_GPU_IDLE_S`` | 600 | ``gpu_idle_s``: seconds a shared VOID GPU worker stays idle before it leaves |
| ``VOIDFLOW_ALLOWED_ROOTS`` | empty (all) | ``/shows:/scratch``: the only folders read from and written to |
| ``HF_HUB_OFFLINE`` | unset | ``voidflow models fetch`` uses only the local Hugging Face cache |
| ``VOIDFLOW_WEBHOOK_URL`` | unset | where the end-of-batch summary is POSTed as JSON (Slack-compatible) |
| ``OCIO`` | unset: OCIO's built-in ACES studio config | the show's OCIO config (a ``.ocio`` file or ``ocio://`` URI) |
| ``VOIDFLOW_SHOTGRID_URL`` | unset | the ShotGrid (Flow Production Tracking) site ``--publish shotgrid`` uses |
| ``VOIDFLOW_SHOTGRID_SCRIPT`` | unset | its API script name |
| ``VOIDFLOW_SHOTGRID_KEY`` | unset | that script's key (never stored) |
| ``VOIDFLOW_SHOTGRID_SECRET_BLOCK`` | unset | or: the name of a Prefect ``Secret`` block holding that key |
| ``VOIDFLOW_SHOTGRID_PROJECT`` | unset | the show's project name on that site |
| ``VOIDFLOW_KITSU_URL`` | unset | the Kitsu (Zou) API ``--publish kitsu`` uses (``https://kitsu.studio/api``) |
| ``VOIDFLOW_KITSU_LOGIN`` | unset | the Kitsu user (an email) voidflow logs in as |
| ``VOIDFLOW_KITSU_PASSWORD`` | unset | that user's password (never stored) |
| ``VOIDFLOW_KITSU_SECRET_BLOCK`` | unset | or: the name of a Prefect ``Secret`` block holding that password |
| ``VOIDFLOW_KITSU_PROJECT`` | unset | the show's production name in Kitsu |
| ``VOIDFLOW_KITSU_TASK_TYPE`` | ``Compositing`` | the shot task voidflow's previews are published on |
| ``VOIDFLOW_TRACKER_CODES`` | unset | a YAML, JSON or CSV table of voidflow shot names to tracker shot codes |
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
    compile_cache: Path | None = None  # None: no persistent compile cache (``VOIDFLOW_COMPILE_CACHE=off``)
    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_secret_block: str | None = None
    user: str = "unknown"
    path_map: tuple[tuple[str, str], ...] = ()
    allowed_roots: tuple[str, ...] = ()
    webhook_url: str | None = field(default=None, repr=False)
    hf_offline: bool = False
    ocio: str | None = None
    db_timeout_s: float = 30.0
    gpu_idle_s: float = 600.0  # a shared GPU worker idle this long leaves (``tasks.void_actors``)
    review_token: str | None = field(default=None, repr=False)
    shotgrid_url: str | None = None
    shotgrid_script: str | None = None
    shotgrid_key: str | None = field(default=None, repr=False)
    shotgrid_secret_block: str | None = None
    shotgrid_project: str | None = None
    kitsu_url: str | None = None
    kitsu_login: str | None = None
    kitsu_password: str | None = field(default=None, repr=False)
    kitsu_secret_block: str | None = None
    kitsu_project: str | None = None
    kitsu_task_type: str = "Compositing"
    tracker_codes: Path | None = None

    def gemini_key(self) -> str | None:
        """The Gemini API key: the environment's, else the Prefect Secret block's; None when neither is set."""
        if self.gemini_api_key:
            return self.gemini_api_key
        if self.gemini_secret_block:
            from prefect.blocks.system import Secret

            block: Any = Secret.load(self.gemini_secret_block)
            return str(block.get())
        return None

    def tracker_secret(self, tracker: str) -> str | None:
        """A tracker's secret (the ShotGrid script key, the Kitsu password): the environment's, else its Prefect
        Secret block's; None when neither is set. Read in the process that publishes, never passed on."""
        given, block = (
            (self.shotgrid_key, self.shotgrid_secret_block)
            if tracker == "shotgrid"
            else (self.kitsu_password, self.kitsu_secret_block)
        )
        if given:
            return given
        if block:
            from prefect.blocks.system import Secret

            found: Any = Secret.load(block)
            return str(found.get())
        return None

    def shown(self) -> dict[str, object]:
        """The settings for display: every secret masked."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values["gemini_api_key"] = "***" if self.gemini_api_key else None
        values["webhook_url"] = "***" if self.webhook_url else None  # webhook URLs carry their token
        values["review_token"] = "***" if self.review_token else None
        values["shotgrid_key"] = "***" if self.shotgrid_key else None
        values["kitsu_password"] = "***" if self.kitsu_password else None
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
            compile_cache=_compile_cache(env.get("VOIDFLOW_COMPILE_CACHE") or "", home),
            gemini_api_key=env.get("GEMINI_API_KEY") or env.get("VOIDFLOW_GEMINI_API_KEY") or None,
            gemini_secret_block=env.get("VOIDFLOW_GEMINI_SECRET_BLOCK") or None,
            user=env.get("VOIDFLOW_USER") or env.get("USER") or env.get("LOGNAME") or "unknown",
            path_map=parse_path_map(env.get("VOIDFLOW_PATH_MAP") or ""),
            allowed_roots=parse_allowed_roots(env.get("VOIDFLOW_ALLOWED_ROOTS") or ""),
            review_token=env.get("VOIDFLOW_REVIEW_TOKEN") or None,
            hf_offline=(env.get("HF_HUB_OFFLINE") or "").lower() in ("1", "true", "yes"),
            webhook_url=env.get("VOIDFLOW_WEBHOOK_URL") or None,
            ocio=env.get("OCIO") or None,
            db_timeout_s=_number(env, "VOIDFLOW_DB_TIMEOUT", float) or 30.0,
            gpu_idle_s=_number(env, "VOIDFLOW_GPU_IDLE_S", float) or 600.0,
            shotgrid_url=env.get("VOIDFLOW_SHOTGRID_URL") or None,
            shotgrid_script=env.get("VOIDFLOW_SHOTGRID_SCRIPT") or None,
            shotgrid_key=env.get("VOIDFLOW_SHOTGRID_KEY") or None,
            shotgrid_secret_block=env.get("VOIDFLOW_SHOTGRID_SECRET_BLOCK") or None,
            shotgrid_project=env.get("VOIDFLOW_SHOTGRID_PROJECT") or None,
            kitsu_url=env.get("VOIDFLOW_KITSU_URL") or None,
            kitsu_login=env.get("VOIDFLOW_KITSU_LOGIN") or None,
            kitsu_password=env.get("VOIDFLOW_KITSU_PASSWORD") or None,
            kitsu_secret_block=env.get("VOIDFLOW_KITSU_SECRET_BLOCK") or None,
            kitsu_project=env.get("VOIDFLOW_KITSU_PROJECT") or None,
            kitsu_task_type=env.get("VOIDFLOW_KITSU_TASK_TYPE") or "Compositing",
            tracker_codes=Path(env["VOIDFLOW_TRACKER_CODES"]).expanduser().absolute()
            if env.get("VOIDFLOW_TRACKER_CODES")
            else None,
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


def _compile_cache(text: str, home: Path) -> Path | None:
    """``VOIDFLOW_COMPILE_CACHE``: a folder (default ``$VOIDFLOW_HOME/compile-cache``), or None for ``off``."""
    if text.strip().lower() == "off":
        return None
    return Path(text or home / "compile-cache").expanduser().absolute()


def _mask_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
