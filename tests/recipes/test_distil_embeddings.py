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
from distributed.test_distributed import deepspeed_cpu_config, fsdp2_cpu_config, launcher  # tests/ on sys.path
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, BertModel

from hf_distil.models.pooling import Pooling
from hf_distil.models.sentence_layout import save_sentence_transformers_layout

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "distil_embeddings.py"
pytestmark = pytest.mark.recipe
# Small runs whose updates are the same in one and two processes: 8 sentences per update (GA 2 × 4, or 2 processes
# × 4) in the same random order, no dropout, no warm-up (a first update at lr 0 would leave the student as it was).
FLAGS = (
    "--student_layers", "0", "2", "--per_device_train_batch_size", "4", "--target_batch_size", "8",
    "--train_sampling_strategy", "random", "--max_steps", "2", "--warmup_steps", "0", "--learning_rate", "1e-3",
    "--logging_steps", "1", "--save_strategy", "no", "--static_baseline", "false", "--agreement_sentences", "10",
    "--speed_sentences", "3",
)  # fmt: skip


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


def run(embedder: Path, out: Path, config: Path | None = None, *flags: str, teacher: str | None = None) -> str:
    """The recipe on the tiny teacher (its folder, or a Hub id), one process (config None) or as `accelerate
    launch` starts it; its stdout."""
    data = ["--teacher", teacher or str(embedder / "teacher"), "--train_file", str(embedder / "train.txt")]
    cmd = [*launcher(config), str(RECIPE), *data, "--output_dir", str(out), *FLAGS, *flags]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_CACHE": str(out.parent / "hub-cache")}
    if teacher is None and "--push_to_hub" not in flags:  # nothing to download: prove it
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def one_process(embedder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "out"
    shown = run(embedder, out)
    assert "student (distilled)" in shown and "nearest-neighbour agreement" in shown
    return out


def test_a_tiny_run_writes_a_student_that_sentence_transformers_loads(one_process):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = one_process
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
    assert results["optimizer_steps"] == 2 and results["agreement"]["sentences"] == 4
    card = (out / "README.md").read_text()
    assert "pipeline_tag: sentence-similarity" in card and "library_name: sentence-transformers" in card
    assert "model-index:" in card and "type: sentence-similarity" in card and "type: pearson" in card
    assert "SentenceTransformer(" in card


def test_a_trimmed_student_reads_its_own_pieces_while_the_teacher_reads_the_whole_vocabulary(embedder, tmp_path):
    """--vocabulary_size: the student (and its undistilled copy) keep the training text's tokens; the teacher keeps
    its tokenizer and reads the text with it, so only pooled terms compare the two; token-level terms are refused."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    out = tmp_path / "out"
    shown = run(embedder, out, None, "--vocabulary_size", "50")
    teacher_tokenizer = AutoTokenizer.from_pretrained(embedder / "teacher")
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModel.from_pretrained(out)
    assert len(tokenizer) == model.config.vocab_size == 50 < len(teacher_tokenizer)
    kept = model.config.hf_distil["teacher_vocabulary"]  # the teacher id of each student id
    assert teacher_tokenizer.convert_ids_to_tokens(kept) == tokenizer.convert_ids_to_tokens(range(len(tokenizer)))
    assert "student before distillation" in shown
    text = (embedder / "train.txt").read_text().splitlines()[0]
    assert "[UNK]" not in tokenizer.tokenize(text) and len(tokenizer.tokenize(text)) >= len(text.split())
    loaded = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        ours = Pooling("mean")(model(**batch).last_hidden_state, batch["attention_mask"])
    assert torch.allclose(loaded.encode([text], convert_to_tensor=True), ours, atol=1e-5)

    data = ["--teacher", str(embedder / "teacher"), "--train_file", str(embedder / "train.txt")]
    cmd = [sys.executable, str(RECIPE), *data, "--output_dir", str(tmp_path / "cos"), *FLAGS]
    done = subprocess.run([*cmd, "--vocabulary_size", "50", "--alpha_cos", "1"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "tokens do not line up, but alpha_cos > 0" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "cos" / "model.safetensors").exists()


@pytest.mark.distributed
@pytest.mark.parametrize("launch", ["ddp", "zero2", "zero3", "fsdp2"])
def test_launch_configs_train_save_once_and_evaluate_like_one_process(launch, embedder, one_process, hub, tmp_path):
    """Two CPU processes under each launch config (the masked-LM recipe's, tests/recipes/test_launch_configs.py):
    the same updates, one save, one evaluation, table and card. The DDP run also talks to tests/hub_server.py:
    its teacher is a Hub id there, whose pooling comes from its Sentence Transformers files, and it publishes
    (--push_to_hub): the Sentence Transformers layout, the card, safetensors only, no local record."""
    if launch == "ddp":
        config = ROOT / "ds_configs" / "cpu_2proc.yaml"
    elif launch == "fsdp2":  # the student is the teacher's class: BertLayer blocks, as docs/distributed.md says
        config = fsdp2_cpu_config(tmp_path, layer_class="BertLayer")
    else:
        config = deepspeed_cpu_config(tmp_path, int(launch[-1]))
    push = ["--push_to_hub", "--hub_model_id", "alice/embedder", "--hub_token", "hf_x"] if launch == "ddp" else []
    if push:
        folder = embedder / "teacher"
        hub.files[("alice/teacher", "main")] = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.*")
        }
    out = tmp_path / "out"
    shown = run(embedder, out, config, *push, teacher="alice/teacher" if push else None)
    assert shown.count("student written to") == 1 and shown.count("student keeps") == 1
    assert not list(out.glob("checkpoint-*")) and [p.name for p in out.glob("*.safetensors")] == ["model.safetensors"]

    saved, alone = load_file(str(out / "model.safetensors")), load_file(str(one_process / "model.safetensors"))
    assert set(saved) == set(alone)
    # Weights move by about lr = 1e-3 per update; Adam's first updates divide each gradient by its own size, so a
    # rounding difference in a near-zero gradient (summed in another order) shows in a few weights (~2e-5).
    for name in saved:
        torch.testing.assert_close(saved[name], alone[name], rtol=0, atol=1e-4, msg=name)
    ours, theirs = (json.loads((o / "embedding_results.json").read_text()) for o in (out, one_process))
    for mine, one in zip(ours["lee"], theirs["lee"], strict=True):
        assert mine["label"] == one["label"]
        assert (mine["pearson"], mine["spearman"]) == pytest.approx((one["pearson"], one["spearman"]), abs=1e-5)
    assert ours["agreement"] == pytest.approx(theirs["agreement"], abs=1e-5)
    assert ours["optimizer_steps"] == 2 and ours["params"] == theirs["params"]
    assert abs(ours["lee"][1]["pearson"] - ours["lee"][2]["pearson"]) > 1e-4  # distillation moved the student
    assert "pipeline_tag: sentence-similarity" in (out / "README.md").read_text()

    if push:
        assert "GET /alice/teacher/resolve/main/1_Pooling/config.json" in hub.requests
        files = hub.files[("alice/embedder", "main")]
        layout = {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"}
        layout |= {"1_Pooling/config.json", "2_Normalize/config.json", "config.json", "tokenizer.json"}
        assert layout | {"README.md", "model.safetensors", "embedding_results.json", "training_args.json"} <= set(
            files
        )
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl")) or "checkpoint-" in f]
        assert "hf_distil_output.json" not in files and all(b"hf_x" not in content for content in files.values())
        assert files["README.md"] == (out / "README.md").read_bytes()
        assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()
