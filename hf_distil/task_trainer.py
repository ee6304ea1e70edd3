"""Task-specific distillation (the paper's "DistilBERT (D)"): a fine-tuned teacher's task logits guide the
student's fine-tuning. loss = alpha_task · task loss + alpha_kd · KL(softmax(t/T) ‖ softmax(s/T)) · T²
(for extractive QA the KL is the mean over start and end logits, as in the paper's SQuAD run).

With kd_loss="mse" the KD term is Tang et al.'s (arXiv:1903.12136): ‖t − s‖² between the raw logits, mean over
examples. The teacher runs live on each batch, or labels a transfer set once beforehand (`label_with_teacher`: a
`teacher_logits` column); transfer-set examples without a gold label (label −100, e.g. augmented text) get the KD
term alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainingArguments

from .errors import UsageError
from .losses.terms import logit_mse, soft_target_kl
from .teachers.prepare import prepare_teacher

TEACHER_LOGITS = "teacher_logits"  # the column of a transfer set labelled by the teacher beforehand
KD_LOSSES = ("kl", "mse")


@dataclass
class TaskDistillationArguments(TrainingArguments):
    """TrainingArguments plus the weights of the task-distillation loss."""

    temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature of the KD term; it is scaled by T²."}
    )
    alpha_task: float = field(default=1.0, metadata={"help": "Weight of the task loss against the gold labels."})
    alpha_kd: float = field(
        default=1.0,
        metadata={"help": "Weight of the KL to the fine-tuned teacher's softened outputs (MSE for regression)."},
    )
    kd_loss: str = field(
        default="kl",
        metadata={
            "help": "kl: KL of the softened distributions × T² (DistilBERT (D)); mse: squared error between the "
            "logits, summed over classes, mean over examples (Tang et al. 2019; T is not used)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}.")
        if self.alpha_task < 0 or self.alpha_kd < 0 or self.alpha_task + self.alpha_kd == 0:
            raise UsageError(
                f"alpha_task and alpha_kd must be >= 0 and not both 0, got {self.alpha_task}, {self.alpha_kd}."
            )
        if self.kd_loss not in KD_LOSSES:
            raise UsageError(f"kd_loss must be one of {', '.join(KD_LOSSES)}, got {self.kd_loss!r}.")


class TaskDistillationTrainer(Trainer):
    """Fine-tunes `model` on a task while matching a fine-tuned teacher on the same inputs: `teacher_model` run on
    each batch, or a `teacher_logits` column that the teacher wrote beforehand (`label_with_teacher`)."""

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | None,
        args: TaskDistillationArguments,
        **kwargs: Any,
    ) -> None:
        train_columns = getattr(kwargs.get("train_dataset"), "column_names", None) or []
        if teacher_model is None and TEACHER_LOGITS not in train_columns:
            raise UsageError(
                f"no teacher: pass teacher_model, or a train_dataset with a {TEACHER_LOGITS!r} column "
                "(label_with_teacher(teacher, dataset))."
            )
        if teacher_model is not None and model.config.num_labels != teacher_model.config.num_labels:
            raise UsageError(
                f"teacher has {teacher_model.config.num_labels} labels, student {model.config.num_labels}; "
                "fine-tune the teacher on the same task first."
            )
        super().__init__(model=model, args=args, **kwargs)
        self.teacher = None if teacher_model is None else prepare_teacher(teacher_model, self.accelerator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # keeps only what the student's forward takes, and the labels
        if TEACHER_LOGITS not in self._signature_columns:
            self._signature_columns.append(TEACHER_LOGITS)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        written = inputs.pop(TEACHER_LOGITS, None)
        teacher_out = None
        if written is None and self.teacher is not None:
            teacher_inputs = {
                k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")
            }
            with torch.no_grad():
                teacher_out = self.teacher(**teacher_inputs)
        T = self.args.temperature
        if "start_positions" in inputs:  # extractive QA: the model's own span loss; KD on start and end
            outputs = model(**inputs)
            task = outputs.loss
            kd = (
                soft_target_kl(outputs.start_logits, teacher_out.start_logits, T)
                + soft_target_kl(outputs.end_logits, teacher_out.end_logits, T)
            ) / 2
        else:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            teacher_logits = written if teacher_out is None else teacher_out.logits
            task = gold_label_loss(logits, labels)
            if teacher_logits is None:  # evaluation without a teacher: the task loss alone
                kd = torch.zeros((), device=logits.device)
            elif logits.shape[-1] == 1 and self.args.kd_loss == "kl":  # regression (STS-B): match the teacher's score
                kd = F.mse_loss(logits, teacher_logits.float())
            elif self.args.kd_loss == "mse":
                kd = logit_mse(logits, teacher_logits.float())
            else:
                kd = soft_target_kl(logits, teacher_logits.float(), T)
        loss = self.args.alpha_task * task + self.args.alpha_kd * kd
        return (loss, outputs) if return_outputs else loss


def gold_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (MSE for one output: regression) over the examples that have a gold label; labels of −100
    (transfer-set text the teacher labelled) are left out, and a batch without any gives 0, not NaN.

    logits (B, C); labels (B,). Mean over the labelled examples.
    """
    if logits.shape[-1] == 1:
        labelled = labels != -100
        squared = (logits.squeeze(-1) - labels.float()).pow(2)[labelled]
        return squared.sum() / labelled.sum().clamp(min=1)
    total = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
    return total / (labels != -100).sum().clamp(min=1)


@torch.no_grad()
def label_with_teacher(teacher: PreTrainedModel, dataset: Dataset, collator: Any, batch_size: int = 64) -> Dataset:
    """`dataset` (tokenised) with a `teacher_logits` column: the teacher's logits for each example, computed once.

    The paper's transfer set: the teacher labels every example, augmented ones included, and the student then
    trains on those logits for many epochs without running the teacher again. `collator` pads a list of
    examples (e.g. DataCollatorWithPadding(tokenizer)).
    """
    teacher.eval()
    device = next(teacher.parameters()).device
    wanted = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    logits = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select_columns(wanted)[start : start + batch_size]
        batch = collator([dict(zip(rows, values)) for values in zip(*rows.values())])
        logits += teacher(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().tolist()
    return dataset.add_column(TEACHER_LOGITS, logits)
