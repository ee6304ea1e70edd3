"""Each term against an independent computation with torch's own loss modules, plus literal goldens."""

import math

import pytest
import torch
from torch import nn

from hf_distil.losses._ops import fused_losses
from hf_distil.losses.terms import (
    attention_mse,
    clm_loss,
    distillation_loss,
    hidden_cosine,
    hidden_mse,
    logit_mse,
    mlm_loss,
    pkd_loss,
    soft_target_kl,
)


@pytest.fixture
def rows():
    g = torch.Generator().manual_seed(3)
    return torch.randn(7, 11, generator=g) * 3, torch.randn(7, 11, generator=g) * 3


def test_soft_target_kl_golden():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    # By hand at T=2: log p - log q = (t - s)/2 = (1, 0, -1) (equal normalisers by symmetry), so
    # KL = p1 - p3 = (e^1.5 - e^0.5) / (e^1.5 + e^1 + e^0.5) = 0.3201567, times T² = 4.
    assert soft_target_kl(s, t, temperature=2.0).item() == pytest.approx(0.3201567 * 4, abs=1e-6)
    assert soft_target_kl(t, t, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_target_kl_matches_kldivloss_batchmean(rows):
    s, t = rows
    T = 2.0
    expected = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(s / T, -1), torch.softmax(t / T, -1)) * T**2
    assert soft_target_kl(s, t, T).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_target_kl_is_soft_cross_entropy_minus_teacher_entropy(rows):
    s, t = rows
    p = torch.softmax(t, -1)
    soft_ce = -(p * torch.log_softmax(s, -1)).sum(-1).mean()
    entropy = -(p * torch.log_softmax(t, -1)).sum(-1).mean()
    assert soft_target_kl(s, t, 1.0).item() == pytest.approx((soft_ce - entropy).item(), rel=1e-5)


def test_mlm_loss_matches_cross_entropy_and_golden():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, -100, 2])
    # mean of -log softmax: row 0 → log(e²+2) - 2 = 0.2395447; row 2 → log 3 = 1.0986123.
    assert mlm_loss(logits, labels).item() == pytest.approx((0.2395447 + 1.0986123) / 2, abs=1e-6)
    assert mlm_loss(logits, labels).item() == pytest.approx(nn.CrossEntropyLoss()(logits, labels).item(), abs=1e-7)


def test_logit_mse_is_sum_over_vocab_mean_over_rows(rows):
    s, t = rows
    expected = nn.MSELoss(reduction="sum")(s, t) / s.shape[0]
    assert logit_mse(s, t).item() == pytest.approx(expected.item(), rel=1e-6)
    assert logit_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(5.0)


