"""A night on a 64-GPU cluster, simulated on one machine: 2,000 shots of mixed lengths, every GPU call a calibrated
sleep, the real dispatcher and the real ledger.

What is real: Ray itself (``ray.cluster_utils.Cluster``: a head and ``--nodes`` nodes, each with ``--gpus-per-node``
fake GPUs as a custom resource and ``--cpus-per-gpu`` CPUs per GPU), the batch's ``tasks.placement.Dispatcher``
actor on the head (priority queue, memory fit, two leases per GPU), the ledger (``tasks.ledger.Ledger``: the writes a
shot makes, on SQLite or, with ``--db-url``, PostgreSQL), and the head's scheduling loop, shaped like
``tasks.scheduler.ShotScheduler`` (``scheduling_order``, two shots per CPU handed to Ray, gathered as they finish with
``ray.wait``). What is simulated: the work inside a shot. Each node runs its shots as coroutines of one async actor
(a process per shot task would need hundreds of processes here): the mask and deliver stages sleep as long as they
took per frame in ``throughput_h100_x1.json`` (1080p, on the GPU host's CPUs), and each VOID call leases a GPU from
the dispatcher and sleeps as long as ``benchmarks._fake_void.call_seconds`` says an H100 takes (30 steps), on the
leased GPU one call at a time. All sleeps are multiplied by ``--scale`` (default 1/6: a night of 64 GPUs in about
five minutes). Prefect is left out: its cost per shot is in ``orchestration_cpu.json`` (0.10 CPU s per shot for the
flow process and the Prefect server together).

Reported (one JSON object, the output's last line; ``--out`` also writes it):

- ``gpu_busy``: the share of GPU time inside calls, summed over GPUs, from the end of warm-up (the moment the last
  GPU started its first call) to the end of the last call; ``gpu_busy_steady``: the same until the last shot was
  handed to Ray (before the tail, when no work is left to start; None when every shot was handed over at once);
- ``head``: the head node's processes (this driver, the GCS, the head's raylet and its workers, the dispatcher
  among them): peak RSS (sampled every second) and CPU seconds, in all and per shot;
- ``ledger``: every ledger call the shots made, timed in the thread that made it (the call itself, from the
  node's process: connection, SQL, commit, lock waits): count, rate, p50/p95/p99/max milliseconds, writes and reads
  apart. The database server, when there is one, shares this machine's CPUs with the whole simulation;
- ``shots``, ``wall_s``, ``sleep_scale``, ``calibration``, and the cluster's shape.

Run ``.venv/bin/python benchmarks/cluster_sim.py [--db-url URL] [--out FILE]``; ``--smoke`` runs 2 nodes of 2 GPUs
and 24 shots in well under a minute (the tests use it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks._checkout  # noqa: F401  (voidflow.* from this checkout where it is not installed)
from benchmarks import _fake_void

#: Seconds per frame of the CPU stages in the throughput benchmark (1080p ProRes, roto matte: ``stage_mean_s`` over
#: its 756 frames in 12 shots).
MASK_S_PER_FRAME = 24.11 * 12 / 756
DELIVER_S_PER_FRAME = 40.57 * 12 / 756
HANDLES = 8
STEPS = 30


def shot_lengths(count: int, seed: int = 7) -> list[int]:
    """Mixed cut lengths (frames, without handles): mostly 1-4 s shots, some long takes that need two or three
    VOID windows; the same list for the same seed."""
    rng = random.Random(seed)
    choices = [(24, 60, 0.35), (60, 120, 0.35), (120, 181, 0.2), (181, 400, 0.1)]
    lengths = []
    for _ in range(count):
        low, high, _ = rng.choices(choices, weights=[c[2] for c in choices])[0]
        lengths.append(rng.randrange(low, high))
    return lengths


class NodeSim:
    """One node of the simulated cluster: its shots (coroutines, up to ``cpus`` at once) and its GPUs (one call at a
    time each, as a ``GpuWorker`` actor runs them)."""

    def __init__(self, node: int, gpus: list[str], cpus: int, db_url: str, dispatcher: str, scale: float) -> None:
        import ray

        from voidflow.tasks.ledger import Ledger

        self._node = node
        self._locks = {name: asyncio.Lock() for name in gpus}
        self._cpus = asyncio.Semaphore(cpus)
        self._ledger = Ledger(db_url)
        self._dispatcher = ray.get_actor(dispatcher)
        self._scale = scale
        self._numbers = _fake_void.calibration()
        self._timings: list[tuple[str, float]] = []
        self._calls: list[tuple[str, float, float]] = []

    async def ready(self) -> int:
        """This actor's process ID, once it is up."""
        return os.getpid()

    async def gpu_call(self, gpu: str, seconds: float) -> tuple[float, float]:
        """Run one VOID call on this node's ``gpu``: wait for the GPU, then sleep ``seconds``; return when it ran."""
        async with self._locks[gpu]:
            started = time.time()
            await asyncio.sleep(seconds)
            finished = time.time()
        self._calls.append((gpu, started, finished))
        return started, finished

    async def _ledger_call(self, kind: str, call: Callable[[], Any]) -> Any:
        """Run a ledger call in a thread (as a shot task runs it in its own process) and time it there: the call
        itself, not its wait for a free thread."""

        def timed() -> tuple[Any, float]:
            started = time.perf_counter()
            result = call()
            return result, time.perf_counter() - started

        result, seconds = await asyncio.to_thread(timed)
        self._timings.append((kind, seconds))
        return result

    async def run_shot(self, batch_id: str, shot: dict[str, Any], owners: dict[str, Any]) -> dict[str, Any]:
        """One shot: mask, pass 1 (a VOID call per window), deliver, with the ledger writes a shot task makes."""
        from voidflow.tasks.placement import Grant, Request
        from voidflow.void_ops.pipeline import StageFile
        from voidflow.void_ops.windows import frame_windows

        name, frames = shot["name"], shot["frames"]
        ledger, scale = self._ledger, self._scale
        async with self._cpus:
            started = time.time()
            await self._ledger_call("write", lambda: ledger.set_plate_hash(batch_id, name, f"plate-{name}"))
            runs: dict[str, int | None] = {}
            for stage in ("mask", "pass1", "deliver"):
                key = f"{stage}-{name}"
                await self._ledger_call("read", lambda stage=stage, key=key: ledger.cached(stage, key))
                version = ""
                if stage == "deliver":
                    version = await self._ledger_call("write", lambda: ledger.allocate_version(batch_id, name, runs))
                record = ledger.stage(batch_id, name, stage, {}, key=key)  # entered and left around the work
                handle = await self._ledger_call("write", record.__enter__)
                if stage == "pass1":
                    for start, stop in frame_windows(frames, _fake_void.MAX_FRAMES, shortest=_fake_void.MIN_FRAMES):
                        seconds = _fake_void.call_seconds(stop - start, STEPS, numbers=self._numbers) * scale
                        request = Request(name, 30.0, float((stop - start) * STEPS), shot["priority"], frames)
                        grant = await self._dispatcher.acquire.remote(request)
                        assert isinstance(grant, Grant), grant
                        ran = await owners[grant.gpu].gpu_call.remote(grant.gpu, seconds)
                        await self._dispatcher.release.remote(grant.lease, "ok", ran[1] - ran[0], 0.0)
                else:
                    per_frame = MASK_S_PER_FRAME if stage == "mask" else DELIVER_S_PER_FRAME
                    await asyncio.sleep(per_frame * frames * scale)
                file = StageFile(stage, Path(f"/sim/{name}/{stage}"), key, 1, frames, 24.0, 1920, 1080)
                handle.add(file)
                await self._ledger_call("write", lambda record=record: record.__exit__(None, None, None))
                runs[stage] = handle.run_id
            deliver_run = runs["deliver"]
            await self._ledger_call(
                "write", lambda: ledger.finish_version(name, version, status="delivered", deliver_run_id=deliver_run)
            )
            await self._ledger_call("write", lambda: ledger.finish_shot(batch_id, name, state="done", version=version))
        return {"name": name, "node": self._node, "started": started, "finished": time.time()}

    async def results(self) -> dict[str, Any]:
        """The node's GPU calls (gpu, start, end) and ledger call timings (kind, seconds)."""
        return {"calls": self._calls, "timings": self._timings}


