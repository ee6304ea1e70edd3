"""The metric module kept in the package loads offline by path and gives textbook values."""

import evaluate
import pytest

from hf_distil.tasks.metrics import metric_path


def load(task):
    return evaluate.load(metric_path("glue_like"), task)


def test_matthews_golden():
    # tp=2 tn=1 fp=1 fn=0: (2·1 - 1·0) / sqrt(3·2·2·1) = 2/sqrt(12)
    assert load("cola").compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1])[
        "matthews_correlation"
    ] == pytest.approx(2 / 12**0.5)


def test_accuracy_and_f1():
    result = load("mrpc").compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1])
    assert result == pytest.approx({"accuracy": 0.75, "f1": 0.8})
    assert load("accuracy").compute(predictions=[0, 0, 1], references=[0, 1, 1]) == pytest.approx({"accuracy": 2 / 3})


def test_pearson_and_spearman_with_ties():
    result = load("stsb").compute(predictions=[1.0, 2.0, 2.0, 4.0], references=[1.0, 3.0, 2.0, 5.0])
    # ranks (0, 1.5, 1.5, 3) vs (0, 2, 1, 3)
    assert result["spearmanr"] == pytest.approx(0.9486833, abs=1e-6)
    assert result["pearson"] == pytest.approx(6.25 / (4.75 * 8.75) ** 0.5, abs=1e-6)  # centred sums by hand


def test_squad_exact_match_and_f1_follow_the_official_normalisation():
    squad = evaluate.load(metric_path("squad_v1"))
    result = squad.compute(
        predictions=["The Eiffel tower!", "in paris"], references=[["eiffel tower"], ["Paris, France", "Lyon"]]
    )
    # 1: exact after dropping "the" and "!"; 2: "in paris" vs "paris france" shares 1 token: P=1/2, R=1/2, F1=1/2
    assert result == pytest.approx({"exact_match": 50.0, "f1": 75.0})
