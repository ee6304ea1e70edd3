"""What the model card of a distilled student states that training knows: the pair, the loss, the arguments and
the log history, as the hub's typed `CardReport`. What a run measures afterwards (held-out results, speed) is
added by whoever measured it."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel, TrainerState

from .config import DistillationArguments
from .hub.report import CardReport, Masking
from .losses.terms import LOSS_TERMS
from .models.layer_map import PROVENANCE_KEY
from .models.vocabulary import kept_teacher_ids
from .student import count_parameters
from .teachers import base_model_of


def training_card_report(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    teacher_name: str | None,
    args: DistillationArguments,
    state: TrainerState,
) -> CardReport:
    """The card's report from the student (with what `init_student_from_teacher` recorded in its config), the
    teacher, the arguments and Trainer's state."""
    provenance: dict[str, Any] = getattr(student.config, PROVENANCE_KEY, None) or {}
    teacher = getattr(teacher, "module", teacher)  # a DeepSpeed engine under ZeRO
    teacher_name = teacher_name or provenance.get("teacher")
    teacher_layers, teacher_parameters = provenance.get("teacher_num_layers"), provenance.get("teacher_parameters")
    if teacher is not None:
        teacher_layers = teacher_layers or teacher.config.num_hidden_layers
        teacher_parameters = teacher_parameters or count_parameters(teacher)
    return CardReport(
        teacher=teacher_name,
        base_model=base_model_of(teacher_name),
        student_layers=getattr(student.config, "num_hidden_layers", None),
        teacher_layers=teacher_layers,
        student_parameters=count_parameters(student),
        teacher_parameters=teacher_parameters,
        layer_map=provenance.get("teacher_layers"),
        vocabulary_size=len(kept) if (kept := kept_teacher_ids(student)) else None,
        teacher_vocabulary_size=provenance.get("teacher_vocabulary_size") if kept else None,
        loss_weights={term.description: weight for term in LOSS_TERMS if (weight := getattr(args, term.weight_field))},
        temperature=args.temperature,
        restrict_ce_to_mask=args.restrict_ce_to_mask,
        masking=Masking(args.mlm_probability, args.mask_replace_prob, args.random_replace_prob, args.mlm_smoothing),
        sequences_per_update=args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        optimizer_steps=state.global_step,
        learning_rate=args.learning_rate,
        log_history=list(state.log_history),
    )
