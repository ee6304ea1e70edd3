"""Trainer callbacks that plug distillation behaviour into any Trainer set-up."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from .schedules import (  # noqa: F401 (public names)
    SCHEDULE_KINDS,
    Schedule,
    parse_schedules,
)

logger = logging.get_logger(__name__)


class MaskingEpochCallback(TrainerCallback):
    """Tells a collator with `set_epoch` (DataCollatorForDistillation) which epoch is starting, so each
    epoch draws new masks while a resumed run draws the same ones."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
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
        from .evaluation import is_partitioned, masked_lm_metrics

        teacher = getattr(self.teacher, "module", self.teacher)
        if not is_partitioned(teacher):  # a ZeRO-3 teacher stays in its shards; its forward gathers them
            teacher.to(next(model.parameters()).device)
        every_process = args.world_size > 1
        result = masked_lm_metrics(
            model, self.eval_dataset, self.tokenizer, teacher=teacher, seeds=self.seeds, all_processes=every_process
        )
        extra = {"eval_teacher_agreement": round(result["teacher_agreement"], 6), "eval_teacher_kl": round(result["teacher_kl"], 6)}
        metrics.update(extra)
        for entry in reversed(state.log_history):
            if any(k.startswith("eval_") for k in entry):
                entry.update(extra)
                break


class PushToHubCallback(TrainerCallback):
    """Push each saved checkpoint to the Hub in a background thread, so training does not wait.

    Pushes run one at a time, in order; the last one is awaited at the end of training, and a failed
    push is logged (the checkpoint stays on disk) rather than stopping the run.
    """

    def __init__(self, repo_id: str, *, private: bool = False, token: str | None = None, revision: str | None = None) -> None:
        self.repo_id, self.private, self.token, self.revision = repo_id, private, token, revision
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_distil-push")
        self.futures: list[concurrent.futures.Future] = []

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from .hub import ARGS_FILE, push_to_hub

        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        (folder / ARGS_FILE).write_text(args.to_json_string())
        message = f"Checkpoint at step {state.global_step}"
        self.futures.append(
            self._pool.submit(push_to_hub, folder, self.repo_id, private=self.private, token=self.token, revision=self.revision, commit_message=message)
        )

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.wait()

    def wait(self) -> list[str]:
        """Block until every push has finished; returns the commit URLs of those that succeeded."""
        urls = []
        for future in self.futures:
            try:
                urls.append(future.result())
            except Exception as error:  # a failed push must not lose the run: the checkpoint is on disk
                logger.error(f"push to {self.repo_id} failed: {error}")
        return urls


class NonFiniteLossGuard(TrainerCallback):
    """Skip updates whose gradients are NaN/Inf; stop cleanly after `max_in_a_row` of them.

    A skipped update leaves weights and optimizer state untouched (gradients are set to None, which
    torch optimizers skip). When the limit is reached, a checkpoint of the last good weights is saved
    and training stops with a message saying what to change, never exit() mid-run. Under DeepSpeed the
    engine does its own fp16 overflow skipping and this guard only counts.
    """

    def __init__(self, max_in_a_row: int = 5) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.skipped: list[int] = []
        self.stopped = False

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if not grads or all(torch.isfinite(g).all() for g in grads):
            self.in_a_row = 0
            return
        for p in model.parameters():
            p.grad = None
        self.in_a_row += 1
        self.skipped.append(state.global_step + 1)
        logger.warning(f"step {state.global_step + 1}: non-finite gradients, update skipped ({self.in_a_row} in a row)")
        if self.in_a_row >= self.max_in_a_row:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True
            logger.error(
                f"stopped at step {state.global_step + 1}: {self.in_a_row} updates in a row had NaN/Inf gradients; "
                "the last good weights are saved. Lower the learning rate, raise max_grad_norm clipping, or use bf16 instead of fp16."
            )


class LossScheduleCallback(TrainerCallback):
    """Moves the temperature and loss weights along their schedules before every optimizer step.

    The values live here, never in `args` (so training_args.json and the card keep what the user set):
    DistillationTrainer reads `current` for its loss and logs `current_values()` with the terms.
    """

    def __init__(self, schedules: dict[str, Schedule]) -> None:
        self.schedules = schedules
        self.current: dict[str, float] = {name: schedule.at(0.0) for name, schedule in schedules.items()}

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        progress = state.global_step / max(state.max_steps, 1)
        self.current = {name: schedule.at(progress) for name, schedule in self.schedules.items()}

    def current_values(self) -> dict[str, float]:
        return {f"schedule_{k}": round(v, 6) for k, v in self.current.items()}
