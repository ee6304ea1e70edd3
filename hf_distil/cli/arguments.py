"""The recipes' command line: their model arguments, and flags merged over a YAML run config."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser
from transformers.utils import logging

from ..errors import UsageError
from ..models.layer_map import parse_student_layers

logger = logging.get_logger(__name__)


@dataclass
class ModelArguments:
    """Which teacher teaches which student (recipes)."""

    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Hub id (e.g. bert-base-uncased) or local folder of a masked-LM teacher, or several separated by "
            "commas (their soft targets are mixed, see --teacher_weights); default: the shipped offline teacher."
        },
    )
    student: str | None = field(
        default=None, metadata={"help": "Hub id or folder of a ready student; default: extract one from the teacher."}
    )
    student_layers: list[int] | str | None = field(
        default="distilbert",
        metadata={
            "nargs": "+",
            "help": "Teacher layers the student keeps: a rule (distilbert: 0,2,4,7,9,11 of 12 layers and one of "
            "two otherwise; uniform, even, last) or indices, e.g. --student_layers 0 2 4 7 9 11 (a list in YAML).",
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

    def __post_init__(self) -> None:
        # A malformed value fails now, before any model loads.
        _warn_comma_string("student_layers", self.student_layers, "0 2 4")
        self.student_layers = parse_student_layers(self.student_layers or "distilbert")

    @property
    def layers(self) -> str | list[int]:
        """The checked `student_layers` (kept for hf_distil 0.1's callers)."""
        return self.student_layers


def _warn_comma_string(name: str, value: object, example: str) -> None:
    """hf_distil 0.1 took layer lists as one comma-separated string; still read, with a warning."""
    if isinstance(value, list) and len(value) == 1:  # a YAML string reaches the parser as one word
        value = value[0]
    if isinstance(value, str) and "," in value:
        logger.warning(f"{name} as a comma-separated string is deprecated; pass a list (--{name} {example}).")


def parse_with_config(dataclass_types: tuple, argv: list[str], default_config: Path) -> tuple:
    """Parse `argv` into `dataclass_types` (HfArgumentParser) after the values of a YAML/JSON file:
    `--config FILE` picks the file (default `default_config`); flags given on the command line win.

    A key of the file that no dataclass knows is an error (a typo would otherwise be ignored), and so is
    any value the dataclasses reject: both end as one `UsageError` line.
    """
    config = default_config
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UsageError("--config needs a file, e.g. --config recipes/configs/distil_bert.yaml.")
        config, argv = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    known = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
    from_file: list[str] = []
    for key, value in _read_config(config).items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; see --help for the options."
            raise UsageError(f"{config}: unknown setting {key!r}{hint}")
        values = [json.dumps(value)] if isinstance(value, dict) else value if isinstance(value, list) else [value]
        # A pair [1, 2] in a list (intermediate_layers) is written 1:2 on the command line.
        from_file += [f"--{key}", *(":".join(map(str, v)) if isinstance(v, list) else str(v) for v in values)]
    argv = _split_comma_lists(argv, dataclass_types)
    parser = HfArgumentParser(dataclass_types)
    parser.epilog = (
        f"--config FILE: a YAML file of settings, read before the flags (which win); default {default_config}."
    )
    helps = {}
    for action in parser._actions:  # argparse %-formats help text; ours is plain ("~10% of a step")
        helps.update(dict.fromkeys(action.option_strings, " ".join((action.help or "").split())))
        if action.help and "%(" not in action.help:
            action.help = action.help.replace("%", "%%")
    parser.error = lambda message: _bad_flag(message, helps)
    try:
        return parser.parse_args_into_dataclasses(args=from_file + argv)
    except ValueError as error:  # raised by a dataclass's __post_init__: a setting the user gave
        raise UsageError(str(error)) from None


def _bad_flag(message: str, helps: dict[str, str]) -> None:
    """argparse's complaint as a UsageError, with the flag's own help (its expected form)."""
    flag = next((f for f in sorted(helps, key=len, reverse=True) if f in message), None)
    raise UsageError(f"{message}; {flag}: {helps[flag]}" if flag and helps[flag] else f"{message}; see --help.")


def _split_comma_lists(argv: list[str], dataclass_types: tuple) -> list[str]:
    """`--teacher_weights 0.7,0.3` (hf_distil 0.1) as `--teacher_weights 0.7 0.3`, with a deprecation warning."""
    lists = {
        f"--{f.name}" for cls in dataclass_types for f in dataclasses.fields(cls) if str(f.type).startswith("list[")
    }
    out, flag = [], None
    for token in argv:
        if flag in lists and "," in token and not token.startswith("--"):
            logger.warning(f"{flag} {token}: comma-separated values are deprecated; separate them with spaces.")
            out += [part for part in token.split(",") if part]
        else:
            out.append(token)
        flag = token if token.startswith("--") else flag
    return out


def _read_config(path: Path) -> dict:
    """The settings of a YAML/JSON run config, as a dict; a missing or malformed file is a UsageError."""
    try:
        settings = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"--config {path}: no such file; pass a YAML file such as recipes/configs/distil_bert.yaml."
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f"--config {path} is not valid YAML ({' '.join(str(error).split())[:160]}).") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise UsageError(f"--config {path} must map setting names to values, got a {type(settings).__name__}.")
    return settings
