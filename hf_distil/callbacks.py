"""Trainer callbacks that plug distillation behaviour into any Trainer set-up."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
from transformers.utils import logging

from .errors import RunFailed
from .losses.schedules import Schedule

logger = logging.get_logger(__name__)


class MaskingEpochCallback(TrainerCallback):
    """Tells a collator with `set_epoch` (DataCollatorForDistillation) which epoch is starting, so each
    epoch draws new masks while a resumed run draws the same ones."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.collator.set_epoch(int(state.epoch or 0))


class TeacherAgreementCallback(TrainerCallback):
    """At each evaluation, top-1 agreement and KL(teacher ‖ student) on held-out text (fixed masks).

    The values are added to the metrics that `evaluate()` returns and to the eval entry of
    `state.log_history` as `eval_teacher_agreement` and `eval_teacher_kl`. Every process takes part (as
    Trainer's `evaluate` does): under ZeRO-3 each holds only shards of both models, and each forward
    gathers them from all processes (see `masked_lm_metrics`).
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        eval_dataset: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        seeds: tuple[int, ...] = (0,),
    ) -> None:
        self.teacher, self.eval_dataset, self.tokenizer, self.seeds = teacher, eval_dataset, tokenizer, seeds

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: PreTrainedModel | None = None,
        metrics: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if model is None or metrics is None:
            return
        from .evaluation.masked_lm import masked_lm_metrics
        from .models.heads import is_partitioned

        teacher = getattr(self.teacher, "module", self.teacher)
        if not is_partitioned(teacher):  # a ZeRO-3 teacher stays in its shards; its forward gathers them
            teacher.to(next(model.parameters()).device)
        every_process = args.world_size > 1
        result = masked_lm_metrics(
            model, self.eval_dataset, self.tokenizer, teacher=teacher, seeds=self.seeds, all_processes=every_process
        )
        extra = {
            "eval_teacher_agreement": round(result["teacher_agreement"], 6),
            "eval_teacher_kl": round(result["teacher_kl"], 6),
        }
        metrics.update(extra)
        for entry in reversed(state.log_history):
            if any(k.startswith("eval_") for k in entry):
                entry.update(extra)
                break


class NonFiniteLossGuard(TrainerCallback):
    """Skip updates whose gradients are NaN/Inf; stop after `max_in_a_row` of them (under an fp16 loss scaler, once
    its scale is below 1 too), or at once when an update leaves NaN/Inf weights; fail a run whose last update was
    skipped.

    A skipped update leaves weights and optimizer state untouched (gradients are set to None, which torch
    optimizers skip). On a stop nothing more is saved (those weights give NaN/Inf), `stopped` is set and
    `message` names the newest checkpoint whose weights still gave finite gradients, if there is one: a
    checkpoint of step N is such when a later step had finite gradients. A run that ends on skipped updates
    (weights that stay finite but give NaN/Inf gradients, e.g. from a huge learning rate) counts as stopped
    too (unless an fp16 loss scaler skipped it): its final weights are those that failed. `raise_if_failed` then
    ends the run as failed, and so does a final student whose held-out loss is NaN/Inf. Under DeepSpeed the
    engine does its own fp16 overflow skipping and this guard only counts.
    """

    def __init__(self, max_in_a_row: int = 5) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.skipped: list[int] = []
        self.stopped = False
        self.message = ""
        self._last_finite_step: int | None = None  # the last step whose gradients were finite
        self._saved: list[int] = []  # steps of the checkpoints this run wrote or resumed from
        self._resumed_from = 0

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if state.global_step > 0:  # resumed: the checkpoint it started from counts as saved
            self._saved.append(state.global_step)
            self._resumed_from = state.global_step
        if model is not None and not _all_finite(list(model.parameters())):
            self._stop(args, control, state.global_step, "the student's weights hold NaN/Inf before any update")

    def on_pre_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        step = state.global_step + 1
        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if _all_finite(grads):
            self.in_a_row, self._last_finite_step = 0, step
            return
        for p in model.parameters():
            p.grad = None
        self.in_a_row += 1
        self.skipped.append(step)
        logger.warning(f"step {step}: non-finite gradients, update skipped ({self.in_a_row} in a row)")
        # Under fp16 an overflow is first the loss scale's: an initial scale of 2^16 overflows for several steps in a
        # row while the GradScaler halves it. Only once the scale is below 1 do the weights themselves fail.
        scaler = getattr(kwargs.get("optimizer"), "scaler", None)
        if scaler is not None and scaler.is_enabled() and scaler.get_scale() >= 1.0:
            return
        if self.in_a_row >= self.max_in_a_row:
            self._stop(args, control, step, f"{self.in_a_row} updates in a row had NaN/Inf gradients, all skipped")

    def on_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        # A finite update can still overflow the weights (a huge learning rate); it cannot be undone here.
        # (After a skipped update the weights are those already checked.)
        applied = self.in_a_row == 0
        if applied and model is not None and not _all_finite(list(model.parameters())):
            self._stop(args, control, state.global_step + 1, "the update made the weights NaN/Inf")

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if control.should_save and (self.stopped or self.in_a_row):
            control.should_save = False  # these weights just gave NaN/Inf: a resume would start from them
            logger.warning(f"step {state.global_step}: no checkpoint saved, the weights just gave NaN/Inf gradients")

    on_epoch_end = on_step_end

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: torch.optim.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        # The final weights are those whose gradients were NaN/Inf: no result to keep. Under an fp16 loss scaler an
        # overflow is the scale's, which it lowers, not the weights' (the held-out loss still tells, raise_if_failed).
        if self.in_a_row and not self.stopped and getattr(optimizer, "scaler", None) is None:
            updates = f"its last {self.in_a_row} updates" if self.in_a_row > 1 else "its last update"
            self.stopped = True
            self._fail(
                args.output_dir,
                f"the run ended at step {state.global_step} with {updates} skipped for NaN/Inf gradients, so its "
                "final weights fail",
            )

    def raise_if_failed(self, output_dir: str | Path, held_out_loss: float | None = None) -> None:
        """Raise RunFailed (its message says what is kept on disk) when the run stopped or ended on NaN/Inf
        gradients, or when `held_out_loss`, the final student's, is NaN/Inf: weights that fail so must not be
        saved, described in a model card or pushed as the run's result."""
        if not self.stopped and held_out_loss is not None and not math.isfinite(held_out_loss):
            self.stopped = True
            self._fail(output_dir, f"the final student's held-out loss is {held_out_loss}")
        if self.stopped:
            raise RunFailed(self.message)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._saved.append(state.global_step)

    def _stop(self, args: TrainingArguments, control: TrainerControl, step: int, why: str) -> None:
        if self.stopped:
            return
        self.stopped = True
        control.should_training_stop = True
        self._fail(args.output_dir, f"stopped at step {step}: {why}")

    def _fail(self, output_dir: str | Path, what: str) -> None:
        """`message`: what failed, and which checkpoint on disk still holds weights that gave finite gradients."""
        last_finite = self._last_finite_step
        good = [s for s in self._saved if last_finite and s < last_finite]
        folders = _checkpoint_folders(output_dir, good)
        failing = _checkpoint_folders(output_dir, [s for s in self._saved if s not in good])
        if folders:
            where = (
                f"the newest checkpoint whose weights gave finite gradients is {folders[-1]} "
                f"(--resume_from_checkpoint {folders[-1]})"
            )
        elif last_finite is None and self._resumed_from:
            where = (
                f"no step had finite gradients since the resume from step {self._resumed_from}, whose checkpoint "
                "already fails: resume from an earlier one (--resume_from_checkpoint) or start afresh"
            )
        elif last_finite is None:
            where = (
                "no step of this run had finite gradients, so its starting weights already fail: "
                "check the teacher, the student and the data for NaN/Inf"
            )
        else:
            where = (
                "no checkpoint of this run holds weights that gave finite gradients "
                f"(the last such step was {last_finite}); nothing more was saved"
            )
        if failing:
            where += f"; {', '.join(map(str, failing))} {'holds' if len(failing) == 1 else 'hold'} weights that fail"
        self.message = (
            f"{what}; {where}. Lower the learning rate, clip gradients harder "
            "(smaller max_grad_norm), or use bf16 instead of fp16."
        )
        logger.error(self.message)


