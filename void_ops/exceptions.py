"""The one exception tree of voidflow.

Every error voidflow raises on purpose is a ``VoidflowError``. The tree splits on one question: would trying the
same work again, unchanged, possibly succeed? ``retryable`` answers it, and the retry condition on every Prefect
task in ``tasks/`` reads nothing else::

    VoidflowError
    ├── TransientError            retryable = True
    │   ├── GpuOutOfMemory        the card ran out of memory (a cheaper recipe may fit)
    │   ├── VlmRateLimited        the VLM answered 429 or 5xx
    │   ├── StorageUnavailable    a read or write failed for a reason outside the input (I/O error, full disk)
    │   ├── StageTimeout          a stage ran past its time limit (the GPU that hung is quarantined)
    │   ├── WorkerLost            the process running the shot died
    │   └── TrackerUnavailable    the production tracker (ShotGrid, Kitsu) did not answer, or answered 5xx
    └── PermanentError            retryable = False
        ├── InvalidInput          (also a ValueError) an argument breaks a documented rule
        │   ├── EditUnreadable    the edit file is missing, unreadable or in no supported format
        │   ├── SidecarInvalid    a sidecar entry breaks the schema
        │   ├── MediaInvalid      media is missing, corrupt, too short, or of an unsupported kind
        │   ├── MatteInvalid      a matte does not match its plate
        │   └── PathNotAllowed    a path lies outside the configured allowed roots
        ├── ConfigurationError    settings, database or model folder are unusable
        ├── NoDeviceFits          no GPU of the batch can take the shot (too large for every card, all quarantined)
        ├── ModelLoadError        a checkpoint does not match the architecture it is loaded into
        ├── VlmResponseInvalid    the VLM answered, but not in the schema asked for
        ├── ConformError          a result does not fit the clip it should replace
        ├── StaleAttempt          an attempt that no longer owns its shot (its batch was interrupted)
        ├── DecisionConflict      a review decision on something not awaiting one (or another reviewer was first)
        └── TrackerRejected       the tracker refused a publish: unknown shot code, no permission, bad credentials

Messages are one line and name the thing (shot, file, argument), the rule and the value, so that a user who sees
only the message knows what to fix.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConformError",
    "DecisionConflict",
    "EditUnreadable",
    "GpuOutOfMemory",
    "InvalidInput",
    "MatteInvalid",
    "MediaInvalid",
    "ModelLoadError",
    "NoDeviceFits",
    "PathNotAllowed",
    "PermanentError",
    "SidecarInvalid",
    "StageTimeout",
    "StaleAttempt",
    "StorageUnavailable",
    "TrackerRejected",
    "TrackerUnavailable",
    "TransientError",
    "VlmRateLimited",
    "VlmResponseInvalid",
    "VoidflowError",
    "WorkerLost",
    "is_retryable",
]


class VoidflowError(Exception):
    """Base of every error voidflow raises on purpose."""

    retryable: bool = False


class TransientError(VoidflowError):
    """The same work may succeed if tried again."""

    retryable = True


class PermanentError(VoidflowError):
    """The same work will fail again until its input or configuration changes."""

    retryable = False


class GpuOutOfMemory(TransientError):
    """The accelerator ran out of memory."""


class VlmRateLimited(TransientError):
    """The VLM refused the call for now (HTTP 429 or 5xx)."""


class StorageUnavailable(TransientError):
    """Reading or writing files failed for a reason outside the input itself."""


class StageTimeout(TransientError):
    """A stage ran past its time limit; the device that hung is quarantined, so a retry runs elsewhere."""


class WorkerLost(TransientError):
    """The worker process running a shot died before it reported."""


class TrackerUnavailable(TransientError):
    """The production tracker did not answer (down, unreachable, timed out) or answered with a server error."""


class InvalidInput(PermanentError, ValueError):
    """An argument or input file breaks a documented rule."""


class EditUnreadable(InvalidInput):
    """The edit is missing, unreadable, or in no supported format."""


class SidecarInvalid(InvalidInput):
    """A sidecar entry breaks the schema."""


class MediaInvalid(InvalidInput):
    """Media is missing, corrupt, shorter than asked for, or of an unsupported kind."""


class MatteInvalid(InvalidInput):
    """A matte does not fit its plate (size, length, values)."""


class PathNotAllowed(InvalidInput):
    """A path lies outside the ``allowed_roots`` setting."""


class NoDeviceFits(PermanentError):
    """No GPU of the batch can take the shot: it needs more memory than any card, or every card is quarantined."""


class ConfigurationError(PermanentError):
    """Settings, the database or a model folder cannot be used."""


class ModelLoadError(PermanentError):
    """A checkpoint does not fit the architecture it is loaded into."""


class VlmResponseInvalid(PermanentError):
    """The VLM answered, but not in the schema it was asked for."""


class ConformError(PermanentError):
    """A result does not fit the clip it should replace."""


class StaleAttempt(PermanentError):
    """An attempt that no longer owns its shot: its batch was interrupted or its run was taken over."""


class DecisionConflict(PermanentError):
    """A review decision on a mask or version that is not awaiting one, or that another reviewer decided first."""


class TrackerRejected(PermanentError):
    """The production tracker refused a publish: an unknown shot code, a missing permission or field, or bad
    credentials."""


def is_retryable(error: BaseException) -> bool:
    """Return True when ``error`` is a voidflow error marked retryable."""
    return isinstance(error, VoidflowError) and error.retryable
