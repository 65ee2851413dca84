"""The models folder: fetch from a Hugging Face cache laid out like the Hub's, lock, verify. No network."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from voidflow.flows.params import BASE_FOLDER, PASS1_FILE, PASS2_FILE
from voidflow.infra.models import LOCK_FILE, SOURCES, ModelSource, fetch, read_lock, verify
from voidflow.void_ops.exceptions import ConfigurationError

VOID = {"void_pass1.safetensors": b"pass one weights", "void_pass2.safetensors": b"pass two weights!"}
BASE = {
    "model_index.json": b'{"_class_name": "CogVideoXPipeline"}',
    "transformer/config.json": b'{"in_channels": 33}',
    "transformer/diffusion_pytorch_model.safetensors": b"transformer weights",
    "vae/config.json": b'{"scaling_factor": 0.7}',
    "tokenizer/spiece.model": b"sentencepiece",
}
SAM2 = {"sam2.1_hiera_large.pt": b"sam2 weights", "sam2.1_hiera_l.yaml": b"model: {}"}
RAFT = "raft/raft_large_C_T_SKHT_V2-ff5fadd5.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection that leaves this machine (a guard on the socket, not on huggingface_hub)."""
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"a test tried to reach {address}")
        connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


def hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str) -> None:
    """Lay out ``repo_id`` as huggingface_hub caches it: blobs by hash, a snapshot of links, ``refs/main``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "hf-cache"
    hub_cache(root, "netflix/void-model", VOID, "1" * 40)
    hub_cache(root, "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP", BASE, "2" * 40)
    hub_cache(root, "facebook/sam2.1-hiera-large", SAM2, "3" * 40)
    return root


def expected_lock() -> dict[str, dict[str, object]]:
    files = {f"void-model/{k}": v for k, v in VOID.items()}
    files |= {f"CogVideoX-Fun-V1.5-5b-InP/{k}": v for k, v in BASE.items()}
    files["sam2/sam2.1_hiera_large.pt"] = SAM2["sam2.1_hiera_large.pt"]
    return {path: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for path, data in files.items()}


@pytest.fixture
def fetched(tmp_path: Path, cache: Path) -> Iterator[Path]:
    models = tmp_path / "models"
    fetch(models, offline=True, cache_dir=cache)
    yield models


def test_sources_match_the_folder_layout_the_void_backend_reads() -> None:
    by_target = {source.target: source for source in SOURCES}
    void = by_target["void-model"]
    assert void.repo_id == "netflix/void-model"
    assert {f"void-model/{name}" for name in void.files or ()} == {PASS1_FILE, PASS2_FILE}
    assert by_target[BASE_FOLDER].repo_id == "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP"
    assert by_target[BASE_FOLDER].files is None
    assert by_target["sam2"].repo_id == "facebook/sam2.1-hiera-large"
    assert by_target["sam2"].files == ("sam2.1_hiera_large.pt",)
    raft = by_target["raft"]
    assert raft.manual and f"raft/{raft.files[0]}" == RAFT  # type: ignore[index]


def test_offline_fetch_copies_from_the_cache_and_locks_every_file(tmp_path: Path, cache: Path) -> None:
    models = tmp_path / "models"
    lines: list[str] = []
    lock = fetch(models, offline=True, cache_dir=cache, report=lines.append)
    assert lock == models / LOCK_FILE
    assert json.loads(lock.read_text()) == expected_lock() == read_lock(models)
    for relative in expected_lock():
        path = models / relative
        assert path.is_file() and not path.is_symlink()  # real copies: the cache can go, the folder stays whole
    assert (models / PASS1_FILE).read_bytes() == VOID["void_pass1.safetensors"]
    assert not (models / "sam2" / "sam2.1_hiera_l.yaml").exists()  # only the files asked for
    assert any(line.startswith("raft: manual:") and RAFT in line for line in lines)
    assert verify(models) == []


def test_a_raft_file_placed_by_hand_is_locked_too(tmp_path: Path, cache: Path) -> None:
    models = tmp_path / "models"
    (models / "raft").mkdir(parents=True)
    (models / RAFT).write_bytes(b"raft weights")
    lines: list[str] = []
    fetch(models, offline=True, cache_dir=cache, report=lines.append)
    assert read_lock(models)[RAFT] == {"sha256": hashlib.sha256(b"raft weights").hexdigest(), "bytes": 12}
    assert any(line.startswith("raft: manual:") and "in place" in line for line in lines)


def test_verify_finds_a_tampered_a_truncated_and_a_missing_file(fetched: Path) -> None:
    pass1 = fetched / PASS1_FILE
    pass1.write_bytes(pass1.read_bytes().replace(b"one", b"0ne"))  # same size, different bytes
    (fetched / BASE_FOLDER / "vae" / "config.json").write_bytes(b"{}")
    (fetched / "sam2" / "sam2.1_hiera_large.pt").unlink()
    assert verify(fetched) == [
        "CogVideoX-Fun-V1.5-5b-InP/vae/config.json: size mismatch (2 bytes, lock says 23)",
        "sam2/sam2.1_hiera_large.pt: missing",
        "void-model/void_pass1.safetensors: sha256 mismatch",
    ]


def test_fetching_again_repairs_damaged_files_from_the_cache(fetched: Path, cache: Path) -> None:
    (fetched / PASS2_FILE).write_bytes(b"tampered")
    (fetched / BASE_FOLDER / "model_index.json").unlink()
    assert len(verify(fetched)) == 2
    lines: list[str] = []
    fetch(fetched, offline=True, cache_dir=cache, report=lines.append)
    assert verify(fetched) == []
    assert read_lock(fetched) == expected_lock()
    assert f"{PASS1_FILE}: up to date" in lines and f"{PASS2_FILE}: copied from the cache" in lines


def test_offline_keeps_files_already_in_place_but_never_blesses_a_changed_one(fetched: Path, tmp_path: Path) -> None:
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    lines: list[str] = []
    fetch(fetched, offline=True, cache_dir=empty_cache, report=lines.append)
    assert read_lock(fetched) == expected_lock() and verify(fetched) == []
    assert any("kept" in line for line in lines)

    (fetched / PASS1_FILE).write_bytes(b"tampered")
    with pytest.raises(ConfigurationError, match=r"netflix/void-model: void-model/void_pass1.safetensors: sha256"):
        fetch(fetched, offline=True, cache_dir=empty_cache)
    assert read_lock(fetched) == expected_lock()  # the lock was not rewritten


def test_offline_without_the_file_anywhere_names_the_repo_and_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    hub_cache(cache, "netflix/void-model", {"void_pass1.safetensors": b"only pass one"}, "4" * 40)
    sources = (SOURCES[0],)
    with pytest.raises(ConfigurationError) as caught:
        fetch(tmp_path / "models", offline=True, cache_dir=cache, sources=sources)
    message = str(caught.value)
    assert message.startswith("netflix/void-model: void_pass2.safetensors: not in the Hugging Face cache")
    assert "hf download netflix/void-model void_pass2.safetensors" in message and "\n" not in message
    assert not (tmp_path / "models" / LOCK_FILE).exists()

    with pytest.raises(ConfigurationError, match=r"^alibaba-pai/CogVideoX-Fun-V1.5-5b-InP: whole repository: not in"):
        fetch(tmp_path / "models", offline=True, cache_dir=cache, sources=(SOURCES[1],))


class FakeHub:
    """A loopback stand-in for the Hub's HTTP API: repo info, tree listing and file resolution, nothing more."""

    COMMIT = "5" * 40

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, request: BaseHTTPRequestHandler, *, body: bool) -> None:
        self.requests.append((request.command, request.path))
        parts = request.path.split("?")[0].strip("/").split("/")
        headers: dict[str, str] = {}
        if parts[:2] == ["api", "models"]:
            files = self.repos.get("/".join(parts[2:4]))
            if files is None:
                status, data, headers = 404, b"{}", {"X-Error-Code": "RepoNotFound"}
            elif parts[4] == "revision":
                status, data = 200, json.dumps({"id": "/".join(parts[2:4]), "sha": self.COMMIT}).encode()
            else:
                tree = [
                    {"type": "file", "path": name, "size": len(blob), "oid": hashlib.sha1(blob).hexdigest()}
                    for name, blob in files.items()
                ]
                status, data = 200, json.dumps(tree).encode()
        else:
            blob = self.repos.get("/".join(parts[:2]), {}).get("/".join(parts[4:]))
            if parts[2:3] != ["resolve"] or blob is None:
                status, data, headers = 404, b"", {"X-Error-Code": "EntryNotFound"}
            else:
                status, data = 200, blob
                headers = {"X-Repo-Commit": self.COMMIT, "ETag": f'"{hashlib.sha256(blob).hexdigest()}"'}
        request.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            request.send_header(key, value)
        request.end_headers()
        if body:
            request.wfile.write(data)

    def downloads(self) -> list[str]:
        return [path for command, path in self.requests if command == "GET" and "/resolve/" in path]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub({"netflix/void-model": VOID, "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP": BASE})
    yield fake
    fake.server.shutdown()


