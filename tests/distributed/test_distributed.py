"""Real multi-process runs on CPU (gloo): DDP, DeepSpeed ZeRO-2 and ZeRO-3 each equal one process.

The first DeepSpeed run compiles its communication op (~1.5 min), cached under TORCH_EXTENSIONS_DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("tiny_run.py")
pytestmark = pytest.mark.distributed


def launch(out: Path, config: Path | None, *script_args: str) -> None:
    out.mkdir(parents=True)
    accelerate = Path(sys.executable).with_name("accelerate")
    launcher = [sys.executable] if config is None else [str(accelerate), "launch", "--config_file", str(config)]
    cmd = [*launcher, str(SCRIPT), str(out), *script_args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def deepspeed_cpu_config(tmp_path: Path, stage: int) -> Path:
    """ds_configs/zeroN.json without its optimizer (DeepSpeed's AdamW would compile a CPU kernel; the
    Trainer's SGD keeps the test about the data path), under a 2-process CPU Accelerate config."""
    ds = json.loads((ROOT / "ds_configs" / f"zero{stage}.json").read_text())
    ds.pop("optimizer")
    ds.pop("scheduler")
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\n"
        f"deepspeed_config:\n  deepspeed_config_file: {tmp_path / 'ds.json'}\n"
        f"  zero3_init_flag: {str(stage == 3).lower()}\n"
        "num_machines: 1\nnum_processes: 2\nmachine_rank: 0\nrdzv_backend: static\nsame_network: true\nuse_cpu: true\n"
    )
    return config


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    launch(out, None)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "student.safetensors")), load_file(str(b / "student.safetensors"))
    assert set(wa) == set(wb)
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-5, msg=name)
    la = next(h for h in json.loads((a / "log.json").read_text()) if "loss" in h)
    lb = next(h for h in json.loads((b / "log.json").read_text()) if "loss" in h)
    for key in [k for k in la if k.startswith("loss")]:
        assert lb[key] == pytest.approx(la[key], rel=1e-5), key


def ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]


def test_ddp_two_processes_equal_one(single, tmp_path):
    launch(tmp_path / "ddp", ROOT / "ds_configs" / "cpu_2proc.yaml")
    assert_same_run(single, tmp_path / "ddp")
    r0, r1 = ranks(tmp_path / "ddp")
    assert r0["checksum"] == r1["checksum"]  # identical replicas after the update
    assert r0["teacher_local_numel"] == r0["teacher_numel"]  # each rank holds the whole teacher


def test_zero2_two_processes_equal_one(single, tmp_path):
    launch(tmp_path / "z2", deepspeed_cpu_config(tmp_path, 2))
    assert_same_run(single, tmp_path / "z2")
    r0, r1 = ranks(tmp_path / "z2")
    assert r0["checksum"] == r1["checksum"]
    assert r0["teacher_local_numel"] == r0["teacher_numel"] > 0  # ZeRO-2: a full teacher replica per rank


def test_zero3_two_processes_equal_one_with_a_sharded_teacher(single, tmp_path):
    launch(tmp_path / "z3", deepspeed_cpu_config(tmp_path, 3))
    assert_same_run(single, tmp_path / "z3")
    for report in ranks(tmp_path / "z3"):
        assert report["teacher_numel"] > 0 and report["teacher_local_numel"] == 0  # never whole on a rank


def test_ddp_trains_the_width_projection_like_one_process(tmp_path):
    """A half-width student: the projection outside the DDP model gets the same averaged update on both ranks."""
    launch(tmp_path / "one", None, "narrow")
    launch(tmp_path / "ddp", ROOT / "ds_configs" / "cpu_2proc.yaml", "narrow")
    assert_same_run(tmp_path / "one", tmp_path / "ddp")
    assert "projection.weight" in load_file(str(tmp_path / "ddp" / "student.safetensors"))
    logged = next(h for h in json.loads((tmp_path / "ddp" / "log.json").read_text()) if "loss" in h)
    assert "loss_hidden_mse" in logged and float(logged["grad_norm"]) > 0.5  # the update was clipped
    r0, r1 = ranks(tmp_path / "ddp")
    assert r0["checksum"] == r1["checksum"]
