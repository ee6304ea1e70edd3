"""`DistillationTrainer`: Trainer glue around the pure losses (two forwards, one loss, per-term logs)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer

from . import heads
from .callbacks import MaskingEpochCallback
from .config import DistillationArguments
from .losses import IGNORE_INDEX, distillation_loss
from .teacher import check_compatible, load_teacher, prepare_teacher

_TEACHER_TERMS = ("ce", "mse", "cos")


class DistillationTrainer(Trainer):
    """Trains `model` (the student) to imitate `teacher_model` with DistilBERT's triple loss.

    Every term of `DistillationArguments` is normalised by the count of its items over the whole
    accumulated and gathered batch, so gradient accumulation and data parallelism give the gradients of
    one large batch (GA=2 × b equals GA=1 × 2b). `teacher_model=None` trains with L_mlm / L_clm alone
    (the baseline that distillation must beat).
    """

    loss_is_scaled_for_ga = True  # each term is divided by its count over the accumulated batch
    _tag_names = ["distillation", "distilbert", "hf_distil"]

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | str | None = None,
        args: DistillationArguments | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, DistillationArguments):
            raise TypeError(f"args must be DistillationArguments, got {type(args).__name__}; build it like TrainingArguments.")
        self.weights = {"ce": args.alpha_ce, "mlm": args.alpha_mlm, "mse": args.alpha_mse, "cos": args.alpha_cos, "clm": args.alpha_clm}
        teacher = load_teacher(teacher_model) if isinstance(teacher_model, str) else teacher_model
        needs_teacher = [f"alpha_{t}" for t in _TEACHER_TERMS if self.weights[t] > 0]
        if teacher is None and needs_teacher:
            raise ValueError(f"{', '.join(needs_teacher)} > 0 but no teacher_model was given; pass one or set them to 0.")
        if teacher is not None:
            check_compatible(model, teacher, needs_hidden=args.alpha_cos > 0)
        super().__init__(model=model, args=args, **kwargs)
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(MaskingEpochCallback(self.data_collator))
        self.teacher = prepare_teacher(teacher, self.accelerator) if teacher is not None else None
        self._term_sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._eval_batches = 0
        self._terms_logged_step = 0

    # ---- data: keep the columns the teacher needs, even if the student does not take them ----

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.teacher is not None:
            extra = heads.forward_arguments(self.accelerator.unwrap_model(self.teacher)) - set(self._signature_columns)
            self._signature_columns += sorted(extra)

    def _selected_rows(self, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rows where the logit terms are computed: masked ones, or every real token."""
        if self.args.restrict_ce_to_mask or (self.weights["ce"] == 0 and self.weights["mse"] == 0):
            return labels.ne(IGNORE_INDEX)
        return attention_mask.bool()

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> dict[str, torch.Tensor] | None:
        """Denominators of every term over the accumulated batch (and all processes), see losses.py."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        counts = torch.zeros(3, dtype=torch.long, device=device)
        for batch in batch_samples:
            labels = batch["labels"].to(device)
            mask = batch.get("attention_mask", torch.ones_like(labels)).to(device)
            target = labels[:, 1:] if self.weights["clm"] > 0 else labels
            counts += torch.stack(
                [target.ne(IGNORE_INDEX).sum(), mask.sum(), self._selected_rows(labels, mask).sum()]
            )
        if self._gathers_counts:
            counts = self.accelerator.gather(counts.unsqueeze(0)).sum(0)
        return dict(zip(("mlm", "tokens", "rows"), counts))

    @property
    def _gathers_counts(self) -> bool:
        return self.args.average_tokens_across_devices and self.args.world_size > 1

    # ---- the loss ----

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = inputs["labels"]
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            attention_mask = inputs["attention_mask"] = torch.ones_like(labels)
        rows = self._selected_rows(labels, attention_mask)
        causal = self.weights["clm"] > 0
        # A wrapped student (DDP, DeepSpeed) must run its own forward for its gradient hooks: full logits.
        split = model is self.model and not causal and heads.can_split(self.model)
        s_hidden, s_rows, s_full = heads.hidden_and_row_logits(model, inputs, rows, split)
        t_hidden = t_rows = None
        if self.teacher is not None:
            with torch.no_grad():
                t_hidden, t_rows, _ = heads.hidden_and_row_logits(
                    self.teacher, inputs, rows, heads.can_split(self.accelerator.unwrap_model(self.teacher))
                )
        # The loss maths in fp32 whatever autocast is active (each term also upcasts its inputs).
        with torch.autocast(device_type=s_rows.device.type, enabled=False):
            total, terms = distillation_loss(
                student_logits=s_full if causal else s_rows,
                teacher_logits=t_rows,
                labels=labels if causal else labels[rows],
                student_hidden=s_hidden,
                teacher_hidden=t_hidden,
                attention_mask=attention_mask,
                weights=self.weights,
                temperature=self.args.temperature,
                num_items=num_items_in_batch,
            )
        if num_items_in_batch is not None and self._gathers_counts:
            # Terms are shares of the global batch; DDP averages gradients over processes, so undo that mean.
            total = total * self.accelerator.num_processes
            terms = {k: v * self.accelerator.num_processes for k, v in terms.items()}
        self._accumulate_terms("train" if model.training else "eval", terms)
        return (total, {"terms": terms}) if return_outputs else total

    def prediction_step(
        self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None
    ) -> tuple[torch.Tensor, None, None]:
        """Evaluation gives the loss and its terms; full-vocabulary logits are never gathered."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=self._get_num_items_in_batch([inputs], self.args.device))
        self._eval_batches += 1
        return loss.detach(), None, None

    # ---- logging: per-term values averaged like Trainer's own loss ----

    def _accumulate_terms(self, mode: str, terms: dict[str, torch.Tensor]) -> None:
        sums = self._term_sums[mode]
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_sums["train"]:
            steps = max(self.state.global_step - self._terms_logged_step, 1)
            logs.update(self._flush("train", steps, prefix="loss_"))
            self._terms_logged_step = self.state.global_step
        elif any(k.startswith("eval_") for k in logs) and self._term_sums["eval"]:
            logs.update(self._flush("eval", max(self._eval_batches, 1), prefix="eval_loss_"))
            self._eval_batches = 0
        super().log(logs, start_time)

    def _flush(self, mode: str, count: int, prefix: str) -> dict[str, float]:
        names = sorted(self._term_sums[mode])
        values = torch.stack([torch.as_tensor(self._term_sums[mode][n], device=self.args.device) for n in names])
        values = self.accelerator.reduce(values, reduction="mean") / count
        self._term_sums[mode] = {}
        return {f"{prefix}{n}": round(v, 6) for n, v in zip(names, values.tolist())}
