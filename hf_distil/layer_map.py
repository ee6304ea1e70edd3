"""Which student layer learns from which teacher layer, for the intermediate-layer losses.

Indices follow transformers' `hidden_states`: 0 is the embedding output, i the output of layer i.
Attention maps of layer i are `attentions[i - 1]`.
"""

from __future__ import annotations

from .errors import UsageError

INTERMEDIATE_RULES = ("uniform", "skip", "last")


def parse_intermediate_rule(rule: str) -> str | list[tuple[int, int]]:
    """A rule name, or the (student, teacher) pairs of "1:2,2:4"; anything else is one `UsageError` line.

    Checked when the arguments are parsed (`DistillationArguments`), before any model loads; the ranges
    need the layer counts and are checked by `intermediate_pairs`.
    """
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


def intermediate_pairs(num_student_layers: int, num_teacher_layers: int, rule: str = "uniform") -> list[tuple[int, int]]:
    """(student index, teacher index) pairs.

    "uniform" (TinyBERT): student layer i ↔ teacher layer round(i·N/M) for i = 0..M, embeddings included.
    "skip" (BERT-PKD): the same spacing for layers 1..M−1 (the last layer is left to the logit loss).
    "last" (BERT-PKD): layers 1..M−1 ↔ the teacher's top layers N−M+1..N−1.
    Or explicit pairs "1:2,2:4,3:6".
    """
    m, n = num_student_layers, num_teacher_layers
    parsed = parse_intermediate_rule(rule)
    if parsed == "uniform":
        pairs = [(i, round(i * n / m)) for i in range(m + 1)]
    elif parsed == "skip":
        pairs = [(i, round(i * n / m)) for i in range(1, m)]
    elif parsed == "last":
        pairs = [(i, n - m + i) for i in range(1, m)]
    else:
        pairs = parsed
    bad = [(s, t) for s, t in pairs if not (0 <= s <= m and 0 <= t <= n)]
    if bad:
        raise UsageError(f"layer pairs {bad} fall outside student 0..{m} / teacher 0..{n} (0 is the embedding output).")
    return pairs
