"""Sentence-embedding terms: pure functions of pooled embeddings (see `hf_distil.models.pooling`), tensors in and
a scalar out.

As every term of `terms.py`, each is a *sum* over its items divided by `num_items` (default: the items in this
call), so that passing the count of the whole accumulated and gathered batch makes accumulation and data
parallelism exact. The in-batch similarity KL is the exception that proves the rule: its items (each sentence's
distribution over the *other* sentences) depend on the whole batch, so the trainer computes it once over the
accumulated and gathered batch and hands each micro-batch its gradient (`similarity_kl_and_gradient`,
`cached_term`: GradCache, Gao et al. 2021, arXiv:2101.06983).

Embeddings compare across models (MSE, cosine) only at one width: a narrower student's go through the learned
width projection first. Similarities compare within each model (similarity KL, MarginMSE), so they are width-free
and read the student's own embeddings, which are what it is used with after distillation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from ._ops.fused_losses import upcast


def _denominator(count: int, num_items: int | torch.Tensor | None) -> torch.Tensor | int:
    total = count if num_items is None else num_items
    return total.clamp_min(1) if torch.is_tensor(total) else max(total, 1)


def embedding_mse(
    student: torch.Tensor, teacher: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Squared error of sentence embeddings (N, H), averaged over sentences and units (sentence-transformers'
    MSELoss). `student` already at the teacher's width."""
    total = F.mse_loss(upcast(student), upcast(teacher), reduction="sum")
    return total / (_denominator(student.shape[0], num_items) * student.shape[-1])


def embedding_cosine(
    student: torch.Tensor, teacher: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """1 − cos(student, teacher) of sentence embeddings (N, H), averaged over sentences.

    Computed as ½‖s/‖s‖ − t/‖t‖‖², equal to 1 − cos: the difference of two close unit vectors keeps its digits
    where 1 − cos, near 1 − 1, loses them in fp32 (a student close to its teacher is the common case).
    """
    s, t = F.normalize(upcast(student), dim=-1), F.normalize(upcast(teacher), dim=-1)
    return 0.5 * (s - t).pow(2).sum() / _denominator(student.shape[0], num_items)


def similarity_log_probs(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, N): row i is log softmax over j ≠ i of cos(e_i, e_j) / temperature; 0 on the diagonal (a sentence is
    not its own neighbour)."""
    unit = F.normalize(upcast(embeddings), dim=-1)
    scores = unit @ unit.T / temperature
    self_pairs = torch.eye(len(unit), dtype=torch.bool, device=unit.device)
    # The lowest finite value, not -inf: a batch of one sentence stays finite (its row is all diagonal).
    log_p = torch.log_softmax(scores.masked_fill(self_pairs, torch.finfo(scores.dtype).min), dim=-1)
    return log_p.masked_fill(self_pairs, 0.0)


def similarity_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch similarity-distribution KL: Σ_i KL(P_teacher,i ‖ P_student,i) over the sentences i of the batch,
    divided by num_items (default N), where P_·,i = softmax over the other sentences j of cos(e_i, e_j) / T.

    student (N, H_s), teacher (N, H_t): the same N sentences, any widths. Not scaled by T²: cosines live in
    [−1, 1] and the useful temperatures are far below 1 (contrastive training of embedders uses ~0.05), where
    Hinton's T² would shrink the term 400-fold; its weight sets its scale. No gradient flows to the teacher.
    """
    if len(student) < 2:  # no other sentence to be similar to
        return upcast(student).sum() * 0.0
    log_t = similarity_log_probs(teacher.detach(), temperature)
    log_s = similarity_log_probs(student, temperature)
    off_diagonal = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
    kl = (log_t.exp() * (log_t - log_s)).masked_fill(~off_diagonal, 0.0).sum()
    return kl / _denominator(len(student), num_items)


def margin_mse(
    student: torch.Tensor, teacher: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """MarginMSE (Hofstätter et al. 2020): squared difference of the student's and the teacher's margins
    sim(q, p) − sim(q, n), averaged over (query, positive, negative) triplets; sim is the dot product of the
    embeddings (the cosine when the pooling normalises), as sentence-transformers' MarginMSELoss.

    student (3B, H_s), teacher (3B, H_t): the B queries, then their B positives, then their B negatives.
    """

    def margins(e: torch.Tensor) -> torch.Tensor:
        q, p, n = upcast(e).chunk(3)
        return (q * p).sum(-1) - (q * n).sum(-1)

    total = (margins(student) - margins(teacher.detach())).pow(2).sum()
    return total / _denominator(len(student) // 3, num_items)


def similarity_kl_and_gradient(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, num_items: int | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the similarity KL of the whole batch, its gradient with respect to `student`), from embeddings computed
    without grad: GradCache's first stage, run once per update over every micro-batch (and process)."""
    leaf = upcast(student.detach()).requires_grad_(True)
    with torch.enable_grad():
        loss = similarity_kl(leaf, teacher, temperature, num_items)
        (gradient,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), gradient


def cached_term(embeddings: torch.Tensor, gradient: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """A micro-batch's part of a term computed over the whole batch: its value is `share` (what it logs), its
    gradient with respect to the model is the whole term's, through `embeddings` (recomputed with grad, equal to
    those the gradient was taken at) and their cached `gradient`."""
    surrogate = (upcast(embeddings) * gradient).sum()
    return share + surrogate - surrogate.detach()


def pooled_terms(
    weights: Mapping[str, float],
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    projection: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_items: Mapping[str, int | torch.Tensor] | None = None,
    similarity: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The sentence-embedding terms whose weight is > 0: {"embedding_mse", "embedding_cos", "similarity_kl",
    "margin_mse"}. student (N, H_s), teacher (N, H_t) pooled embeddings; for "margin_mse", N = 3B triplet rows
    (queries, positives, negatives). `projection` maps the student's width to the teacher's for MSE and cosine.
    num_items: {"sequences", "triplets"}. similarity: the similarity KL when computed over the whole batch
    elsewhere (`cached_term`), else computed on these N sentences."""
    counts = num_items or {}
    across = weights.get("embedding_mse", 0) > 0 or weights.get("embedding_cos", 0) > 0
    projected = projection(student) if projection is not None and across else student
    terms: dict[str, torch.Tensor] = {}
    if weights.get("embedding_mse", 0) > 0:
        terms["embedding_mse"] = embedding_mse(projected, teacher, counts.get("sequences"))
    if weights.get("embedding_cos", 0) > 0:
        terms["embedding_cos"] = embedding_cosine(projected, teacher, counts.get("sequences"))
    if weights.get("similarity_kl", 0) > 0:
        terms["similarity_kl"] = (
            similarity
            if similarity is not None
            else similarity_kl(student, teacher, temperature, counts.get("sequences"))
        )
    if weights.get("margin_mse", 0) > 0:
        terms["margin_mse"] = margin_mse(student, teacher, counts.get("triplets"))
    return terms
