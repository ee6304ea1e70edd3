"""The teacher, prepared in one place: loaded, frozen, placed beside the student, run without grad."""

from __future__ import annotations

import copy
from typing import Any

from accelerate import Accelerator
from transformers import AutoModelForMaskedLM, PreTrainedModel
from transformers.utils import logging

from .errors import UsageError

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
