"""Task distillation's terms as pure functions: the student's task loss on the gold labels and its KD term
against a teacher fine-tuned on the task, for classification, regression and extractive QA.

As in terms.py, every term is a *sum* over its items divided by `num_items` (default: the items in this call).
Passing the counts of the whole accumulated (and gathered) batch, `task_counts` summed over its micro-batches,
makes gradient accumulation and data parallelism exact; see `TaskDistillationTrainer.get_batch_samples`.
All maths runs in fp32; nothing to average over gives 0, never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ._ops.fused_losses import IGNORE_INDEX, upcast
from .terms import logit_mse, soft_target_kl

KD_LOSSES = ("kl", "mse")
# The denominators of one batch, in `task_counts` order: every example (the KD terms), the examples with a gold
# label (the task loss of classification and regression), the answer starts and ends inside the window (QA).
TASK_COUNTS = ("examples", "labelled", "boundaries")
_POSITIONS = ("start_positions", "end_positions")


def task_counts(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The items each term of `batch` averages over, a (3,) long tensor in TASK_COUNTS order.

    batch: input_ids (B, L), and labels (B,) with -100 for examples without a gold label, or start_positions and
    end_positions (B,) for QA.
    """
    ids = batch["input_ids"]
    labels = batch.get("labels")
    labelled = labels.ne(IGNORE_INDEX).sum() if labels is not None else ids.new_zeros(())
    boundaries = sum((_inside(batch[k], ids.shape[1]).sum() for k in _POSITIONS if k in batch), ids.new_zeros(()))
    return torch.stack([ids.new_tensor(ids.shape[0]), labelled, boundaries]).long()


def gold_label_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy (squared error for one output: regression) over the examples that have a gold label; labels
    of -100 (transfer-set text that only the teacher labelled) are left out.

    logits (B, C); labels (B,). Sum over the labelled examples divided by num_items (default: their count here).
    """
    logits = upcast(logits)
    labelled = labels.ne(IGNORE_INDEX)
    if logits.shape[-1] == 1:
        total = (logits.squeeze(-1) - labels.to(logits.dtype)).pow(2)[labelled].sum()
    else:
        total = F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_INDEX, reduction="sum")
    return total / _denominator(labelled.sum(), num_items)


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Extractive QA's task loss: cross-entropy of the answer's start and end tokens, as `...ForQuestionAnswering`
    computes it (positions past the window are left out), summed over starts and ends.

    *_logits (B, L); *_positions (B,). Divided by num_items (default: the starts and ends inside the window), so
    with every answer inside it equals the model's own loss, the mean of the two cross-entropies.
    """
    total, count = 0, 0
    for logits, positions in ((start_logits, start_positions), (end_logits, end_positions)):
        inside = _inside(positions, logits.shape[1])
        targets = positions.clamp_min(0).masked_fill(~inside, IGNORE_INDEX).long()
        total = total + F.cross_entropy(upcast(logits), targets, ignore_index=IGNORE_INDEX, reduction="sum")
        count = count + inside.sum()
    return total / _denominator(count, num_items)


def classification_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    kd_loss: str = "kl",
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """The KD term of a classifier: "kl", KL(softmax(t/T) ‖ softmax(s/T)) × T² (DistilBERT (D)); "mse", Tang et
    al.'s squared error between the raw logits, summed over classes (arXiv:1903.12136; T unused).

    student_logits, teacher_logits (B, C). Summed over examples, divided by num_items (default: B).
    """
    if kd_loss == "mse":
        return logit_mse(student_logits, teacher_logits, num_items)
    return soft_target_kl(student_logits, upcast(teacher_logits), temperature, num_items)


def regression_kd(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """The KD term of a regressor (STS-B): squared error to the teacher's score, which has no distribution to
    soften. student_scores, teacher_scores (B, 1). Summed over examples, divided by num_items (default: B)."""
    return logit_mse(student_scores, teacher_scores, num_items)


def span_kd(
    student_start: torch.Tensor,
    student_end: torch.Tensor,
    teacher_start: torch.Tensor,
    teacher_end: torch.Tensor,
    temperature: float = 1.0,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """The KD term of extractive QA, as in the paper's SQuAD run: the mean of the start and end logits' KL × T².

    All (B, L), softmax over the L tokens. Each KL is summed over examples and divided by num_items (default: B).
    """
    return (
        soft_target_kl(student_start, upcast(teacher_start), temperature, num_items)
        + soft_target_kl(student_end, upcast(teacher_end), temperature, num_items)
    ) / 2


def _inside(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Answer positions the QA loss reads: transformers clamps them to [0, L] and ignores L (past the window)."""
    return positions.clamp(0, length) < length


def _denominator(count: int | torch.Tensor, num_items: int | torch.Tensor | None) -> torch.Tensor | int:
    total = count if num_items is None else num_items
    return total.clamp_min(1) if torch.is_tensor(total) else max(total, 1)
