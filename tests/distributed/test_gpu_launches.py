"""The recipe on one GPU in mixed precision, as users launch it: --fp16 alone, DeepSpeed ZeRO-2 in fp16, FSDP2 in
bf16 (one process each). Skipped without CUDA; benchmarks/gpu_check.py runs them (pytest -m gpu).

Each run trains 4 steps on a tiny teacher saved to disk, saves, evaluates on held-out text, and must log finite
losses that match a teacher-free mix of terms. The DeepSpeed JSON loses its optimizer, as in the CPU tests:
DeepSpeed's fused Adam would compile a CUDA op on the spot.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_recipe_assets
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "distil_bert.py"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.py)"),
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return save_recipe_assets(tmp_path_factory.mktemp("assets"))


def one_gpu_config(tmp_path: Path, launch: str) -> Path | None:
    """The launch config of `launch` for one process on one GPU (None: plain python)."""
    if launch == "fp16":
        return None
    if launch == "zero2-fp16":
        ds = json.loads((ROOT / "ds_configs" / "zero2.json").read_text())
        ds.pop("optimizer")
        ds.pop("scheduler")
        (tmp_path / "ds.json").write_text(json.dumps(ds))
        config = yaml.safe_load((ROOT / "ds_configs" / "deepspeed_zero2.yaml").read_text())
        config["deepspeed_config"]["deepspeed_config_file"] = str(tmp_path / "ds.json")
    else:
        config = yaml.safe_load((ROOT / "ds_configs" / "fsdp2.yaml").read_text())
    config["num_processes"] = 1
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("launch", ["fp16", "zero2-fp16", "fsdp2-bf16"])
def test_recipe_trains_saves_and_evaluates_in_mixed_precision(launch, assets, tmp_path):
    config = one_gpu_config(tmp_path, launch)
    start = [sys.executable] if config is None else [str(Path(sys.executable).with_name("accelerate")), "launch"]
    start += [] if config is None else ["--config_file", str(config)]
    precision = ["--fp16"] if "fp16" in launch else []  # FSDP2's bf16 comes from its config
    out = tmp_path / "out"
    cmd = [
        *start,
        str(RECIPE),
        *("--teacher", str(assets / "teacher"), "--train_file", str(assets / "train.txt")),
        *("--data_cache_dir", str(assets / "cache"), "--output_dir", str(out)),
        *("--per_device_train_batch_size", "8", "--max_steps", "4", "--logging_steps", "1"),
        *precision,
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logged = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logged) == 4 and all(math.isfinite(h["loss"]) for h in logged)
    for h in logged:
        parts = 5 * h["loss_ce"] + 2 * h["loss_mlm"] + h["loss_cos"]
        assert h["loss"] == pytest.approx(parts, rel=1e-3)
    weights = load_file(str(out / "model.safetensors"))
    assert weights and all(torch.isfinite(w.float()).all() for w in weights.values())
    held_out = json.loads((out / "held_out_results.json").read_text())
    assert held_out["student"]["masked_tokens"] > 0 and math.isfinite(held_out["student"]["loss"])
