"""Tiny models and a tiny WordPiece tokenizer built in memory: no downloads, every test seeded."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from hf_distil import DistillationArguments, init_student_from_teacher

WORDS = [
    "the",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "a",
    "big",
    "small",
    "ran",
    "house",
    "tree",
    "red",
    "blue",
    "and",
    "is",
]
PIECES = ["##s", "##ing", "##ed", "##ly", "un", "##able", "play", "jump", "walk", "talk"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Recipe and distributed tests are slow too: `pytest -m "not slow"` leaves them out."""
    for item in items:
        if item.get_closest_marker("recipe") or item.get_closest_marker("distributed"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def tiny_tokenizer() -> BertTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS + PIECES + list("bcdefghijklmnopqrstuvwxyz"))}
    # transformers 5 silently ignores vocab_file=; the vocabulary goes in as a dict.
    return BertTokenizerFast(vocab=vocab, do_lower_case=True)


@pytest.fixture
def tokenizer() -> BertTokenizerFast:
    return tiny_tokenizer()


def tiny_bert_config(vocab_size: int, layers: int = 4, hidden: int = 32, dropout: float = 0.0) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def save_tiny_teacher(folder, dropout: float = 0.0):
    """A tiny BERT masked LM and its tokenizer in a folder: what a user would pass as --teacher or --model."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config(len(tokenizer), dropout=dropout)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def teacher(tokenizer) -> BertForMaskedLM:
    model = BertForMaskedLM(tiny_bert_config(len(tokenizer)))
    # Random token-type embeddings: a student that forgets BERT's token-type row 0 would be caught.
    with torch.no_grad():
        model.bert.embeddings.token_type_embeddings.weight.normal_(0, 0.5)
    return model.eval()


@pytest.fixture
def texts() -> list[str]:
    rng = random.Random(1)
    vocab = WORDS + ["playing", "jumped", "walks", "talking", "unable"]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 20))) for _ in range(64)]


def make_args(tmp_path, **kwargs) -> DistillationArguments:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        per_device_train_batch_size=8,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        learning_rate=1e-3,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    return DistillationArguments(**{**defaults, **kwargs})


@pytest.fixture
def dataset(tokenizer, texts) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"]
    )


@pytest.fixture
def student(teacher):
    return init_student_from_teacher(teacher, layers=[0, 3])


@pytest.fixture
def hub(monkeypatch):
    """A local Hub: HF_ENDPOINT points at it for the duration of the test."""
    from hub_server import start

    server, state, endpoint = start()
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    yield state
    server.shutdown()
