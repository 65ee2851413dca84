"""Production trackers for the publish tests: a ShotGrid schema for ``shotgun_api3``'s mockgun, and a real Zou
(Kitsu's server) started from its own virtualenv.

**ShotGrid.** mockgun (shipped inside ``shotgun_api3`` for this purpose) runs a ShotGrid site in memory from two
pickled schema files, which a studio downloads from its site with ``mockgun.generate_schema``. We have no site, so
``write_schema`` builds them: the entities and fields a default site has that voidflow reads or writes, in the
format ``schema_read`` / ``schema_entity_read`` return. ``Mockgun`` adds the one call mockgun leaves out,
``upload`` (it raises ``NotImplementedError``): like the real API it needs an existing entity, a url field and a
non-empty file, and stores the file's name, size and sha256 in the field, as an upload attachment.

**Kitsu.** ``start_zou`` runs Zou itself (``pip install zou`` in ``.venv-zou``, which ``make setup`` makes: Zou pins
its own Flask stack, so it does not share voidflow's virtualenv) against the suite's PostgreSQL server and a
``redis-server`` on loopback ports: ``zou init-db``, ``init-data``, ``create-admin``, then gunicorn. Measured here
(2 cores): 40 s to install, about 15 s to start. Movie normalisation is switched off
(``SKIP_NORMALIZATION_FULL``): Debian's ffmpeg 5.1 fails Zou's normalise step on a video-only H.264 movie, and a
review movie is H.264 already.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from shotgun_api3 import ShotgunError
from shotgun_api3.lib import mockgun

from voidflow.tasks.ledger import Ledger
from voidflow.void_ops import report
from voidflow.void_ops.pipeline import StageFile
from voidflow.void_ops.shots import MediaSource, Shot

ROOT = Path(__file__).resolve().parents[1]
ZOU_VENV = ROOT / ".venv-zou"

#: Fields of a default ShotGrid site, by entity, with their data types: what voidflow reads and writes.
_FIELDS: dict[str, dict[str, str]] = {
    "Project": {"name": "text", "sg_status": "list"},
    "Sequence": {"code": "text", "project": "entity"},
    "Shot": {
        "code": "text",
        "project": "entity",
        "sg_sequence": "entity",
        "sg_status_list": "status_list",
        "sg_cut_in": "number",
        "sg_cut_out": "number",
        "description": "text",
    },
    "Version": {
        "code": "text",
        "project": "entity",
        "entity": "entity",
        "description": "text",
        "sg_status_list": "status_list",
        "sg_first_frame": "number",
        "sg_last_frame": "number",
        "frame_count": "number",
        "frame_range": "text",
        "sg_uploaded_movie_frame_rate": "float",
        "sg_path_to_frames": "text",
        "sg_path_to_movie": "text",
        "sg_uploaded_movie": "url",
        "sg_task": "entity",
        "user": "entity",
    },
    "EventLogEntry": {"event_type": "text", "description": "text"},
}
#: The Version fields a site admin adds for voidflow (``tasks.publish.CUSTOM_FIELDS``).
CUSTOM: dict[str, str] = {"sg_head_handles": "number", "sg_tail_handles": "number", "sg_voidflow_batch": "text"}


def _field(name: str, data_type: str) -> dict[str, Any]:
    return {
        "name": {"value": name, "editable": True},
        "data_type": {"value": data_type, "editable": False},
        "entity_type": {"value": "", "editable": False},
        "editable": {"value": True, "editable": False},
        "mandatory": {"value": False, "editable": False},
        "properties": {
            "default_value": {"value": None, "editable": False},
            "valid_types": {"value": ["Project", "Shot", "Sequence", "Task", "HumanUser"], "editable": True},
            "valid_values": {"value": ["wtg", "rdy", "ip", "hld", "omt", "fin", "rev", "apr"], "editable": True},
        },
    }


def write_schema(folder: Path, *, custom: bool = True) -> tuple[Path, Path]:
    """Write a site's schema (``schema_read`` and ``schema_entity_read`` pickles) under ``folder``; ``custom``:
    with the Version fields voidflow needs a site admin to add."""
    fields = {entity: dict(found) for entity, found in _FIELDS.items()}
    if custom:
        fields["Version"].update(CUSTOM)
    schema = {
        entity: {"id": _field("id", "number"), **{name: _field(name, kind) for name, kind in found.items()}}
        for entity, found in fields.items()
    }
    entities = {entity: {"name": {"value": entity, "editable": True}} for entity in fields}
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "schema.pickle", folder / "schema_entity.pickle"
    for path, value in zip(paths, (schema, entities), strict=True):
        path.write_bytes(pickle.dumps(value, protocol=2))
    return paths


class Mockgun(mockgun.Shotgun):  # type: ignore[misc]
    """mockgun with ``upload``: a url field of an existing entity takes a non-empty file as an upload attachment."""

    def upload(
        self,
        entity_type: str,
        entity_id: int,
        path: str,
        field_name: str | None = None,
        display_name: str | None = None,
        tag_list: str | None = None,
    ) -> int:
        self._validate_entity_exists(entity_type, entity_id)
        if field_name is None or self._get_field_type(entity_type, field_name) != "url":
            raise ShotgunError(f"{entity_type}.{field_name} is not a File/Link field")
        data = Path(path).read_bytes()
        if not data:
            raise ShotgunError(f"{path}: cannot upload an empty file")
        attachment = len(getattr(self, "uploads", [])) + 1
        self.uploads = [*getattr(self, "uploads", []), Path(path)]
        self._db[entity_type][entity_id][field_name] = {
            "name": display_name or Path(path).name,
            "link_type": "upload",
            "content_type": "video/mp4",
            "file_size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "id": attachment,
        }
        return attachment


@dataclass(frozen=True, slots=True)
class Delivered:
    """A batch in a real ledger that delivered versions, each with a real review movie."""

    batch_id: str
    review: dict[str, Path]
    masks: dict[str, str]  # each shot's mask run's key


def delivered_batch(
    ledger: Ledger, folder: Path, names: tuple[str, ...], *, parent: str | None = None, qc_failed: tuple[str, ...] = ()
) -> Delivered:
    """Record a finished batch over ``names`` (12 frames at 24 fps, handles 2+2, first frame 1001) whose mask runs
    finished and whose deliver runs wrote a delivery and an H.264 review movie (``report.review_movie``), as
    ``process_shot`` records them."""
    edit = ledger.record_edit(folder / "edit.otio", "0" * 64, 24.0, [])
    batch = ledger.create_batch(
        edit_id=edit,
        edit_path=folder / "edit.otio",
        edit_sha256="0" * 64,
        out_dir=folder,
        backend="cleanplate",
        params={},
        kind="rerun" if parent else "run",
        parent_id=parent,
    )
    shots = [
        Shot(
            name,
            "V1",
            i,
            name,
            "clip",
            MediaSource(str(folder / "p.mov"), "movie", 24.0),
            24.0,
            10,
            8,
            (2, 2),
            0,
            "ready",
        )
        for i, name in enumerate(names)
    ]
    ledger.add_shots(batch, shots)
    reviews, masks = {}, {}
    for shot in shots:
        masks[shot.name] = uuid.uuid4().hex
        with ledger.stage(batch, shot.name, "mask", {}, key=masks[shot.name]):
            pass
        ramp = np.linspace(0, 255, 12 * 48 * 64 * 3, dtype=np.float32).reshape(12, 48, 64, 3).astype(np.uint8)
        label = ledger.allocate_version(batch, shot.name, {})
        out = folder / shot.name / label
        out.mkdir(parents=True)
        review = report.review_movie(ramp, out / "review.mp4", Fraction(24))
        delivery = out / f"{shot.name}_voidclean_{label}.mov"
        delivery.write_bytes(review.read_bytes())
        with ledger.stage(
            batch, shot.name, "deliver", {"first_frame_number": 1001, "version": label}, key=uuid.uuid4().hex
        ) as run:
            run.add(StageFile("delivery", delivery, "d" * 64, delivery.stat().st_size, 12, 24.0, 64, 48))
            run.add(StageFile("review", review, "r" * 64, review.stat().st_size, 12, 24.0, 64, 48))
        status = "qc_failed" if shot.name in qc_failed else "delivered"
        ledger.finish_version(shot.name, label, status=status, deliver_run_id=run.run_id)
        ledger.finish_shot(batch, shot.name, state="done", version=label)
        reviews[shot.name] = review
    ledger.finish_batch(batch)
    return Delivered(batch, reviews, masks)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Zou:
    """A running Zou: its API URL and the admin it was made with."""

    url: str
    login: str
    password: str


def zou_missing() -> str:
    """Why Zou cannot start here ("" when it can)."""
    if not (ZOU_VENV / "bin" / "zou").exists():
        return f"Zou is not installed in {ZOU_VENV} (make setup installs it)"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (make setup installs it)"
    return ""


@contextmanager
def start_zou(postgres_url: str, folder: Path) -> Iterator[Zou]:
    """Run Zou on loopback against a fresh database on ``postgres_url``'s server; stop it (and its Redis) after."""
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    database = f"zou_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        host=server.host,
        port=server.port,
        user=server.username,
        password=server.password,
        dbname=server.database,
        autocommit=True,
    ) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    redis_port, port = free_port(), free_port()
    password = f"kitsu-PLANTED-{uuid.uuid4().hex[:8]}"  # the tests look for it everywhere voidflow writes
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "DB_HOST": str(server.host),
        "DB_PORT": str(server.port),
        "DB_USERNAME": str(server.username),
        "DB_PASSWORD": server.password or "",
        "DB_DATABASE": database,
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "4",
        "KV_HOST": "127.0.0.1",
        "KV_PORT": str(redis_port),
        "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "PREVIEW_FOLDER": str(folder / "previews"),
        "TMP_DIR": str(folder / "tmp"),
        "BCRYPT_LOG_ROUNDS": "4",
        "SKIP_NORMALIZATION_FULL": "1",
        "DEBUG": "1",
    }
    (folder / "tmp").mkdir(exist_ok=True)
    bin_dir = ZOU_VENV / "bin"
    logs = (folder / "redis.log").open("wb"), (folder / "zou.log").open("wb")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    gunicorn = None
    try:
        for command in (["init-db"], ["init-data"], ["create-admin", "admin@example.com", "--password", password]):
            subprocess.run(
                [str(bin_dir / "zou"), *command], env=env, check=True, capture_output=True, timeout=300, cwd=folder
            )
        gunicorn = subprocess.Popen(
            [str(bin_dir / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "120", "zou.app:app"],
            env=env,
            cwd=folder,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, gunicorn)
        yield Zou(url, "admin@example.com", password)
    finally:
        for process in (gunicorn, redis):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        for log in logs:
            log.close()


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until Zou answers (its process exiting first fails at once); at most 120 s."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Zou exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/auth/authenticated", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered (401: nobody logged in)
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"Zou did not answer at {url} within 120 s")


