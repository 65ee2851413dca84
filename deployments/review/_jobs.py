"""Work the review room starts for a reviewer (a rerun, "resume approved"): voidflow's own command line, run in a
child process with this process's environment, so it is exactly what the same command typed in a terminal does.
Secrets stay in the environment; the command lines name only batches, shots, stages and files."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = ["Job", "JobState", "Jobs", "voidflow_command"]

JobState = Literal["running", "done", "failed"]


def voidflow_command(*arguments: str) -> list[str]:
    """The command line that runs ``voidflow <arguments>`` with this interpreter. ``-P``: the working folder is not
    put on the module path, so a stray ``yaml.py`` or ``click.py`` where the room was started cannot shadow a
    library in the child."""
    return [sys.executable, "-P", "-m", "voidflow.deployments.cli", *arguments]


@dataclass
class Job:
    """One started piece of work: its commands run one after the other, stopping at the first that fails."""

    id: str
    label: str
    commands: tuple[tuple[str, ...], ...]
    log: Path
    state: JobState = "running"
    returncode: int | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    def last_line(self) -> str:
        """The newest line the commands printed (the summary line once they finished)."""
        try:
            lines = [line for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines() if line]
        except FileNotFoundError:
            return ""
        return lines[-1][:300] if lines else ""

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "state": self.state,
            "returncode": self.returncode,
            "last_line": self.last_line(),
            "commands": ["voidflow " + " ".join(command[4:]) for command in self.commands],
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds") if self.finished_at else None,
        }


class Jobs:
    """The jobs this review room started, each logged to ``<folder>/<id>.log``."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, label: str, commands: Sequence[Sequence[str]]) -> Job:
        self._folder.mkdir(parents=True, exist_ok=True)
        job_id = uuid.uuid4().hex[:12]
        job = Job(job_id, label, tuple(tuple(c) for c in commands), self._folder / f"{job_id}.log")
        with self._lock:
            self._jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"review-job-{job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.started_at, reverse=True)

    @staticmethod
    def _run(job: Job) -> None:
        returncode = 0
        with job.log.open("a", encoding="utf-8") as log:
            for command in job.commands:
                log.write(f"$ voidflow {' '.join(command[4:])}\n")
                log.flush()
                returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
                if returncode != 0:
                    break
        job.returncode = returncode
        job.finished_at = datetime.now(UTC)
        job.state = "done" if returncode == 0 else "failed"
