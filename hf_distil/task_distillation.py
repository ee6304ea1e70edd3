"""Task-specific distillation (the paper's "DistilBERT (D)"): a fine-tuned teacher's task logits guide the
student's fine-tuning. loss = alpha_task · task loss + alpha_kd · KL(softmax(t/T) ‖ softmax(s/T)) · T²
(for extractive QA the KL is the mean over start and end logits, as in the paper's SQuAD run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainingArguments

from .errors import UsageError
from .losses import soft_target_kl
from .teacher import prepare_teacher


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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}.")
        if self.alpha_task < 0 or self.alpha_kd < 0 or self.alpha_task + self.alpha_kd == 0:
            raise UsageError(
                f"alpha_task and alpha_kd must be >= 0 and not both 0, got {self.alpha_task}, {self.alpha_kd}."
            )


class TaskDistillationTrainer(Trainer):
    """Fine-tunes `model` on a task while matching a fine-tuned `teacher_model` on the same inputs."""

    def __init__(
        self, model: PreTrainedModel, teacher_model: PreTrainedModel, args: TaskDistillationArguments, **kwargs: Any
    ) -> None:
        if model.config.num_labels != teacher_model.config.num_labels:
            raise UsageError(
                f"teacher has {teacher_model.config.num_labels} labels, student {model.config.num_labels}; "
                "fine-tune the teacher on the same task first."
            )
        super().__init__(model=model, args=args, **kwargs)
        self.teacher = prepare_teacher(teacher_model, self.accelerator)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        teacher_inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
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
            logits, teacher_logits = outputs.logits.float(), teacher_out.logits.float()
            if logits.shape[-1] == 1:  # regression (STS-B): match the teacher's score
                task = F.mse_loss(logits.squeeze(-1), labels.float())
                kd = F.mse_loss(logits, teacher_logits)
            else:
                task = F.cross_entropy(logits, labels)
                kd = soft_target_kl(logits, teacher_logits, T)
        loss = self.args.alpha_task * task + self.args.alpha_kd * kd
        return (loss, outputs) if return_outputs else loss
