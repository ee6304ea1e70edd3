"""The vocabulary projection inside L_ce and L_mlm equals the projection followed by the logit losses: values,
gradients of the projection's input, weight and bias, whatever the chunking; and never a (rows × V) tensor."""

from __future__ import annotations

import pytest
import torch
from conftest import TallestOfWidth
from torch import nn

from hf_distil.losses._ops import fused_linear, fused_losses
from hf_distil.losses._ops.fused_linear import LinearLogits, linear_logit_terms
from hf_distil.losses.terms import distillation_loss

N, H, V, T = 13, 6, 40, 2.0


def head(seed: int, rows: int = N, dtype: torch.dtype = torch.float32) -> LinearLogits:
    g = torch.Generator().manual_seed(seed)
    return LinearLogits(
        torch.randn(rows, H, generator=g).to(dtype),
        torch.randn(V, H, generator=g).to(dtype),
        torch.randn(V, generator=g).to(dtype),
    )


def labels_for(rows: int = N) -> torch.Tensor:
    labels = torch.randint(V, (rows,), generator=torch.Generator().manual_seed(1))
    labels[::3] = -100
    return labels


def tracked(x: LinearLogits) -> LinearLogits:
    return LinearLogits(*(t.detach().float().clone().requires_grad_() for t in x))


def reference(student: LinearLogits, teacher, labels, kl_weight: float, mlm_weight: float) -> torch.Tensor:
    """torch's own modules on the materialised logits: KL(p ‖ q) summed, cross-entropy summed. teacher: (N, V)
    logits, or top-k (ids, values) whose softmax over the k ids is p."""
    s = student.logits()
    total = torch.zeros(())
    if isinstance(teacher, tuple):
        ids, values = teacher
        log_p = torch.log_softmax(values.float() / T, -1)
        kl = (log_p.exp() * (log_p - torch.log_softmax(s / T, -1).gather(1, ids))).sum()
        total = total + kl_weight * kl
    elif teacher is not None:
        p = torch.softmax(teacher / T, -1)
        total = total + kl_weight * nn.KLDivLoss(reduction="sum")(torch.log_softmax(s / T, -1), p)
    if labels is not None:
        total = total + mlm_weight * nn.CrossEntropyLoss(reduction="sum")(s, labels)
    return total


def topk(teacher: LinearLogits, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's cached (ids, values), as recipes/cache_teacher.py stores them."""
    values, ids = teacher.logits().topk(k, dim=-1)
    return ids, values.half()


@pytest.mark.parametrize("block_rows, piece_rows", [(1, 1), (4, 1), (8, 3), (100, 100)])
@pytest.mark.parametrize("case", ["kl_and_mlm", "kl", "mlm", "topk_and_mlm", "topk"])
def test_equals_the_projection_then_the_losses(monkeypatch, kl_path, block_rows, piece_rows, case):
    monkeypatch.setattr(fused_linear, "_CPU_BLOCK_ELEMENTS", block_rows * V)
    monkeypatch.setattr(fused_losses, "_CPU_CHUNK_ELEMENTS", piece_rows * V)
    student, teacher = head(0), head(2)
    labels = labels_for() if "mlm" in case else None
    target = {"kl": teacher, "topk": topk(teacher, 5), "mlm": None}[case.split("_")[0]]
    as_logits = teacher.logits() if target is teacher else target
    mine, ref = tracked(student), tracked(student)
    total, kl, ce = linear_logit_terms(mine, target, labels, T, kl_weight=0.7, mlm_weight=0.3)
    expected = reference(ref, as_logits, labels, 0.7, 0.3)
    (2.5 * total).backward()  # any upstream factor
    (2.5 * expected).backward()
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() == pytest.approx(0.7 * kl.item() + 0.3 * ce.item(), rel=1e-6)
    assert (kl.item() > 0) == (target is not None) and (ce.item() > 0) == (labels is not None)
    for name, a, b in zip(LinearLogits._fields, mine, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_matches_finite_differences_in_double():
    """Directional derivatives of the total along random directions of (features, weight, bias)."""
    student = LinearLogits(*(t.double().requires_grad_() for t in head(3, rows=5)))
    teacher = LinearLogits(*(t.double() for t in head(4, rows=5)))
    labels = labels_for(5)

    def f(x: LinearLogits) -> torch.Tensor:
        return linear_logit_terms(x, teacher, labels, 1.5, 0.4, 0.6)[0]

    f(student).backward()
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        direction = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in student]
        with torch.no_grad():
            ahead = f(LinearLogits(*(t + 1e-6 * d for t, d in zip(student, direction))))
            behind = f(LinearLogits(*(t - 1e-6 * d for t, d in zip(student, direction))))
        numerical = (ahead - behind).item() / 2e-6
        analytical = sum((t.grad * d).sum() for t, d in zip(student, direction)).item()
        assert analytical == pytest.approx(numerical, rel=1e-6)


def test_a_second_backward_through_one_forward_is_refused_in_one_line():
    student = tracked(head(0))
    total = linear_logit_terms(student, head(2), labels_for(), T)[0]
    total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="hands them over once"):
        total.backward()


