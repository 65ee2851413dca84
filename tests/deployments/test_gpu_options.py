"""The GPU fast path's switches as users meet them (issue 18): ``--no-compile`` on run and rerun, and
``voidflow models warm`` on a machine without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.deployments.test_cli import voidflow


def test_models_warm_refuses_in_one_line_where_torch_sees_no_gpu(tmp_path: Path) -> None:
    """Exit 2, one line, nothing loaded or written: a CPU image build must fail loudly, not bake an empty cache."""
    result = voidflow("models", "warm", "--frames", "85", home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("voidflow: error: models warm compiles VOID for this node's GPU, and torch ")
    assert result.stderr.endswith("sees no CUDA GPU here: nothing to warm (run it on a GPU node)\n")
    assert result.stderr.count("\n") == 1 and not result.stdout
    assert not (tmp_path / "compile-cache").exists()


def test_no_compile_is_recorded_with_the_batch_and_reruns_the_void_stages(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from voidflow.tasks.ledger import Ledger

    home, out = tmp_path / "home", tmp_path / "out"
    entries = yaml.safe_load(small_demo.sidecar.read_text())
    for entry in entries["shots"].values():
        entry["matte"] = small_demo.matte
    sidecar = tmp_path / "sidecar.yaml"
    sidecar.write_text(yaml.safe_dump(entries))
    result = voidflow("run", str(small_demo.edit), "--sidecar", str(sidecar), "--out", str(out), "--no-compile",
                      home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (batch,) = Ledger(f"sqlite:///{home / 'voidflow.db'}").batches()
    assert batch.params["void"]["compile"] is False  # the request as run, kept with the batch

    plan = voidflow("rerun", "--shot", "sh010", "--no-compile", "--dry-run", "--json", home=home)
    assert plan.returncode == 0, plan.stderr
    stages = {stage["stage"]: stage for stage in json.loads(plan.stdout)["shots"][0]["stages"]}
    assert stages["mask"]["action"] == "reuse"
    assert stages["pass1"]["action"] == "run" and "--from pass1" in stages["pass1"]["reason"]
    assert stages["deliver"]["action"] == "run"
    kept = voidflow("rerun", "--shot", "sh010", "--dry-run", "--json", home=home)
    assert {stage["action"] for stage in json.loads(kept.stdout)["shots"][0]["stages"]} == {"reuse"}
