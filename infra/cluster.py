"""Start (or join) the Prefect API and Ray for one voidflow process, in the one order that works.

Ray workers are separate processes: each reports its task runs to whatever ``PREFECT_API_URL`` its environment
holds. So the API comes first: a configured one, or a temporary local server that this process starts; its URL
is exported; only then is Ray started (or joined), and its workers inherit the URL. Without that order every
worker starts a Prefect server of its own and its task runs land in the wrong database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from voidflow.infra.settings import Settings
from voidflow.void_ops.exceptions import StorageUnavailable

__all__ = ["orchestration", "prepare_environment"]


def prepare_environment(settings: Settings) -> None:
    """Set the environment Prefect and Ray read when they start. Call at the entry point, before importing them.

    Prefect keeps its state under ``$VOIDFLOW_HOME/prefect`` unless ``PREFECT_HOME`` is set, and sends no
    analytics; Ray skips its token notice on a local cluster. ``VOIDFLOW_HOME`` is created when it does not exist.

    Raises:
        StorageUnavailable: ``VOIDFLOW_HOME`` cannot be created.
    """
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageUnavailable(f"VOIDFLOW_HOME {settings.home}: cannot be created ({error.strerror})") from None
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if settings.prefect_api_url:
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url


def _drain_prefect_workers() -> None:
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            pending = APILogWorker.instance().drain()
            if inspect.isawaitable(pending):
                await pending
        except RuntimeError:  # the log worker never started
            pass
        drained = EventsWorker.drain_all()
        if inspect.isawaitable(drained):
            await drained

    run_coro_as_sync(drain())


@contextmanager
def _prefect_api(settings: Settings) -> Iterator[str]:
    import prefect.settings
    from prefect.server.api.server import SubprocessASGIServer

    with ExitStack() as stack:
        url = settings.prefect_api_url
        if not url:
            server = SubprocessASGIServer()
            server.start()
            url = server.api_url
            stack.callback(server.stop)
            stack.callback(_drain_prefect_workers)  # runs before stop: flush logs and events to the server
        os.environ["PREFECT_API_URL"] = url
        stack.enter_context(prefect.settings.temporary_settings(updates={prefect.settings.PREFECT_API_URL: url}))
        yield url


@contextmanager
def orchestration(settings: Settings, *, ray_address: str | None = None) -> Iterator[str]:
    """Run the body with a Prefect API and a Ray cluster ready; yield the Prefect API URL.

    Args:
        settings: the process's settings.
        ray_address: a Ray cluster to join (``ray://host:10001`` or ``auto``); None starts a local one unless Ray
            is already running in this process, or ``settings.ray_address`` names one.
    """
    import ray

    prepare_environment(settings)
    with _prefect_api(settings) as url:
        address = ray_address or settings.ray_address
        started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=True)
            else:
                ray.init(num_cpus=settings.ray_cpus, include_dashboard=False, log_to_driver=True)
            started = True
        try:
            yield url
        finally:
            if started:
                ray.shutdown()
