"""The benchmark scripts still run: each one's ``--smoke`` mode (the same code on tiny models on the CPU).

Each runs in its own process with one CPU thread (tiny models run no faster on more, and a busy machine makes
OpenMP threads wait on each other), and must print its JSON as its last line and write the same to ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _smoke(script: str, out: Path, *extra: str, timeout: float = 600, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``benchmarks/<script> --smoke --out OUT``; return the JSON it wrote (checked against its last line).
    ``without`` names modules the script must run without (importing one fails, as on a machine lacking it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("PREFECT_API_URL", "VOIDFLOW_DB_URL", "VOIDFLOW_COMPILE_CACHE"):
        env.pop(name, None)
    argv = [f"benchmarks/{script}", "--smoke", "--out", str(out), *extra]
    blocked = f"import runpy, sys; sys.modules.update(dict.fromkeys({list(without)!r})); sys.argv = {argv!r}; "
    command = ["-c", blocked + f"runpy.run_path({argv[0]!r}, run_name='__main__')"] if without else argv
    result = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document: dict[str, Any] = json.loads(out.read_text())
    assert json.loads(result.stdout.splitlines()[-1]) == document
    return document


#: Python code that hides this venv's editable install of voidflow from the process running it.
_NOT_INSTALLED = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(getattr(f, '__module__', ''))]; "
    "sys.path[:] = [p for p in sys.path if '__editable__' not in p]; "
)


def test_benchmarks_and_the_processes_they_start_import_voidflow_where_it_is_not_installed() -> None:
    """The GPU hosts have no voidflow installed: the scripts find it in this checkout, and so must the processes
    they start (a batch's Ray workers died with "No module named 'voidflow'" on an H100 before this)."""
    child = _NOT_INSTALLED + "import voidflow.void_ops.windows as w; print(w.__file__)"
    parent = (
        _NOT_INSTALLED
        + "import importlib.util, subprocess; assert importlib.util.find_spec('voidflow') is None; "
        + "import benchmarks._checkout; import voidflow.void_ops.windows as w; print(w.__file__, flush=True); "
        + f"subprocess.run([sys.executable, '-c', {child!r}], check=True, cwd='/')"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", parent], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [Path(line).resolve() for line in result.stdout.split()] == [ROOT / "void_ops" / "windows.py"] * 2


def test_windows_benchmark_smoke(tmp_path: Path) -> None:
    document = _smoke("windows.py", tmp_path / "windows.json")
    assert set(document["denoise_s_by_frames"]) == {"29", "30", "44"}
    # Each plan as its planner makes it: a full window and the short rest (shipped, and the first planner of issue
    # 18, here alike: the rest is not below the shortest run), two full ones (the planner before).
    assert document["plans"]["shipped"]["30"]["padded"] == [29, 21]
    assert document["plans"]["step_then_short"]["30"]["padded"] == [29, 21]
    assert document["plans"]["even_windows"]["30"]["padded"] == [29, 29]
    assert document["ratio_198_to_197"] > 0 and document["ratio_198_to_197_step_then_short"] > 0
    assert all(value > 0 for value in document["denoise_s_by_padded_frames"].values())


def test_void_forward_benchmark_smoke(tmp_path: Path) -> None:
    document = _smoke("void_forward.py", tmp_path / "forward.json")
    assert set(document["eager_forward_s"]) == {"49", "85", "step_197"} and document["smoke"] is True
    assert {"rel_l2_diff", "rel_max_abs_diff", "cold_load_s"} <= set(document)
    assert "max_rel_diff" not in document  # a relative L2 norm, not a maximum: renamed
    assert "T5" in document["cold_load_covers"] and document["page_cache_dropped"] is False


def test_void_profile_benchmark_smoke(tmp_path: Path) -> None:
    document = _smoke("void_profile.py", tmp_path / "profile.json")
    assert document["card"] == "cpu" and "rel_diff_voidflow_vs_eager" in document


def test_gpu_efficiency_benchmark_smoke(tmp_path: Path) -> None:
    windows = ROOT / "benchmarks" / "results" / "windows_h100.json"
    document = _smoke("gpu_efficiency.py", tmp_path / "efficiency.json", "--windows-json", str(windows))
    keys = {"card", "first_shot_cold_cache_s", "first_shot_warm_cache_s", "warm_shot_s", "cache_mb", "pass2_shot_s"}
    assert keys <= set(document) and document["card"] == "cpu"
    assert document["denoise_s_by_frames"] == json.loads(windows.read_text())["denoise_s_by_frames"]
    assert document["denoise_s_by_frames_from"]["card"] == "NVIDIA H100 80GB HBM3"
    # Nothing is compiled on the CPU: the cache is off and every call says why; no kernel time either.
    calls = [call for process in document["processes"].values() for call in process["calls"]]
    assert {(call["compile_cache"], call["kernel_s"]) for call in calls} == {("off", None)}
    assert document["cache_mb"] == 0.0 and document["warp_gpu_s"] is None
    assert document["pass2_warp_cpu_s"] > 0 and document["pass2_gpu_call_s"] > 0


def test_throughput_benchmark_smoke(tmp_path: Path) -> None:
    """Two shots through the real flow (Prefect, Ray, SQLite), pass 2 on the second, both in shot windows, in a
    folder that ``--warm`` filled first (without the media libraries): the batch reuses its models, and every
    multidiffusion window shape the batch's calls met (pass 2's too) was among those the warm-up ran, so a warmed
    node compiles nothing new."""
    from voidflow.void_ops.void.values import latent_frames, window_spans

    def shapes(lengths: list[int]) -> set[int]:  # the smoke recipe's latent windows: 4 frames, overlapping by 2
        return {stop - start for n in lengths for start, stop in window_spans(latent_frames(n), window=4, overlap=2)}

    mix = ("--shots", "2", "--pass2-every", "2", "--keep", str(tmp_path / "node"))
    media = ("av", "OpenImageIO", "PyOpenColorIO")  # the GPU machine's first call has the core packages only
    warmed = _smoke("throughput.py", tmp_path / "warm.json", "--warm", *mix, without=media)
    document = _smoke("throughput.py", tmp_path / "throughput.json", *mix)
    assert document["models_kept"] is True and warmed["models_kept"] is False
    ran = {name: [call["frames"] for call in warmed["calls"] if call["pass"] == name] for name in ("pass1", "pass2")}
    for shot in document["per_shot"]:
        assert shapes(shot["padded_runs"]) <= shapes(ran["pass1"])
        if "pass2" in shot:
            assert shapes(shot["padded_runs"]) <= shapes(ran["pass2"])
    assert (document["shots"], document["pass2_shots"], document["failed"]) == (2, 1, [])
    assert 0 < document["occupancy_fraction_flow"] <= 1 and document["kernel_busy_fraction"] is None  # CPU
    assert "busy_fraction" not in document  # occupancy, renamed
    first, second = document["per_shot"]
    assert first["padded_runs"] == [29, 29, 21] and "pass2" not in first
    assert second["pass2"]["noise_cpu_s"] >= 0 and second["pass2"]["compile_cache"] == ["off"] * 3


def test_ledger_plan_benchmark_smoke(tmp_path: Path) -> None:
    document = _smoke("ledger_plan.py", tmp_path / "ledger.json")
    assert (document["stage_runs"], document["rerun_shots"]) == (5 * 50 * 4, 10)


def test_orchestration_benchmark_smoke(tmp_path: Path) -> None:
    document = _smoke("orchestration.py", tmp_path / "orchestration.json")
    assert (document["shots"], document["done"], document["failed"]) == (3, 3, 0)


def test_shot_memory_benchmark_smoke(tmp_path: Path) -> None:
    # The script fails (exit 1) when the estimate (``void_ops.host_memory``) is below a stage's measured peak.
    document = _smoke("shot_memory.py", tmp_path / "shot_memory.json")
    assert set(document["after"]) == {"mask", "pass1", "deliver"}
    for stage, measured in document["after"].items():
        assert 0 < measured["above_start_gb"] <= document["estimate"]["stages_gb"][stage], stage
    assert document["peak_gb"] <= document["estimate"]["peak_gb"]


def test_cluster_sim_benchmark_smoke(tmp_path: Path) -> None:
    document = _smoke("cluster_sim.py", tmp_path / "cluster_sim.json")
    assert (document["shots"], document["cluster"]["gpus"]) == (24, 4)
    # Each shot writes the ledger ten times (plate hash, three stages begun and finished, its version reserved and
    # settled, its state) and reads it three times (a cache lookup per stage).
    assert (document["ledger"]["writes"]["count"], document["ledger"]["reads"]["count"]) == (240, 72)
    assert 0 < document["gpu_busy"] <= 1 and document["frames"]["void_calls"] >= 24
    assert document["head"]["peak_rss_gb"] > 0 and document["head"]["cpu_s_per_shot"] > 0


def _compile_in_a_process(cache: Path, log: Path, threads: int) -> None:
    """Compile one small function with Inductor on the CPU in a fresh process with ``threads`` threads, sharing the
    on-disk cache ``cache``, its cache keys written to ``log`` (as ``batch_run.sh`` has its runs do)."""
    from benchmarks.device import cache_keys

    code = (
        f"import torch; torch.set_num_threads({threads}); "
        "f = torch.compile(lambda x: (x * 2).sin().cumsum(0)); f(torch.randn(256))"
    )
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "TORCH_LOGS": cache_keys.TORCH_LOGS,
        "TORCH_LOGS_OUT": str(log),
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=300)


def test_cache_keys_names_the_setting_that_made_a_warmed_process_compile_again(tmp_path: Path) -> None:
    """``benchmarks/device/cache_keys.py``: a later process that finds the warm-up's compiled graphs computes no new
    key; one with a different thread count (CPU kernels specialise on it) computes new keys, and the tool says the
    thread count is the part that differs, not the graph."""
    from benchmarks.device import cache_keys

    cache = tmp_path / "inductor"
    logs = {name: tmp_path / f"{name}.log" for name in ("warm", "same", "other")}
    for name, threads in (("warm", 1), ("same", 1), ("other", 2)):
        _compile_in_a_process(cache, logs[name], threads)

    def keys(name: str) -> list[cache_keys.KeyBlock]:
        return cache_keys.read(logs[name])

    assert keys("warm") and all(block.parts.get("gm") for block in keys("warm"))
    same = cache_keys.compare(keys("warm"), keys("same"))
    assert same["Autograd"]["new_keys"] == 0 and same["Autograd"]["later_keys"] > 0, same
    other = cache_keys.compare(keys("warm"), keys("other"))["Autograd"]
    assert other["new_keys"] > 0 and "cpp_runtime_thread_count" in other["parts_new_to_the_warm_up"], other
    assert "gm" not in other["parts_new_to_the_warm_up"], other
    assert other["values"]["cpp_runtime_thread_count"] == {"later": "2", "warm": "1", "fields": []}, other


def test_cache_keys_names_the_tensor_field_that_differs_for_the_same_graph() -> None:
    """Two processes compiled the same graph (``gm``) for inputs whose metadata differ in one field: the summary
    pairs the later key with the warm-up's key of that graph and names the field."""
    from benchmarks.device import cache_keys

    def log(key: str, inference: bool) -> str:
        prefix = "V1206 22:00:00.000000 1 torch/_inductor/codecache.py:900] [0/0]"
        metadata = (
            "TensorMetadata(dtype=torch.bfloat16, shape=torch.Size([8, 8, 3, 3, 3]), stride=(216, 27, 9, 3, 1), "
            f"device=device(type='cuda', index=0), requires_grad=False, is_neg=False, is_inference={inference})"
        )
        digest = ("a" if inference else "b") * 52
        return "\n".join(
            [
                f"{prefix} FX graph cache hash details for key {key}:",
                f"{prefix} [{'c' * 52}] gm: GraphModule()",
                f"{prefix} [{digest}] example_inputs[0]: {metadata}",
                f"{prefix} [{'d' * 52}] torch_version: <bytes>",
            ]
        )

    summary = cache_keys.compare(cache_keys.parse(log("fwarm", True)), cache_keys.parse(log("flater", False)))["FX"]
    assert summary["new_keys"] == 1 and summary["parts_new_to_the_warm_up"] == {"example_inputs[0]": 1}, summary
    assert summary["fields_that_differ"] == {"is_inference": 1}, summary
    assert summary["values"]["example_inputs[0]"]["fields"] == ["is_inference"], summary


def test_warm_reuse_smoke(tmp_path: Path) -> None:
    """``benchmarks/device/warm_reuse.py --smoke``: the warm-up, a plain process and a GPU worker of the batch's own
    Ray service each run both passes on the tiny VOID, then a worker warms up inside itself and a fresh one runs the
    calls; on the CPU nothing compiles, so no call counts graphs and no process computes a cache key."""
    document = _smoke("device/warm_reuse.py", tmp_path / "warm_reuse.json", "--folder", str(tmp_path / "work"))
    processes = document["processes"]
    assert list(processes) == ["warm", "plain", "ray", "ray-warm", "ray-after"], processes
    assert len({process["pid"] for process in processes.values()}) == 5
    for process in processes.values():  # the warm-ups at the one padded length a 21-frame shot runs at
        assert [(call["pass"], call["frames"]) for call in process["calls"]] == [("pass1", 21), ("pass2", 21)], process
        assert all(call["compile_cache"] == "off" and call["graphs"] is None for call in process["calls"]), process
    worker = processes["ray"]["process"]  # taken inside the Ray GPU worker, which holds both passes
    assert worker["parameters_are_inference_tensors"] == {
        "pass1": {"vae": False, "transformer": False}, "pass2": {"vae": False, "transformer": False}
    }  # fmt: skip
    assert "torch.layout" in worker["copyreg"] and worker["grad"] and not worker["inference_mode"], worker
    pickled = worker["pickled"]  # the key pickler's hashes of one parameter's metadata: the same in both processes
    assert pickled["printed"].startswith("TensorMetadata(dtype=torch.float32") and "is_inference" in pickled, pickled
    assert pickled == processes["plain"]["process"]["pickled"] and processes["warm"]["process"]["pickled"] == {}
    warmed_by = {"plain": "warm", "ray": "warm", "ray-after": "ray-warm"}
    for role, warm in warmed_by.items():
        assert processes[role]["keys"]["warmed_by"] == warm
        assert processes[role]["keys"]["FX"] == {
            "warm_keys": 0, "later_keys": 0, "new_keys": 0, "parts_new_to_the_warm_up": {}, "fields_that_differ": {},
            "values": {},
        }  # fmt: skip
