"""Task distillation on 2 processes (DDP, gloo on CPU) equals 1 process: 2 × 4 = 1 × 8, unlabelled rows included."""

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
SCRIPT = Path(__file__).with_name("tiny_task_run.py")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def launch(out: Path, processes: int) -> None:
    accelerate = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file"]
    launcher = [*accelerate, str(ROOT / "ds_configs" / "cpu_2proc.yaml")] if processes == 2 else [sys.executable]
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*launcher, str(SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_processes_equal_one(tmp_path):
    launch(tmp_path / "one", 1)
    launch(tmp_path / "ddp", 2)
    one, ddp = (
        load_file(str(tmp_path / "one" / "student.safetensors")),
        load_file(str(tmp_path / "ddp" / "student.safetensors")),
    )
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    logs = [[h for h in json.loads((tmp_path / r / "log.json").read_text()) if "loss" in h] for r in ("one", "ddp")]
    assert len(logs[0]) == len(logs[1]) == 2
    for step_one, step_ddp in zip(*logs):
        for key in ("loss", "loss_task", "loss_kd"):
            assert step_ddp[key] == pytest.approx(step_one[key], rel=1e-5), key
    r0, r1 = (json.loads((tmp_path / "ddp" / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert r0["checksum"] == r1["checksum"]  # identical replicas
