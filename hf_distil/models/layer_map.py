"""Layer maps: which teacher layers a student keeps, and which student layer learns from which teacher layer.

One vocabulary of rule names for both settings, no name in both (so a name never means two maps):
`student_layers` takes a STUDENT_RULES name or teacher layer indices, `intermediate_layers` an INTERMEDIATE_RULES
name or (student, teacher) pairs. Pair indices follow transformers' `hidden_states`: 0 is the embedding output,
i the output of layer i; attention maps of layer i are `attentions[i - 1]`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedModel

from ..errors import UsageError
from . import heads
from .heads import attention_heads, has_attention_scores

# Written into a student's config.json: where its weights came from (which teacher, which layers).
PROVENANCE_KEY = "hf_distil"

# DistilBERT's extraction (reference scripts/extract_distilbert.py) keeps these of BERT-base's 12 layers.
DISTILBERT_LAYERS = (0, 2, 4, 7, 9, 11)
STUDENT_RULES = ("distilbert", "uniform", "even", "last")
# Named after the method they come from (TinyBERT, BERT-PKD), apart from STUDENT_RULES.
INTERMEDIATE_RULES = ("tinybert", "pkd_skip", "pkd_last", "init")
LAYER_TERMS = ("hidden_mse", "attention_mse", "pkd")


def _is_layer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(map(_is_layer, value))
    )


def check_student_layers(layers: str | Sequence[int]) -> str | list[int]:
    """`student_layers` as given, checked: a STUDENT_RULES name, or strictly increasing teacher layer indices
    (ints). Their range needs the teacher and is checked by `select_layers`."""
    form = (
        f"pass one of {STUDENT_RULES} or strictly increasing teacher layer indices, e.g. student_layers=[0, 2, 4] "
        "(--student_layers 0 2 4)"
    )
    if isinstance(layers, str):
        if layers in STUDENT_RULES:
            return layers
        raise UsageError(f"student_layers {layers!r} is not a layer rule; {form}.")
    if not isinstance(layers, Sequence) or not layers or not all(map(_is_layer, layers)):
        raise UsageError(f"student_layers {layers!r}: {form}.")
    if sorted(set(layers)) != list(layers):
        raise UsageError(f"student_layers {list(layers)} repeats or reorders layers; {form}.")
    return [int(layer) for layer in layers]


def check_intermediate_layers(layers: str | Sequence[Sequence[int]]) -> str | list[list[int]]:
    """`intermediate_layers` as given, checked: an INTERMEDIATE_RULES name, or (student, teacher) pairs of ints,
    returned as lists, [[1, 2], [2, 4]], which JSON records as they are (training_args.json, resume checks).
    Their ranges need the layer counts and are checked by `intermediate_pairs`."""
    form = (
        "pass (student, teacher) pairs, e.g. intermediate_layers=[(1, 2), (2, 4)] (--intermediate_layers 1:2 2:4; "
        f"0 is the embedding output), or one of {INTERMEDIATE_RULES}"
    )
    if isinstance(layers, str):
        if layers in INTERMEDIATE_RULES:
            return layers
        raise UsageError(f"intermediate_layers {layers!r} is not a layer rule; {form}.")
    if not isinstance(layers, Sequence) or not layers or not all(map(_is_pair, layers)):
        raise UsageError(f"intermediate_layers {layers!r}: {form}.")
    return [[int(student), int(teacher)] for student, teacher in layers]


def select_layers(num_teacher_layers: int, layers: Sequence[int] | str, num_layers: int | None = None) -> list[int]:
    """Resolve a layer map to sorted teacher layer indices.

    layers: explicit indices, or a rule for `num_layers` layers (default: half the teacher's, rounded up):
    "distilbert" (the default) is DistilBERT's 0, 2, 4, 7, 9, 11 for a 12-layer teacher and one layer out of
    two (0, 2, 4, ...) for any other depth, falling back to "uniform" for another student depth;
    "uniform" spreads them from the first to the last layer (12 → 6 gives DistilBERT's 0, 2, 4, 7, 9, 11),
    "even" takes one layer out of every L/n from the bottom (0, 2, 4, 6, 8, 10), "last" the top n.
    """
    if isinstance(layers, str):
        n = num_layers or (num_teacher_layers + 1) // 2
        if not 1 <= n <= num_teacher_layers:
            raise UsageError(f"num_layers={n} is outside 1..{num_teacher_layers} (the teacher's layer count).")
        if layers == "distilbert":
            if n == (num_teacher_layers + 1) // 2 and num_teacher_layers != len(DISTILBERT_LAYERS) * 2:
                return list(range(0, num_teacher_layers, 2))
            layers = "uniform"  # gives DISTILBERT_LAYERS for 12 → 6
        if layers == "uniform":
            chosen = torch.linspace(0, num_teacher_layers - 1, n).round().long().tolist() if n > 1 else [0]
        elif layers == "even":
            step = num_teacher_layers // n
            chosen = list(range(0, step * n, step))
        elif layers == "last":
            chosen = list(range(num_teacher_layers - n, num_teacher_layers))
        else:
            raise UsageError(f"unknown layer rule {layers!r}; use one of {STUDENT_RULES} or a list of layer indices.")
        return chosen
    chosen = [int(i) for i in layers]
    bad = [i for i in chosen if not 0 <= i < num_teacher_layers]
    if bad:
        raise UsageError(
            f"layers {bad} are out of range for a teacher with {num_teacher_layers} layers "
            f"(valid: 0..{num_teacher_layers - 1}); "
            f"pass a rule such as layers='uniform' to pick them for you."
        )
    if not chosen or sorted(set(chosen)) != chosen:
        raise UsageError(f"layers must be a non-empty, strictly increasing list of teacher layers, got {chosen}.")
    return chosen


def intermediate_pairs(
    num_student_layers: int,
    num_teacher_layers: int,
    rule: str | Sequence[Sequence[int]] = "tinybert",
    student_source: list[int] | None = None,
) -> list[tuple[int, int]]:
    """(student index, teacher index) pairs.

    "tinybert": student layer i ↔ teacher layer round(i·N/M) for i = 0..M, embeddings included.
    "pkd_skip" (BERT-PKD): the same spacing for layers 1..M−1 (the last layer is left to the logit loss).
    "pkd_last" (BERT-PKD): layers 1..M−1 ↔ the teacher's top layers N−M+1..N−1.
    "init": each student layer ↔ the teacher layer it was copied from (`student_source`, the 0-based teacher
    layers that `init_student_from_teacher` kept), embeddings included.
    Or explicit pairs: [(1, 2), (2, 4), (3, 6)].
    """
    m, n = num_student_layers, num_teacher_layers
    checked = check_intermediate_layers(rule)
    if checked == "tinybert":
        pairs = [(i, round(i * n / m)) for i in range(m + 1)]
    elif checked == "pkd_skip":
        pairs = [(i, round(i * n / m)) for i in range(1, m)]
    elif checked == "pkd_last":
        pairs = [(i, n - m + i) for i in range(1, m)]
    elif checked == "init":
        if not student_source or len(student_source) != m:
            raise UsageError(
                "intermediate_layers 'init' needs a student made by init_student_from_teacher (its config "
                "records the teacher layers it kept); pick tinybert, pkd_skip, pkd_last or explicit pairs."
            )
        pairs = [(0, 0), *((i + 1, layer + 1) for i, layer in enumerate(student_source))]
    else:
        pairs = [(s, t) for s, t in checked]
    bad = [(s, t) for s, t in pairs if not (0 <= s <= m and 0 <= t <= n)]
    if bad:
        raise UsageError(
            f"layer pairs {bad} fall outside student 0..{m} / teacher 0..{n} (0 is the embedding output)."
        )
    return pairs


class LayerPlan(NamedTuple):
    """What the intermediate-layer terms need from the two models, decided once at construction."""

    pairs: list[tuple[int, int]]  # (student, teacher) hidden-state indices; empty when no layer term is on
    eager_attention: bool  # attention probabilities are compared: SDPA returns none, eager attention does


def plan_layers(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    rule: str | Sequence[Sequence[int]],
    weights: dict[str, float],
    attention_maps: str,
    student_source: list[int] | None = None,
) -> LayerPlan:
    """The layer pairs of `rule` and the attention implementation the terms of `weights` need; reads the models'
    configs only. Refuses, in one line, attention terms between different head counts, and pre-softmax
    scores from a model whose layers `heads.capture_attention_scores` does not know."""
    if teacher is None or not any(weights[t] > 0 for t in LAYER_TERMS):
        return LayerPlan([], False)
    s_layers = getattr(student.config, "n_layers", None) or student.config.num_hidden_layers
    pairs = intermediate_pairs(s_layers, teacher.config.num_hidden_layers, rule, student_source)
    if weights["attention_mse"] == 0:
        return LayerPlan(pairs, False)
    s_heads = getattr(student.config, "n_heads", None) or student.config.num_attention_heads
    if s_heads != teacher.config.num_attention_heads:
        raise UsageError(
            f"alpha_attention_mse compares attention maps head by head, but the student has {s_heads} heads "
            f"and the teacher {teacher.config.num_attention_heads}."
        )
    if attention_maps == "scores" and not (
        heads.has_attention_scores(student) and heads.has_attention_scores(teacher)
    ):
        raise UsageError(
            "attention_maps='scores' knows BERT, RoBERTa and DistilBERT layers only; "
            "use attention_maps='probabilities'."
        )
    return LayerPlan(pairs, attention_maps == "probabilities")


class RelationPlan(NamedTuple):
    """Which layers the relation term compares (1-based, as transformers' `hidden_states`) and in how many heads."""

    student_layer: int
    teacher_layer: int
    heads: int


def plan_relation(
    student: PreTrainedModel, teacher: PreTrainedModel, heads: int | None, teacher_layer: int
) -> RelationPlan:
    """The student's last layer, `teacher_layer` (negative counts from the end: -1 is the last) and A_r = `heads`
    (default: the teacher's attention heads), checked against both models in one `UsageError` line each."""
    for role, model in (("student", student), ("teacher", teacher)):
        if not has_attention_scores(model):
            raise UsageError(
                f"alpha_relation reads the query/key/value projections of BERT, RoBERTa and DistilBERT layers; "
                f"the {role} is a {model.config.model_type!r} model: use one of those or set alpha_relation=0."
            )
    depth = teacher.config.num_hidden_layers
    layer = teacher_layer + depth + 1 if teacher_layer < 0 else teacher_layer
    if not 1 <= layer <= depth:
        raise UsageError(
            f"relation_teacher_layer {teacher_layer} is outside the teacher's {depth} layers; pass 1..{depth}, "
            f"or -1..-{depth} from the end (-1, the default, is the last)."
        )
    heads = heads or attention_heads(teacher)
    s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
    if s_width % heads or t_width % heads:
        common = math.gcd(s_width, t_width)
        raise UsageError(
            f"relation_heads {heads} must divide both hidden sizes, student {s_width} and teacher {t_width}; "
            f"pick a divisor of {common}."
        )
    return RelationPlan(student.config.num_hidden_layers, layer, heads)
