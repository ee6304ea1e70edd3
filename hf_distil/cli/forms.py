"""The command line's words for the settings that Python takes typed, read once, here: `1:2 2:4` → [[1, 2], [2, 4]],
`0 2 4` → [0, 2, 4], JSON text → a mapping. The argument classes then check the typed values, whichever way
they came (Python, a YAML run config, these words)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import UsageError
from ..models.layer_map import INTERMEDIATE_RULES, STUDENT_RULES


class Form(NamedTuple):
    """How argparse collects a setting's words (`nargs`), and how they become its typed value."""

    nargs: str | None
    read: Callable[[Any], Any]


def _words(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


def _rule(words: list) -> str | None:
    """The rule name when the words are one name (`tinybert`), else None."""
    return words[0] if len(words) == 1 and isinstance(words[0], str) and words[0].isidentifier() else None


def read_layer_pairs(value: Any) -> str | list:
    """--intermediate_layers: one rule name, or student:teacher pairs (`1:2 2:4` → [[1, 2], [2, 4]]). Items that
    are not words (a YAML list of pairs) pass as they are, for DistillationArguments to check."""
    words = _words(value)
    if _rule(words):
        return words[0]
    return [_pair(word, words) if isinstance(word, str) else word for word in words]


def _pair(word: str, words: list) -> list[int]:
    student, colon, teacher = word.partition(":")
    if not (colon and student.isdecimal() and teacher.isdecimal()):
        raise UsageError(
            f"--intermediate_layers {' '.join(map(str, words))}: {word!r} is not a student:teacher pair of layer "
            f"indices; write --intermediate_layers 1:2 2:4 (0 is the embedding output) or one rule of "
            f"{INTERMEDIATE_RULES}."
        )
    return [int(student), int(teacher)]


def read_layer_indices(value: Any) -> str | list:
    """--student_layers: one rule name, or teacher layer indices (`0 2 4` → [0, 2, 4]); non-words pass as they are."""
    words = _words(value)
    if _rule(words):
        return words[0]
    for word in words:
        if isinstance(word, str) and not word.isdecimal():
            raise UsageError(
                f"--student_layers {' '.join(map(str, words))}: {word!r} is not a layer index; write teacher layers "
                f"separated by spaces, e.g. --student_layers 0 2 4, or one rule of {STUDENT_RULES}."
            )
    return [int(word) if isinstance(word, str) else word for word in words]


def read_schedules(value: Any) -> Any:
    """--loss_schedules: JSON text → {name: [start, end, kind]}; a mapping (YAML) or None passes as it is."""
    if not isinstance(value, str):
        return value
    form = 'write \'{"temperature": [4, 1, "cosine"], "alpha_mlm": [0, 2]}\''

    def no_repeats(items: list[tuple[str, Any]]) -> dict:
        names = [name for name, _ in items]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # json.loads would keep the last one without a word
            raise UsageError(f"--loss_schedules {value!r}: {', '.join(twice)} is scheduled twice; {form}.")
        return dict(items)

    try:
        schedules = json.loads(value, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as error:
        raise UsageError(f"--loss_schedules {value!r} is not valid JSON ({error.msg}); {form}.") from None
    if not isinstance(schedules, dict):
        raise UsageError(f"--loss_schedules {value!r} is not a JSON object {{name: [start, end, kind]}}; {form}.")
    return schedules


# The settings whose command-line words are not their Python values, by field name.
FORMS = {
    "intermediate_layers": Form("+", read_layer_pairs),
    "student_layers": Form("+", read_layer_indices),
    "loss_schedules": Form(None, read_schedules),
}
