"""DistilBERT's loss terms as pure functions: tensors in, a scalar tensor out.

Semantics follow the reference `distiller.py` (huggingface/transformers-research-projects,
`distillation/`). Every term is a *sum* over its items divided by `num_items` (default: the items in
this call). Passing the count of the whole accumulated (and gathered) batch makes gradient
accumulation and data parallelism exact; see `DistillationTrainer.get_batch_samples`.
All maths runs in fp32, whatever the input dtype; an empty selection gives 0, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._ops.fused_linear import LinearLogits, linear_logit_terms
from ._ops.fused_losses import IGNORE_INDEX, logit_terms, upcast
from .pooled import pooled_terms
from .relation import relation_kl


class LossTerm(NamedTuple):
    """One term of the loss: its weight is the argument `alpha_<name>`, its value is logged as `loss_<name>`."""

    name: str
    needs_teacher: bool  # a live teacher, or for "ce" the teacher's cached top-k logits
    count: str  # the count of the accumulated batch that normalises it (see COUNTS)
    description: str  # how the model card names it

    @property
    def weight_field(self) -> str:
        return f"alpha_{self.name}"

    @property
    def logged(self) -> str:
        return f"loss_{self.name}"


# Every term the library knows, in the order of DistillationArguments: the one list that the arguments,
# the trainer, the recipe and the model card read.
LOSS_TERMS = (
    LossTerm("ce", True, "rows", "soft targets (L_ce)"),
    LossTerm("mlm", False, "mlm", "masked LM (L_mlm)"),
    LossTerm("cos", True, "tokens", "hidden-state cosine (L_cos)"),
    LossTerm("mse", True, "rows", "logit MSE"),
    LossTerm("clm", False, "mlm", "causal LM"),
    LossTerm("hidden_mse", True, "tokens", "hidden-state MSE (TinyBERT)"),
    LossTerm("attention_mse", True, "pairs", "attention MSE (TinyBERT)"),
    LossTerm("pkd", True, "sequences", "[CLS] patient distillation (BERT-PKD)"),
    LossTerm("relation", True, "tokens", "self-attention relations (MiniLMv2)"),
    LossTerm("embedding_mse", True, "sequences", "sentence-embedding MSE"),
    LossTerm("embedding_cos", True, "sequences", "sentence-embedding cosine"),
    LossTerm("similarity_kl", True, "sequences", "in-batch similarity KL"),
    LossTerm("margin_mse", True, "triplets", "MarginMSE"),
)
# Denominators over the accumulated batch: masked (labelled) tokens, non-pad tokens, rows of the logit terms,
# real (query, key) pairs, sequences, (query, positive, negative) triplets.
COUNTS = ("mlm", "tokens", "rows", "pairs", "sequences", "triplets")
LOGIT_TERMS = ("ce", "mse")
LAYER_TERMS = ("hidden_mse", "attention_mse", "pkd")
# Terms of pooled sentence embeddings: they need no LM head, and compare models whatever their tokenizers.
POOLED_TERMS = ("embedding_mse", "embedding_cos", "similarity_kl", "margin_mse")
# Terms that read the student's LM head (logits), hence masked or causal LM models.
HEAD_TERMS = ("ce", "mse", "mlm", "clm")


def terms_needing_a_teacher(weights: Mapping[str, float], cached_soft_targets: bool = False) -> list[str]:
    """Weight fields (alpha_*) of the active terms that need a live teacher; a cache stands in for L_ce's."""
    return [
        term.weight_field
        for term in LOSS_TERMS
        if term.needs_teacher and weights.get(term.name, 0) > 0 and not (cached_soft_targets and term.name == "ce")
    ]


def _denominator(count: int | torch.Tensor, num_items: int | torch.Tensor | None) -> torch.Tensor | int:
    total = count if num_items is None else num_items
    return total.clamp_min(1) if torch.is_tensor(total) else max(total, 1)


def _ce_normalised(
    kl_sum: torch.Tensor, rows: int, temperature: float, num_items: int | torch.Tensor | None
) -> torch.Tensor:
    """L_ce from its sum over rows: mean over rows (or num_items), times T² (Hinton's gradient scale)."""
    return kl_sum / _denominator(rows, num_items) * temperature**2


def _mlm_normalised(ce_sum: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None) -> torch.Tensor:
    """L_mlm from its sum: mean over labelled positions (or num_items)."""
    return ce_sum / _denominator(labels.ne(IGNORE_INDEX).sum(), num_items)


def soft_target_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """L_ce: KL(softmax(t/T) || softmax(s/T)) summed over the vocabulary, averaged over rows, times T².

    student_logits, teacher_logits: (N, V), the selected rows. It differs from the soft cross-entropy
    Σ t·log s of the paper only by the teacher's entropy, a constant for the student; the KL is what the
    reference logs and is 0 when the distributions agree. No gradient flows to the teacher.
    """
    kl, _ = logit_terms(student_logits, teacher_logits, None, temperature)
    return _ce_normalised(kl, student_logits.shape[0], temperature, num_items)


