"""GradCache (Gao et al. 2021, arXiv:2101.06983) for the in-batch similarity KL, whose items depend on every sentence
of the accumulated and gathered batch: a micro-batch alone cannot compute its share or its gradient.

Before an update, `SimilarityCacheMixin.get_batch_samples` embeds every micro-batch without grad (student and
teacher), gathers the embeddings over the processes, takes the KL and its gradient at the student's embeddings once,
and leaves each micro-batch a `SimilarityShare`. `compute_loss` then runs the student again with grad, replaying the
random state of the first pass (the same dropout), and `losses.pooled.cached_term` carries the whole term's gradient.
The cost is one extra student forward without grad per micro-batch.

Only the teacher's sentence embeddings are kept from the first pass. The teacher's token-level outputs (logits,
hidden states, attention maps), which the other terms read, are computed again in `compute_loss` rather than held
for every micro-batch of the update: those grow with the accumulation (a 4K-sequence update of soft targets would
hold tens of GB), while one more teacher forward costs what the first did."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from .data.sentences import split_teacher_inputs
from .losses.pooled import similarity_kl_and_gradient
from .models import heads

SIMILARITY_KEY = "_hf_distil_similarity"  # a micro-batch's SimilarityShare, among its inputs


@dataclass
class RandomState:
    """The random state of the CPU and the accelerator at one point: replayed, the student's forward draws the
    same dropout again (GradCache's RandContext)."""

    cpu: torch.Tensor
    device: torch.device
    accelerator: torch.Tensor | None

    @classmethod
    def capture(cls, device: torch.device) -> RandomState:
        module = torch.get_device_module(device.type) if device.type != "cpu" else None
        return cls(torch.get_rng_state(), device, module.get_rng_state(device) if module else None)

    @contextlib.contextmanager
    def replayed(self) -> Any:
        devices = [self.device] if self.accelerator is not None else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.set_rng_state(self.cpu)
            if self.accelerator is not None:
                torch.get_device_module(self.device.type).set_rng_state(self.accelerator, self.device)
            yield


@dataclass
class SimilarityShare:
    """What one micro-batch of an update needs of the similarity KL computed over the whole update (and every
    process): its share of the value, the gradient at its student embeddings, its teacher embeddings, and the
    random state its student forward started from. A plain object (not a tensor or a tuple): Trainer's
    `_prepare_inputs` passes it through unchanged."""

    share: torch.Tensor
    gradient: torch.Tensor
    teacher: torch.Tensor
    random_state: RandomState


class SimilarityCacheMixin:
    """Mixed in before `BatchTermsMixin` and `Trainer` by `DistillationTrainer`, whose `teachers`, `pooling`,
    `_active` and `_gathers_counts` it reads."""

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """The update's micro-batches and counts; with the in-batch similarity KL, each micro-batch also carries its
        `SimilarityShare` under `SIMILARITY_KEY`."""
        batch_samples, counts = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples and "similarity_kl" in self._active and self.teacher is not None:
            self._share_similarity(batch_samples)
        return batch_samples, counts

    @torch.no_grad()
    def _share_similarity(self, batch_samples: list[dict[str, Any]]) -> None:
        model = self.model_wrapped
        model.train()  # as training_step will: the same dropout
        split = model is self.model and heads.can_encode_alone(self.model)
        students, teachers, states = [], [], []
        for batch in batch_samples:
            inputs = self._prepare_inputs(batch)
            teacher_inputs = split_teacher_inputs(inputs)
            mask = inputs.setdefault("attention_mask", torch.ones_like(inputs["input_ids"]))
            states.append(RandomState.capture(self.args.device))
            with self.compute_loss_context_manager():
                hidden = heads.hidden_and_row_logits(model, inputs, None, split).hidden
                teacher = self.teachers.signals(teacher_inputs, None, logits=False, hidden=True)
            with torch.autocast(device_type=mask.device.type, enabled=False):
                students.append(self.pooling(hidden, mask))
                teachers.append(self.pooling(teacher.hidden, teacher_inputs["attention_mask"]))
        local = torch.cat(students)
        everyone, start = self._gathered_rows(local)
        loss, gradient = similarity_kl_and_gradient(
            everyone, self._gathered_rows(torch.cat(teachers))[0], self.args.similarity_temperature, len(everyone)
        )
        for batch, embeddings, teacher, state, rows in zip(
            batch_samples,
            students,
            teachers,
            states,
            gradient[start : start + len(local)].split([len(e) for e in students]),
        ):
            batch[SIMILARITY_KEY] = SimilarityShare(loss * len(embeddings) / len(everyone), rows, teacher, state)

    def _gathered_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, int]:
        """This process's rows (N_p, H) and those of the others, in rank order, with where its own start; only this
        process's when the counts are not gathered either (average_tokens_across_devices=False)."""
        if not self._gathers_counts:
            return rows, 0
        sizes = self.accelerator.gather(torch.tensor([len(rows)], device=rows.device)).tolist()
        padded = self.accelerator.gather(self.accelerator.pad_across_processes(rows, dim=0))
        most = max(sizes)
        parts = [padded[rank * most : rank * most + n] for rank, n in enumerate(sizes)]
        return torch.cat(parts), sum(sizes[: self.accelerator.process_index])
