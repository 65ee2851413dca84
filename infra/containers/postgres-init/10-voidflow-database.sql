-- Run once, when the compose postgres volume is first created: Prefect's database is POSTGRES_DB (prefect);
-- voidflow's ledger gets its own, so the two Alembic histories never share an alembic_version table.
CREATE DATABASE voidflow OWNER voidflow;
