"""L_ce and L_mlm straight from the LM head's last linear layer, a block of rows at a time: no (rows × V) tensor.

Why: at every token (DistilBERT's setting) the logit terms read every real token of the batch, 4,096 rows of
30,522 words at 32 × 128: the student's and the teacher's logits, the softmaxes and the gradient are each
larger than the student's weights in fp32. Here the vocabulary projection runs inside the loss (the
"fused linear" idea of Liger-Kernel's fused_linear_cross_entropy / fused_linear_jsd): the student's and the
teacher's logits exist one block of rows at a time, the element-wise passes run on cache-sized pieces of the
block (as in fused_losses.py) and overwrite the student's block with the logit gradient, and the gradients
with respect to the projection's input, weight and bias are accumulated block by block in the forward, while
the softmaxes are at hand; the backward only scales them.

That is why the function returns the weighted total that training differentiates (exact for any upstream
gradient) and the two sums beside it as plain values for the logs: a gradient per term would need one
(V × H) weight gradient per term. All maths runs in fp32 whatever the model's dtype; the gradients come back
in the inputs' dtypes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import kl_kernel
from .fused_losses import (
    IGNORE_INDEX,
    kl_and_gradient_,
    log_normaliser,
    row_slices,
    slices,
    softmax_from_stats,
    upcast,
)

# Elements of one (rows × V) block of logits: the matrix products run a block at a time, the element-wise
# passes on cache-sized pieces of it (fused_losses.row_slices). Each block's weight gradient is a rank-`rows`
# update of the whole (V × H) matrix, so blocks must be tall enough for that update to cost little next to the
# products: 2**24 elements (64 MiB of fp32, for the student and for the teacher) are as fast as whole logits.
_CPU_BLOCK_ELEMENTS = 2**24
_ACCELERATOR_BLOCK_ELEMENTS = 2**26


class LinearLogits(NamedTuple):
    """Logits left undone at N rows: features @ weight.T + bias, for a loss that projects them chunk by chunk."""

    features: torch.Tensor  # (N, H) what the head's last linear layer reads (after its transform and LayerNorm)
    weight: torch.Tensor  # (V, H) the vocabulary projection (BERT ties it to the word embeddings)
    bias: torch.Tensor | None  # (V,)

    def logits(self) -> torch.Tensor:
        """(N, V): the head's output, for the terms that need the whole matrix."""
        return F.linear(self.features, self.weight, self.bias)


def _blocks(rows: int, vocabulary: int, device: torch.device) -> list[slice]:
    return slices(rows, vocabulary, _CPU_BLOCK_ELEMENTS if device.type == "cpu" else _ACCELERATOR_BLOCK_ELEMENTS)


