"""Which student layer learns from which teacher layer, for the intermediate-layer losses.

Indices follow transformers' `hidden_states`: 0 is the embedding output, i the output of layer i.
Attention maps of layer i are `attentions[i - 1]`.
"""

from __future__ import annotations

from transformers.utils import logging

from .errors import UsageError

logger = logging.get_logger(__name__)

# Named after the method they come from, so that no name means one map here and another in
# student_layers (where "uniform" and "last" choose which teacher layers the student keeps).
INTERMEDIATE_RULES = ("tinybert", "pkd_skip", "pkd_last", "init")
# hf_distil 0.1's names, still read (with a warning): the same maps.
_RENAMED = {"uniform": "tinybert", "skip": "pkd_skip", "last": "pkd_last"}


def parse_intermediate_rule(rule: str) -> str | list[tuple[int, int]]:
    """A rule name, or the (student, teacher) pairs of "1:2,2:4"; anything else is one `UsageError` line.

    Checked when the arguments are parsed (`DistillationArguments`), before any model loads; the ranges
    need the layer counts and are checked by `intermediate_pairs`.
    """
    if rule in _RENAMED:
        logger.warning(
            f"intermediate_layers {rule!r} is now called {_RENAMED[rule]!r} (student_layers has its own "
            f"{rule!r}); the map is the same."
        )
        return _RENAMED[rule]
    if rule in INTERMEDIATE_RULES:
        return rule
    expected = f"write student:teacher pairs like 1:2,2:4 (0 is the embedding output) or one of {INTERMEDIATE_RULES}"
    if ":" not in rule:
        raise UsageError(f"--intermediate_layers {rule!r}: unknown intermediate layer rule; {expected}.")
    pairs = []
    for item in rule.split(","):
        parts = [part.strip() for part in item.split(":")]
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            bad = f"layer pairs must look like '1:2,2:4', got {item!r}"
            raise UsageError(f"--intermediate_layers {rule!r}: {bad}; {expected}.")
        pairs.append((int(parts[0]), int(parts[1])))
    return pairs


def intermediate_pairs(
    num_student_layers: int, num_teacher_layers: int, rule: str = "tinybert", student_source: list[int] | None = None
) -> list[tuple[int, int]]:
    """(student index, teacher index) pairs.

    "tinybert": student layer i ↔ teacher layer round(i·N/M) for i = 0..M, embeddings included.
    "pkd_skip" (BERT-PKD): the same spacing for layers 1..M−1 (the last layer is left to the logit loss).
    "pkd_last" (BERT-PKD): layers 1..M−1 ↔ the teacher's top layers N−M+1..N−1.
    "init": each student layer ↔ the teacher layer it was copied from (`student_source`, the 0-based teacher
    layers that `init_student_from_teacher` kept), embeddings included.
    Or explicit pairs "1:2,2:4,3:6".
    """
    m, n = num_student_layers, num_teacher_layers
    parsed = parse_intermediate_rule(rule)
    if parsed == "tinybert":
        pairs = [(i, round(i * n / m)) for i in range(m + 1)]
    elif parsed == "pkd_skip":
        pairs = [(i, round(i * n / m)) for i in range(1, m)]
    elif parsed == "pkd_last":
        pairs = [(i, n - m + i) for i in range(1, m)]
    elif parsed == "init":
        if not student_source or len(student_source) != m:
            raise UsageError(
                "intermediate_layers 'init' needs a student made by init_student_from_teacher (its config "
                "records the teacher layers it kept); pick tinybert, pkd_skip, pkd_last or explicit pairs."
            )
        pairs = [(0, 0), *((i + 1, layer + 1) for i, layer in enumerate(student_source))]
    else:
        pairs = parsed
    bad = [(s, t) for s, t in pairs if not (0 <= s <= m and 0 <= t <= n)]
    if bad:
        raise UsageError(
            f"layer pairs {bad} fall outside student 0..{m} / teacher 0..{n} (0 is the embedding output)."
        )
    return pairs
