"""Each launch config runs the recipe end to end, evaluation included, with the numbers of one process.

Two CPU processes (gloo) under DDP, DeepSpeed ZeRO-2 and ZeRO-3, and FSDP2. Under ZeRO-3 and FSDP2 each process
holds only shards of the teacher and the student, so the held-out evaluation (at each evaluation step and at the
end) needs every process; it must still give one process's numbers. The DeepSpeed JSON is the recipe's own
minus its optimizer and scheduler (as in tests/distributed: DeepSpeed's AdamW would compile a CPU op); FSDP2 is
ds_configs/fsdp2.yaml on two CPU processes, run through tests/distributed/fsdp_on_cpu.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_recipe_assets
from distributed.test_distributed import deepspeed_cpu_config, fsdp2_cpu_config, launcher  # tests/ on sys.path
from safetensors.torch import load_file
from test_distil_bert import RECIPE, ROOT
from transformers import AutoModelForMaskedLM

pytestmark = [pytest.mark.recipe, pytest.mark.distributed]
# Same updates in one and two processes: 16 sequences per update (GA 2 × 8, or 2 × 8), the same random
# order (length grouping groups per process batch, which differs), no dropout, evaluations at steps 2 and 4.
FLAGS = (
    "--per_device_train_batch_size",
    "8",
    "--target_batch_size",
    "16",
    "--train_sampling_strategy",
    "random",
    "--max_steps",
    "4",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "2",
)
MLM_ONLY = ("--alpha_ce", "0", "--alpha_cos", "0")  # the teacher is not trained against, still evaluated


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny BERT teacher without dropout (two processes draw other dropout masks) and a text file."""
    return save_recipe_assets(tmp_path_factory.mktemp("assets"))


def launch_recipe(assets: Path, out: Path, config: Path | None, *flags: str) -> subprocess.CompletedProcess:
    data = ["--teacher", str(assets / "teacher"), "--train_file", str(assets / "train.txt")]
    data += ["--data_cache_dir", str(assets / "cache"), "--output_dir", str(out)]
    cmd = [*launcher(config), str(RECIPE), *data, *FLAGS, *flags]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HF_DISTIL_TRACEBACK", None)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def run(assets: Path, out: Path, config: Path | None, *flags: str) -> Path:
    done = launch_recipe(assets, out, config, *flags)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def one_process(assets, tmp_path_factory):
    """The 1-process runs, by their extra flags, made once."""
    runs: dict[tuple[str, ...], Path] = {}

    def get(*flags: str) -> Path:
        if flags not in runs:
            runs[flags] = run(assets, tmp_path_factory.mktemp("one") / "out", None, *flags)
        return runs[flags]

    return get


def held_out(out: Path) -> dict:
    return json.loads((out / "held_out_results.json").read_text())


def agreement_at_evaluations(out: Path) -> list[float]:
    """step, agreement, KL of each evaluation during training (TeacherAgreementCallback), one flat list."""
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    evaluations = [h for h in history if "eval_teacher_agreement" in h]
    return [v for h in evaluations for v in (h["step"], h["eval_teacher_agreement"], h["eval_teacher_kl"])]


def assert_same_evaluation(one: Path, two: Path) -> None:
    a, b = held_out(one), held_out(two)
    assert b["world_size"] == 2 and a["world_size"] == 1 and b["params"] == a["params"]
    for side in ("student", "teacher"):
        assert b[side]["masked_tokens"] == a[side]["masked_tokens"] > 0
        for key in ("accuracy", "top5_accuracy", "chosen_accuracy", "loss", "perplexity"):
            assert b[side][key] == pytest.approx(a[side][key], rel=1e-5), (side, key)
    assert b["student"]["teacher_agreement"] == pytest.approx(a["student"]["teacher_agreement"], rel=1e-5)
    assert b["student"]["teacher_kl"] == pytest.approx(a["student"]["teacher_kl"], rel=1e-4)  # a KL near 0 (~1e-3)
    assert 0 < a["student"]["teacher_agreement"] < 1 and a["student"]["accuracy"] != a["teacher"]["accuracy"]
    steps = agreement_at_evaluations(one)
    assert steps[0::3] == [2, 4] and steps[1:3] != steps[4:6]  # the student moved between them
    assert agreement_at_evaluations(two) == pytest.approx(steps, abs=2e-6)  # logged rounded to 6 decimals
    speed = b["speed_batch_1"]
    assert speed["speedup"] == speed["teacher_seconds"] / speed["student_seconds"] and speed["encoder_speedup"] > 0


@pytest.mark.parametrize("launch", ["ddp", "zero2", "zero3"])
def test_two_processes_evaluate_like_one(launch, assets, one_process, tmp_path):
    ddp = ROOT / "ds_configs" / "cpu_2proc.yaml"
    config = ddp if launch == "ddp" else deepspeed_cpu_config(tmp_path, int(launch[-1]))
    assert_same_evaluation(one_process(), run(assets, tmp_path / "out", config))


