"""Cached top-k teacher signals: the same L_ce as a live teacher truncated to the same top-k."""

from __future__ import annotations

import pytest
import torch
from conftest import make_trainer

from hf_distil import DataCollatorForDistillation
from hf_distil.losses.terms import soft_target_kl, topk_soft_target_kl
from hf_distil.teachers.cache import CachedSignalsCollator, build_teacher_cache, bytes_per_token


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
