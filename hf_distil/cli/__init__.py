"""The command-line layer of the recipes: argument classes, YAML run configs merged under the flags, and the
entry point that turns a bad input into one line and an exit code."""

from .arguments import ModelArguments, parse_with_config
from .run import run_script

__all__ = ["ModelArguments", "parse_with_config", "run_script"]
