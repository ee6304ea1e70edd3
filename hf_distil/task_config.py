"""`TaskDistillationArguments`: the settings of `TaskDistillationTrainer`, each documented once in its help."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .config import SoftTargetArguments
from .errors import UsageError
from .losses.task import KD_LOSSES


@dataclass
class TaskDistillationArguments(SoftTargetArguments, TrainingArguments):
    """TrainingArguments plus the weights of task distillation (the paper's "DistilBERT (D)"):
    loss = alpha_task · task loss + alpha_kd · KD term.

    > Parameters that control the loss: `temperature`, `alpha_task`, `alpha_kd`, `kd_loss`.
    """

    alpha_task: float = field(default=1.0, metadata={"help": "Weight of the task loss against the gold labels."})
    alpha_kd: float = field(
        default=1.0,
        metadata={"help": "Weight of the KD term: matching the fine-tuned teacher's outputs (see kd_loss)."},
    )
    kd_loss: str = field(
        default="kl",
        metadata={
            "help": "kl: KL of the softened distributions × T² (DistilBERT (D); squared error to the teacher's "
            "score for regression); mse: squared error between the logits, summed over classes, mean over "
            "examples (Tang et al. 2019; T is not used)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}; use 1.0 for no softening.")
        if self.alpha_task < 0 or self.alpha_kd < 0 or self.alpha_task + self.alpha_kd == 0:
            raise UsageError(
                f"alpha_task and alpha_kd must be >= 0 and not both 0, got {self.alpha_task}, {self.alpha_kd}; "
                "e.g. alpha_task=1 alpha_kd=1."
            )
        if self.kd_loss not in KD_LOSSES:
            raise UsageError(f"kd_loss must be one of {', '.join(KD_LOSSES)}, got {self.kd_loss!r}.")
