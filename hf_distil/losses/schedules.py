"""Temperature and loss-weight schedules: a value moving from a start to an end over training."""

from __future__ import annotations

import math
import numbers
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

    def as_list(self) -> list[float | str]:
        """[start, end, kind]: the JSON form that training_args.json records."""
        return [self.start, self.end, self.kind]


def check_schedules(schedules: Mapping[str, Sequence[float | str] | Schedule] | None) -> dict[str, Schedule]:
    """{name: [start, end, kind]} or {name: Schedule} → {name: Schedule}; the kind defaults to linear.

    Anything else is one `UsageError` line naming loss_schedules, the item and the expected form (called when
    the arguments are built, so a typo fails before any model loads). Text is the command line's form, read by
    `hf_distil.cli`; here it is refused.
    """
    if not schedules:
        return {}
    form = (
        f"write {{name: [start, end, kind]}}, name temperature or an alpha_*, kind one of {SCHEDULE_KINDS}, "
        "e.g. loss_schedules={'temperature': [4, 1, 'cosine']} "
        '(--loss_schedules \'{"temperature": [4, 1, "cosine"]}\')'
    )
    if not isinstance(schedules, Mapping):
        raise UsageError(f"loss_schedules {schedules!r} is not a mapping; {form}.")
    names = ("temperature", *(term.weight_field for term in LOSS_TERMS))
    checked = {}
    for name, spec in schedules.items():
        bad = f"loss_schedules: bad loss schedule {name}: {spec!r}"
        if isinstance(spec, Schedule):
            spec = spec.as_list()
        if name not in names or isinstance(spec, str) or not isinstance(spec, Sequence) or len(spec) not in (2, 3):
            raise UsageError(f"{bad}; {form}.")
        start, end, kind = (*spec, "linear") if len(spec) == 2 else spec
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (start, end)):
            raise UsageError(f"{bad}, start and end must be numbers; {form}.")
        lowest = min(start, end)
        finite = math.isfinite(start) and math.isfinite(end)
        if kind not in SCHEDULE_KINDS or not finite or lowest < 0 or (name == "temperature" and lowest == 0):
            raise UsageError(f"{bad}: kind must be one of {SCHEDULE_KINDS}, values finite and >= 0 (temperature > 0).")
        checked[name] = Schedule(float(start), float(end), kind)
    return checked
