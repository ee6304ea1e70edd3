"""The recipes' command line: their model arguments, and flags merged over a YAML run config."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from transformers import HfArgumentParser

from ..errors import UsageError
from ..models.layer_map import check_student_layers
from .forms import FORMS


@dataclass
class ModelArguments:
    """Which teacher teaches which student (recipes)."""

    teacher: list[str] | None = field(
        default=None,
        metadata={
            "help": "Hub id (e.g. bert-base-uncased) or local folder of a masked-LM teacher; several mix their soft "
            "targets (--teacher A B, a list in YAML; see --teacher_weights); default: the shipped offline teacher."
        },
    )
    student: str | None = field(
        default=None, metadata={"help": "Hub id or folder of a ready student; default: extract one from the teacher."}
    )
    student_layers: list[int] | str | None = field(
        default="distilbert",
        metadata={
            "help": "Teacher layers the student keeps: a rule (distilbert: 0,2,4,7,9,11 of 12 layers and one of "
            "two otherwise; uniform, even, last) or indices: [0, 2, 4, 7, 9, 11] in Python and YAML, "
            "--student_layers 0 2 4 7 9 11 on the command line."
        },
    )
    student_num_layers: int | None = field(
        default=None, metadata={"help": "Student depth for a layer rule; default half the teacher's, rounded up."}
    )
    student_architecture: str = field(
        default="distilbert",
        metadata={
            "help": "distilbert (DistilBertForMaskedLM, BERT teachers), same (the teacher's class, fewer layers), or "
            "mobilebert (a MobileBERT-shaped student, hf_distil.mobilebert: nothing copied but the word embeddings' "
            "principal directions; student_num_layers deep, default the teacher's; needs alpha_cos 0)."
        },
    )
    random_init_student: bool = field(
        default=False, metadata={"help": "Re-initialise the extracted student's weights (the paper's ablation)."}
    )
    vocabulary_size: int | None = field(
        default=None,
        metadata={
            "help": "Trim the extracted student's vocabulary to the N tokens the training text needs most, special "
            "and single-character tokens included (hf_distil.trim_vocabulary); the teacher keeps its own and teaches "
            "through the kept ids. Default: the teacher's whole vocabulary."
        },
    )

    def __post_init__(self) -> None:
        # Typed values only (parse_with_config reads the command line's words); a malformed one fails now, before
        # any model loads.
        if isinstance(self.teacher, str):
            raise UsageError(
                f"teacher {self.teacher!r} is one name; pass a list, teacher=[{self.teacher!r}] (--teacher A B on the "
                "command line)."
            )
        layers = "distilbert" if self.student_layers is None else self.student_layers
        self.student_layers = check_student_layers(layers)
        if self.vocabulary_size is not None and self.vocabulary_size < 1:
            raise UsageError(f"--vocabulary_size {self.vocabulary_size}: pass a positive number of tokens, e.g. 8000.")
        if self.vocabulary_size is not None and self.student:
            raise UsageError(
                f"--vocabulary_size trims a student extracted from the teacher, but --student {self.student} is given "
                "and keeps its own vocabulary; drop one of the two."
            )


def parse_with_config(dataclass_types: tuple, argv: list[str], default_config: Path | None = None) -> tuple:
    """Build `dataclass_types` from a YAML/JSON run config and the command line: `--config FILE` picks the file
    (default `default_config`, or none), whose values become the flags' defaults, so flags given on the command
    line win.

    The words of the settings in `forms.FORMS` (`1:2 2:4`, JSON text) are read into their typed values here, once;
    then each dataclass checks what it gets. A key of the file that no dataclass knows is an error (a typo would
    otherwise be ignored), and so is any value argparse or the dataclasses reject: each ends as one `UsageError`.
    """
    config = default_config
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UsageError("--config needs a file, e.g. --config my_run.yaml (flag names as keys).")
        config, argv = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    settings = _read_config(config) if config else {}
    known = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see --help for the options."
            raise UsageError(f"{config}: unknown setting {key!r}{hint}")
    epilog = "--config FILE: a YAML file of settings, read before the flags (which win)"
    epilog += f"; default {default_config}." if default_config else "."
    values = vars(_Parser(dataclass_types, settings, epilog=epilog).parse_args(argv))
    for name, form in FORMS.items():
        if name in values:
            values[name] = form.read(values[name])
    _check_counts(values, {f.name: f.default for cls in dataclass_types for f in dataclasses.fields(cls)})
    try:
        return tuple(
            cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.init}) for cls in dataclass_types
        )
    except ValueError as error:  # raised by a dataclass's __post_init__: a setting the user gave
        raise UsageError(str(error)) from None


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the small scripts that have no dataclass of settings: a bad flag or value is a UsageError (one
    line, exit 2 under run_script) instead of argparse's usage block and error line, with the flag's own help."""

    def error(self, message: str) -> NoReturn:
        helps = {name: action.help for action in self._actions for name in action.option_strings if action.help}
        flag = next((word for word in re.findall(r"--[\w-]+", message) if word in helps), None)
        raise UsageError(f"{message}; {flag}: {helps[flag]}" if flag else f"{message}; see --help.")