def _tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return tree


def _usage(pids: set[int]) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system, children waited for included) of ``pids``."""
    rss, cpu = 0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        cpu += sum(int(value) for value in fields[11:15]) / tick
        rss += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return rss, cpu


class HeadMonitor:
    """Samples the head node's processes every second: peak RSS, and CPU seconds between ``start`` and ``stop``."""

    def __init__(self, head_pids: Callable[[], set[int]]) -> None:
        self._pids = head_pids
        self.peak_rss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu_start = 0.0
        self.cpu_s = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            rss, _ = _usage(self._pids())
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1

    def start(self) -> None:
        self._cpu_start = _usage(self._pids())[1]
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = _usage(self._pids())[1] - self._cpu_start


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"count": len(values), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 2), "mean_ms": round(statistics.fmean(values) * 1000, 2)}  # fmt: skip


def _busy(calls: list[tuple[str, float, float]], until: float | None = None) -> dict[str, float]:
    """GPU busy share after warm-up: from the last GPU's first call to ``until`` (default: the last call's end)."""
    first: dict[str, float] = {}
    for gpu, started, _ in calls:
        first[gpu] = min(first.get(gpu, started), started)
    warm = max(first.values())
    end = until if until is not None else max(finished for _, _, finished in calls)
    inside = sum(max(0.0, min(finished, end) - max(started, warm)) for _, started, finished in calls)
    return {"busy": round(inside / ((end - warm) * len(first)), 4), "warmup_end_s": warm, "end_s": end}


