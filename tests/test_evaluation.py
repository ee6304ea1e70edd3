import copy

import pytest

from hf_distil.evaluation import masked_lm_metrics


def test_a_model_against_itself_agrees_fully_and_reports_both_sides(teacher, tokenizer, dataset):
    metrics = masked_lm_metrics(teacher, dataset, tokenizer, teacher=copy.deepcopy(teacher), seeds=(0, 1))
    assert metrics["teacher_agreement"] == 1.0 and metrics["teacher_kl"] == pytest.approx(0.0, abs=1e-6)
    alone = masked_lm_metrics(teacher, dataset, tokenizer, seeds=(0, 1))
    assert metrics["teacher"] == pytest.approx(alone) and {k: metrics[k] for k in alone} == pytest.approx(alone)
    assert 0 <= alone["accuracy"] <= alone["top5_accuracy"] <= 1 and alone["masked_tokens"] > 0
