"""The exported folder in transformers.js under Node, offline: examples/transformers_js/ as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_tokenizer
from test_export import saved, tiny_distilbert
from test_export_embedder import encode_with_sentence_transformers
from transformers import AutoTokenizer, DistilBertForMaskedLM, DistilBertForSequenceClassification

from hf_distil import init_student_from_teacher, trim_vocabulary
from hf_distil.data.sentence_corpus import news_background
from hf_distil.deploy.export import FP32_FILE, INT8_FILE, export_student, held_out_sentences, session

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "transformers_js"
# The scheme the gate keeps for the shipped teacher's student (README), so that Node runs the file users get.
FAST = dict(min_agreement=0.01, schemes=["smooth_split"], num_sentences=20, speed_sentences=3, speed_rounds=1)

pytestmark = [
    pytest.mark.skipif(
        not (shutil.which("node") and shutil.which("npm")),
        reason="node and npm are not installed: the transformers.js example cannot run",
    ),
    pytest.mark.slow,  # Node subprocesses
]


def run_node(script: str, *args: str) -> list[dict]:
    if not (EXAMPLE / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.fail(
            "examples/transformers_js has no node_modules: run `make setup` "
            "(npm install --ignore-scripts --prefix examples/transformers_js)"
        )
    done = subprocess.run(["node", script, *args], cwd=EXAMPLE, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def top5(logits: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Ids and probabilities of the 5 best tokens, as the fill-mask pipeline ranks them."""
    probabilities = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    ids = np.argsort(-probabilities, kind="stable")[:5]
    return ids.tolist(), probabilities[ids]


@pytest.fixture(scope="module")
def exported_student(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    from hf_distil.teachers import load_default_teacher

    teacher, tokenizer = load_default_teacher()
    student = init_student_from_teacher(teacher).eval()
    folder = tmp_path_factory.mktemp("shipped") / "student"
    student.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    export_student(folder, folder, **FAST)
    return folder, student


def assert_fill_mask_matches(folder: Path, model: torch.nn.Module, text: str) -> None:
    """transformers.js' fill-mask on `folder` gives PyTorch's top-5 (fp32) and Python ONNX Runtime's (int8)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(text, return_tensors="pt")
    at = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero())
    with torch.no_grad():
        logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
    ids, scores = top5(logits[0, at].numpy())
    fp32 = run_node("fill_mask.mjs", str(folder), text, "fp32")
    assert [r["token"] for r in fp32] == ids, text  # same tokens, same order
    assert [r["token_str"] for r in fp32] == [tokenizer.decode([i]) for i in ids], text
    np.testing.assert_allclose([r["score"] for r in fp32], scores, atol=1e-6, rtol=1e-4)
    # The int8 file (dtype "q8") runs in transformers.js' onnxruntime-node as in Python's ONNX Runtime.
    feed = {k: v.numpy() for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
    ids, scores = top5(session(folder / INT8_FILE).run(None, feed)[0][0, at])
    q8 = run_node("fill_mask.mjs", str(folder), text, "q8")
    assert [r["token"] for r in q8] == ids, text
    np.testing.assert_allclose([r["score"] for r in q8], scores, atol=1e-5, rtol=1e-3)


def test_fill_mask_in_transformers_js_gives_pytorchs_top5(exported_student):
    folder, student = exported_student
    words = held_out_sentences()[3].split()
    for text in ("Paris is the [MASK] of France.", " ".join(words[:4] + ["[MASK]"] + words[5:])):
        assert_fill_mask_matches(folder, student, text)


def test_fill_mask_in_transformers_js_reads_a_trimmed_vocabulary(minilm_folder, tmp_path):
    """A student trimmed to 2,000 tokens, exported as any other: transformers.js reads its tokenizer.json (the
    renumbered ids, a word the teacher keeps whole split into kept pieces) as Python does."""
    full = AutoTokenizer.from_pretrained(minilm_folder)
    trimmed = trim_vocabulary(tiny_distilbert(DistilBertForMaskedLM, full), full, news_background()[:100], 2000)
    folder = tmp_path / "trimmed"
    trimmed.model.save_pretrained(folder)
    trimmed.tokenizer.save_pretrained(folder)
    export_student(folder, folder, **FAST)
    text = "The guitarist said [MASK] pounds was too much."
    pieces = trimmed.tokenizer.tokenize(text)
    assert "guitarist" in full.tokenize(text) and "guitarist" not in pieces and len(pieces) > len(full.tokenize(text))
    assert_fill_mask_matches(folder, trimmed.model.eval(), text)


def test_classification_in_transformers_js_gives_pytorchs_scores(tmp_path):
    model = tiny_distilbert(DistilBertForSequenceClassification, tiny_tokenizer())
    folder = saved(model, tmp_path / "classifier")
    export_student(folder, folder, **FAST)
    assert (folder / FP32_FILE).exists() and (folder / INT8_FILE).exists()
    text = "the big dog ran to the red house"
    with torch.no_grad():
        probabilities = torch.softmax(model(**tiny_tokenizer()(text, return_tensors="pt")).logits[0].double(), -1)
    expected = sorted(zip(probabilities.tolist(), ["negative", "neutral", "positive"]), reverse=True)
    got = run_node("classify.mjs", str(folder), text, "fp32")
    assert [r["label"] for r in got] == [label for _, label in expected]
    np.testing.assert_allclose([r["score"] for r in got], [p for p, _ in expected], atol=1e-6)
    encoded = {k: v for k, v in tiny_tokenizer()(text, return_tensors="np").items() if k != "token_type_ids"}
    int8 = torch.softmax(torch.from_numpy(session(folder / INT8_FILE).run(None, encoded)[0][0]).double(), -1)
    expected = sorted(zip(int8.tolist(), ["negative", "neutral", "positive"]), reverse=True)
    got = run_node("classify.mjs", str(folder), text, "q8")
    assert [r["label"] for r in got] == [label for _, label in expected]
    np.testing.assert_allclose([r["score"] for r in got], [p for p, _ in expected], atol=1e-5)


def test_feature_extraction_in_transformers_js_gives_the_sentence_transformers_vectors(exported_embedder):
    folder, out, _ = exported_embedder
    sentences = held_out_sentences()[200:204]  # of different lengths: one padded batch
    fp32 = run_node("embed.mjs", str(out), *sentences, "--dtype", "fp32", "--pooling", "mean")
    expected = encode_with_sentence_transformers(folder, sentences)  # PyTorch, as sentence-transformers pools
    np.testing.assert_allclose(fp32["pipeline"], expected, atol=1e-5, rtol=0)  # measured: 1e-7 apart
    np.testing.assert_allclose(fp32["sentence_embedding"], expected, atol=1e-5, rtol=0)  # the graph's pooling
    # The int8 file (dtype "q8") gives in transformers.js what Python's ONNX Runtime gives on the same batch.
    encoded = AutoTokenizer.from_pretrained(out)(sentences, padding=True, truncation=True, return_tensors="np")
    int8 = session(out / INT8_FILE).run(["sentence_embedding"], {k: v.astype(np.int64) for k, v in encoded.items()})
    q8 = run_node("embed.mjs", str(out), *sentences, "--dtype", "q8", "--pooling", "mean")
    np.testing.assert_allclose(q8["pipeline"], int8[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(q8["sentence_embedding"], int8[0], atol=1e-5, rtol=0)
    assert (np.asarray(q8["pipeline"]) * expected).sum(1).min() > 0.99  # and stays close to PyTorch's vectors
