"""recipes/finetune.py on the offline polarity demo with a tiny model, plain and with task distillation."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, save_tiny_teacher
from transformers import AutoTokenizer

from hf_distil.deploy.export import EXPORT_REPORT_FILE, INT8_FILE, session
from hf_distil.tasks.datasets import polarity_demo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.recipe


def finetune(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "finetune.py"),
        "--report_to",
        "none",
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--save_strategy",
        "no",
        *flags,
    ]
    done = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_finetune_then_task_distillation_fill_the_table(tmp_path):
    save_tiny_teacher(tmp_path / "tiny")
    finetune(tmp_path, "--model", str(tmp_path / "tiny"), "--output_dir", str(tmp_path / "teacher"))
    done = finetune(
        tmp_path,
        "--model",
        str(tmp_path / "tiny"),
        "--teacher",
        str(tmp_path / "teacher"),
        "--output_dir",
        str(tmp_path / "student"),
    )
    eval_metrics = json.loads((tmp_path / "student" / "eval_results.json").read_text())
    assert 0.0 <= eval_metrics["eval_accuracy"] <= 1.0
    table = json.loads((tmp_path / "outputs" / "finetune_results.json").read_text())
    assert set(table) == {str(tmp_path / "tiny"), str(tmp_path / "tiny") + " (D)"}
    assert set(table[str(tmp_path / "tiny")]["polarity"]["scores"]) == {"42"}  # one score per seed
    assert "polarity" in done.stdout and "(D)" in done.stdout


def test_export_int8_scores_the_int8_file_on_the_evaluation_set_beside_fp32(tmp_path):
    save_tiny_teacher(tmp_path / "tiny")
    out = tmp_path / "ft"
    done = finetune(tmp_path, "--model", str(tmp_path / "tiny"), "--output_dir", str(out), "--export_int8")
    metrics = json.loads((out / "eval_results.json").read_text())
    report = json.loads((out / EXPORT_REPORT_FILE).read_text())
    assert metrics["eval_int8_scheme"] == report["chosen"] and report["task"] == "text-classification"
    kept = next(s for s in report["schemes"] if s["name"] == report["chosen"])
    assert metrics["eval_int8_label_agreement"] == kept["agreement"] >= 0.95

    # The score is the int8 file's own, one sentence at a time, on the recipe's held-out sentences.
    held_out = polarity_demo()["validation"]
    tokenizer, int8 = AutoTokenizer.from_pretrained(out), session(out / INT8_FILE)
    names = [i.name for i in int8.get_inputs()]
    encoded = [tokenizer(s, truncation=True, return_tensors="np") for s in held_out["sentence"]]
    predictions = [int8.run(["logits"], {n: e[n] for n in names}) for e in encoded]
    accuracy = np.mean([p[0].argmax() == label for p, label in zip(predictions, held_out["label"])])
    assert metrics["eval_int8_accuracy"] == pytest.approx(accuracy) and 0 <= metrics["eval_accuracy"] <= 1

    table = json.loads((tmp_path / "outputs" / "finetune_results.json").read_text())
    int8_row = table[f"{tmp_path / 'tiny'} int8 ({report['chosen']})"]["polarity"]
    assert int8_row["scores"] == {"42": round(100 * accuracy, 2)}
    assert f"int8 ({report['chosen']})" in done.stdout


def squad_file(path: Path, n: int, seed: int) -> Path:
    """SQuAD v1.1 rows (flattened as on the Hub) over the tiny vocabulary. The answer, "red house", is the only
    "red" and the only "house" of its context, at a random place: a model can learn to find it, and contexts of
    20-60 words span several windows of 48 tokens, so that the answer lies in some windows and not others."""
    rng = random.Random(seed)
    filler = [w for w in WORDS if w not in ("red", "house")]
    rows = []
    for i in range(n):
        words = [rng.choice(filler) for _ in range(rng.randint(20, 60))]
        start = rng.randrange(len(words))
        words[start:start] = ["red", "house"]
        context, answer = " ".join(words), "red house"
        offset = len(" ".join(words[:start])) + (1 if start else 0)
        assert context[offset : offset + len(answer)] == answer
        question = "where is the " + rng.choice(filler)
        rows.append(
            {
                "id": f"q{seed}-{i}",
                "title": "t",
                "context": context,
                "question": question,
                "answers": {"text": [answer], "answer_start": [offset]},
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_squad_finetune_and_task_distillation_find_the_answers(tmp_path):
    """Teacher and student learn to find the spans: a best_spans that returned "" or a shifted span would score 0."""
    save_tiny_teacher(tmp_path / "tiny")
    files = [
        "--task",
        "squad",
        "--train_file",
        str(squad_file(tmp_path / "train.jsonl", 40, 0)),
        "--validation_file",
        str(squad_file(tmp_path / "dev.jsonl", 12, 1)),
        "--max_seq_length",
        "48",
        "--doc_stride",
        "16",
        "--max_steps",
        "40",
        "--learning_rate",
        "1e-3",
    ]  # these win over finetune()'s
    finetune(tmp_path, "--model", str(tmp_path / "tiny"), "--output_dir", str(tmp_path / "teacher"), *files)
    done = finetune(
        tmp_path,
        "--model",
        str(tmp_path / "tiny"),
        "--teacher",
        str(tmp_path / "teacher"),
        "--output_dir",
        str(tmp_path / "student"),
        *files,
    )
    for model in ("teacher", "student"):  # both find 12 of 12 here; one miss is allowed
        metrics = json.loads((tmp_path / model / "eval_results.json").read_text())
        assert 0.9 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 1.0, (model, metrics)
    table = json.loads((tmp_path / "outputs" / "finetune_results.json").read_text())
    assert table[str(tmp_path / "tiny") + " (D)"]["squad"]["scores"]["42"] == round(100 * metrics["eval_f1"], 2)
    assert "squad" in done.stdout