def topk_soft_target_kl(
    student_logits: torch.Tensor,
    topk_values: torch.Tensor,
    topk_ids: torch.Tensor,
    temperature: float = 1.0,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """L_ce against a teacher kept only as its top-k logits (values and ids, (N, k)), renormalised over them.

    Σ_k p_k (log p_k − log q_k), p = softmax(topk_values/T) over the k ids, q the student's softened
    distribution over the whole vocabulary read at those ids; averaged over rows, times T². With k = V it
    equals `soft_target_kl`.
    """
    log_p = torch.log_softmax(upcast(topk_values).float() / temperature, dim=-1)
    log_q = torch.log_softmax(upcast(student_logits) / temperature, dim=-1).gather(-1, topk_ids.long())
    kl = (log_p.exp() * (log_p - log_q)).sum()
    return _ce_normalised(kl, student_logits.shape[0], temperature, num_items)


def mix_teacher_logits(teacher_logits: list[torch.Tensor], weights: list[float], temperature: float) -> torch.Tensor:
    """Logits whose softened distribution is the weighted mean of the teachers' softened distributions.

    Returns T·log Σ_i w_i softmax(t_i/T), (N, V): softmax of it over T gives back the mixture exactly, so
    every logit term can take it in place of a single teacher's logits. Weights are normalised to sum 1.
    """
    w = torch.tensor(weights, dtype=torch.float32, device=teacher_logits[0].device)
    log_w = (w / w.sum()).log()
    stacked = torch.stack([torch.log_softmax(upcast(t) / temperature, dim=-1) for t in teacher_logits])
    return temperature * torch.logsumexp(stacked + log_w[:, None, None], dim=0)


def mlm_loss(
    student_logits: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """L_mlm: cross-entropy at positions whose label is not -100, averaged over them.

    student_logits (..., V); labels (...) with -100 where nothing is predicted.
    """
    labels = labels.reshape(-1)
    _, total = logit_terms(student_logits.reshape(-1, student_logits.shape[-1]), None, labels)
    return _mlm_normalised(total, labels, num_items)


def logit_mse(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """L_mse: squared differences of the selected rows (N, V), summed, divided by the number of rows."""
    total = F.mse_loss(upcast(student_logits), upcast(teacher_logits), reduction="sum")
    return total / _denominator(student_logits.shape[0], num_items)


def hidden_cosine(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """L_cos: mean over non-pad tokens of 1 - cos(h_s, h_t).

    student_hidden, teacher_hidden (B, L, H), the last hidden states; attention_mask (B, L), 1 = real token.
    """
    keep = attention_mask.bool()
    cos = F.cosine_similarity(upcast(student_hidden[keep]), upcast(teacher_hidden[keep]), dim=-1)
    return (1.0 - cos).sum() / _denominator(keep.sum(), num_items)


def clm_loss(
    student_logits: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """L_clm: next-token cross-entropy; logits (B, L, V) at position i predict labels (B, L) at i + 1."""
    return mlm_loss(student_logits[:, :-1], labels[:, 1:], num_items)


def hidden_mse(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """TinyBERT's hidden-state loss: mean squared error over non-pad tokens and hidden units.

    student_hidden (B, L, H) already projected to the teacher's width; teacher_hidden (B, L, H);
    attention_mask (B, L). num_items counts tokens (each brings H units).
    """
    keep = attention_mask.bool()
    total = F.mse_loss(upcast(student_hidden[keep]), upcast(teacher_hidden[keep]), reduction="sum")
    return total / (_denominator(keep.sum(), num_items) * student_hidden.shape[-1])


def attention_mse(
    student_attention: torch.Tensor,
    teacher_attention: torch.Tensor,
    attention_mask: torch.Tensor,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """TinyBERT's attention loss: mean squared error of attention maps over real (query, key) pairs and heads.

    student_attention, teacher_attention (B, heads, L, L): probabilities (or scores); head counts must
    match. attention_mask (B, L). num_items counts real tokens; each brings heads × (its row's real keys).
    """
    real = attention_mask.bool()
    pairs = real[:, None, :, None] & real[:, None, None, :]  # (B, 1, L, L), broadcast over heads
    # Masking instead of boolean indexing: no gathered copies of the (B, heads, L, L) maps, no scatter back.
    diff = (upcast(student_attention) - upcast(teacher_attention)).masked_fill(~pairs, 0.0)
    return (diff * diff).sum() / _denominator(pairs.sum() * student_attention.shape[1], num_items)


def pkd_loss(
    student_cls: torch.Tensor, teacher_cls: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """BERT-PKD's patient loss for one mapped layer: ||s/||s|| − t/||t|| ||², averaged over sequences.

    student_cls, teacher_cls (B, H): the [CLS] states of a student layer and its teacher layer.
    """
    s = F.normalize(upcast(student_cls), dim=-1)
    t = F.normalize(upcast(teacher_cls), dim=-1)
    return (s - t).pow(2).sum() / _denominator(student_cls.shape[0], num_items)


def layer_terms(
    weights: Mapping[str, float],
    layer_pairs: Sequence[tuple[int, int]],
    student_states: Sequence[torch.Tensor] | None,
    teacher_states: Sequence[torch.Tensor] | None,
    student_attention: Mapping[int, torch.Tensor] | None,
    teacher_attention: Mapping[int, torch.Tensor] | None,
    attention_mask: torch.Tensor,
    projection: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_items: Mapping[str, int | torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """TinyBERT / BERT-PKD terms summed over `layer_pairs` (student index, teacher index; 0 = embeddings).

    *_states: embeddings + every layer's output, (B, L, H); *_attention: {layer (1-based): (B, heads, L, L)}
    maps or pre-softmax scores. `projection` maps student widths to the teacher's (a narrower student).
    num_items: {"tokens", "pairs" (per head), "sequences"}. Pairs with the embeddings (0) have no attention.
    """
    project = projection or (lambda h: h)
    counts = num_items or {}
    attended = [(i, j) for i, j in layer_pairs if i > 0 and j > 0]
    terms: dict[str, torch.Tensor] = {}
    if weights.get("hidden_mse", 0) > 0:
        terms["hidden_mse"] = sum(
            hidden_mse(project(student_states[i]), teacher_states[j], attention_mask, counts.get("tokens"))
            for i, j in layer_pairs
        )
    if weights.get("attention_mse", 0) > 0:
        heads = next(iter(student_attention.values())).shape[1]
        pairs = counts["pairs"] * heads if "pairs" in counts else None
        terms["attention_mse"] = sum(
            attention_mse(student_attention[i], teacher_attention[j], attention_mask, pairs) for i, j in attended
        )
    if weights.get("pkd", 0) > 0:
        terms["pkd"] = sum(
            pkd_loss(project(student_states[i][:, 0]), teacher_states[j][:, 0], counts.get("sequences"))
            for i, j in attended
        )
    return terms


def distillation_loss(
    *,
    student_logits: torch.Tensor | LinearLogits | None,
    teacher_logits: torch.Tensor | LinearLogits | list[torch.Tensor] | None,
    labels: torch.Tensor | None,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    weights: Mapping[str, float],
    temperature: float = 1.0,
    num_items: Mapping[str, int | torch.Tensor] | None = None,
    teacher_topk: tuple[torch.Tensor, torch.Tensor] | None = None,
    layers: Mapping[str, object] | None = None,
    causal_logits: torch.Tensor | None = None,
    causal_labels: torch.Tensor | None = None,
    relation: Mapping[str, object] | None = None,
    teacher_weights: Sequence[float] | None = None,
    pooled: Mapping[str, object] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the terms whose weight is > 0; returns (total, {term name: unweighted value}).

    student_logits/teacher_logits: (N, V) selected rows for "ce"/"mse", with `labels` (N,) for "mlm";
    for "clm", student_logits (B, L, V) and labels (B, L). weights: {term name: weight}, see LOSS_TERMS.
    num_items: the denominators of COUNTS. teacher_topk: (ids, values) (N, k) cached in place of
    teacher_logits for "ce". layers: the keyword arguments of `layer_terms` but weights and counts.
    causal_logits (B, L, V) / causal_labels (B, L): what "clm" reads when the logit terms read selected rows
    (a causal student distilled from a teacher); default student_logits / labels.
    relation: {"student_qkv", "teacher_qkv", "heads"}, the arguments of `relation.relation_kl` for "relation".
    Several teachers: teacher_logits is a list of (N, V), mixed with `teacher_weights` (`mix_teacher_logits`).
    pooled: the keyword arguments of `pooled.pooled_terms` but weights and counts (sentence embeddings).
    Logits given as `LinearLogits` (the head's last linear layer left undone) are projected chunk by chunk
    inside L_ce and L_mlm (fused_linear.py); their values in `terms` are then for the logs only, the gradient
    flows through the total. Where that path cannot serve (L_mse, or a teacher given as (N, V) logits, e.g.
    several teachers mixed), the logits are materialised and the (N, V) path runs.
    """
    counts = num_items or {}
    if isinstance(teacher_logits, list):
        teacher_logits = mix_teacher_logits(
            teacher_logits, teacher_weights or [1.0] * len(teacher_logits), temperature
        )
    use_ce = weights.get("ce", 0) > 0
    teacher = (teacher_logits if teacher_topk is None else teacher_topk) if use_ce else None
    fused_total = None  # L_ce + L_mlm, weighted, when the projection runs inside them
    if isinstance(student_logits, LinearLogits) and not isinstance(teacher, torch.Tensor):
        fused_total, terms = _linear_ce_mlm(student_logits, teacher, labels, weights, temperature, counts)
    else:
        student_logits, teacher_logits = _whole(student_logits), _whole(teacher_logits)
        terms = _ce_mlm(student_logits, teacher_logits, teacher_topk, labels, weights, temperature, counts)
    if weights.get("mse", 0) > 0:
        terms["mse"] = logit_mse(_whole(student_logits), _whole(teacher_logits), counts.get("rows"))
    if weights.get("cos", 0) > 0:
        terms["cos"] = hidden_cosine(student_hidden, teacher_hidden, attention_mask, counts.get("tokens"))
    if weights.get("clm", 0) > 0:
        logits = student_logits if causal_logits is None else causal_logits
        terms["clm"] = clm_loss(logits, labels if causal_labels is None else causal_labels, counts.get("mlm"))
    if weights.get("relation", 0) > 0:
        terms["relation"] = relation_kl(
            relation["student_qkv"], relation["teacher_qkv"], attention_mask, relation["heads"], counts.get("tokens")
        )
    if layers:
        terms.update(layer_terms(weights, attention_mask=attention_mask, num_items=counts, **layers))
    if pooled:
        terms.update(pooled_terms(weights, num_items=counts, **pooled))
    weighted = (weights[n] * v for n, v in terms.items() if fused_total is None or n not in ("ce", "mlm"))
    total = sum(weighted, 0 if fused_total is None else fused_total)
    return total, {name: terms[name] for term in LOSS_TERMS if (name := term.name) in terms}


def _whole(logits: torch.Tensor | LinearLogits | None) -> torch.Tensor | None:
    return logits.logits() if isinstance(logits, LinearLogits) else logits


def _ce_mlm(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    teacher_topk: tuple[torch.Tensor, torch.Tensor] | None,
    labels: torch.Tensor | None,
    weights: Mapping[str, float],
    temperature: float,
    counts: Mapping[str, int | torch.Tensor],
) -> dict[str, torch.Tensor]:
    """L_ce and L_mlm from (N, V) logits, those whose weight is > 0."""
    terms: dict[str, torch.Tensor] = {}
    use_ce, use_mlm = weights.get("ce", 0) > 0, weights.get("mlm", 0) > 0
    live_ce = use_ce and teacher_topk is None
    if live_ce or use_mlm:  # one fused pass and one (rows × V) gradient for both terms (see fused_losses.py)
        kl, ce = logit_terms(
            student_logits, teacher_logits if live_ce else None, labels if use_mlm else None, temperature
        )
        if live_ce:
            terms["ce"] = _ce_normalised(kl, student_logits.shape[0], temperature, counts.get("rows"))
        if use_mlm:
            terms["mlm"] = _mlm_normalised(ce, labels, counts.get("mlm"))
    if use_ce and teacher_topk is not None:
        terms["ce"] = topk_soft_target_kl(
            student_logits, teacher_topk[1], teacher_topk[0], temperature, counts.get("rows")
        )
    return terms


def _linear_ce_mlm(
    student: LinearLogits,
    teacher: LinearLogits | tuple[torch.Tensor, torch.Tensor] | None,
    labels: torch.Tensor | None,
    weights: Mapping[str, float],
    temperature: float,
    counts: Mapping[str, int | torch.Tensor],
) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
    """(weighted L_ce + L_mlm, their values) with the vocabulary projection inside the loss (fused_linear.py).

    teacher: LinearLogits, or the cached top-k (ids, values); None when L_ce is off. The values are for the
    logs: the gradient flows through the weighted total only.
    """
    use_mlm = weights.get("mlm", 0) > 0
    if teacher is None and not use_mlm:
        return 0, {}
    rows = student.features.shape[0]
    ce_scale = weights.get("ce", 0) * temperature**2 / _denominator(rows, counts.get("rows"))
    mlm_scale = (
        weights.get("mlm", 0) / _denominator(labels.ne(IGNORE_INDEX).sum(), counts.get("mlm")) if use_mlm else 0
    )
    total, kl, ce = linear_logit_terms(student, teacher, labels if use_mlm else None, temperature, ce_scale, mlm_scale)
    terms = {}
    if teacher is not None:
        terms["ce"] = _ce_normalised(kl, rows, temperature, counts.get("rows"))
    if use_mlm:
        terms["mlm"] = _mlm_normalised(ce, labels, counts.get("mlm"))
    return total, terms
