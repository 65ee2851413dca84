"""The top ring: the ways voidflow is started. The ``voidflow`` command line (``cli``, its handlers in
``commands``) and the batch flow's Prefect deployments (``nightly``: schedules, work pools and parameters)."""

__all__: list[str] = []
