"""Settings (the only reader of the environment), the database and its migrations, the cluster start-up, the
models folder and path rules. Import the modules; the package itself exports nothing."""

__all__: list[str] = []
