"""The recipe end to end, as users launch it, on a tiny teacher saved to disk (no Hub)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_recipe_assets
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_distil.data.corpus import DataArguments, prepare_corpus
from hf_distil.evaluation.masked_lm import masked_lm_metrics
from hf_distil.models.projection import PROJECTION_FILE

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "distil_bert.py"
pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny BERT teacher with its tokenizer in a folder, and a text file: what a user would pass."""
    return save_recipe_assets(tmp_path_factory.mktemp("assets"), dropout=0.1)


def run(assets: Path, out: Path, *flags: str, processes: int = 1) -> subprocess.CompletedProcess:
    common = [
        "--teacher",
        str(assets / "teacher"),
        "--train_file",
        str(assets / "train.txt"),
        "--output_dir",
        str(out),
        "--data_cache_dir",
        str(assets / "cache"),
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "1",
        *flags,
    ]
    if processes == 1:
        cmd = [sys.executable, str(RECIPE), *common]
    else:
        cmd = [
            str(Path(sys.executable).with_name("accelerate")),
            "launch",
            "--config_file",
            str(ROOT / "ds_configs" / "cpu_2proc.yaml"),
            str(RECIPE),
            *common,
        ]
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_recipe_trains_saves_and_reports(assets, tmp_path):
    done = run(assets, tmp_path / "out", "--max_steps", "6", "--save_steps", "3")
    out = tmp_path / "out"
    assert (out / "model.safetensors").exists() and not (out / "pytorch_model.bin").exists()
    assert (out / "tokenizer.json").exists() and (out / "config.json").exists()
    logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logs) == 6 and all({"loss_ce", "loss_mlm", "loss_cos"} <= set(h) for h in logs)
    results = json.loads((out / "held_out_results.json").read_text())
    assert results["params"]["student"] < results["params"]["teacher"]
    # The reported numbers are those of the saved student and the teacher on the recipe's held-out split.
    tokenizer = AutoTokenizer.from_pretrained(assets / "teacher")
    teacher, student = (AutoModelForMaskedLM.from_pretrained(f) for f in (assets / "teacher", out))
    data_args = DataArguments(train_file=str(assets / "train.txt"), data_cache_dir=str(assets / "cache"))
    _, held_out, _ = prepare_corpus(data_args, tokenizer, models=[teacher, student])
    expected = masked_lm_metrics(student, held_out, tokenizer, teacher=teacher)
    for key in ("accuracy", "top5_accuracy", "loss", "teacher_agreement", "teacher_kl"):
        assert results["student"][key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    assert results["teacher"]["accuracy"] == pytest.approx(expected["teacher"]["accuracy"], rel=1e-5, abs=1e-7)
    assert expected["masked_tokens"] > 0 and expected["teacher_kl"] > 0  # a student that is not its teacher
    assert "top-1 agreement with teacher" in done.stdout
    assert "masked LM (encoder + vocabulary head): student is" in done.stdout
    assert "encoder alone (the paper's Table 3 setting): student is" in done.stdout  # tiny models: faster or slower


def test_mobilebert_student_trains_with_the_width_projection_and_reloads(assets, tmp_path):
    out = tmp_path / "mobile"
    flags = ["--student_architecture", "mobilebert", "--student_num_layers", "2", "--alpha_cos", "0"]
    run(assets, out, *flags, "--alpha_hidden_mse", "1", "--max_steps", "3", "--save_strategy", "no")
    student = AutoModelForMaskedLM.from_pretrained(out)
    assert type(student).__name__ == "MobileBertForMaskedLM" and student.config.num_hidden_layers == 2
    assert (out / PROJECTION_FILE).exists()  # the learned width projection, beside the student, not inside it
    assert not any("projection" in name for name in load_file(out / "model.safetensors"))
    logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logs) == 3 and all(h["loss_hidden_mse"] > 0 and "loss_cos" not in h for h in logs)
    results = json.loads((out / "held_out_results.json").read_text())
    assert results["params"]["student"] == student.num_parameters() and 0 <= results["student"]["accuracy"] <= 1