def test_online_fetch_downloads_into_the_folder_and_repairs_what_changed(tmp_path: Path, hub: FakeHub) -> None:
    models, sources = tmp_path / "models", SOURCES[:2]
    lines: list[str] = []
    fetch(models, cache_dir=tmp_path / "cache", sources=sources, endpoint=hub.url, report=lines.append)
    locked = {k: v for k, v in expected_lock().items() if not k.startswith("sam2/")}
    assert read_lock(models) == locked and verify(models) == []
    assert lines == [
        "void-model/void_pass1.safetensors: fetched from netflix/void-model",
        "void-model/void_pass2.safetensors: fetched from netflix/void-model",
        "CogVideoX-Fun-V1.5-5b-InP/: fetched from alibaba-pai/CogVideoX-Fun-V1.5-5b-InP",
    ]
    assert len(hub.downloads()) == len(locked)
    assert not list((tmp_path / "cache").rglob("blobs/*"))  # straight into the models folder, no second copy

    hub.requests.clear()
    fetch(models, cache_dir=tmp_path / "cache", sources=sources, endpoint=hub.url)
    assert hub.downloads() == []  # everything up to date

    (models / PASS2_FILE).write_bytes(b"pass 2wo weights!")
    (models / BASE_FOLDER / "transformer" / "config.json").write_bytes(b'{"in_channels": 48}')
    fetch(models, cache_dir=tmp_path / "cache", sources=sources, endpoint=hub.url)
    assert sorted(path.rsplit("/", 1)[-1] for path in hub.downloads()) == ["config.json", "void_pass2.safetensors"]
    assert read_lock(models) == locked and verify(models) == []