def kitsu_production(zou: Zou, layout: dict[str, dict[str, str]], *, without_task: tuple[str, ...] = ()) -> None:
    """Make production ``Demo`` on ``zou``: ``layout`` maps sequence names to their shots, each with its status
    (``running``, ``standby``, ``canceled``); every shot but those ``without_task`` gets a Compositing task."""
    import gazu

    client = gazu.client.create_client(zou.url)
    gazu.log_in(zou.login, zou.password, client=client)
    project = gazu.project.new_project("Demo", client=client)
    compositing = gazu.task.get_task_type_by_name("Compositing", client=client)
    gazu.project.add_task_type(project, compositing, 1, client=client)
    for sequence_name, shots in layout.items():
        sequence = gazu.shot.new_sequence(project, sequence_name, client=client)
        for name, status in shots.items():
            shot = gazu.shot.new_shot(project, sequence, name, nb_frames=12, client=client)
            if name not in without_task:
                gazu.task.new_task(shot, compositing, client=client)
            if status != "running":
                gazu.shot.update_shot({"id": shot["id"], "status": status}, client=client)


def kitsu_comments(zou: Zou, shot_name: str, sequence: str = "SQ010") -> list[dict[str, Any]]:
    """The comments carrying a preview on the shot's Compositing task, oldest first."""
    import gazu

    client = gazu.client.create_client(zou.url)
    gazu.log_in(zou.login, zou.password, client=client)
    project = gazu.project.get_project_by_name("Demo", client=client)
    shot = gazu.shot.get_shot_by_name(
        gazu.shot.get_sequence_by_name(project, sequence, client=client), shot_name, client=client
    )
    task = gazu.task.get_task_by_entity(
        shot, gazu.task.get_task_type_by_name("Compositing", client=client), client=client
    )
    comments = [c for c in gazu.task.all_comments_for_task(task, client=client) if c.get("previews")]
    return sorted(comments, key=lambda c: str(c["created_at"]))