def test_resumed_run_ends_identical_to_an_uninterrupted_one(assets, tmp_path):
    """With the vocabulary trimmed (the untrimmed run is checked above): the resumed run trims it the same way."""
    flags = ("--max_steps", "6", "--save_steps", "3", "--train_sampling_strategy", "random", "--vocabulary_size", "45")
    run(assets, tmp_path / "full", *flags)
    run(assets, tmp_path / "crashed", *flags)
    crashed = tmp_path / "crashed"
    shutil.rmtree(crashed / "checkpoint-6")  # as if the run had died after step 3's checkpoint
    (crashed / "model.safetensors").unlink()
    run(assets, crashed, *flags)
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(crashed / "model.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # The trimmed student and its tokenizer load with stock classes and agree with each other.
    student, tokenizer = AutoModelForMaskedLM.from_pretrained(crashed), AutoTokenizer.from_pretrained(crashed)
    teacher_vocabulary = len(AutoTokenizer.from_pretrained(assets / "teacher"))
    assert student.config.vocab_size == len(tokenizer) == 45 < teacher_vocabulary
    card = (crashed / "README.md").read_text()  # the card says so
    assert f"trimmed to **45 of the teacher's {teacher_vocabulary:,} WordPiece tokens**" in card
    logs = [h for h in json.loads((crashed / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert all(h["loss_ce"] > 0 and h["loss_mlm"] > 0 for h in logs)


@pytest.mark.distributed
def test_two_process_launch_keeps_replicas_identical(assets, tmp_path):
    run(assets, tmp_path / "ddp", "--max_steps", "4", "--save_strategy", "no", processes=2)
    metrics = json.loads((tmp_path / "ddp" / "train_results.json").read_text())
    assert metrics["replicas"] == 2 and metrics["replica_checksum_spread"] == 0.0


def test_push_to_hub_flag_publishes_the_student_and_its_card(assets, tmp_path, hub):
    run(
        assets,
        tmp_path / "out",
        "--max_steps",
        "4",
        "--save_steps",
        "2",
        "--push_to_hub",
        "--hub_model_id",
        "alice/recipe",
        "--hub_token",
        "hf_secret_in_flags",
    )
    files = hub.files[("alice/recipe", "main")]
    assert {"model.safetensors", "README.md", "loss_terms.png", "training_args.json", "held_out_results.json"} <= set(
        files
    )
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert all(b"hf_secret_in_flags" not in content for content in files.values())
    messages = [c["message"] for c in hub.commits]
    assert messages[:2] == ["Checkpoint at step 2", "Checkpoint at step 4"] and len(messages) == 3
    card = files["README.md"].decode()
    header = yaml.safe_load(card.split("---")[1])
    assert "base_model" not in header  # a local folder is not a Hub id
    assert "top-1 accuracy at [MASK]" in card and "layer map" in card


def test_ablation_runs_the_variants_asked_for(assets, tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "ablation.py"),
        "--output_dir",
        str(tmp_path / "abl"),
        "--max_steps",
        "2",
        "--finetune_steps",
        "2",
        "--variants",  # one of each kind of change: a weight zeroed, the initialisation, a new term
        "no L_cos",
        "random init",
        "L_relation alone",
        "--",
        "--teacher",
        str(assets / "teacher"),
        "--train_file",
        str(assets / "train.txt"),
        "--data_cache_dir",
        str(assets / "cache"),
        "--per_device_train_batch_size",
        "8",
        "--max_eval_samples",
        "16",
    ]
    done = subprocess.run(
        cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert list(table) == ["no L_cos", "random init", "L_relation alone"]
    alphas = {  # (alpha_ce, alpha_mlm, alpha_cos, alpha_relation)
        "no L_cos": (5.0, 2.0, 0.0, 0.0),
        "random init": (5.0, 2.0, 1.0, 0.0),
        "L_relation alone": (0.0, 0.0, 0.0, 1.0),
    }
    for name, row in table.items():  # each variant ran with its own flags, and the table reads its own results
        folder = tmp_path / "abl" / name.replace(" ", "_")
        settings = json.loads((folder / "training_args.json").read_text())
        assert tuple(settings[f"alpha_{k}"] for k in ("ce", "mlm", "cos", "relation")) == alphas[name], name
        assert json.loads((folder / "distillation_settings.json").read_text())["random_init_student"] is (
            name == "random init"
        )
        held_out = json.loads((folder / "held_out_results.json").read_text())["student"]
        downstream = json.loads((folder / "polarity" / "eval_results.json").read_text())
        assert row == {"mlm_top1": 100 * held_out["accuracy"], "polarity_accuracy": 100 * downstream["eval_accuracy"]}
    assert "random init" in done.stdout


def test_cache_command_then_training_from_the_cache(assets, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "cache_teacher.py"),
        "--teacher",
        str(assets / "teacher"),
        "--train_file",
        str(assets / "train.txt"),
        "--data_cache_dir",
        str(assets / "cache"),
        "--output_dir",
        str(tmp_path / "cache"),
        "--top_k",
        "8",
        "--copies",
        "2",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bytes of teacher signals per token" in done.stdout
    run(
        assets,
        tmp_path / "out",
        "--teacher_cache",
        str(tmp_path / "cache"),
        "--alpha_cos",
        "0",
        "--max_steps",
        "3",
        "--save_strategy",
        "no",
    )
    logs = [h for h in json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logs) == 3 and all("loss_ce" in h and "loss_cos" not in h for h in logs)
