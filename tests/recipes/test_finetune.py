"""recipes/finetune.py on the offline polarity demo with a tiny model, plain and with task distillation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertForMaskedLM, BertTokenizerFast

from conftest import PIECES, SPECIALS, WORDS, tiny_bert_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.recipe


def finetune(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "recipes" / "finetune.py"), "--report_to", "none", "--max_steps", "4",
           "--per_device_train_batch_size", "8", "--save_strategy", "no", *flags]
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_finetune_then_task_distillation_fill_the_table(tmp_path):
    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS + PIECES + list("bcdefghijklmnopqrstuvwxyz"))}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config(len(tokenizer))).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    finetune(tmp_path, "--model", str(tmp_path / "tiny"), "--output_dir", str(tmp_path / "teacher"))
    done = finetune(tmp_path, "--model", str(tmp_path / "tiny"), "--teacher", str(tmp_path / "teacher"), "--output_dir", str(tmp_path / "student"))
    eval_metrics = json.loads((tmp_path / "student" / "eval_results.json").read_text())
    assert 0.0 <= eval_metrics["eval_accuracy"] <= 1.0
    table = json.loads((tmp_path / "outputs" / "finetune_results.json").read_text())
    assert set(table) == {str(tmp_path / "tiny"), str(tmp_path / "tiny") + " (D)"}
    assert "polarity" in done.stdout and "(D)" in done.stdout


def test_squad_says_it_is_not_supported(tmp_path):
    cmd = [sys.executable, str(ROOT / "recipes" / "finetune.py"), "--task", "squad", "--output_dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.returncode != 0 and "SQuAD (span extraction) is not supported" in done.stderr
