"""The learned width projection of the hidden-state terms when the student is narrower than the teacher."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from ..errors import UsageError

PROJECTION_FILE = "hidden_projection.safetensors"


class HiddenProjection(nn.Linear):
    """Student hidden width → teacher hidden width (TinyBERT's W_h), trained with the student.

    It lives outside the student's weights: what a run saves is a plain model of the student's class, which
    transformers loads and the exports read as is; the projection only serves the loss (TinyBERT drops it after
    distillation), so it is saved beside the student as PROJECTION_FILE, for resuming. Being outside the
    DDP-wrapped student, it does here what DDP does for the student's weights: the same initial values on every
    process, gradients averaged once per update.
    """

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__(student_width, teacher_width)
        self._processes = 1
        self._averaged_at = -1  # the update whose gradients were last averaged

    @classmethod
    def between(cls, student: PreTrainedModel, teacher: PreTrainedModel) -> HiddenProjection | None:
        """A projection when the hidden widths differ, else None (the states compare as they are)."""
        s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
        return cls(s_width, t_width) if s_width != t_width else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """In the projection's own dtype: the loss maths run in fp32, the states come in autocast's fp16/bf16."""
        return super().forward(hidden.to(self.weight.dtype))

    def place(self, device: torch.device, num_processes: int, sharded: bool) -> None:
        """On the student's device, and the same on every process (DDP broadcasts only the model's weights)."""
        if sharded:
            raise UsageError(
                "a learned hidden-size projection is not supported under DeepSpeed or FSDP yet; "
                "use DDP or a student of the teacher's width."
            )
        self.to(device)
        self._processes = num_processes
        if num_processes > 1:
            for tensor in self.parameters():
                torch.distributed.broadcast(tensor.data, src=0)

    def average_gradients(self, update: int) -> None:
        """Mean of the gradients over processes, once for `update` (the trainer asks before clipping and again
        at the optimizer's pre-step hook), as DDP averages the student's."""
        if self._processes == 1 or self._averaged_at == update:
            return
        self._averaged_at = update
        for p in self.parameters():
            if p.grad is None:  # a rank without this term's gradient still takes part in the mean
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad /= self._processes

    def add_to(self, optimizer: torch.optim.Optimizer, current_update: Callable[[], int]) -> None:
        """Train with the student's optimizer (no weight decay), gradients averaged before each of its steps."""
        if any(p is q for group in optimizer.param_groups for p in group["params"] for q in self.parameters()):
            return
        optimizer.add_param_group({"params": list(self.parameters()), "weight_decay": 0.0})
        optimizer.register_step_pre_hook(lambda *_: self.average_gradients(current_update()))

    def save(self, folder: str | Path) -> None:
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(weights, str(Path(folder) / PROJECTION_FILE))

    def load(self, folder: str | Path, device: torch.device) -> None:
        """The projection saved beside a checkpoint, if it holds one."""
        path = Path(folder) / PROJECTION_FILE
        if path.exists():
            self.load_state_dict(load_file(str(path), device=str(device)))
