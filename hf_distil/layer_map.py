"""Which student layer learns from which teacher layer, for the intermediate-layer losses.
from .errors import UsageError

Indices follow transformers' `hidden_states`: 0 is the embedding output, i the output of layer i.
Attention maps of layer i are `attentions[i - 1]`.
"""

from __future__ import annotations

INTERMEDIATE_RULES = ("uniform", "skip", "last")


def intermediate_pairs(num_student_layers: int, num_teacher_layers: int, rule: str = "uniform") -> list[tuple[int, int]]:
    """(student index, teacher index) pairs.

    "uniform" (TinyBERT): student layer i ↔ teacher layer round(i·N/M) for i = 0..M, embeddings included.
    "skip" (BERT-PKD): the same spacing for layers 1..M−1 (the last layer is left to the logit loss).
    "last" (BERT-PKD): layers 1..M−1 ↔ the teacher's top layers N−M+1..N−1.
    Or explicit pairs "1:2,2:4,3:6".
    """
    m, n = num_student_layers, num_teacher_layers
    if rule == "uniform":
        pairs = [(i, round(i * n / m)) for i in range(m + 1)]
    elif rule == "skip":
        pairs = [(i, round(i * n / m)) for i in range(1, m)]
    elif rule == "last":
        pairs = [(i, n - m + i) for i in range(1, m)]
    elif ":" in rule:
        try:
            pairs = [tuple(int(x) for x in item.split(":")) for item in rule.split(",")]
        except ValueError:
            raise UsageError(f"intermediate layer pairs must look like '1:2,2:4', got {rule!r}.") from None
    else:
        raise UsageError(f"unknown intermediate layer rule {rule!r}; use one of {INTERMEDIATE_RULES} or pairs like '1:2,2:4'.")
    bad = [(s, t) for s, t in pairs if not (0 <= s <= m and 0 <= t <= n)]
    if bad:
        raise UsageError(f"layer pairs {bad} fall outside student 0..{m} / teacher 0..{n} (0 is the embedding output).")
    return pairs
