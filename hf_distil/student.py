"""Student surgery: build a shallower student from a teacher by copying a subset of its layers."""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Sequence

import torch
from transformers import (
    BertForMaskedLM,
    BertModel,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertModel,
    PreTrainedModel,
)
from transformers.integrations import is_deepspeed_zero3_enabled

from .errors import UsageError
from .models.layer_map import PROVENANCE_KEY, select_layers

_SAME_FLAG = "--student_architecture same on the command line"  # the recipes' flag for architecture

# BERT (teacher) name → DistilBERT (student) name, inside one transformer layer.
_BERT_TO_DISTILBERT_LAYER = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}
_BERT_TO_DISTILBERT_HEAD = {
    "cls.predictions.transform.dense": "vocab_transform",
    "cls.predictions.transform.LayerNorm": "vocab_layer_norm",
    "cls.predictions.decoder": "vocab_projector",
}


def init_student_from_teacher(
    teacher: PreTrainedModel,
    layers: Sequence[int] | str = "distilbert",
    num_layers: int | None = None,
    architecture: str = "distilbert",
) -> PreTrainedModel:
    """A student whose weights are copied from `teacher`, keeping only `layers` (see `select_layers`).

    architecture="distilbert" (BertForMaskedLM teachers): a DistilBertForMaskedLM without token types or
    pooler; from a bare BertModel (a sentence encoder), a bare DistilBertModel. BERT adds token-type row 0 to every
    token when types are all zero; that row is folded into the position embeddings, so a student keeping every
    layer computes exactly what the teacher computes.
    architecture="same": the teacher's own class (BERT, RoBERTa, ...) with fewer layers.
    The student's config records the teacher and the layers kept (`config.hf_distil`), for its model card.
    """
    chosen = select_layers(teacher.config.num_hidden_layers, layers, num_layers)
    with _gathered(teacher):
        student = _build_student(teacher, chosen, architecture)
        setattr(
            student.config,
            PROVENANCE_KEY,
            {
                "teacher": teacher.config.name_or_path or None,
                "teacher_layers": chosen,
                "teacher_num_layers": teacher.config.num_hidden_layers,
                "teacher_parameters": count_parameters(teacher),
            },
        )
    return student


