"""What both trainers share about their loss terms: each term divided by its count over the whole accumulated and
gathered batch, so that accumulation and data parallelism give the gradients of one large batch; and the terms
logged through Trainer's `log`, so that TensorBoard, W&B and `log_history` all get them (loss_<term> in training,
eval_loss_<term> in evaluation), averaged like Trainer's own loss."""

from __future__ import annotations

import math
from typing import Any

import torch


class BatchTermsMixin:
    """Mixed in before `Trainer`. A trainer names its counts (`count_names`) and says what one micro-batch holds of
    each (`_counts_of`); `get_batch_samples` sums them over the update and the processes and hands them to
    `compute_loss` as Trainer's `num_items_in_batch`. `compute_loss` hands each micro-batch's unweighted terms to
    `_global_shares`, then `_accumulate_terms`; `log` adds their means since the last log, reduced over processes.

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

    count_names: tuple[str, ...] = ()

    def _counts_of(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor | None:
        """What one micro-batch holds of each count, a long tensor in `count_names` order; None: no counts."""
        raise NotImplementedError

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """Trainer's micro-batches of one update, with our denominators in place of its single token count: they
        reach `compute_loss` unchanged, as `num_items_in_batch`, a dict {count name: tensor}."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batch_samples, self._term_counts(batch_samples, device)

    def _term_counts(self, batch_samples: list, device: torch.device) -> dict[str, torch.Tensor] | None:
        """Denominators of every term over the accumulated batch (and all processes)."""
        counts = [self._counts_of(batch, device) for batch in batch_samples]
        if not counts or counts[0] is None:
            return None
        total = torch.stack(counts).sum(0)
        if self._gathers_counts:
            total = self.accelerator.gather(total.unsqueeze(0)).sum(0)
        return dict(zip(self.count_names, total))

    @property
    def _gathers_counts(self) -> bool:
        return self.args.average_tokens_across_devices and self.args.world_size > 1

    def _global_shares(
        self, total: torch.Tensor, terms: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Terms divided by gathered counts are shares of the global batch; DDP averages gradients over processes,
        so undo that mean."""
        if not self._gathers_counts:
            return total, terms
        processes = self.accelerator.num_processes
        return total * processes, {name: value * processes for name, value in terms.items()}

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
