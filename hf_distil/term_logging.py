"""The loss terms of both trainers logged through Trainer's `log`, so that TensorBoard, W&B and `log_history` all
get them (loss_<term> in training, eval_loss_<term> in evaluation), averaged like Trainer's own loss."""

from __future__ import annotations

import math
from typing import Any

import torch


class TermLoggingMixin:
    """Mixed in before `Trainer`. `compute_loss` hands each micro-batch's unweighted terms to `_accumulate_terms`;
    `log` adds their means since the last log, reduced over processes.

    A micro-batch's terms are its shares of the accumulated batch (each term divided by its count over the whole
    update), so their sum over an update is that update's value, and a logged term is the mean over the updates
    since the last log, as `loss` is. Evaluation terms are means over the batches counted in `_eval_batches`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._term_sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._eval_batches = 0
        self._terms_since_step = 0  # global step when the logged window began (not 0 after a resume)
        self._logged_nonfinite_loss = False

    def _accumulate_terms(self, mode: str, terms: dict[str, torch.Tensor]) -> None:
        sums = self._term_sums[mode]
        if mode == "train" and not sums:
            self._terms_since_step = self.state.global_step
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_sums["train"]:
            steps = max(self.state.global_step - self._terms_since_step, 1)
            terms = self._flush("train", steps, prefix="loss_")
            logs.update(terms)
            if not all(math.isfinite(v) for v in terms.values()):
                # Trainer's logging_nan_inf_filter put the mean of earlier losses (0 at first) in place of the
                # non-finite ones; the terms tell the truth, so does the loss.
                logs["loss"], self._logged_nonfinite_loss = math.nan, True
            for callback in self.callback_handler.callbacks:
                logs.update(getattr(callback, "current_values", dict)())
        elif "train_loss" in logs and self._logged_nonfinite_loss:
            logs["train_loss"] = math.nan  # the filtered mean would hide that some steps were not finite
        elif any(k.startswith("eval_") for k in logs) and self._term_sums["eval"]:
            logs.update(self._flush("eval", max(self._eval_batches, 1), prefix="eval_loss_"))
            self._eval_batches = 0
        super().log(logs, start_time)

    def _flush(self, mode: str, count: int, prefix: str) -> dict[str, float]:
        names = sorted(self._term_sums[mode])
        values = torch.stack([torch.as_tensor(self._term_sums[mode][n], device=self.args.device) for n in names])
        values = self.accelerator.reduce(values, reduction="mean") / count
        self._term_sums[mode] = {}
        return {f"{prefix}{n}": v for n, v in zip(names, values.tolist())}
