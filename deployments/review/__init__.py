"""The review room: ``voidflow review`` serves a web app where supervisors review, fix and approve shots."""

from __future__ import annotations

from voidflow.deployments.review._app import COOKIE, ReviewConfig, create_app, is_loopback
from voidflow.deployments.review._jobs import Job, Jobs, voidflow_command

__all__ = ["COOKIE", "Job", "Jobs", "ReviewConfig", "create_app", "is_loopback", "voidflow_command"]
