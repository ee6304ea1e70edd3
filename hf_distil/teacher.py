"""The teacher, prepared in one place: loaded, frozen, placed beside the student, run without grad."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from transformers import AutoModelForMaskedLM, PreTrainedModel
from transformers.utils import logging

from . import heads
from .errors import UsageError
from .losses import mix_teacher_logits
from .teacher_cache import CACHE_COLUMNS

logger = logging.get_logger(__name__)


def load_teacher(name_or_path: str, **from_pretrained_kwargs: Any) -> PreTrainedModel:
    """A Hub id (e.g. "bert-base-uncased") or a local directory holding a masked-LM checkpoint."""
    return AutoModelForMaskedLM.from_pretrained(name_or_path, **from_pretrained_kwargs)


def check_compatible(student: PreTrainedModel, teacher: PreTrainedModel, needs_hidden: bool) -> None:
    """Fail at construction, in one line, when the teacher cannot teach this student."""
    s_vocab, t_vocab = student.config.vocab_size, teacher.config.vocab_size
    if s_vocab != t_vocab:
        raise UsageError(
            f"teacher vocab {t_vocab} ≠ student vocab {s_vocab}; build the student with "
            "init_student_from_teacher(teacher) or pick a teacher with the same tokenizer."
        )
    s_hidden, t_hidden = student.config.hidden_size, teacher.config.hidden_size
    if needs_hidden and s_hidden != t_hidden:
        raise UsageError(
            f"alpha_cos > 0 compares hidden states, but teacher hidden size {t_hidden} ≠ student {s_hidden}; "
            "set alpha_cos=0 or use a student of the teacher's width."
        )


def prepare_teacher(teacher: PreTrainedModel, accelerator: Accelerator) -> PreTrainedModel:
    """Freeze the teacher and place it on the student's device.

    `eval()` switches off dropout in every BERT-family layer (attention-probability dropout included, as
    transformers passes dropout=0.0 to SDPA outside training); `requires_grad_(False)` keeps it out of
    autograd, and it never reaches the optimizer, which Trainer builds from the student alone.
    """
    teacher.eval()
    teacher.requires_grad_(False)
    if accelerator.state.deepspeed_plugin is not None:
        return _deepspeed_inference_engine(teacher, accelerator.state.deepspeed_plugin.deepspeed_config)
    return accelerator.prepare_model(teacher, evaluation_mode=True)


def _deepspeed_inference_engine(teacher: PreTrainedModel, training_config: dict) -> Any:
    """Under ZeRO-3 the teacher is sharded like the student (never whole on every rank); under ZeRO-0/1/2
    each rank keeps a full replica (stage 0). No optimizer, no scheduler: it never trains.

    A plain forward of a ZeRO-3-partitioned model fails ("'weight' must be 2-D"); the engine's hooks
    gather each layer's shards for its forward. Same approach as TRL's `prepare_deepspeed`.
    """
    import deepspeed

    config = copy.deepcopy(training_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage", 0) == 3:
        hidden = teacher.config.hidden_size
        for key, value in (
            ("reduce_bucket_size", hidden * hidden),
            ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
            ("stage3_param_persistence_threshold", 10 * hidden),
        ):
            if zero.get(key) == "auto":
                zero[key] = value
    else:
        config["zero_optimization"] = {"stage": 0}
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine


class TeacherSignals(NamedTuple):
    """What the loss reads from the teacher side for one batch (None where no active term needs it)."""

    hidden: torch.Tensor | None  # (B, L, H) the first teacher's last hidden state
    row_logits: torch.Tensor | None  # (N, V) at the selected rows; several teachers: their weighted mixture
    topk: tuple[torch.Tensor, torch.Tensor] | None  # cached (ids, values), (N, k), in place of row_logits
    states: tuple[torch.Tensor, ...] | None  # embeddings + every layer of the first teacher
    attention: dict[int, torch.Tensor] | None  # {layer (1-based): maps or pre-softmax scores}


class Teachers:
    """The teacher side of the loss, whatever it is: one live model, several whose softened distributions are
    mixed with `weights` for the logit terms (hidden-state and layer terms come from the first), or top-k logits
    cached in the batch (recipes/cache_teacher.py) standing in for L_ce's live teacher.

    Each model is prepared once (`prepare_teacher`) and runs under `torch.no_grad()`.
    """

    def __init__(self, models: list[PreTrainedModel], weights: list[float], accelerator: Accelerator) -> None:
        self.models = [prepare_teacher(model, accelerator) for model in models]
        self.weights = weights
        self.accelerator = accelerator

    def __bool__(self) -> bool:
        return bool(self.models)

    @property
    def first(self) -> Any:
        return self.models[0] if self.models else None

    @torch.no_grad()
    def signals(
        self,
        inputs: dict[str, torch.Tensor],
        rows: torch.Tensor,
        *,
        logits: bool,
        hidden: bool,
        states: bool = False,
        maps: bool = False,
        score_layers: list[int] | None = None,
        temperature: float = 1.0,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> TeacherSignals:
        """Run the teacher(s) for what is asked: `logits` at `rows` (B, L) bool, the last `hidden` state, every
        layer's `states`, attention `maps` or the pre-softmax scores of `score_layers`."""
        topk = None
        if cache:
            ids, values = cache[CACHE_COLUMNS[0]], cache[CACHE_COLUMNS[1]]
            if int(rows.sum()) != len(ids):
                raise UsageError(
                    f"the teacher cache holds {len(ids)} rows for this batch but {int(rows.sum())} are selected; "
                    "build the cache with the same restrict_ce_to_mask setting."
                )
            topk = (ids, values)
        live_logits = logits and topk is None
        if not self.models or not (live_logits or hidden or states or maps or score_layers):
            return TeacherSignals(None, None, topk, None, None)
        first = self._run(self.first, inputs, rows, states, maps, score_layers)
        row_logits = first.row_logits if live_logits else None
        if live_logits and len(self.models) > 1:
            others = [self._run(model, inputs, rows).row_logits for model in self.models[1:]]
            row_logits = mix_teacher_logits([row_logits, *others], self.weights, temperature)
        return TeacherSignals(first.hidden, row_logits, topk, first.hidden_states, first.attention_by_layer)

    def _run(self, model: Any, inputs: dict[str, torch.Tensor], rows: torch.Tensor, *options: Any) -> heads.LMOutputs:
        split = heads.can_split(self.accelerator.unwrap_model(model))
        return heads.hidden_and_row_logits(model, inputs, rows, split, *options)
