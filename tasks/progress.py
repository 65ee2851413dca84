"""The batch's live numbers: shots done, running, failed and queued, and how busy the GPUs are: occupied (a model
call holds the card's worker) and, inside that, working (the GPU time of the calls' kernels).

The shot scheduler (``tasks.scheduler``) prints ``Progress.line()`` whenever a shot finishes, and the Prefect UI
shows the same line on the batch's progress artifact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

__all__ = ["Progress", "kernel_busy_fraction", "occupancy_fraction"]


def occupancy_fraction(stats: dict[str, object], since: float, now: float) -> float | None:
    """The share of ``now - since`` the GPUs spent in model calls (``tasks.placement`` stats); None without GPUs.

    Occupancy, not work: a call holds its GPU while its host side runs too (array copies, padding)."""
    return _share(stats, "busy_s", since, now)


def kernel_busy_fraction(stats: dict[str, object], since: float, now: float) -> float | None:
    """The share of ``now - since`` the GPUs' kernels worked for model calls (each call's ``kernel_s``, CUDA events
    around its device phases less its compiling); None without GPUs, or when no call measured any (calls on the CPU)."""
    share = _share(stats, "kernel_s", since, now)
    return share or None


def _share(stats: dict[str, object], key: str, since: float, now: float) -> float | None:
    gpus = stats.get("gpus")
    if not isinstance(gpus, dict) or not gpus or now <= since:
        return None
    seconds = sum(float(str(gpu.get(key, 0.0))) for gpu in gpus.values())
    return min(1.0, seconds / ((now - since) * len(gpus)))


@dataclass(slots=True)
class Progress:
    """Counts of a running batch."""

    total: int
    done: int = 0
    failed: int = 0
    waiting: int = 0
    running: int = 0
    gpu_occupancy: float | None = None
    gpu_kernels: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        """Shots with a final state (delivered, failed, or stopped at the review gate)."""
        return self.done + self.failed + self.waiting

    @property
    def queued(self) -> int:
        """Shots not yet handed to a worker."""
        return self.total - self.finished - self.running

    def line(self) -> str:
        """One line for people: ``12/40 · 9 done · 4 running · 1 failed · 26 queued · GPU occupied 97% (kernels
        84%) · 3m12s``."""
        parts = [f"{self.finished}/{self.total}", f"{self.done} done", f"{self.running} running"]
        parts += [f"{self.failed} failed", f"{self.queued} queued"]
        if self.waiting:
            parts.append(f"{self.waiting} awaiting review")
        if self.gpu_occupancy is not None:
            kernels = f" (kernels {self.gpu_kernels:.0%})" if self.gpu_kernels is not None else ""
            parts.append(f"GPU occupied {self.gpu_occupancy:.0%}{kernels}")
        elapsed = int(time.monotonic() - self.started)
        parts.append(f"{elapsed // 60}m{elapsed % 60:02d}s")
        return " · ".join(parts)

    def publish(self, artifact: UUID) -> None:
        """Show the numbers on the batch's Prefect progress artifact."""
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(artifact, 100.0 * self.finished / max(self.total, 1), description=self.line())