def _fp32(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else upcast(x)


def _project(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """fp32 (rows × V) logits of a row chunk (weight and bias already upcast)."""
    h = upcast(features)
    return h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)


class _LinearLogitTerms(torch.autograd.Function):
    """(kl_weight · Σ_rows KL + mlm_weight · Σ_labelled CE, Σ KL, Σ CE); see `linear_logit_terms`."""

    @staticmethod
    def forward(
        ctx,
        features: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        teacher: LinearLogits | tuple[torch.Tensor, torch.Tensor] | None,
        labels: torch.Tensor | None,
        temperature: float,
        kl_weight: float | torch.Tensor,
        mlm_weight: float | torch.Tensor,
        needs_grad: tuple[bool, bool, bool],
    ):
        ctx.set_materialize_grads(False)
        dtype = torch.promote_types(features.dtype, torch.float32)
        ctx.dtypes = (features.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.rows = features.shape[0]
        w, b = upcast(weight), _fp32(bias)
        dense = isinstance(teacher, LinearLogits)
        if dense:
            teacher = teacher._replace(weight=upcast(teacher.weight), bias=_fp32(teacher.bias))
        ctx.kept = None
        if teacher is None:  # L_mlm alone reads only the labelled rows
            labels = torch.full(features.shape[:1], IGNORE_INDEX, device=features.device) if labels is None else labels
            ctx.kept = labels.ne(IGNORE_INDEX).nonzero().squeeze(1)
            features, labels = features[ctx.kept], labels[ctx.kept]
        kl = features.new_zeros((), dtype=dtype)
        ce = features.new_zeros((), dtype=dtype)
        grad_h = features.new_zeros(features.shape, dtype=dtype) if needs_grad[0] else None
        grad_w = w.new_zeros(w.shape, dtype=dtype) if needs_grad[1] else None
        grad_b = w.new_zeros(w.shape[0], dtype=dtype) if needs_grad[2] and bias is not None else None
        # The compiled KL kernel adds the biases as it reads the logits: the products then skip addmm's copy of
        # the bias into every row, a full (rows × V) pass each.
        biases = [x for x in (b, teacher.bias if dense else None) if x is not None]
        fold = dense and kl_kernel.applies(w, teacher.weight, *biases)
        for block in _blocks(features.shape[0], w.shape[0], features.device):
            h = upcast(features[block])
            s = _project(h, w, None if fold else b)  # (c, V) fp32, overwritten below by the gradient
            t = _project(teacher.features[block], teacher.weight, None if fold else teacher.bias) if dense else None
            kl_part, ce_part = _terms_and_gradient(
                s,
                t,
                None if dense or teacher is None else [x[block] for x in teacher],
                None if labels is None else labels[block],
                temperature,
                kl_weight,
                mlm_weight,
                *((b, teacher.bias) if fold else ()),
            )
            kl += kl_part
            ce += ce_part
            if grad_h is not None:
                grad_h[block] = s @ w
            if grad_w is not None:
                grad_w.addmm_(s.T, h)
            if grad_b is not None:
                grad_b += s.sum(0)
        ctx.grads = (grad_h, grad_w, grad_b)
        total = kl * kl_weight + ce * mlm_weight
        ctx.mark_non_differentiable(kl, ce)
        return total, kl, ce

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor | None, *_):
        if grad_total is None:
            return (None,) * 9
        if ctx.grads is None:
            raise RuntimeError(
                "linear_logit_terms computes its gradients in the forward and hands them over once: "
                "run the forward again instead of a second backward (retain_graph)."
            )
        (grad_h, grad_w, grad_b), ctx.grads = ctx.grads, None  # scaled in place: no second (V × H) tensor
        if grad_h is not None and ctx.kept is not None:  # back to every row: 0 where nothing was labelled
            grad_h = grad_h.new_zeros((ctx.rows, grad_h.shape[1])).index_copy_(0, ctx.kept, grad_h)
        scaled = [
            None if g is None else g.mul_(grad_total).to(t) for g, t in zip((grad_h, grad_w, grad_b), ctx.dtypes)
        ]
        return (*scaled, *(None,) * 6)


def _terms_and_gradient(
    s: torch.Tensor,
    t: torch.Tensor | None,
    topk: list[torch.Tensor] | None,
    labels: torch.Tensor | None,
    temperature: float,
    kl_weight: float | torch.Tensor,
    mlm_weight: float | torch.Tensor,
    bias_s: torch.Tensor | None = None,
    bias_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """(Σ KL, Σ CE) over a block of rows; s (rows, V), the student's logits, is overwritten with the gradient
    of kl_weight · KL + mlm_weight · CE. t: the teacher's logits there, or topk: its cached (ids, values);
    labels: -100 where nothing is predicted. bias_s, bias_t: biases not yet added to s and t (teacher t only)."""
    if t is not None:  # the whole block at once: kl_and_gradient_ picks its own pieces (or the kernel)
        ce, at, ce_grad = _cross_entropy_and_gradient(s, labels, bias_s)  # first: the KL overwrites s
        kl = kl_and_gradient_(s, t, temperature, kl_weight / temperature, bias_s, bias_t)
        if ce_grad is not None:
            s.index_add_(0, at, ce_grad.mul_(mlm_weight))
        return kl, ce
    kl, ce = 0.0, 0.0
    for rows in row_slices(s):  # the element-wise passes on cache-sized pieces
        piece = s[rows]
        ce_part, at, ce_grad = _cross_entropy_and_gradient(piece, None if labels is None else labels[rows])
        if topk is not None:
            ids, values = topk
            part, grad = _topk_kl_and_gradient(piece.div_(temperature), ids[rows].long(), values[rows], temperature)
            torch.mul(grad, kl_weight, out=piece)
            kl += part
        else:
            piece.zero_()
        if ce_grad is not None:
            piece.index_add_(0, at, ce_grad.mul_(mlm_weight))
        ce += ce_part
    return kl, ce


def _cross_entropy_and_gradient(
    s: torch.Tensor, labels: torch.Tensor | None, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor | float, torch.Tensor | None, torch.Tensor | None]:
    """(Σ CE, the labelled rows, the CE's gradient there) from logits s (+ bias); s is left as it is."""
    if labels is None:
        return 0.0, None, None
    at = labels.ne(IGNORE_INDEX).nonzero().squeeze(1)
    label = labels[at]
    logits = s[at] if bias is None else s[at].add_(bias)  # a copy
    stats = log_normaliser(logits)
    ce = (stats[:, 1:] - (logits.gather(1, label[:, None]) - stats[:, :1])).sum()
    grad = softmax_from_stats(logits, stats)
    grad[torch.arange(len(at), device=at.device), label] -= 1
    return ce, at, grad


def _topk_kl_and_gradient(
    xs: torch.Tensor, ids: torch.Tensor, values: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_k p_k (log p_k − log q_k) against a teacher kept as its top-k logits (losses.topk_soft_target_kl), and the
    gradient (q − p)/T, p scattered over the vocabulary (zero off the k ids). xs (rows, V) = s/T, overwritten."""
    log_p = torch.log_softmax(upcast(values).to(xs.dtype) / temperature, dim=-1)
    stats = log_normaliser(xs)
    log_q = xs.gather(1, ids) - stats[:, :1] - stats[:, 1:]
    p = log_p.exp()
    kl = (p * (log_p - log_q)).sum()
    return kl, softmax_from_stats(xs, stats).scatter_add_(1, ids, -p).div_(temperature)


def linear_logit_terms(
    student: LinearLogits,
    teacher: LinearLogits | tuple[torch.Tensor, torch.Tensor] | None,
    labels: torch.Tensor | None,
    temperature: float = 1.0,
    kl_weight: float | torch.Tensor = 1.0,
    mlm_weight: float | torch.Tensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(kl_weight · KL + mlm_weight · CE, KL, CE), fp32, without a (rows × V) tensor; only the first has a gradient.

    KL = Σ_rows KL(softmax(t/T) ‖ softmax(s/T)), CE = Σ_labelled rows −log softmax(s)[label], both sums: the
    normalisation and T² go into the weights (see losses.distillation_loss). s = the student's logits at N rows;
    teacher: the teacher's `LinearLogits` at the same rows, or its cached top-k (ids, values), (N, k), renormalised
    over the k ids (as losses.topk_soft_target_kl); None: no KL (0). labels (N,), -100 where nothing is
    predicted; None: no CE (0). No gradient reaches the teacher.
    """
    if isinstance(teacher, LinearLogits):
        teacher = LinearLogits(*(None if x is None else x.detach() for x in teacher))
    elif teacher is not None:
        teacher = tuple(x.detach() for x in teacher)
    tracked = (student.features, student.weight, student.bias)
    needs_grad = tuple(torch.is_grad_enabled() and x is not None and x.requires_grad for x in tracked)
    with torch.autocast(student.features.device.type, enabled=False):  # fp32 products inside an autocast region too
        return _LinearLogitTerms.apply(*tracked, teacher, labels, temperature, kl_weight, mlm_weight, needs_grad)