def count_parameters(model: torch.nn.Module) -> int:
    """Every parameter once, at its full size: under ZeRO-3 `numel()` is the local shard (0 outside a gather)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


def kept_teacher_layers(student: PreTrainedModel) -> list[int] | None:
    """The 0-based teacher layers `init_student_from_teacher` copied into `student` (from its config), or None."""
    return (getattr(student.config, PROVENANCE_KEY, None) or {}).get("teacher_layers")


def _gathered(teacher: PreTrainedModel) -> contextlib.AbstractContextManager:
    """Under DeepSpeed ZeRO-3 a loaded teacher is sharded; gather it whole for the copy."""
    if is_deepspeed_zero3_enabled():
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(teacher.parameters()), modifier_rank=None)
    return contextlib.nullcontext()


def _build_student(teacher: PreTrainedModel, chosen: list[int], architecture: str) -> PreTrainedModel:
    if architecture == "same":
        return _same_architecture_student(teacher, chosen)
    if architecture != "distilbert":
        raise UsageError(f"architecture must be 'distilbert' or 'same', got {architecture!r}.")
    if not isinstance(teacher, (BertForMaskedLM, BertModel)):
        raise UsageError(
            f"a DistilBERT student is extracted from a BertForMaskedLM or a BertModel, got {type(teacher).__name__}; "
            f"pass architecture='same' ({_SAME_FLAG}) to keep the teacher's class."
        )
    return _distilbert_student(teacher, chosen)


def _distilbert_student(
    teacher: BertForMaskedLM | BertModel, chosen: list[int]
) -> DistilBertForMaskedLM | DistilBertModel:
    """A DistilBertForMaskedLM from a BERT masked LM; a bare DistilBertModel from a bare BertModel (a sentence
    encoder such as all-MiniLM-L6-v2, distilled through pooled terms, needs no head)."""
    tc = teacher.config
    if abs(tc.layer_norm_eps - 1e-12) > 1e-15 or getattr(tc, "position_embedding_type", "absolute") != "absolute":
        raise UsageError(
            "DistilBERT hard-codes LayerNorm eps 1e-12 and absolute positions; this teacher differs "
            f"(eps {tc.layer_norm_eps}, positions {getattr(tc, 'position_embedding_type', 'absolute')}): "
            f"pass architecture='same' ({_SAME_FLAG})."
        )
    if tc.hidden_act not in ("gelu", "relu"):
        raise UsageError(
            f"DistilBERT supports gelu or relu activations, the teacher uses {tc.hidden_act!r}: "
            f"pass architecture='same' ({_SAME_FLAG})."
        )
    config = DistilBertConfig(
        vocab_size=tc.vocab_size,
        max_position_embeddings=tc.max_position_embeddings,
        sinusoidal_pos_embds=False,  # the learned BERT positions are copied; sinusoids would overwrite them
        n_layers=len(chosen),
        n_heads=tc.num_attention_heads,
        dim=tc.hidden_size,
        hidden_dim=tc.intermediate_size,
        dropout=tc.hidden_dropout_prob,
        attention_dropout=tc.attention_probs_dropout_prob,
        activation=tc.hidden_act,
        initializer_range=tc.initializer_range,
        pad_token_id=tc.pad_token_id,
        tie_word_embeddings=tc.tie_word_embeddings,
    )
    masked_lm = isinstance(teacher, BertForMaskedLM)
    student = DistilBertForMaskedLM(config) if masked_lm else DistilBertModel(config)
    source = {k: v for k, v in teacher.state_dict().items() if not k.removeprefix("bert.").startswith("pooler.")}
    bert, distil = ("bert.", "distilbert.") if masked_lm else ("", "")
    token_type_row = source[f"{bert}embeddings.token_type_embeddings.weight"][0]
    mapped = {
        f"{distil}embeddings.word_embeddings.weight": source[f"{bert}embeddings.word_embeddings.weight"],
        f"{distil}embeddings.position_embeddings.weight": source[f"{bert}embeddings.position_embeddings.weight"]
        + token_type_row,
        f"{distil}embeddings.LayerNorm.weight": source[f"{bert}embeddings.LayerNorm.weight"],
        f"{distil}embeddings.LayerNorm.bias": source[f"{bert}embeddings.LayerNorm.bias"],
    }
    for new, old in enumerate(chosen):
        for bert_name, distil_name in _BERT_TO_DISTILBERT_LAYER.items():
            for param in ("weight", "bias"):
                mapped[f"{distil}transformer.layer.{new}.{distil_name}.{param}"] = source[
                    f"{bert}encoder.layer.{old}.{bert_name}.{param}"
                ]
    if not masked_lm:
        _load_checked(student, mapped)
        return student
    mapped["vocab_projector.bias"] = source["cls.predictions.bias"]
    for bert_name, distil_name in _BERT_TO_DISTILBERT_HEAD.items():
        mapped[f"{distil_name}.weight"] = source[f"{bert_name}.weight"]
        if distil_name != "vocab_projector":
            mapped[f"{distil_name}.bias"] = source[f"{bert_name}.bias"]
    _load_checked(student, mapped)
    return student


def _same_architecture_student(teacher: PreTrainedModel, chosen: list[int]) -> PreTrainedModel:
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(chosen)
    # A bare encoder built without its pooler (BertModel(..., add_pooling_layer=False)) keeps that shape.
    without_pooler = {"add_pooling_layer": False} if getattr(teacher, "pooler", False) is None else {}
    student = type(teacher)(config, **without_pooler)
    renumber = {old: new for new, old in enumerate(chosen)}
    pattern = re.compile(r"(?<=\.layer\.)(\d+)(?=\.)")
    mapped = {}
    for name, tensor in teacher.state_dict().items():
        match = pattern.search(name)
        if match is None:
            mapped[name] = tensor
        elif int(match.group(1)) in renumber:
            mapped[pattern.sub(str(renumber[int(match.group(1))]), name, count=1)] = tensor
    _load_checked(student, mapped)
    return student


@torch.no_grad()
def _load_checked(student: PreTrainedModel, mapped: dict[str, torch.Tensor]) -> None:
    """Copy `mapped` into the student, asserting that every key exists on both sides with the same shape."""
    target = student.state_dict()
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(set(mapped) - set(target))
    assert not missing and not unexpected, f"mismatched keys: missing {missing}, unexpected {unexpected}"
    for name, tensor in mapped.items():
        assert target[name].shape == tensor.shape, (
            f"{name}: student {tuple(target[name].shape)} ≠ teacher {tuple(tensor.shape)}"
        )
        target[name].copy_(tensor)
