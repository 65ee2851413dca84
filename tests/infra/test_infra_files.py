"""Container and cluster definitions parse, agree on one image, and keep their promises; the path map's rules."""

from __future__ import annotations

import copy
import doctest
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

import voidflow.infra.paths
from voidflow.infra.paths import map_path, parse_path_map
from voidflow.void_ops.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "infra" / "containers"
CLUSTER = ROOT / "infra" / "cluster"
DOCKERFILE = CONTAINERS / "Dockerfile"


def documented_image() -> str:
    """The tag the Dockerfile's header documents (``Image: <name>``)."""
    match = re.search(r"^# .*Image: (\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the Dockerfile's header names no image"
    return match.group(1).rstrip(".")


IMAGE = documented_image()


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in logical]


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(resolved base image, instructions) per stage; ARGs before the first FROM are substituted in FROM lines."""
    globals_: dict[str, str] = {}
    found: list[tuple[str, list[tuple[str, str]]]] = []
    for instruction, arguments in instructions():
        if instruction == "ARG" and not found:
            name, _, default = arguments.partition("=")
            globals_[name] = default
        elif instruction == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: globals_[m.group(1)], arguments.split()[0])
            found.append((base, []))
        else:
            found[-1][1].append((instruction, arguments))
    return found


def test_image_tag_is_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ghcr.io/voidflow/voidflow:{version}" == IMAGE


def test_dockerfile_builds_on_cuda_with_a_cuda_torch_sam2_without_deps_and_ffmpeg() -> None:
    built = [(base, body) for base, body in stages() if any(i in ("RUN", "COPY") for i, _ in body)]
    bases = {base for base, body in built if any(i == "RUN" for i, _ in body)}
    assert bases == {"nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"}
    build, runtime = built[-2][1], built[-1][1]
    runs = [arguments for instruction, arguments in build if instruction == "RUN"]
    text = "\n".join(runs)
    assert re.search(r"uv python install \$\{PYTHON_VERSION\}", text)
    assert ("ARG", "PYTHON_VERSION=3.11") in build

    torch = next(i for i, run in enumerate(runs) if "torch==" in run)
    assert re.search(r"--index-url \$\{TORCH_INDEX\}", runs[torch])
    assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cu128") in build
    assert "torch.version.cuda" in runs[torch]
    sam2 = next(i for i, run in enumerate(runs) if "sam2==" in run)
    words = shlex.split(runs[sam2].split("&&")[-1])
    assert {"--no-deps", "--no-build-isolation", "sam2==1.1.0"} <= set(words)
    project = next(i for i, run in enumerate(runs) if ".[ml,gpu]" in run)
    assert torch < sam2 < project  # torch first; sam2 before the extras that name it

    apt = " ".join(arguments for instruction, arguments in runtime if instruction == "RUN" and "apt-get" in arguments)
    assert "apt-get install" in apt and "ffmpeg" in apt.split()
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["voidflow"]') in runtime
    assert any(i == "COPY" and "--from=build /opt/venv" in a for i, a in runtime)


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (CONTAINERS / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # nothing by default (not the 2.4 GB .venv), then what the build copies
    for needed in ("pyproject.toml", "README.md", "void_ops/", "tasks/", "flows/", "infra/", "deployments/"):
        assert f"!{needed}" in rules
    copied = [a.split()[0] for i, a in stages()[-2][1] if i == "COPY" and not a.startswith("--from")]
    assert {"pyproject.toml", "void_ops", "tasks", "flows", "infra", "deployments"} <= set(copied)


def test_compose_runs_postgres_prefect_and_a_gpu_worker_on_the_image() -> None:
    compose = yaml.safe_load((CONTAINERS / "compose.yaml").read_text())
    services = compose["services"]
    postgres, prefect, worker, migrate = (services[name] for name in ("postgres", "prefect", "worker", "migrate"))

    assert postgres["image"] == "postgres:15"
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v).split(":")[0]
    assert "CREATE DATABASE voidflow" in "".join(p.read_text() for p in (CONTAINERS / init).glob("*.sql"))

    assert prefect["image"].startswith("prefecthq/prefect:3") and prefect["image"].endswith("-python3.11")
    assert prefect["command"] == ["prefect", "server", "start", "--host", "0.0.0.0"]
    database = prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert database.startswith("postgresql+asyncpg://") and "@postgres:5432/prefect" in database

    assert worker["image"] == migrate["image"] == IMAGE
    assert (ROOT / "infra" / "containers" / migrate["build"]["context"] / migrate["build"]["dockerfile"]).samefile(
        DOCKERFILE
    )
    assert worker["entrypoint"] == ["prefect", "worker", "start", "--pool", "voidflow-process", "--type", "process"]
    assert migrate["command"] == ["db", "upgrade"]  # after the image's ENTRYPOINT ["voidflow"]
    environment = worker["environment"]
    assert (
        environment["VOIDFLOW_DB_URL"].startswith("postgresql+psycopg://")
        and "@postgres:5432/voidflow" in (environment["VOIDFLOW_DB_URL"])
    )
    assert ":" not in environment["VOIDFLOW_DB_URL"].split("//")[1].split("@")[0]  # no password in the URL
    assert environment["PREFECT_API_URL"] == "http://prefect:4200/api"
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for service in services.values():
        for name in service.get("depends_on", {}):
            assert name in services
    for volume in (v.split(":")[0] for s in services.values() for v in s.get("volumes", [])):
        assert volume.startswith(("$", ".", "/")) or volume in compose["volumes"]


def test_ray_cluster_config_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs before it starts anything

    assert config["docker"]["image"] == IMAGE
    assert '--entrypoint=""' in config["docker"]["run_options"]  # Ray starts its containers with `bash`
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    [gpu] = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1 and gpu["resources"] == {"GPU": 1}

    remote, local = next(iter(config["file_mounts"].items()))
    assert (ROOT / local).resolve() == CLUSTER
    env_file = f"{remote}/voidflow.env"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        starts = [c for c in commands if "ray start" in c]
        assert starts and all(c.index(f". {env_file}") < c.index("ray start") and "set -a" in c for c in starts)
    # The Prefect worker submits each flow run as a Ray Job to the head's Jobs API (the pool's job template first).
    commands = config["head_start_ray_commands"]
    worker = next(i for i, c in enumerate(commands) if "prefect worker start" in c)
    pool = next(i for i, c in enumerate(commands) if "prefect work-pool create voidflow-process" in c)
    assert "--pool voidflow-process --type process" in commands[worker]
    assert "RAY_ADDRESS=http://127.0.0.1:8265" in commands[worker] and "ray://" not in " ".join(commands)
    assert pool < worker and f"--base-job-template {remote}/work-pool.json --overwrite" in commands[pool]
    assert any("/shows" in command for command in config["initialization_commands"])


def test_the_cluster_environment_file_is_shell_and_exports_the_settings() -> None:
    script = "set -a && . ./infra/cluster/voidflow.env && set +a && env"
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, env={})
    environment = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert environment["PREFECT_API_URL"].endswith("/api")
    assert environment["VOIDFLOW_DB_URL"].startswith("postgresql+psycopg://voidflow@")
    rules = parse_path_map(environment["VOIDFLOW_PATH_MAP"])
    assert map_path("/Volumes/show/ep01/a.mov", rules) == "/shows/ep01/a.mov"
    assert map_path("S:\\ep01\\a.mov", rules) == "/shows/ep01/a.mov"


def test_kuberay_manifest_has_a_head_an_autoscaled_gpu_group_and_the_shared_claim() -> None:
    text = (CLUSTER / "kuberay.yaml").read_text()
    documents = [d for d in yaml.safe_load_all(text) if d]
    by_kind = {d["kind"]: d for d in documents if d["metadata"]["name"] != "voidflow-work-pool"}  # the settings
    cluster = by_kind["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["enableInTreeAutoscaling"] is True
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    assert by_kind["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]

    head = cluster["spec"]["headGroupSpec"]
    [gpu] = cluster["spec"]["workerGroupSpecs"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= 1 and gpu["minReplicas"] <= gpu["replicas"]
    [worker_container] = gpu["template"]["spec"]["containers"]
    assert worker_container["resources"]["limits"]["nvidia.com/gpu"] == 1

    pods = [head["template"]["spec"], gpu["template"]["spec"], by_kind["Deployment"]["spec"]["template"]["spec"]]
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"] == IMAGE
            assert {"configMapRef": {"name": by_kind["ConfigMap"]["metadata"]["name"]}} in container["envFrom"]
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/shows")
            assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] in claims

    settings = by_kind["ConfigMap"]["data"]
    assert settings["PREFECT_API_URL"].endswith("/api") and parse_path_map(settings["VOIDFLOW_PATH_MAP"])
    assert float(settings["VOIDFLOW_GPU_IDLE_S"]) > 0
    # The Prefect worker submits flow runs as Ray Jobs (the Jobs API on the head's port 8265), never Ray Client.
    [prefect_worker] = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"]
    shell = prefect_worker["command"][2]
    assert prefect_worker["command"][:2] == ["sh", "-c"] and shell.endswith(
        "&& exec prefect worker start --pool voidflow-process --type process"
    )
    assert "--base-job-template /etc/voidflow/work-pool.json --overwrite" in shell
    address = next(e["value"] for e in prefect_worker["env"] if e["name"] == "RAY_ADDRESS")
    assert address == f"http://{cluster['metadata']['name']}-head-svc:8265"
    assert "ray://" not in text and "10001" not in text
    assert not any(e["name"] == "PGPASSWORD" for e in prefect_worker["env"])  # the flow runs, on the head, write
    [template] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "voidflow-work-pool"]
    assert json.loads(template["data"]["work-pool.json"]) == json.loads((CLUSTER / "work-pool.json").read_text())
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    mount = next(m for m in prefect_worker["volumeMounts"] if m["mountPath"] == "/etc/voidflow")
    assert {v["name"]: v for v in pod["volumes"]}[mount["name"]]["configMap"]["name"] == "voidflow-work-pool"


def test_the_work_pool_runs_each_flow_run_as_a_ray_job_named_after_it() -> None:
    """The job template's command, through shlex (as Prefect's process worker splits it) and a real shell, with
    ``printf`` standing in for ``ray``: the flow run's ID reaches the job, which is named after it (so one flow run
    is never submitted twice)."""
    template = json.loads((CLUSTER / "work-pool.json").read_text())
    command = shlex.split(template["variables"]["properties"]["command"]["default"])
    assert command[:2] == ["sh", "-c"] and command[2].startswith("exec ray job submit ")
    command[2] = command[2].replace("exec ray job submit", "exec printf '%s\\n'", 1)
    environment = {"PATH": "/usr/bin:/bin", "PREFECT__FLOW_RUN_ID": "0b7e-42"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    arguments = result.stdout.splitlines()
    assert arguments[:2] == ["--submission-id", "voidflow-0b7e-42"]
    assert arguments[2] == "--runtime-env-json"
    assert json.loads(arguments[3]) == {"env_vars": {"PREFECT__FLOW_RUN_ID": "0b7e-42"}}
    assert arguments[4:] == ["--", "python", "-m", "prefect.engine"]


def test_the_rayjob_template_runs_voidflow_on_the_cluster_as_a_driver() -> None:
    [job] = [d for d in yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()) if d]
    cluster = next(
        d for d in yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text()) if d and d["kind"] == "RayCluster"
    )
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["voidflow", "rerun"] and words[words.index("--ray-address") + 1] == "auto"
    assert int(words[words.index("--priority") + 1]) > 0


def test_every_file_names_the_same_image() -> None:
    files = [*CONTAINERS.rglob("*"), *CLUSTER.rglob("*"), ROOT / "docs" / "architecture.md"]
    names = {
        name
        for path in files
        if path.is_file()
        for name in re.findall(r"ghcr\.io/voidflow/voidflow(?::[\w.-]+)?", path.read_text())
    }
    assert names == {IMAGE}


def test_the_cluster_folder_does_not_shadow_the_cluster_module() -> None:
    import voidflow.infra.cluster

    assert Path(voidflow.infra.cluster.__file__).name == "cluster.py" and hasattr(
        voidflow.infra.cluster, "orchestration"
    )


# -- VOIDFLOW_PATH_MAP ----------------------------------------------------------------------------------------------

RULES = parse_path_map("/mnt/show=/shows; /Volumes/show/=/shows;/mnt/show/vfx=/vfx;S:\\=/shows;\\\\nas\\show=/shows")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/mnt/show/ep01/a.mov", "/shows/ep01/a.mov"),
        ("/mnt/show", "/shows"),
        ("/mnt/show/", "/shows"),
        ("/Volumes/show/ep01/a.mov", "/shows/ep01/a.mov"),  # a trailing separator in the rule is ignored
        ("/mnt/show/vfx/sh010/v001", "/vfx/sh010/v001"),  # the longest prefix wins
        ("/mnt/show/vfxtra/a.mov", "/shows/vfxtra/a.mov"),  # ... on whole components only
        ("/mnt/showreel/a.mov", "/mnt/showreel/a.mov"),  # no component match: unchanged
        ("/mnt", "/mnt"),
        ("relative/a.mov", "relative/a.mov"),
        ("S:\\ep01\\a.mov", "/shows/ep01/a.mov"),
        ("s:\\ep01\\a.mov", "/shows/ep01/a.mov"),  # drive letters in either case
        ("s:/ep01/a.mov", "/shows/ep01/a.mov"),  # either separator
        ("T:\\ep01\\a.mov", "T:\\ep01\\a.mov"),
        ("\\\\nas\\show\\ep01\\a.mov", "/shows/ep01/a.mov"),  # UNC share
        ("/MNT/show/a.mov", "/MNT/show/a.mov"),  # POSIX paths are case-sensitive
    ],
)
def test_map_path(path: str, expected: str) -> None:
    assert map_path(path, RULES) == expected


def test_map_path_to_windows_and_root_targets() -> None:
    rules = parse_path_map("/shows=D:\\show;/tmp/x=/")
    assert map_path("/shows/ep01/a.mov", rules) == "D:\\show\\ep01\\a.mov"
    assert map_path("/tmp/x/a", rules) == "/a"
    assert map_path("/tmp/x", rules) == "/"
    assert map_path("/anything/a", parse_path_map("/=/shows")) == "/shows/anything/a"
    assert map_path("/shows/a", parse_path_map("/shows=C:\\")) == "C:\\a"
    assert map_path("/shows", parse_path_map("/shows=C:\\")) == "C:\\"


def test_parse_path_map() -> None:
    assert parse_path_map("") == parse_path_map(" ; ;") == ()
    assert parse_path_map(" /a = /b ;;/c=/d;") == (("/a", "/b"), ("/c", "/d"))
    assert parse_path_map("/a=/b;/a/=/b") == (("/a", "/b"), ("/a/", "/b"))  # the same rule twice is harmless
    assert map_path("/a/x", ()) == "/a/x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/mnt/show", "entry '/mnt/show' is not FROM=TO"),
        ("/mnt/show=", "entry '/mnt/show=' is not FROM=TO"),
        ("=/shows", "entry '=/shows' is not FROM=TO"),
        ("mnt/show=/shows", "'mnt/show' is not an absolute path"),
        ("/mnt/show=shows", "'shows' is not an absolute path"),
        ("/a=/b;/a/=/c", "'/a/' is already mapped to '/b'"),
        ("s:\\=/x;S:/=/y", "'S:/' is already mapped to '/x'"),
    ],
)
def test_bad_path_maps_fail_with_the_entry_named(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        parse_path_map(text)
    assert str(caught.value).startswith("VOIDFLOW_PATH_MAP: ") and "\n" not in str(caught.value)


def test_path_map_docstring_examples() -> None:
    assert doctest.testmod(voidflow.infra.paths).failed == 0


# -- VOIDFLOW_ALLOWED_ROOTS ----------------------------------------------------------------------------------------


def test_allowed_roots_hold_against_links_and_dot_dot(tmp_path: Path) -> None:
    import pytest

    from voidflow.infra.paths import ensure_allowed
    from voidflow.void_ops.exceptions import PathNotAllowed

    show, outside = tmp_path / "show", tmp_path / "outside"
    show.mkdir()
    outside.mkdir()
    (outside / "plate.mov").write_bytes(b"x")
    (show / "plate.mov").symlink_to(outside / "plate.mov")  # a file link under the root to a file outside it
    (show / "frames").symlink_to(outside, target_is_directory=True)
    roots = (str(show),)
    for path in (show / "plate.mov", f"{show}/..", show / "frames" / "plate.%04d.exr", show / ".." / "outside"):
        with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
            ensure_allowed(path, roots, what="media")
    (show / "real.mov").write_bytes(b"x")
    ensure_allowed(show / "real.mov", roots, what="media")
    ensure_allowed(show / "out" / "new", roots, what="output folder")  # not there yet: its path still counts
    ensure_allowed(show / "seq" / "plate.%04d.exr", roots, what="media")
