"""`TaskDistillationTrainer`: task-specific distillation (the paper's "DistilBERT (D)"), a teacher fine-tuned on
the task guiding the student's fine-tuning: loss = alpha_task · task loss + alpha_kd · KD term (losses/task.py).

The teacher runs live on each batch, or labels a transfer set once beforehand (`label_with_teacher`: a
`teacher_logits` column); transfer-set examples without a gold label (label −100, e.g. augmented text) get the KD
term alone. As in `DistillationTrainer`, every term is divided by its count over the whole accumulated (and
gathered) batch, so gradient accumulation and data parallelism give the gradients of one large batch."""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from torch import nn
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    Trainer,
)
from transformers.utils import ModelOutput

from .batch_terms import BatchTermsMixin
from .errors import UsageError
from .losses.task import (
    TASK_COUNTS,
    classification_kd,
    gold_label_loss,
    regression_kd,
    span_kd,
    span_loss,
    task_counts,
)
from .models import heads
from .task_config import TaskDistillationArguments
from .teachers.cache import TEACHER_LOGITS
from .teachers.prepare import Teachers, check_compatible, load_teacher


class TaskDistillationTrainer(BatchTermsMixin, Trainer):
    """Fine-tunes `model` on a task while matching a fine-tuned teacher on the same inputs: `teacher_model` (a
    model, or a folder or Hub id loaded with the student's task head) run on each batch, or a `teacher_logits`
    column that the teacher wrote beforehand (`label_with_teacher`). Logs `loss_task` and `loss_kd`.
    """

    loss_is_scaled_for_ga = True  # each term is divided by its count over the accumulated batch

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | str | None = None,
        args: TaskDistillationArguments | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, TaskDistillationArguments):
            raise UsageError(
                f"args must be TaskDistillationArguments, got {type(args).__name__}; build it like TrainingArguments."
            )
        train_columns = getattr(kwargs.get("train_dataset"), "column_names", None) or []
        if teacher_model is None and TEACHER_LOGITS not in train_columns:
            raise UsageError(
                f"no teacher: pass teacher_model, or a train_dataset with a {TEACHER_LOGITS!r} column "
                "(label_with_teacher(teacher, dataset))."
            )
        if isinstance(teacher_model, str):
            teacher_model = load_teacher(teacher_model, flag="teacher_model", auto_class=_task_head(model))
        if teacher_model is not None:
            if model.config.num_labels != teacher_model.config.num_labels:
                raise UsageError(
                    f"teacher has {teacher_model.config.num_labels} labels, student {model.config.num_labels}; "
                    "fine-tune the teacher on the same task first."
                )
            check_compatible(model, teacher_model, needs_hidden=False)
        models = [] if teacher_model is None else [teacher_model]
        self.teachers = Teachers(models, [1.0] * len(models))
        super().__init__(model=model, args=args, **kwargs)
        self.teachers.prepare(self.accelerator)

    @property
    def teacher(self) -> Any:
        """The teacher, prepared (a DeepSpeed engine under ZeRO); None with a transfer set's logits alone."""
        return self.teachers.first

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # keeps only what the student's forward takes, and the labels
        if TEACHER_LOGITS not in self._signature_columns:
            self._signature_columns.append(TEACHER_LOGITS)

    count_names = TASK_COUNTS

    def _counts_of(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        return task_counts(batch).to(device)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: dict[str, torch.Tensor] | torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, ModelOutput]:
        """Student forward, the teacher's logits (live or written), the terms of losses/task.py; terms logged.

        Our counts come from `get_batch_samples`; in evaluation Trainer passes its own label count (or none, on a
        direct call), and this batch's counts stand in, as in DistillationTrainer.prediction_step."""
        counts = num_items_in_batch
        if not isinstance(counts, dict):
            counts = self._term_counts([inputs], self.args.device)
        written = inputs.pop(TEACHER_LOGITS, None)
        targets = {k: inputs.pop(k) for k in ("labels", "start_positions", "end_positions") if k in inputs}
        outputs = model(**inputs)
        teacher = None
        if written is None and self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(**heads.model_inputs(self.teacher, inputs))
        with torch.autocast(device_type=inputs["input_ids"].device.type, enabled=False):  # the loss maths in fp32
            terms = self._terms(outputs, teacher, written, targets, counts)
        weights = {"task": self.args.alpha_task, "kd": self.args.alpha_kd}
        total, terms = self._global_shares(sum(weights[name] * value for name, value in terms.items()), terms)
        mode = "train" if model.training else "eval"
        if mode == "eval":  # Trainer's prediction_step computes the loss once per batch
            self._eval_batches += 1
        self._accumulate_terms(mode, terms)
        return (total, outputs) if return_outputs else total

    def _terms(
        self,
        student: ModelOutput,
        teacher: ModelOutput | None,
        written: torch.Tensor | None,
        targets: dict[str, torch.Tensor],
        counts: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """{"task": ..., "kd": ...}, unweighted; the task term needs gold labels, the KD term the teacher's logits
        (evaluation without a teacher gives the task term alone)."""
        temperature, terms = self.args.temperature, {}
        if "start_positions" in targets:  # extractive QA: the span loss; KD on start and end
            positions = targets["start_positions"], targets["end_positions"]
            terms["task"] = span_loss(student.start_logits, student.end_logits, *positions, counts["boundaries"])
            if teacher is not None:
                terms["kd"] = span_kd(
                    student.start_logits,
                    student.end_logits,
                    teacher.start_logits,
                    teacher.end_logits,
                    temperature,
                    counts["examples"],
                )
            return terms
        logits = student.logits
        if "labels" in targets:
            terms["task"] = gold_label_loss(logits, targets["labels"], counts["labelled"])
        teacher_logits = written if teacher is None else teacher.logits
        if teacher_logits is not None and logits.shape[-1] == 1:  # regression (STS-B): the teacher's score
            terms["kd"] = regression_kd(logits, teacher_logits, counts["examples"])
        elif teacher_logits is not None:
            terms["kd"] = classification_kd(logits, teacher_logits, temperature, self.args.kd_loss, counts["examples"])
        return terms


def _task_head(student: nn.Module) -> type:
    """The Auto class a teacher given by name is loaded with: the student's task (QA, else classification)."""
    qa = type(student).__name__.endswith("ForQuestionAnswering")
    return AutoModelForQuestionAnswering if qa else AutoModelForSequenceClassification


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