def test_no_gradient_reaches_the_teacher():
    teacher = LinearLogits(*(t.requires_grad_() for t in head(2)))
    student = tracked(head(0))
    linear_logit_terms(student, teacher, labels_for(), T)[0].backward()
    assert all(t.grad is None for t in teacher) and all(t.grad is not None for t in student)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_fp32_and_get_gradients_in_their_dtype(dtype):
    student, teacher, labels = head(0, dtype=dtype), head(2, dtype=dtype), labels_for()
    low = LinearLogits(*(t.clone().requires_grad_() for t in student))
    total, kl, ce = linear_logit_terms(low, teacher, labels, T, 0.7, 0.3)
    total.backward()
    full = tracked(student)
    expected = reference(full, LinearLogits(*(t.float() for t in teacher)).logits(), labels, 0.7, 0.3)
    expected.backward()
    assert total.dtype == kl.dtype == ce.dtype == torch.float32
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    for name, a, b in zip(LinearLogits._fields, low, full):
        assert a.grad.dtype == dtype
        torch.testing.assert_close(a.grad, b.grad.to(dtype), rtol=1e-5, atol=1e-6, msg=name)


def test_products_stay_in_fp32_under_autocast():
    student, teacher, labels = head(0), head(2), labels_for()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = linear_logit_terms(student, teacher, labels, T, 0.7, 0.3)[0]
    assert total.item() == pytest.approx(reference(student, teacher.logits(), labels, 0.7, 0.3).item(), rel=1e-6)


def test_empty_selection_gives_zero_and_zero_gradients():
    student = tracked(head(0, rows=0))
    total, kl, ce = linear_logit_terms(student, head(2, rows=0), torch.zeros(0, dtype=torch.long), T)
    total.backward()
    assert total.item() == kl.item() == ce.item() == 0.0
    assert student.weight.grad.abs().sum() == 0 and student.bias.grad.abs().sum() == 0
    assert student.features.grad.shape == (0, H)


def test_mlm_alone_without_labelled_rows_and_under_no_grad():
    student = tracked(head(0))
    total, _, ce = linear_logit_terms(student, None, torch.full((N,), -100), T)
    total.backward()
    assert ce.item() == 0.0 and student.features.grad.abs().sum() == 0
    with torch.no_grad():
        total, kl, ce = linear_logit_terms(student, head(2), labels_for(), T, 0.7, 0.3)
    assert not total.requires_grad
    assert total.item() == pytest.approx(reference(student, head(2).logits(), labels_for(), 0.7, 0.3).item(), rel=1e-6)


def test_never_a_rows_by_vocabulary_tensor(monkeypatch):
    monkeypatch.setattr(fused_linear, "_CPU_BLOCK_ELEMENTS", 8 * V)
    student, teacher = tracked(head(0, rows=200)), head(2, rows=200)
    with TallestOfWidth(V) as seen:
        linear_logit_terms(student, teacher, labels_for(200), T)[0].backward()
    assert seen.rows == 8  # one chunk; the whole would be 200 rows
    with TallestOfWidth(V) as seen:
        reference(tracked(head(0, rows=200)), teacher.logits(), labels_for(200), 1.0, 1.0).backward()
    assert seen.rows == 200


def test_distillation_loss_takes_linear_logits_with_the_same_terms_totals_and_gradients():
    student, teacher = head(0), head(2)
    labels = labels_for()
    counts = {"rows": torch.tensor(30), "mlm": torch.tensor(20), "tokens": torch.tensor(30)}
    weights = {"ce": 5.0, "mlm": 2.0}
    for cached in (None, topk(teacher, 4)):
        mine, ref = tracked(student), tracked(student)
        results = [
            distillation_loss(
                student_logits=s,
                teacher_logits=t,
                teacher_topk=cached,
                labels=labels,
                weights=weights,
                temperature=T,
                num_items=counts,
            )
            for s, t in ((mine, teacher), (ref.logits(), teacher.logits()))
        ]
        (total, terms), (expected, expected_terms) = results
        total.backward()
        expected.backward()
        assert total.item() == pytest.approx(expected.item(), rel=1e-6)
        assert terms.keys() == expected_terms.keys() == {"ce", "mlm"}
        for name in terms:
            assert terms[name].item() == pytest.approx(expected_terms[name].item(), rel=1e-6), name
        for name, a, b in zip(LinearLogits._fields, mine, ref):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_distillation_loss_materialises_what_the_projection_cannot_serve():
    """L_mse reads whole logits, and a teacher given as logits (several teachers mixed) cannot be projected."""
    student, teacher = head(0), head(2)
    labels = labels_for()
    for weights, t in (({"ce": 1.0, "mlm": 1.0, "mse": 0.5}, teacher), ({"ce": 1.0, "mlm": 1.0}, teacher.logits())):
        total, terms = distillation_loss(
            student_logits=student, teacher_logits=t, labels=labels, weights=weights, temperature=T
        )
        expected, expected_terms = distillation_loss(
            student_logits=student.logits(),
            teacher_logits=teacher.logits(),
            labels=labels,
            weights=weights,
            temperature=T,
        )
        assert total.item() == pytest.approx(expected.item(), rel=1e-6)
        assert {k: v.item() for k, v in terms.items()} == pytest.approx(
            {k: v.item() for k, v in expected_terms.items()}, rel=1e-6
        )
