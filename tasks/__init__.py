"""The ring that runs work: Prefect tasks, Ray actors and the ledger, wrapping ``void_ops``. Import the modules;
the package itself exports nothing."""

__all__: list[str] = []
