"""Tiny models and a tiny WordPiece tokenizer built in memory: no downloads, every test seeded."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForMaskedLM,
    RobertaConfig,
    RobertaForMaskedLM,
)

from hf_distil import (
    DataCollatorForDistillation,
    DistillationArguments,
    DistillationTrainer,
    init_student_from_teacher,
)
from hf_distil.losses._ops import kl_kernel

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


@pytest.fixture(params=["kernel", "torch ops"])
def kl_path(request, monkeypatch) -> str:
    """Run a test on the compiled CPU KL kernel and on the torch-op path that serves where it cannot be built."""
    if request.param == "torch ops":
        monkeypatch.setattr(kl_kernel, "applies", lambda *tensors: False)
    else:
        assert kl_kernel.applies(torch.zeros(1)), "the CPU KL kernel did not build on this machine"
    return request.param


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


def tiny_distilbert(vocab_size: int, dim: int = 16, heads: int = 2, layers: int = 2) -> DistilBertForMaskedLM:
    """A randomly initialised DistilBERT student, narrower than the tiny teacher by default."""
    config = DistilBertConfig(
        vocab_size=vocab_size, dim=dim, n_layers=layers, n_heads=heads, hidden_dim=2 * dim, max_position_embeddings=64
    )
    return DistilBertForMaskedLM(config)


def tiny_roberta(vocab_size: int, layers: int = 2) -> RobertaForMaskedLM:
    """A randomly initialised RoBERTa masked LM over the tiny vocabulary (padding id 0, as the tiny tokenizer's)."""
    config = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=0,
    )
    return RobertaForMaskedLM(config)


def sharpen_attention(teacher: BertForMaskedLM, factor: float = 20.0) -> BertForMaskedLM:
    """Scale every layer's Q/K/V projections: at random initialisation attention and relations are near-uniform,
    which leaves the attention terms nothing to teach."""
    with torch.no_grad():
        for layer in teacher.bert.encoder.layer:
            for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                linear.weight.mul_(factor)
    return teacher


def save_tiny_teacher(folder, dropout: float = 0.0):
    """A tiny BERT masked LM and its tokenizer in a folder: what a user would pass as --teacher or --model."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config(len(tokenizer), dropout=dropout)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_recipe_assets(root, dropout: float = 0.0):
    """A tiny teacher folder and a 200-line text file in `root`: what a user passes to a recipe."""
    save_tiny_teacher(root / "teacher", dropout=dropout)
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))) for _ in range(200)]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


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


_TRAINER_KEYWORDS = (
    "train_dataset",
    "eval_dataset",
    "data_collator",
    "processing_class",
    "teacher_processing_class",
    "pooling",
    "callbacks",
)


def make_trainer(tmp_path, model, teacher=None, *, tokenizer=None, args=None, **kwargs) -> DistillationTrainer:
    """The tests' DistillationTrainer: Trainer's own keywords (datasets, collator, processing_class, callbacks)
    go to it, any other to `make_args(tmp_path, ...)` unless `args` is given; `tokenizer` brings DistilBERT's
    masking collator (seed 0) when no collator is given."""
    given = {key: kwargs.pop(key) for key in _TRAINER_KEYWORDS if key in kwargs}
    if tokenizer is not None:
        given.setdefault("data_collator", DataCollatorForDistillation(tokenizer))
    args = args if args is not None else make_args(tmp_path, **kwargs)
    return DistillationTrainer(model=model, teacher_model=teacher, args=args, **given)


@pytest.fixture
def tiny_trainer(request, tmp_path):
    """`make_trainer` for the usual pair: the `student` fixture taught by `teacher` on `dataset`, with the masking
    collator of `tokenizer`; each comes from its fixture only when not given (model=, teacher=, ...)."""

    def build(**kwargs) -> DistillationTrainer:
        for key, fixture in (("model", "student"), ("teacher", "teacher"), ("train_dataset", "dataset")):
            if key not in kwargs:
                kwargs[key] = request.getfixturevalue(fixture)
        if "data_collator" not in kwargs:
            kwargs.setdefault("tokenizer", request.getfixturevalue("tokenizer"))
        return make_trainer(tmp_path, kwargs.pop("model"), kwargs.pop("teacher"), **kwargs)

    return build


def one_sgd_step(tmp_path, model, teacher, data, collator, batch: int, accumulation: int, **settings) -> dict:
    """One plain SGD update (lr 1, no clipping, constant schedule) over `batch` × `accumulation` sequences of
    `data`; returns its log. Exact accumulation shows as equal logs and weights for 8 × 1 and 4 × 2."""
    trainer = make_trainer(
        tmp_path,
        model,
        teacher,
        train_dataset=data,
        data_collator=collator,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        **settings,
    )
    trainer.train()
    return next(h for h in trainer.state.log_history if "loss" in h)


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


class TallestOfWidth(TorchDispatchMode):
    """Within the block, records the most rows of any 2-D tensor `width` columns wide that an op returns
    (e.g. the largest block of vocabulary-wide logits a loss ever holds)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width, self.rows = width, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] == self.width:
                self.rows = max(self.rows, t.shape[0])
        return out


@pytest.fixture(scope="session")
def minilm_folder():
    """The packaged all-MiniLM-L6-v2: a real Sentence Transformers folder (mean pooling, normalised), offline."""
    from hf_distil.teachers.minilm import packaged_encoder_path

    return packaged_encoder_path()
