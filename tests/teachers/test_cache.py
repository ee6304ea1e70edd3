"""Cached top-k teacher signals: the same L_ce as a live teacher truncated to the same top-k."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
from conftest import make_trainer, save_tiny_teacher, tiny_tokenizer
from transformers import BertTokenizerFast

from hf_distil import DataCollatorForDistillation
from hf_distil.errors import UsageError
from hf_distil.losses.terms import soft_target_kl, topk_soft_target_kl
from hf_distil.teachers.cache import (
    CACHE_COLUMNS,
    HOW_TO_BUILD,
    CachedSignalsCollator,
    build_teacher_cache,
    bytes_per_token,
    load_teacher_cache,
)


def test_topk_kl_with_the_whole_vocabulary_is_the_full_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 9, generator=g), torch.randn(5, 9, generator=g)
    values, ids = t.topk(9, dim=-1)
    assert topk_soft_target_kl(s, values, ids, 2.0).item() == pytest.approx(soft_target_kl(s, t, 2.0).item(), rel=1e-5)


@pytest.fixture
def sharp_teacher(teacher):
    with torch.no_grad():
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(50)
    return teacher


@pytest.mark.slow
@pytest.mark.parametrize("restrict", [False, True])
def test_training_from_the_cache_reproduces_the_online_topk_loss(
    tmp_path, sharp_teacher, student, tokenizer, dataset, restrict
):
    k = 8
    collator = DataCollatorForDistillation(tokenizer, seed=3)
    cache = build_teacher_cache(
        sharp_teacher, dataset.select(range(16)), collator, top_k=k, copies=2, batch_size=8, restrict_to_mask=restrict
    )
    assert len(cache) == 32 and all(len(v) == k for row in cache["teacher_topk_ids"] for v in row)
    assert bytes_per_token(cache) == pytest.approx(k * 6 * (0.15 if restrict else 1.0), rel=0.1 if restrict else 1e-9)
    trainer = make_trainer(
        tmp_path,
        student,
        train_dataset=cache,
        data_collator=CachedSignalsCollator(tokenizer),
        alpha_cos=0.0,
        restrict_ce_to_mask=restrict,
    )
    batch = CachedSignalsCollator(tokenizer)([cache[i] for i in range(8)])
    student.eval()
    _, out = trainer.compute_loss(student, dict(batch), return_outputs=True)
    # online: the live teacher on the very same masked batch, truncated to the same top-k
    rows = batch["labels"].ne(-100) if restrict else batch["attention_mask"].bool()
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows]
        t = sharp_teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows]
    online = topk_soft_target_kl(s, *t.topk(k, dim=-1), 2.0)
    assert out["terms"]["ce"].item() == pytest.approx(online.item(), rel=2e-3)  # fp16 storage of the values
    trainer.train()  # trains from the cache alone, no teacher loaded
    assert "loss_ce" in trainer.state.log_history[0]


def test_a_cache_built_for_other_rows_is_refused(tmp_path, teacher, student, tokenizer, dataset):
    cache = build_teacher_cache(
        teacher, dataset.select(range(8)), DataCollatorForDistillation(tokenizer), top_k=4, restrict_to_mask=True
    )
    trainer = make_trainer(
        tmp_path, student, train_dataset=cache, data_collator=CachedSignalsCollator(tokenizer), alpha_cos=0.0
    )
    with pytest.raises(ValueError, match="build the cache with the same restrict_ce_to_mask"):
        trainer.compute_loss(student, dict(CachedSignalsCollator(tokenizer)([cache[i] for i in range(8)])))


@pytest.fixture
def saved_cache(tmp_path, teacher, tokenizer, dataset):
    """A cache of 8 sequences saved as the cache_teacher recipe saves it, and the arguments that made it."""
    corpus, collator = dataset.select(range(8)), DataCollatorForDistillation(tokenizer)
    build_teacher_cache(teacher, corpus, collator, top_k=4, restrict_to_mask=True, max_seq_length=64).save_to_disk(
        str(tmp_path / "cache")
    )
    return tmp_path / "cache", (teacher, collator, corpus, True, 64)


def test_a_cache_made_as_the_run_would_make_it_loads(saved_cache):
    path, made_with = saved_cache
    cache = load_teacher_cache(path, *made_with)
    assert len(cache) == 8 and set(CACHE_COLUMNS) <= set(cache.column_names)


def refusal(path, *arguments) -> str:
    with pytest.raises(UsageError) as refused:
        load_teacher_cache(path, *arguments)
    return str(refused.value)


def test_a_cache_made_with_another_tokenizer_is_refused(saved_cache):
    """Same size, two words swapped: every id still fits the student, and would mean another word."""
    path, (teacher, _, corpus, restrict, length) = saved_cache
    vocab = tiny_tokenizer().get_vocab()
    vocab["cat"], vocab["dog"] = vocab["dog"], vocab["cat"]
    other = DataCollatorForDistillation(BertTokenizerFast(vocab=vocab, do_lower_case=True))
    assert refusal(path, teacher, other, corpus, restrict, length) == (
        f"--teacher_cache {path} was made with another tokenizer (vocabulary, special tokens or normalisation "
        "differ); rebuild it with the cache_teacher recipe (build_teacher_cache, then save_to_disk) for this run's "
        "teacher, tokenizer, corpus and settings, or run with those it was made with."
    )


def test_a_cache_made_with_another_teacher_is_refused(saved_cache):
    path, (teacher, collator, corpus, restrict, length) = saved_cache
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        other.cls.predictions.decoder.bias.add_(0.1)  # a fine-tuned copy: same config, other weights
    assert "made with another BertForMaskedLM (other config or weights);" in refusal(
        path, other, collator, corpus, restrict, length
    )
    other.name_or_path = "my-bert"
    assert "made with teacher BertForMaskedLM, not my-bert;" in refusal(
        path, other, collator, corpus, restrict, length
    )


def test_a_cache_made_with_other_settings_or_sequences_names_each_difference(saved_cache, tokenizer):
    path, (teacher, _, corpus, _, _) = saved_cache
    collator = DataCollatorForDistillation(tokenizer, mlm_probability=0.2)
    assert refusal(path, teacher, collator, corpus, False, 128).startswith(
        f"--teacher_cache {path} was made with max_seq_length 64 (this run: 128); restrict_ce_to_mask True (this "
        "run: False); mlm_probability 0.15 (this run: 0.2); rebuild"
    )
    assert "made with other training sequences (another corpus, max_train_samples, or chunking);" in refusal(
        path, teacher, DataCollatorForDistillation(tokenizer), corpus.select(range(7)), True, 64
    )


def test_what_is_not_a_teacher_cache_is_named(tmp_path, saved_cache, dataset):
    _, made_with = saved_cache
    how = f"a teacher cache is the folder written by {HOW_TO_BUILD}"
    nowhere, model, tokenised, splits = (tmp_path / name for name in ("nowhere", "model", "tokenised", "splits"))
    save_tiny_teacher(model)
    dataset.save_to_disk(str(tokenised))
    datasets.DatasetDict({"train": dataset, "test": dataset}).save_to_disk(str(splits))
    assert (
        refusal(nowhere, *made_with) == f"--teacher_cache {nowhere} does not exist; {how}: build one, or fix the path."
    )
    assert refusal(model, *made_with).startswith(
        f"--teacher_cache {model} holds a model (config.json), not a teacher cache; pass the model as --teacher"
    )
    assert refusal(tokenised, *made_with) == (
        f"--teacher_cache {tokenised} holds a dataset of input_ids, token_type_ids, attention_mask without the "
        f"teacher's top-k logits (teacher_topk_ids, teacher_topk_values), such as a tokenised corpus, not a teacher "
        f"cache; {how}."
    )
    assert refusal(splits, *made_with).startswith(f"--teacher_cache {splits} holds a dataset of splits (train, test)")
    assert refusal(model / "config.json", *made_with) == f"--teacher_cache {model / 'config.json'} is a file; {how}."
    assert refusal(model.parent, *made_with) == f"--teacher_cache {model.parent} holds no saved dataset; {how}."


def test_a_cache_without_a_record_is_refused(tmp_path, saved_cache):
    path, made_with = saved_cache
    unrecorded = tmp_path / "unrecorded"
    cache = datasets.load_from_disk(str(path))
    datasets.Dataset.from_dict(cache.to_dict(), features=cache.features).save_to_disk(str(unrecorded))
    assert refusal(unrecorded, *made_with).startswith(f"--teacher_cache {unrecorded} records nothing of what made it")
