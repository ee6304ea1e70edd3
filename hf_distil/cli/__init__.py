"""The command-line layer of the recipes: argument classes, YAML run configs merged under the flags, the checks of
what a script reads and where it writes, and the entry point that turns a bad input into one line and an exit
code."""

from .arguments import ModelArguments, OneLineArgumentParser, parse_with_config
from .inputs import check_corpus_dataset, check_saved_model, task_splits
from .output import OUTPUT_RECORD, check_output_dir, mark_output_dir, shipped_model_folder
from .run import retry_from_the_shell, run_script

__all__ = [
    "OUTPUT_RECORD",
    "ModelArguments",
    "OneLineArgumentParser",
    "check_corpus_dataset",
    "check_output_dir",
    "check_saved_model",
    "mark_output_dir",
    "parse_with_config",
    "retry_from_the_shell",
    "run_script",
    "shipped_model_folder",
    "task_splits",
]
