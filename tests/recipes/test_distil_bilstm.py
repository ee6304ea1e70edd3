"""recipes/distil_bilstm.py end to end on a tiny teacher: the table, results.json, the saved BiLSTM and its card."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import WORDS, save_tiny_teacher
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_distil.models.bilstm import BiLSTMForSequenceClassification
from hf_distil.tasks.pos_tagger import INSTALL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.recipe
TINY = ["--teacher_steps", "3", "--teacher_batch_size", "8", "--max_steps", "4", "--per_device_train_batch_size", "8"]
TINY += ["--hidden_size", "8", "--classifier_size", "8", "--n_iter", "2", "--max_seq_length", "32"]


def distil_bilstm(cwd: Path, *flags: str, expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "recipes" / "distil_bilstm.py"), "--disable_tqdm", "true", *TINY, *flags]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        cmd, cwd=cwd, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == expect, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def pair_files(folder: Path) -> tuple[Path, Path]:
    """A sentence-pair task as local CSV files: label 1 when the second text repeats the first's first word."""
    rng = random.Random(0)
    for name, count in (("train", 24), ("dev", 8)):
        with open(folder / f"{name}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["sentence1", "sentence2", "label"])
            for i in range(count):
                first = [rng.choice(WORDS) for _ in range(6)]
                second = [first[0] if i % 2 else "tree"] + [rng.choice(WORDS) for _ in range(4)]
                writer.writerow([" ".join(first), " ".join(second), i % 2])
    return folder / "train.csv", folder / "dev.csv"


def test_pair_task_from_local_files_with_mlm_and_unlabelled_transfer_sets(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "tiny")
    train, dev = pair_files(tmp_path)
    out = tmp_path / "out"
    done = distil_bilstm(
        tmp_path,
        *("--task", "mrpc", "--train_file", str(train), "--validation_file", str(dev)),
        *("--base_model", str(teacher), "--mlm_model", str(teacher), "--output_dir", str(out)),
        *("--seeds", "1", "2", "--augmentations", "mlm", "unlabelled", "--labelled_fraction", "0.5"),
    )
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["teacher", "gold", "distilled", "distilled+mlm", "distilled+unlabelled"]
    for row in rows.values():
        assert set(row["scores"]) == {"1", "2"} and all(0 <= s <= 100 for s in row["scores"].values())
    # the labelled half (12) is the transfer set; the unlabelled half (12 pairs) joins it, labelled by the teacher
    assert rows["distilled"]["examples"] == 12 and rows["distilled+unlabelled"]["examples"] == 24
    assert 12 < rows["distilled+mlm"]["examples"] <= 12 + 2 * 12
    assert set(results["gap_closed"]) == {"distilled", "distilled+mlm", "distilled+unlabelled"}
    speed = results["speed"]
    assert speed["examples"] == 8 and {"batch_1", "batch_32", "onnx_batch_1", "onnx_batch_32"} <= set(speed)
    for times in (speed[key] for key in ("batch_1", "onnx_batch_32")):
        assert times["speedup"] == pytest.approx(times["teacher_ms"] / times["bilstm_ms"])
    assert results["params"]["bilstm"] > results["params"]["bilstm_non_embedding"]
    assert "BiLSTM distilled + unlabelled in-domain text" in done.stdout
    assert "CPU time per example in ONNX Runtime fp32" in done.stdout

    # The saved BiLSTM: the pair encoder, loaded through the Auto classes, reading the teacher's tokenizer.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert isinstance(model, BiLSTMForSequenceClassification) and model.config.pair_encoder
    tokenizer = AutoTokenizer.from_pretrained(out)
    logits = model(**tokenizer(["the cat sat"], ["the dog"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "[a, b, |a − b|, a ⊙ b]" in card
    assert "BiLSTM distilled + teacher MLM replacement" in card and "mean ± sd over 2 seeds" in card
    assert "CPU time per example in PyTorch fp32, batch 1" in card
    assert "CPU time per example in ONNX Runtime fp32, batch 32" in card


@pytest.mark.skipif(importlib.util.find_spec("textblob_aptagger") is None, reason=f"no POS tagger model: {INSTALL}")
def test_polarity_demo_with_the_papers_augmentation(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "tiny")
    out = tmp_path / "out"
    done = distil_bilstm(tmp_path, "--base_model", str(teacher), "--output_dir", str(out), "--seeds", "3")
    results = json.loads((out / "results.json").read_text())
    assert (
        list(results["rows"]) == ["teacher", "gold", "distilled", "distilled+tang"]
        and results["kept"] == "distilled+tang"
    )
    tang = results["rows"]["distilled+tang"]["examples"]
    assert 160 < tang <= 160 * 3  # the 160 training sentences and up to 2 augmented copies of each
    assert results["task"] == "polarity" and results["metric"] == "accuracy"
    assert "BiLSTM distilled + Tang et al. rules" in done.stdout
    assert f"{tang} examples (+ Tang et al. rules)" in (out / "README.md").read_text()
    teacher_folder = out / "runs" / "teacher"  # the last seed's fine-tuned teacher, for --teacher next time
    assert AutoModelForSequenceClassification.from_pretrained(teacher_folder).config.num_labels == 2


def test_unknown_augmentation_is_one_line_and_exit_2(tmp_path):
    done = distil_bilstm(tmp_path, "--augmentations", "backtranslation", expect=2)
    assert done.stderr.strip().splitlines() == [
        "error: unknown augmentation(s) ['backtranslation']; choose from tang, mlm, unlabelled."
    ]
