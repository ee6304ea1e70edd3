"""The sentence-embedding terms against values worked out by hand, and GradCache's exactness."""

from __future__ import annotations

import math

import pytest
import torch

from hf_distil.losses import (
    cached_term,
    embedding_cosine,
    embedding_mse,
    margin_mse,
    pooled_terms,
    similarity_kl,
    similarity_kl_and_gradient,
)


def test_embedding_mse_averages_over_sentences_and_units():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    assert embedding_mse(student, teacher).item() == pytest.approx((1 + 4) / 4)
    assert embedding_mse(student, teacher, num_items=5).item() == pytest.approx(5 / 10)  # a share of 5 sentences


def test_embedding_cosine_is_one_minus_cos_per_sentence():
    student = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    teacher = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert embedding_cosine(student, teacher).item() == pytest.approx((1 + 0) / 2)


def test_similarity_kl_by_hand():
    """Teacher: sentences 1 and 3 identical, 2 orthogonal to both; student: all three orthogonal (uniform rows).
    Row 2's teacher distribution is uniform too (KL 0); rows 1 and 3 put softmax([0, 1]/T) on (2, 3) and (1, 2)."""
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    student = torch.eye(3)  # another width: similarities are width-free
    for temperature in (1.0, 0.5):
        e = math.exp(1 / temperature)
        p = torch.tensor([1 / (1 + e), e / (1 + e)])
        row = (p * (p / 0.5).log()).sum().item()
        assert similarity_kl(student, teacher, temperature).item() == pytest.approx(2 * row / 3, rel=1e-5)
    assert similarity_kl(teacher, teacher, 0.05).item() == pytest.approx(0.0, abs=1e-6)


def test_similarity_kl_of_one_sentence_is_zero_and_finite():
    one = torch.ones(1, 4, requires_grad=True)
    loss = similarity_kl(one, torch.ones(1, 3), 0.05)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(one.grad).all()


def test_margin_mse_by_hand():
    """Two triplets: student margins 1 and 0, teacher margins 0.5 and 1 (dot products)."""
    q, p, n = [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]
    student = torch.tensor(q + p + n)
    teacher = torch.tensor(q + [[0.5, 0.0], [0.0, 2.0]] + n)
    assert margin_mse(student, teacher).item() == pytest.approx(((1 - 0.5) ** 2 + (0 - 1) ** 2) / 2)


def test_pooled_terms_project_only_the_cross_model_comparisons():
    """MSE and cosine compare the projected student with the teacher; similarity KL reads the student as it is."""
    student, teacher = torch.randn(6, 3), torch.randn(6, 5)
    projection = torch.nn.Linear(3, 5)
    weights = {"embedding_mse": 1.0, "embedding_cos": 1.0, "similarity_kl": 1.0, "margin_mse": 1.0}
    terms = pooled_terms(weights, student, teacher, 0.1, projection=projection, num_items={"triplets": 4})
    projected = projection(student)
    assert terms["embedding_mse"].item() == pytest.approx(embedding_mse(projected, teacher).item())
    assert terms["embedding_cos"].item() == pytest.approx(embedding_cosine(projected, teacher).item())
    assert terms["similarity_kl"].item() == pytest.approx(similarity_kl(student, teacher, 0.1).item())
    assert terms["margin_mse"].item() == pytest.approx(margin_mse(student, teacher).item() * 2 / 4)


def test_cached_similarity_gives_the_whole_batch_value_and_gradient():
    """GradCache: the KL taken once over both micro-batches, then each micro-batch's surrogate recomputed with grad,
    sums to the whole batch's value and gradient."""
    torch.manual_seed(0)
    inputs, teacher = torch.randn(8, 6), torch.randn(8, 4)
    weight = torch.randn(6, 5, requires_grad=True)
    direct = similarity_kl(inputs @ weight, teacher, 0.1)
    (expected,) = torch.autograd.grad(direct, weight)
    with torch.no_grad():
        loss, gradient = similarity_kl_and_gradient(inputs @ weight, teacher, 0.1)
    total = 0.0
    for rows in (slice(0, 3), slice(3, 8)):
        share = loss * len(inputs[rows]) / len(inputs)
        part = cached_term(inputs[rows] @ weight, gradient[rows], share)
        part.backward()
        total += part.item()
    assert total == pytest.approx(direct.item(), rel=1e-6) and loss.item() == pytest.approx(direct.item())
    torch.testing.assert_close(weight.grad, expected, rtol=1e-5, atol=1e-7)
