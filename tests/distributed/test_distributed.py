"""Real multi-process runs on CPU (gloo): DDP, DeepSpeed ZeRO-2 and ZeRO-3, FSDP2 each equal one process.

The first DeepSpeed run compiles its communication op (~1.5 min), cached under TORCH_EXTENSIONS_DIR.
FSDP2 runs through fsdp_on_cpu.py: Accelerate picks FSDP only on GPUs (see there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("tiny_run.py")
pytestmark = pytest.mark.distributed


def launcher(config: Path | None) -> list[str]:
    """The command that starts a script: python for one process, else `accelerate launch` with `config`
    (through fsdp_on_cpu.py for an FSDP config)."""
    if config is None:
        return [sys.executable]
    accelerate = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", str(config)]
    fsdp = yaml.safe_load(config.read_text())["distributed_type"] == "FSDP"
    return [*accelerate, *([str(Path(__file__).with_name("fsdp_on_cpu.py"))] if fsdp else [])]


def launch(out: Path, config: Path | None, *script_args: str) -> None:
    out.mkdir(parents=True)
    cmd = [*launcher(config), str(SCRIPT), str(out), *script_args]
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


def fsdp2_cpu_config(tmp_path: Path, reshard_after_forward: bool = True, layer_class: str | None = None) -> Path:
    """ds_configs/fsdp2.yaml on two CPU processes, in fp32 (bf16 autocast is slower than fp32 on these CPUs);
    `layer_class` replaces the blocks it wraps, as a user edits it for a student of another class."""
    config = yaml.safe_load((ROOT / "ds_configs" / "fsdp2.yaml").read_text())
    config.update(num_processes=2, use_cpu=True, mixed_precision="no")
    config["fsdp_config"]["fsdp_reshard_after_forward"] = reshard_after_forward
    if layer_class:
        config["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] = layer_class
    path = tmp_path / "fsdp2_cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


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
    logged = next(h for h in json.loads((tmp_path / "ddp" / "log.json").read_text()) if "loss" in h)
    assert {"loss_embedding_mse", "loss_embedding_cos", "loss_similarity_kl"} <= set(logged)  # compared above
    r0, r1 = ranks(tmp_path / "ddp")
    assert r0["checksum"] == r1["checksum"]  # identical replicas after the update
    assert r0["teacher_local_numel"] == r0["teacher_peak_local_numel"] == r0["teacher_numel"]  # the whole teacher


def test_zero2_two_processes_equal_one(single, tmp_path):
    launch(tmp_path / "z2", deepspeed_cpu_config(tmp_path, 2))
    assert_same_run(single, tmp_path / "z2")
    r0, r1 = ranks(tmp_path / "z2")
    assert r0["checksum"] == r1["checksum"]
    assert r0["teacher_local_numel"] == r0["teacher_numel"] > 0  # ZeRO-2: a full teacher replica per rank


def test_zero3_two_processes_equal_one_with_a_sharded_teacher(single, tmp_path):
    launch(tmp_path / "z3", deepspeed_cpu_config(tmp_path, 3))
    assert_same_run(single, tmp_path / "z3")
    # Never whole on a rank. From its second forward on (here the similarity KL's first pass, then the loss's),
    # ZeRO-3 keeps the tied word embeddings and the head's bias gathered (1,682 of 38,098 values; the same with two
    # training steps and no pooled term), so "none of it" became "a small part of it".
    for report in ranks(tmp_path / "z3"):
        assert 0 < report["teacher_numel"] and report["teacher_local_numel"] < 0.1 * report["teacher_numel"]


@pytest.mark.parametrize("reshard_after_forward", [True, False], ids=["full_shard", "shard_grad_op"])
def test_fsdp2_two_processes_equal_one_with_a_sharded_teacher(reshard_after_forward, single, tmp_path):
    """The teacher is sharded whatever the student's reshard_after_forward: with False, a teacher sharded as
    one unit with the student's setting (TRL's prepare_fsdp) would stay whole after its first forward."""
    launch(tmp_path / "fsdp2", fsdp2_cpu_config(tmp_path, reshard_after_forward))
    assert_same_run(single, tmp_path / "fsdp2")
    r0, r1 = ranks(tmp_path / "fsdp2")
    assert r0["checksum"] != r1["checksum"]  # each rank holds other shards of the student
    # The teacher too: each rank holds a share of it (about half), together exactly one teacher; during a
    # forward, its shards plus one layer and the embeddings and head, never the whole of it (here 0.66 of it:
    # the tiny teacher's embeddings and head are a large part). It is neither trained nor in the optimizer.
    numel = r0["teacher_numel"]
    assert numel == r1["teacher_numel"] == r0["teacher_local_numel"] + r1["teacher_local_numel"]
    for report in (r0, r1):
        assert 0.4 < report["teacher_local_numel"] / numel < 0.6
        assert report["teacher_local_numel"] < report["teacher_peak_local_numel"] < 0.8 * numel
        assert not report["teacher_trained"]


def test_ddp_trains_the_width_projection_like_one_process(tmp_path):
    """A half-width student: the projection outside the DDP model gets the same averaged update on both ranks, and
    the pooled terms, far from 0 here, give the update of one process."""
    launch(tmp_path / "one", None, "narrow")
    launch(tmp_path / "ddp", ROOT / "ds_configs" / "cpu_2proc.yaml", "narrow")
    assert_same_run(tmp_path / "one", tmp_path / "ddp")
    assert "projection.weight" in load_file(str(tmp_path / "ddp" / "student.safetensors"))
    logged = next(h for h in json.loads((tmp_path / "ddp" / "log.json").read_text()) if "loss" in h)
    assert "loss_hidden_mse" in logged and float(logged["grad_norm"]) > 0.5  # the update was clipped
    # The random student is far from the teacher: the pooled terms (the similarity KL gathered from both processes,
    # the embedding MSE through the projection) weigh in the update that both runs must share.
    assert min(logged[f"loss_{t}"] for t in ("embedding_mse", "embedding_cos", "similarity_kl")) > 0.05
    r0, r1 = ranks(tmp_path / "ddp")
    assert r0["checksum"] == r1["checksum"]


def test_fsdp2_refuses_the_width_projection_in_one_line(tmp_path):
    """The projection lives outside the sharded student; under FSDP2 it is refused at construction."""
    cmd = [*launcher(fsdp2_cpu_config(tmp_path)), str(SCRIPT), str(tmp_path / "out"), "narrow"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "UsageError: a learned hidden-size projection is not supported under DeepSpeed or FSDP yet" in done.stderr