def test_hidden_cosine_matches_cosine_embedding_loss_over_real_tokens():
    g = torch.Generator().manual_seed(4)
    hs, ht = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    keep = mask.bool()
    expected = nn.CosineEmbeddingLoss()(hs[keep], ht[keep], torch.ones(int(keep.sum())))
    assert hidden_cosine(hs, ht, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    assert hidden_cosine(hs, hs * 3, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_cosine(hs, -hs, mask).item() == pytest.approx(2.0, abs=1e-6)


def test_clm_loss_shifts_labels():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 10.0  # position 0 predicts token 2 at position 1
    labels = torch.tensor([[1, 2, -100]])
    expected = -torch.log_softmax(logits[0, 0], -1)[2]
    assert clm_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_empty_selection_gives_zero_not_nan():
    empty = torch.zeros(0, 5)
    assert soft_target_kl(empty, empty, 2.0).item() == 0.0
    assert logit_mse(empty, empty).item() == 0.0
    assert mlm_loss(torch.zeros(3, 5), torch.full((3,), -100)).item() == 0.0
    assert hidden_cosine(torch.ones(1, 2, 3), torch.ones(1, 2, 3), torch.zeros(1, 2)).item() == 0.0


def test_num_items_sets_the_denominator(rows):
    s, t = rows
    half = s.shape[0] / 2
    assert soft_target_kl(s, t, 2.0, num_items=half).item() == pytest.approx(
        2 * soft_target_kl(s, t, 2.0).item(), rel=1e-6
    )
    # Two halves normalised by the whole count add up to the whole.
    a = soft_target_kl(s[:3], t[:3], 2.0, num_items=7) + soft_target_kl(s[3:], t[3:], 2.0, num_items=7)
    assert a.item() == pytest.approx(soft_target_kl(s, t, 2.0).item(), rel=1e-6)


def test_low_precision_inputs_are_computed_in_fp32(rows):
    s, t = rows
    value = soft_target_kl(s.bfloat16(), t.bfloat16(), 2.0)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(
        soft_target_kl(s.bfloat16().float(), t.bfloat16().float(), 2.0).item(), rel=1e-6
    )


def test_distillation_loss_weights_and_terms(rows):
    s, t = rows
    labels = torch.tensor([1, -100, 3, -100, -100, 0, 2])
    hs, ht, mask = torch.randn(1, 7, 4), torch.randn(1, 7, 4), torch.ones(1, 7)
    weights = {"ce": 5.0, "mlm": 2.0, "cos": 1.0, "mse": 0.0, "clm": 0.0}
    total, terms = distillation_loss(
        student_logits=s,
        teacher_logits=t,
        labels=labels,
        student_hidden=hs,
        teacher_hidden=ht,
        attention_mask=mask,
        weights=weights,
        temperature=2.0,
    )
    assert set(terms) == {"ce", "mlm", "cos"}
    assert terms["ce"].item() == pytest.approx(soft_target_kl(s, t, 2.0).item())
    assert terms["mlm"].item() == pytest.approx(mlm_loss(s, labels).item())
    expected = 5 * terms["ce"] + 2 * terms["mlm"] + terms["cos"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert math.isfinite(total.item())


def test_soft_target_kl_gradient_equals_autograd_of_the_textbook_formula(rows):
    s, t = rows
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    T = 2.0
    soft_target_kl(s1, t, T, num_items=3).backward()
    reference = nn.KLDivLoss(reduction="sum")(torch.log_softmax(s2 / T, -1), torch.softmax(t / T, -1)) / 3 * T**2
    reference.backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-5, atol=1e-7)


def test_soft_target_kl_gradcheck_in_double():
    g = torch.Generator().manual_seed(9)
    s = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randn(4, 6, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda x: soft_target_kl(x.double(), t, 1.5), (s,))


def test_mlm_loss_gradient_reaches_only_labelled_rows():
    logits = torch.randn(4, 5, requires_grad=True)
    mlm_loss(logits, torch.tensor([1, -100, 3, -100])).backward()
    assert logits.grad[[1, 3]].abs().sum() == 0 and logits.grad[[0, 2]].abs().sum() > 0


def test_hidden_mse_golden_and_mask():
    hs = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    ht = torch.tensor([[[1.0, 0.0], [0.0, 4.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # real tokens: squared errors (0 + 4) and (9 + 0) over 2 tokens × 2 units
    assert hidden_mse(hs, ht, mask).item() == pytest.approx(13 / 4)
    assert hidden_mse(hs, ht, mask).item() == pytest.approx(nn.MSELoss()(hs[0, :2], ht[0, :2]).item())


def test_attention_mse_ignores_padded_queries_and_keys():
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    expected = (
        nn.MSELoss(reduction="sum")(a[0, :, :3, :3], b[0, :, :3, :3]) + nn.MSELoss(reduction="sum")(a[1], b[1])
    ) / (3 * 9 + 3 * 16)
    assert attention_mse(a, b, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    b2 = b.clone()
    b2[0, :, 3, :] = 100.0  # a padded query row must not matter
    assert attention_mse(a, b2, mask).item() == pytest.approx(attention_mse(a, b, mask).item())


def test_pkd_loss_is_scale_invariant_and_golden():
    s = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 5.0], [0.0, 7.0]])
    # row 1: unit vectors (1,0) vs (0,1) → 2; row 2: identical directions → 0; mean over 2 rows = 1
    assert pkd_loss(s, t).item() == pytest.approx(1.0)
    assert pkd_loss(s * 10, t * 0.1).item() == pytest.approx(1.0)


def test_mixed_teacher_logits_soften_to_the_weighted_mean_distribution(rows):
    from hf_distil.losses.terms import mix_teacher_logits

    a, b = rows
    T = 2.0
    mixed = mix_teacher_logits([a, b], [3.0, 1.0], T)
    expected = 0.75 * torch.softmax(a / T, -1) + 0.25 * torch.softmax(b / T, -1)
    torch.testing.assert_close(torch.softmax(mixed / T, -1), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.softmax(mix_teacher_logits([a], [1.0], T) / T, -1), torch.softmax(a / T, -1))


@pytest.mark.parametrize("chunk_elements", [1, 20, 2**20])
def test_fused_logit_terms_equal_torch_across_row_chunks(monkeypatch, kl_path, chunk_elements):
    """The chunked KL and cross-entropy equal torch's values and gradients whatever the chunking (1, 2, all rows)."""
    monkeypatch.setattr(fused_losses, "_CPU_CHUNK_ELEMENTS", chunk_elements)
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(9, 37, generator=g) * 4, torch.randn(9, 37, generator=g) * 4
    labels = torch.tensor([3, -100, 0, 10, -100, 7, 7, 1, 2])
    fused, separate, ref = (s.clone().requires_grad_() for _ in range(3))
    total, terms = distillation_loss(
        student_logits=fused, teacher_logits=t, labels=labels, weights={"ce": 0.7, "mlm": 0.3}, temperature=2.0
    )
    total.backward()
    (0.7 * soft_target_kl(separate, t, 2.0) + 0.3 * mlm_loss(separate, labels)).backward()
    kl = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(ref / 2, -1), torch.softmax(t / 2, -1)) * 4
    ce = nn.CrossEntropyLoss()(ref, labels)
    (0.7 * kl + 0.3 * ce).backward()
    assert terms["ce"].item() == pytest.approx(kl.item(), rel=1e-6)
    assert terms["mlm"].item() == pytest.approx(ce.item(), rel=1e-6)
    torch.testing.assert_close(fused.grad, ref.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(separate.grad, ref.grad, rtol=1e-5, atol=1e-7)


def test_fused_logit_terms_gradient_of_one_output_only():
    g = torch.Generator().manual_seed(6)
    s, t = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    labels = torch.tensor([1, -100, 2, 3, -100])
    for which in (0, 1):
        mine, ref = s.clone().requires_grad_(), s.clone().requires_grad_()
        fused_losses.logit_terms(mine, t, labels, 1.5)[which].backward()
        if which == 0:
            nn.KLDivLoss(reduction="sum")(torch.log_softmax(ref / 1.5, -1), torch.softmax(t / 1.5, -1)).backward()
        else:
            nn.CrossEntropyLoss(reduction="sum")(ref, labels).backward()
        torch.testing.assert_close(mine.grad, ref.grad, rtol=1e-5, atol=1e-7)


def test_mlm_loss_keeps_precision_on_confident_rows_and_half_inputs():
    logits = torch.zeros(2, 4)
    logits[:, 2] = 10.0  # loss log(1 + 3e-10) = 1.36e-4: logsumexp(s) − s[label] in fp32 is off by ~1%
    assert mlm_loss(logits, torch.tensor([2, 2])).item() == pytest.approx(
        math.log1p(3 * math.exp(-10)), rel=1e-3, abs=0
    )
    half = (torch.randn(6, 9) * 3).half().requires_grad_()
    labels = torch.tensor([1, 2, 3, 4, 5, 6])
    mlm_loss(half, labels).backward()
    full = half.detach().float().requires_grad_()
    nn.CrossEntropyLoss()(full, labels).backward()
    assert half.grad.dtype == torch.float16
    torch.testing.assert_close(half.grad.float(), full.grad, rtol=1e-3, atol=1e-4)


def test_soft_target_kl_stays_accurate_for_close_distributions():
    """A nearly converged student: the KL is second order in the difference; fp32 keeps it to 1e-5 here
    (torch's own fp32 kl_div: 6e-5; a per-row Σ p(xt − xs) − log(zt/zs) cancels to 3e-5)."""
    g = torch.Generator().manual_seed(8)
    t = torch.randn(16, 3000, generator=g, dtype=torch.float64) * 3
    s = t + 0.1 * torch.randn(16, 3000, generator=g, dtype=torch.float64)
    exact = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(s / 2, -1), torch.log_softmax(t / 2, -1).exp()) * 4
    assert soft_target_kl(s.float(), t.float(), 2.0).item() == pytest.approx(exact.item(), rel=1e-5)
