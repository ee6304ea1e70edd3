"""The embedding recipe end to end, as users launch it, on a tiny Sentence Transformers teacher saved to disk."""

from __future__ import annotations

import json
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import WORDS, tiny_bert_config, tiny_tokenizer
from transformers import AutoModel, AutoTokenizer, BertModel

from hf_distil.models.pooling import Pooling
from hf_distil.models.sentence_layout import save_sentence_transformers_layout

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "distil_embeddings.py"
pytestmark = pytest.mark.recipe


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Path:
    """A tiny mean-pooled, normalised teacher in the Sentence Transformers layout, and a file of sentences."""
    root = tmp_path_factory.mktemp("embedder")
    tokenizer = tiny_tokenizer()
    teacher = BertModel(tiny_bert_config(len(tokenizer)))
    teacher.save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    save_sentence_transformers_layout(root / "teacher", Pooling("mean"), teacher.config.hidden_size, 64)
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) for _ in range(80)]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_help_lists_the_pooled_terms_and_the_evaluation(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(RECIPE), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(RECIPE), run_name="__main__")
    shown = capsys.readouterr().out
    assert done.value.code == 0 and shown.startswith("usage:")
    for flag in ("--teacher", "--student", "--train_file", "--alpha_similarity_kl", "--static_baseline"):
        assert flag in shown


def test_the_default_config_trains_on_the_pooled_terms_only():
    settings = yaml.safe_load((ROOT / "recipes" / "configs" / "distil_embeddings.yaml").read_text())
    assert settings["alpha_ce"] == settings["alpha_mlm"] == settings["alpha_cos"] == 0
    assert settings["alpha_embedding_cos"] > 0 and settings["student_layers"] == [0, 2, 4]


def test_a_tiny_run_writes_a_student_that_sentence_transformers_loads(embedder, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = tmp_path / "out"
    flags = [
        "--teacher", str(embedder / "teacher"), "--student_layers", "0", "2", "--train_file",
        str(embedder / "train.txt"), "--output_dir", str(out), "--per_device_train_batch_size", "8",
        "--max_steps", "3", "--logging_steps", "1", "--save_steps", "3", "--static_baseline", "false",
        "--agreement_sentences", "10", "--speed_sentences", "3",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(RECIPE), *flags], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "student (distilled)" in done.stdout and "nearest-neighbour agreement" in done.stdout

    # sentence-transformers loads the folder and returns the embeddings of the trained weights, pooled as trained.
    texts = ["the big cat sat on the mat", "a small dog ran"]
    loaded = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    model, tokenizer = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and loaded.max_seq_length == 64
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = Pooling("mean")(model(**batch).last_hidden_state, batch["attention_mask"])
    assert torch.allclose(loaded.encode(texts, convert_to_tensor=True), ours, atol=1e-5)

    results = json.loads((out / "embedding_results.json").read_text())
    assert [row["label"] for row in results["lee"]] == [
        "teacher",
        "student (distilled)",
        "student before distillation",
    ]
    # 5% of the 80 lines are held out: 4 sentences, fewer than the 10 asked for.
    assert results["optimizer_steps"] == 3 and results["agreement"]["sentences"] == 4
    card = (out / "README.md").read_text()
    assert "pipeline_tag: sentence-similarity" in card and "library_name: sentence-transformers" in card
    assert "model-index:" in card and "type: sentence-similarity" in card and "type: pearson" in card
    assert "SentenceTransformer(" in card
