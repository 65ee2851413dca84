"""Shared fixtures: test data paths, one Prefect test server and one local Ray for the whole run, a small demo."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ROOT / "tests" / "data"
# The team's shared test data beside the checkout; the vendored copy (same bytes) where it is absent.
SHARED = ROOT.parent / "shared" / "data" if (ROOT.parent / "shared" / "data" / "timelines").is_dir() else VENDORED
TIMELINES = SHARED / "timelines"

# Before Prefect or Ray is imported anywhere: private state, no telemetry, no token notice.
_STATE = Path(tempfile.mkdtemp(prefix="voidflow-tests-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["VOIDFLOW_HOME"] = str(_STATE / "home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("VOIDFLOW_DB_URL", None)
# A planted Gemini key, set before Ray starts so its workers see it; tests prove it is never written anywhere.
PLANTED_KEY = "sk-test-PLANTED-KEY-123"
os.environ["GEMINI_API_KEY"] = PLANTED_KEY


def timeline_files() -> list[Path]:
    """Every sample timeline in ../shared/data/timelines."""
    return sorted(p for p in TIMELINES.rglob("*") if p.suffix in (".otio", ".edl", ".xml"))


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect test server for the whole run; its URL is exported so Ray workers report to it."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url
        yield url
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def ray_cluster(prefect_api: str) -> Iterator[None]:
    """A local Ray started after the Prefect API URL is exported (its workers inherit it)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The demo shoot at 320x180 (same edit, sidecar and motion as the real demo, 16x fewer pixels)."""
    from voidflow.void_ops.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("demo"), width=320, height=180)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A live PostgreSQL server: ``VOIDFLOW_TEST_PG_URL`` (CI starts one), else a throwaway one started here
    with the Debian binaries (as the postgres user: initdb refuses root); skipped only where neither exists."""
    given = os.environ.get("VOIDFLOW_TEST_PG_URL")
    if given:
        yield given
        return
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        pytest.skip("no PostgreSQL: set VOIDFLOW_TEST_PG_URL or install postgresql (.ci/run does)")
    bin_dir = binaries[-1].parent
    root = Path(tempfile.mkdtemp(prefix="voidflow-pg-"))  # outside pytest's 0700 folders: postgres must reach it
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    port = _free_port()
    data, log = root / "data", root / "log"
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "start",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_postgres_database(server: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"voidflow_{uuid.uuid4().hex[:12]}"
    url = make_url(server)
    with psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    ) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger at the newest schema, once on SQLite and once on a live PostgreSQL server."""
    from voidflow.infra.database import ensure_schema

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = _fresh_postgres_database(request.getfixturevalue("postgres_server"))
    ensure_schema(url)
    return url


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite ledger at the newest schema."""
    from voidflow.infra.database import ensure_schema

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ensure_schema(url)
    return url