class _Parser(HfArgumentParser):
    """HfArgumentParser with a run config's values as the defaults, FORMS' settings collected as words, help
    text taken as written, and a bad flag raised as a `UsageError` that quotes the flag's help."""

    def __init__(self, dataclass_types: tuple, settings: dict[str, Any], epilog: str) -> None:
        self.settings = settings  # read by add_argument, which argparse calls from __init__ (--help)
        self.helps: dict[str, str] = {}
        super().__init__(dataclass_types, epilog=epilog)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        """HfArgumentParser calls this once per field, with `--field_name` first."""
        dest = kwargs.get("dest") or next((name[2:] for name in names if name.startswith("--")), "")
        if dest in FORMS:
            kwargs["type"], kwargs["nargs"] = str, FORMS[dest].nargs
        if dest in self.settings and "dest" not in kwargs:  # a `--no_x` complement keeps its own default
            kwargs["default"] = _as_default(self.settings[dest], kwargs.get("nargs"))
            kwargs.pop("required", None)
        if kwargs.get("help"):
            text = " ".join(kwargs["help"].split())
            self.helps.update(dict.fromkeys(names, text))
            # argparse %-formats help text (ArgumentDefaultsHelpFormatter adds "%(default)s"); ours is plain.
            kwargs["help"] = text if "%(" in text else text.replace("%", "%%")
        return super().add_argument(*names, **kwargs)

    def error(self, message: str) -> NoReturn:
        """argparse's complaint as a UsageError, with the flag's own help (its expected form), or the flag it
        resembles."""
        flags = re.findall(r"--[\w-]+", message)
        flag = next((word for word in flags if word in self.helps), None)
        if flag:
            raise UsageError(f"{message}; {flag}: {self.helps[flag]}")
        close = difflib.get_close_matches(flags[0], self.helps, n=1) if flags else []
        raise UsageError(f"{message}; did you mean {close[0]}?" if close else f"{message}; see --help.")


def _check_counts(values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Batch sizes and gradient accumulation are at least 1, checked before the dataclasses see them: at 0 the
    data loader or the loss scaling would fail mid-run, in a traceback."""
    for name, value in values.items():
        counted = name.endswith("batch_size") or name == "gradient_accumulation_steps"
        if counted and isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise UsageError(f"--{name} {value}: must be at least 1; pass e.g. --{name} {defaults[name]}.")


def _as_default(value: Any, nargs: str | int | None) -> Any:
    """A run config's value as an argparse default: one value of a list flag becomes a list of one (as `--flag x`
    gives), and a number or word is handed over as text, which argparse reads with the flag's type as if typed."""
    if nargs == "+" and not isinstance(value, list):
        return [value]
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return str(value)
    return value


def _read_config(path: Path) -> dict:
    """The settings of a YAML/JSON run config, as a dict; a missing or malformed file is a UsageError."""
    try:
        settings = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file; pass a YAML file with flag names as keys.") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f"--config {path} is not valid YAML ({' '.join(str(error).split())[:160]}).") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise UsageError(f"--config {path} must map setting names to values, got a {type(settings).__name__}.")
    return settings