@pytest.mark.parametrize("launch", ["zero3", "fsdp2"])
def test_sharded_launch_evaluates_a_teacher_that_training_does_not_use(launch, assets, one_process, tmp_path):
    """With L_ce and L_cos off the trainer leaves the teacher alone; under ZeRO-3 or FSDP2 still sharded."""
    config = deepspeed_cpu_config(tmp_path, 3) if launch == "zero3" else fsdp2_cpu_config(tmp_path)
    two = run(assets, tmp_path / "out", config, *MLM_ONLY)
    assert_same_evaluation(one_process(*MLM_ONLY), two)


def test_ddp_with_a_trimmed_vocabulary_evaluates_like_one_process(assets, one_process, tmp_path):
    trimmed = ("--vocabulary_size", "45")
    two = run(assets, tmp_path / "out", ROOT / "ds_configs" / "cpu_2proc.yaml", *trimmed)
    assert_same_evaluation(one_process(*trimmed), two)
    assert AutoModelForMaskedLM.from_pretrained(two).config.vocab_size <= 45


def test_zero3_refuses_a_trimmed_vocabulary_before_any_model_loads(assets, tmp_path):
    """ZeRO-3 partitions the teacher's vocabulary rows, which the trimmed student's teacher view is cut from."""
    out = tmp_path / "out"
    done = launch_recipe(assets, out, deepspeed_cpu_config(tmp_path, 3), "--vocabulary_size", "45")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # Each process ends on the same line with exit code 2; the only traceback is the launcher's own report.
    assert done.returncode != 0 and done.stderr.count("exitcode  : 2") == 2, done.stderr[-3000:]
    assert "hf_distil/" not in done.stderr and 'distil_bert.py", line' not in done.stderr, done.stderr[-3000:]
    assert len(errors) == 2 and len(set(errors)) == 1 and "--vocabulary_size 45" in errors[0]
    assert "DDP or ZeRO-2" in errors[0] and not out.exists()


def test_fsdp2_evaluates_saves_and_resumes_like_one_process(assets, one_process, tmp_path):
    """FSDP2: one process's evaluations, the whole student saved as one model that loads, and a run resumed
    from its step-2 checkpoint ends on the same weights as the uninterrupted run."""
    config = fsdp2_cpu_config(tmp_path)
    checkpoints = ("--save_strategy", "steps", "--save_steps", "2")
    full = run(assets, tmp_path / "full", config, *checkpoints)
    assert_same_evaluation(one_process(), full)
    assert not [p.name for p in full.iterdir() if p.name.startswith(("pytorch_model", "model.safetensors.index"))]
    saved, alone = load_file(str(full / "model.safetensors")), load_file(str(one_process() / "model.safetensors"))
    assert set(saved) == set(alone)
    for name in saved:
        torch.testing.assert_close(saved[name], alone[name], rtol=0, atol=1e-5, msg=name)
    loaded = AutoModelForMaskedLM.from_pretrained(full).state_dict()  # a plain model, every weight in place
    assert all(torch.equal(loaded[name], saved[name]) for name in saved)

    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    shutil.rmtree(crashed / "checkpoint-4")  # as if the run had died after step 2's checkpoint
    (crashed / "model.safetensors").unlink()
    kept = (crashed / "checkpoint-2" / "optimizer.bin").stat().st_mtime_ns
    run(assets, crashed, config, *checkpoints)
    assert (crashed / "checkpoint-2" / "optimizer.bin").stat().st_mtime_ns == kept  # resumed, not trained afresh
    resumed = load_file(str(crashed / "model.safetensors"))
    for name in saved:
        assert torch.equal(resumed[name], saved[name]), name
    assert agreement_at_evaluations(crashed)[3:] == agreement_at_evaluations(full)[3:]  # the step-4 evaluation


def test_multi_node_config_as_two_machine_ranks_equals_one_process(assets, one_process, tmp_path):
    """ds_configs/multi_node.yaml as a user changes it for two one-process machines, both on 127.0.0.1 over gloo:
    the two `accelerate launch --machine_rank 0/1` commands train together, only rank 0 saves, and the run
    evaluates like one process."""
    config = yaml.safe_load((ROOT / "ds_configs" / "multi_node.yaml").read_text())
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config.update(num_processes=2, main_process_ip="127.0.0.1", main_process_port=port, use_cpu=True)
    config["mixed_precision"] = "no"  # fp16 autocast on a CPU would not equal the fp32 process
    path = tmp_path / "multi_node.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    data = ["--teacher", str(assets / "teacher"), "--train_file", str(assets / "train.txt")]
    data += ["--data_cache_dir", str(assets / "cache"), "--output_dir", str(out), *FLAGS]
    accelerate = [str(Path(sys.executable).with_name("accelerate")), "launch"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    machines = [
        subprocess.Popen(
            [*accelerate, "--config_file", str(path), "--machine_rank", str(rank), str(RECIPE), *data],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [machine.communicate(timeout=600)[0] for machine in machines]
    assert [m.returncode for m in machines] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert_same_evaluation(one_process(), out)
    assert [p.name for p in out.glob("*.safetensors")] == ["model.safetensors"]
    assert sum(log.count("student written to") for log in logs) == 1  # one process saved and reported
