"""The composition ring: Prefect flows that plan a batch and run it through ``tasks`` (``batch.run_batch``), and
the rerun planner (``rerun``). Import the modules; the package itself exports nothing."""

__all__: list[str] = []