def test_online_errors_name_the_repo_and_file_in_one_line(tmp_path: Path, hub: FakeHub) -> None:
    missing = ModelSource("netflix/void-model", ("void_pass3.safetensors",), "void-model")
    with pytest.raises(ConfigurationError, match=r"^netflix/void-model: void_pass3.safetensors: \S+") as caught:
        fetch(tmp_path / "models", sources=(missing,), endpoint=hub.url)
    assert "\n" not in str(caught.value)
    unknown = ModelSource("nobody/nothing", None, "nothing")
    with pytest.raises(ConfigurationError, match=r"^nobody/nothing: whole repository: ") as caught:
        fetch(tmp_path / "models", sources=(unknown,), endpoint=hub.url)
    assert "\n" not in str(caught.value)


def test_a_partial_fetch_keeps_the_other_folders_lock_entries(fetched: Path, cache: Path) -> None:
    fetch(fetched, offline=True, cache_dir=cache, sources=(SOURCES[2],))
    assert read_lock(fetched) == expected_lock()


def test_verify_without_a_lock_says_so(tmp_path: Path) -> None:
    assert verify(tmp_path) == [f"{tmp_path / LOCK_FILE}: missing (run `voidflow models fetch`)"]
    (tmp_path / LOCK_FILE).write_text('{"a": {"sha256": 1}}')
    assert verify(tmp_path) == [
        f"{tmp_path / LOCK_FILE}: not a voidflow models lock ({{path: {{sha256, bytes}}}} expected)"
    ]


@pytest.mark.parametrize("target", ["../outside", "/abs", "a\\b", ""])
def test_targets_must_stay_inside_the_folder(tmp_path: Path, target: str) -> None:
    with pytest.raises(ConfigurationError, match="must be a relative POSIX path"):
        fetch(tmp_path, offline=True, sources=(ModelSource("o/r", ("f",), target),))
