"""Temperature and loss-weight schedules: a value moving from a start to an end over training."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from .terms import LOSS_TERMS

SCHEDULE_KINDS = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Schedule:
    """A value moving from `start` to `end` over training: constant, linear, or half-cosine."""

    start: float
    end: float
    kind: str = "linear"

    def at(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        shape = {"constant": 0.0, "linear": p, "cosine": (1 - math.cos(math.pi * p)) / 2}[self.kind]
        return self.start + (self.end - self.start) * shape


def parse_schedules(schedules: Mapping[str, Sequence | str] | str | None) -> dict[str, Schedule]:
    """{name: [start, end, kind]} (or the string "name=start:end[:kind],..." of hf_distil 0.1) → {name: Schedule};
    the kind defaults to linear.

    Anything else is one `UsageError` line naming --loss_schedules, the item and the expected form (called
    when the arguments are parsed, so a typo fails before any model loads).
    """
    if not schedules:
        return {}
    if isinstance(schedules, Mapping):
        items = [
            f"{name}={spec if isinstance(spec, str) else ':'.join(map(str, spec))}" for name, spec in schedules.items()
        ]
        text = json.dumps(schedules)
    else:
        text = schedules
        items = [part.strip() for part in text.split(",")]
    names = ("temperature", *(term.weight_field for term in LOSS_TERMS))
    form = f"write {{name: [start, end, kind]}}, name temperature or an alpha_*, kind one of {SCHEDULE_KINDS}"
    schedules = {}
    for item in filter(None, items):
        name, _, spec = item.partition("=")
        fields = spec.split(":")
        if name not in names or len(fields) not in (2, 3):
            raise UsageError(f"--loss_schedules {text!r}: bad loss schedule {item!r}; {form}.")
        if name in schedules:
            twice = f"bad loss schedule {item!r}, {name} is scheduled twice"
            raise UsageError(f"--loss_schedules {text!r}: {twice}; {form}.")
        kind = fields[2] if len(fields) == 3 else "linear"
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError:
            numbers = f"bad loss schedule {item!r}, start and end must be numbers"
            raise UsageError(f"--loss_schedules {text!r}: {numbers}; {form}.") from None
        lowest = min(start, end)
        finite = math.isfinite(start) and math.isfinite(end)
        if kind not in SCHEDULE_KINDS or not finite or lowest < 0 or (name == "temperature" and lowest == 0):
            raise UsageError(
                f"--loss_schedules {text!r}: bad loss schedule {item!r}: kind must be one of {SCHEDULE_KINDS}, "
                "values finite and >= 0 (temperature > 0)."
            )
        schedules[name] = Schedule(start, end, kind)
    return schedules