def simulate(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Start the cluster, record the batch, run every shot, and measure (see the module docstring)."""
    import ray
    from ray.cluster_utils import Cluster

    from voidflow.infra.database import ensure_schema
    from voidflow.tasks.ledger import Ledger
    from voidflow.tasks.placement import Dispatcher
    from voidflow.tasks.scheduler import scheduling_order
    from voidflow.void_ops.shots import MediaSource, Shot, ShotInstructions

    db_url = args.db_url or f"sqlite:///{root / 'ledger.db'}"
    ensure_schema(db_url)
    ledger = Ledger(db_url)
    lengths = shot_lengths(args.shots)
    rng = random.Random(11)
    shots = [
        Shot(name=f"sh{index:05d}", track="V1", index=index, clip_name=f"sh{index:05d}", name_source="clip",
             media=MediaSource(f"/sim/plate{index}.mov", "movie", 24.0, frames=length + 2 * HANDLES), rate=24.0,
             source_start=HANDLES, duration=length, handles=(HANDLES, HANDLES), record_start=0, status="ready",
             instructions=ShotInstructions(priority=1 if rng.random() < 0.1 else 0))
        for index, length in enumerate(lengths)
    ]  # fmt: skip
    edit_id = ledger.record_edit(root / "sim.otio", "sim", 24.0, ())
    batch_id = ledger.create_batch(edit_id=edit_id, edit_path=root / "sim.otio", edit_sha256="sim",
                                   out_dir=root / "out", backend="void", params={"simulation": True})  # fmt: skip
    ledger.add_shots(batch_id, shots)

    cpus = args.gpus_per_node * args.cpus_per_gpu
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"head": 1}})
    nodes = [cluster.add_node(num_cpus=0, resources={"fake_gpu": args.gpus_per_node, f"sim_node_{index}": 1})
             for index in range(args.nodes)]  # fmt: skip
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = {f"sim-gpu{n * args.gpus_per_node + g}": n for n in range(args.nodes) for g in range(args.gpus_per_node)}
        dispatcher = ray.remote(Dispatcher).options(name="sim-dispatcher", num_cpus=0, resources={"head": 0.01})
        dispatcher_handle = dispatcher.remote(dict.fromkeys(gpus, 80.0), depth=2, strikes=2)
        node_actor: Any = ray.remote(NodeSim)
        actors = [
            node_actor.options(max_concurrency=10 * cpus + 64, num_cpus=0, resources={f"sim_node_{index}": 1}).remote(
                index, [gpu for gpu, owner in gpus.items() if owner == index], cpus, db_url, "sim-dispatcher",
                args.scale)
            for index in range(args.nodes)
        ]  # fmt: skip
        ray.get([actor.ready.remote() for actor in actors])
        owners = {gpu: actors[owner] for gpu, owner in gpus.items()}
        owners_ref = ray.put(owners)
        head_raylet = cluster.head_node.all_processes["raylet"][0].process.pid
        gcs = cluster.head_node.all_processes["gcs_server"][0].process.pid

        def head_pids() -> set[int]:
            return {os.getpid(), gcs} | _tree(head_raylet)

        monitor = HeadMonitor(head_pids)
        load_before = os.getloadavg()[0]
        monitor.start()
        window = 2 * cpus * args.nodes  # as ``futures.submission_window``: two per CPU of the cluster
        queue = list(scheduling_order(shots))
        in_flight = [0] * args.nodes
        pending: dict[Any, int] = {}
        finished: list[Any] = []
        started = time.time()
        last_submitted = started
        position = 0
        while position < len(queue) or pending:
            while position < len(queue) and len(pending) < window:
                shot = queue[position]
                node = min(range(args.nodes), key=in_flight.__getitem__)
                spec = {"name": shot.name, "frames": shot.frames, "priority": shot.instructions.priority}
                pending[actors[node].run_shot.remote(batch_id, spec, owners_ref)] = node
                in_flight[node] += 1
                position += 1
                last_submitted = time.time()
            ready, _ = ray.wait(list(pending), num_returns=1)
            node = pending.pop(ready[0])
            in_flight[node] -= 1
            finished.append(ready[0])
        wall = time.time() - started
        monitor.stop()
        done = ray.get(finished)  # once, at the end: a shot that raised raises here
        load_after = os.getloadavg()[0]
        ledger.finish_batch(batch_id)
        results = ray.get([actor.results.remote() for actor in actors])
        dispatcher_stats = ray.get(dispatcher_handle.stats.remote())
    finally:
        ray.shutdown()
        cluster.shutdown()
    del nodes
    calls = [tuple(call) for result in results for call in result["calls"]]
    timings = [tuple(timing) for result in results for timing in result["timings"]]
    busy = _busy(calls)
    steady = _busy(calls, last_submitted) if last_submitted > busy["warmup_end_s"] else {"busy": None}
    writes = [seconds for kind, seconds in timings if kind == "write"]
    reads = [seconds for kind, seconds in timings if kind == "read"]
    gpu_seconds = sum(end - begin for _, begin, end in calls)
    return {
        "benchmark": "cluster_sim",
        "command": " ".join(["python", *sys.argv]),
        "smoke": args.smoke,
        "cluster": {
            "nodes": args.nodes,
            "gpus": args.nodes * args.gpus_per_node,
            "cpus_per_node": cpus,
            "fake_gpus": "Ray custom resource fake_gpu; GPU calls are sleeps",
        },
        "shots": len(done),
        "frames": {
            "mean": round(statistics.fmean(shot.frames for shot in shots), 1),
            "min": min(shot.frames for shot in shots),
            "max": max(shot.frames for shot in shots),
            "void_calls": len(calls),
        },
        "sleep_scale": args.scale,
        "wall_s": round(wall, 1),
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "machine_cpus": os.cpu_count(),
        "h100_equivalent_wall_s": round(wall / args.scale, 1),
        "gpu_busy": busy["busy"],
        "gpu_busy_steady": steady["busy"],
        "warmup_s": round(busy["warmup_end_s"] - started, 2),
        "tail_s": round(busy["end_s"] - last_submitted, 2),
        "gpu_seconds_h100": round(gpu_seconds / args.scale, 1),
        "shots_per_hour_h100": round(len(done) / (wall / args.scale) * 3600, 1),
        "head": {
            "peak_rss_gb": round(monitor.peak_rss / 1024**3, 3),
            "cpu_s": round(monitor.cpu_s, 2),
            "cpu_s_per_shot": round(monitor.cpu_s / len(done), 4),
            "processes": "this driver, the GCS, the head raylet and its workers (the dispatcher)",
            "rss_samples": monitor.samples,
        },
        "ledger": {
            "db": "postgresql" if args.db_url else "sqlite",
            "writes": _percentiles(writes),
            "reads": _percentiles(reads),
            "writes_per_s": round(len(writes) / wall, 1),
        },
        "dispatcher_waiting_at_end": dispatcher_stats["waiting"],
        "calibration": _fake_void.calibration(),
        "cpu_stage_s_per_frame": {
            "mask": round(MASK_S_PER_FRAME, 4),
            "deliver": round(DELIVER_S_PER_FRAME, 4),
            "source": "benchmarks/results/throughput_h100_x1.json stage_mean_s",
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--gpus-per-node", type=int, default=16)
    parser.add_argument("--cpus-per-gpu", type=int, default=8)
    parser.add_argument("--shots", type=int, default=2000)
    parser.add_argument("--scale", type=float, default=1 / 6, help="sleeps are the H100's times times this")
    parser.add_argument("--db-url", help="the ledger (default: a fresh SQLite file); e.g. a local PostgreSQL")
    parser.add_argument("--smoke", action="store_true", help="2 nodes of 2 GPUs, 24 shots, scale 1/50")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.nodes, args.gpus_per_node, args.cpus_per_gpu, args.shots, args.scale = 2, 2, 4, 24, 1 / 50
    root = Path(tempfile.mkdtemp(prefix="vf-clustersim-"))
    try:
        os.environ["RAY_TMPDIR"] = str(root)
        os.environ["RAY_AUTH_MODE"] = "disabled"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        document = simulate(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from benchmarks.throughput import emit

    emit(document, args.out)
    return 0 if document["shots"] == args.shots else 1


if __name__ == "__main__":
    sys.exit(main())
