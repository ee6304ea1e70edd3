"""The loss: pure functions, tensors in and a scalar out, and `distillation_loss`, which weighs them.

The fused and compiled kernels under `_ops/` are private to this package."""

from ._ops.fused_linear import LinearLogits
from .pooled import (
    cached_term,
    embedding_cosine,
    embedding_mse,
    margin_mse,
    pooled_terms,
    similarity_kl,
    similarity_kl_and_gradient,
)
from .relation import relation_kl
from .schedules import Schedule, check_schedules
from .task import (
    TASK_COUNTS,
    classification_kd,
    gold_label_loss,
    regression_kd,
    span_kd,
    span_loss,
    task_counts,
)
from .terms import (
    COUNTS,
    IGNORE_INDEX,
    LOSS_TERMS,
    POOLED_TERMS,
    LossTerm,
    attention_mse,
    clm_loss,
    distillation_loss,
    hidden_cosine,
    hidden_mse,
    layer_terms,
    logit_mse,
    mix_teacher_logits,
    mlm_loss,
    pkd_loss,
    soft_target_kl,
    terms_needing_a_teacher,
    topk_soft_target_kl,
)

__all__ = [
    "COUNTS",
    "POOLED_TERMS",
    "IGNORE_INDEX",
    "LOSS_TERMS",
    "LinearLogits",
    "LossTerm",
    "Schedule",
    "TASK_COUNTS",
    "attention_mse",
    "cached_term",
    "check_schedules",
    "classification_kd",
    "clm_loss",
    "distillation_loss",
    "embedding_cosine",
    "embedding_mse",
    "gold_label_loss",
    "hidden_cosine",
    "hidden_mse",
    "layer_terms",
    "logit_mse",
    "margin_mse",
    "mix_teacher_logits",
    "mlm_loss",
    "pkd_loss",
    "pooled_terms",
    "regression_kd",
    "relation_kl",
    "similarity_kl",
    "similarity_kl_and_gradient",
    "soft_target_kl",
    "span_kd",
    "span_loss",
    "task_counts",
    "terms_needing_a_teacher",
    "topk_soft_target_kl",
]