def train_guarded(trainer: Trainer, **train_kwargs: Any) -> tuple[TrainOutput, NonFiniteLossGuard]:
    """`trainer.train` under a NonFiniteLossGuard, for scripts that save after training: a run whose final weights
    gave NaN/Inf gradients raises RunFailed before anything is saved. The guard is returned so the script can fail
    on the held-out loss too (`guard.raise_if_failed(output_dir, loss)`) before it writes the model."""
    guard = NonFiniteLossGuard()
    trainer.add_callback(guard)
    result = trainer.train(**train_kwargs)
    guard.raise_if_failed(trainer.args.output_dir)
    return result, guard


def _checkpoint_folders(output_dir: str | Path, steps: list[int]) -> list[Path]:
    """The checkpoint-N folders of these steps that are on disk (save_total_limit may have deleted some)."""
    folders = [Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{s}" for s in sorted(set(steps))]
    return [f for f in folders if f.is_dir()]


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """One reduction (max |x|, NaN propagates) and one sync, not one per tensor."""
    tensors = [t for t in tensors if t.numel() > 0]  # ZeRO-3 leaves empty placeholders on each rank
    return not tensors or bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors, math.inf)))


class LossScheduleCallback(TrainerCallback):
    """Moves the temperature and loss weights along their schedules before every optimizer step.

    The values live here, never in `args` (so training_args.json and the card keep what the user set):
    DistillationTrainer reads `current` for its loss and logs `current_values()` with the terms.
    """

    def __init__(self, schedules: dict[str, Schedule]) -> None:
        self.schedules = schedules
        self.current: dict[str, float] = {name: schedule.at(0.0) for name, schedule in schedules.items()}

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        progress = state.global_step / max(state.max_steps, 1)
        self.current = {name: schedule.at(progress) for name, schedule in self.schedules.items()}

    def current_values(self) -> dict[str, float]:
        return {f"schedule_{k}": round(v, 6) for k, v in self.current.items()}
