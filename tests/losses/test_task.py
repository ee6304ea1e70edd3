"""Task distillation's terms (hf_distil.losses.task): literal small tensors → values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hf_distil.losses.task import (
    classification_kd,
    gold_label_loss,
    regression_kd,
    span_kd,
    span_loss,
    task_counts,
)

LN3 = math.log(3)
# KL(softmax([0, ln 3]) ‖ softmax([0, 0])) = KL([1/4, 3/4] ‖ [1/2, 1/2])
KL_QUARTER = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)


def test_gold_label_loss_averages_over_the_labelled_examples():
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    ce = [math.log(1 + math.exp(-1)), math.log(1 + math.exp(-3))]  # cross-entropy of each row's gold class
    assert gold_label_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(sum(ce) / 2)
    assert gold_label_loss(logits, torch.tensor([0, -100])).item() == pytest.approx(ce[0])
    assert gold_label_loss(logits, torch.tensor([0, 1]), num_items=4).item() == pytest.approx(sum(ce) / 4)
    assert gold_label_loss(logits, torch.tensor([-100, -100])).item() == 0.0  # nothing labelled: 0, not NaN


def test_gold_label_loss_of_a_regressor_is_the_squared_error_of_the_labelled_scores():
    scores = torch.tensor([[2.0], [5.0]])
    assert gold_label_loss(scores, torch.tensor([1.0, -100.0])).item() == pytest.approx(1.0)
    assert gold_label_loss(scores, torch.tensor([1.0, 3.0]), num_items=4).item() == pytest.approx((1 + 4) / 4)


def test_split_batches_with_the_whole_count_add_up_to_the_whole_batch():
    """The accumulation contract: each micro-batch's share, over the count of the whole batch, sums to its mean."""
    logits, labels = torch.randn(6, 3), torch.tensor([0, -100, 2, 1, -100, -100])
    whole = gold_label_loss(logits, labels)
    shares = gold_label_loss(logits[:2], labels[:2], num_items=3) + gold_label_loss(logits[2:], labels[2:], 3)
    assert shares.item() == pytest.approx(whole.item(), rel=1e-6)


def test_classification_kd_is_the_kl_times_t_squared_or_the_logit_mse(kl_path):
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, LN3]])
    assert classification_kd(student, teacher).item() == pytest.approx(KL_QUARTER, rel=1e-5)
    # T = 2: the teacher softens to softmax([0, ln 3 / 2]) = [1, √3] / (1 + √3), and the KL is scaled by 4.
    p = 1 / (1 + math.sqrt(3))
    softened = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    assert classification_kd(student, teacher, temperature=2.0).item() == pytest.approx(4 * softened, rel=1e-5)
    assert classification_kd(student, teacher, num_items=4).item() == pytest.approx(KL_QUARTER / 4, rel=1e-5)
    s, t = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert classification_kd(s, t, kd_loss="mse").item() == pytest.approx(7 / 2)  # Σ (t − s)² = 1 + 4 + 1 + 1
    assert classification_kd(s, t, temperature=5.0, kd_loss="mse", num_items=7).item() == pytest.approx(1.0)


def test_regression_kd_is_the_squared_error_to_the_teachers_score():
    assert regression_kd(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])).item() == pytest.approx(2.5)


def test_span_loss_is_the_mean_of_the_start_and_end_cross_entropies():
    start, end = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, LN3]])
    start_ce, end_ce = math.log(2), math.log(4 / 3)
    loss = span_loss(start, end, torch.tensor([0]), torch.tensor([1]))
    assert loss.item() == pytest.approx((start_ce + end_ce) / 2)
    # An answer start past the window (position ≥ L) is left out, as transformers does: the end alone remains.
    assert span_loss(start, end, torch.tensor([2]), torch.tensor([1])).item() == pytest.approx(end_ce)


def test_span_loss_equals_the_question_answering_models_own_loss():
    """The formula of BertForQuestionAnswering.forward: positions clamped to [0, L], L ignored, mean of the two."""
    start, end = torch.randn(4, 7), torch.randn(4, 7)
    starts, ends = torch.tensor([0, 3, -2, 6]), torch.tensor([1, 5, 0, 6])
    ce = nn.CrossEntropyLoss(ignore_index=7)
    expected = (ce(start, starts.clamp(0, 7)) + ce(end, ends.clamp(0, 7))) / 2
    assert span_loss(start, end, starts, ends).item() == pytest.approx(expected.item(), rel=1e-6)


def test_span_kd_averages_the_start_and_end_kl(kl_path):
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, LN3]])
    assert span_kd(student, student, teacher, student).item() == pytest.approx(KL_QUARTER / 2, rel=1e-5)
    assert span_kd(student, student, teacher, teacher, num_items=2).item() == pytest.approx(KL_QUARTER / 2, rel=1e-5)


def test_task_counts_give_examples_labelled_examples_and_answer_boundaries_in_the_window():
    classification = {"input_ids": torch.ones(3, 4, dtype=torch.long), "labels": torch.tensor([1, -100, 0])}
    assert task_counts(classification).tolist() == [3, 2, 0]
    qa = {
        "input_ids": torch.ones(2, 4, dtype=torch.long),
        "start_positions": torch.tensor([0, 4]),  # 4 = L: past the window
        "end_positions": torch.tensor([3, 9]),
    }
    assert task_counts(qa).tolist() == [2, 0, 2]
    assert task_counts({"input_ids": torch.ones(5, 2, dtype=torch.long)}).tolist() == [5, 0, 0]
