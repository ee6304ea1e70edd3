"""The scripts' inputs, checked before any model loads: saved model folders, Hub datasets, and a task's data files
with their text columns and labels. Each problem is one `UsageError` line that names the input and the fix;
without these checks transformers and datasets fail mid-run in a traceback that names neither."""

from __future__ import annotations

from pathlib import Path

import datasets

from ..data.corpus import DataArguments, file_digest
from ..errors import UsageError
from ..tasks import TASKS, load_task
from ..teachers import check_model_source

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TASK_FILE_SUFFIXES = (".csv", ".json", ".jsonl")
HELD_OUT_SHARE = 0.2  # of --train_file, when no --validation_file is given
_MIN_ROWS = 5  # for a held-out share of at least one row


def check_saved_model(name: str, flag: str) -> None:
    """A folder passed as a model holds its config.json and its weights (a Hub id is checked by the Hub)."""
    check_model_source(name, flag)
    folder = Path(name).expanduser()
    if folder.is_dir() and not any((folder / weights).is_file() for weights in WEIGHT_FILES):
        raise UsageError(
            f"{flag} {name}: the folder holds config.json but no weights ({WEIGHT_FILES[0]}); pass a folder written "
            "by save_pretrained, or save the model there with model.save_pretrained(folder)."
        )


def check_hub_dataset(name: str, config: str | None, flag: str, way_out: str) -> None:
    """A Hub dataset can be read: reachable or cached, and known. Cheap (a builder, no data); offline, instant."""
    try:
        datasets.load_dataset_builder(name, config)
    except ConnectionError as error:
        reason = str(error).rpartition("(")[2].rstrip(")") or type(error).__name__
        raise UsageError(
            f"{flag} reads the Hub dataset {name}, and the Hugging Face Hub cannot be reached ({reason}) while the "
            f"local cache lacks it; {way_out}, or run once online to cache it."
        ) from None
    except (FileNotFoundError, ValueError) as error:  # DatasetNotFoundError, an unknown configuration
        raise UsageError(
            f"{flag}: the Hub dataset {name} cannot be read ({' '.join(str(error).split())[:200]})."
        ) from None


def check_corpus_dataset(data_args: DataArguments) -> None:
    """The masked-LM corpus' --dataset_name, if any, can be read: one line now, not a traceback after the teacher
    loads."""
    if data_args.dataset_name:
        way_out = "pass --train_file with your text, or no --dataset_name for the offline Wikipedia excerpt"
        check_hub_dataset(data_args.dataset_name, data_args.dataset_config_name, "--dataset_name", way_out)


def task_splits(
    task: str, train_file: str | None, validation_file: str | None
) -> tuple[datasets.Dataset, datasets.Dataset, str]:
    """(train, held-out, what the held-out set is) of a task in TASKS, checked: files, columns and labels.

    Without --validation_file, HELD_OUT_SHARE of --train_file is held out (seed 0) and left out of training, so a
    held-out score is never a score on the training examples.
    """
    hub_id, config, columns, num_labels, eval_split = TASKS[task]
    if validation_file and not train_file:
        raise UsageError(f"--validation_file {validation_file} needs --train_file (the examples to train on).")
    for flag, path in (("--train_file", train_file), ("--validation_file", validation_file)):
        if path:
            _check_task_file(flag, path, train_file)
    if train_file:
        train, held_out = load_task(task, train_file, validation_file or train_file)
        described = validation_file or f"{HELD_OUT_SHARE:.0%} of {train_file} held out (seed 0)"
        sources = {"--train_file": (train, train_file), "--validation_file": (held_out, validation_file)}
    else:
        if hub_id is not None:
            check_hub_dataset(
                hub_id,
                config,
                f"--task {task}",
                "pass --train_file and --validation_file (CSV/JSON with the task's columns), or an offline task "
                "(polarity, newsgroups)",
            )
        train, held_out = load_task(task)
        described = f"{task} {eval_split}" if hub_id else f"{task} (every fifth example)"
        sources = {"train": (train, f"--task {task}"), "held-out": (held_out, f"--task {task}")}
    wanted = [c for c in columns if c] + (["label"] if task != "squad" else ["answers"])
    for flag, (rows, path) in sources.items():
        if rows is not None and path:
            _check_rows(rows, f"{flag} {path}" if flag.startswith("--") else path, task, wanted, num_labels)
    if train_file and not validation_file:
        if len(train) < _MIN_ROWS:
            raise UsageError(
                f"--train_file {train_file} holds {len(train)} examples; holding {HELD_OUT_SHARE:.0%} out needs at "
                f"least {_MIN_ROWS}: give more rows, or pass --validation_file."
            )
        split = train.train_test_split(test_size=HELD_OUT_SHARE, seed=0)
        train, held_out = split["train"], split["test"]
    if num_labels > 1 and task != "squad" and len(set(train["label"])) < 2:
        where = f"--train_file {train_file}" if train_file else f"--task {task}"
        raise UsageError(
            f"{where}: every training example has label {train[0]['label']}; a classifier learns nothing from one "
            "class: give examples of every class."
        )
    return train, held_out, described


def _check_task_file(flag: str, path: str, train_file: str | None) -> None:
    if not Path(path).is_file():
        what = "is a directory" if Path(path).is_dir() else "no such file"
        raise UsageError(f"{flag} {path}: {what}; pass a CSV or JSON file with the task's columns and a label.")
    if not path.endswith(TASK_FILE_SUFFIXES):
        raise UsageError(
            f"{flag} {path}: unsupported suffix; pass a .csv, .json or .jsonl file with the task's columns."
        )
    if train_file and flag == "--validation_file" and path.endswith(".csv") != train_file.endswith(".csv"):
        raise UsageError(f"{flag} {path} is not in the format of --train_file {train_file}; give both as CSV or JSON.")
    file_digest(path, flag)  # exists, non-empty UTF-8 text


def _check_rows(rows: datasets.Dataset, source: str, task: str, wanted: list[str], num_labels: int) -> None:
    """The columns the task reads are there, and the labels are what its head predicts."""
    if len(rows) == 0:
        raise UsageError(f"{source} holds no examples; give one per row, with columns {', '.join(wanted)}.")
    missing = [c for c in wanted if c not in rows.column_names]
    if missing:
        raise UsageError(
            f"{source} has no column {', '.join(map(repr, missing))} (it has {', '.join(rows.column_names)}); task "
            f"{task} reads {', '.join(wanted)}: rename the columns, or pick the --task whose columns the file has."
        )
    if "label" not in wanted:
        return
    labels = rows["label"]
    if any(label is None for label in labels):
        row = next(i for i, label in enumerate(labels) if label is None)
        raise UsageError(f"{source}: example {row} has no label; give every example one.")
    if num_labels == 1:
        if not all(isinstance(label, (int, float)) and not isinstance(label, bool) for label in labels):
            raise UsageError(f"{source}: task {task} is a regression; its labels must be numbers.")
        return
    classes = f"{num_labels} classes, labels 0 to {num_labels - 1}"
    wrong = sorted({label for label in labels if not isinstance(label, int) or isinstance(label, bool)}, key=str)
    if wrong:
        shown = ", ".join(repr(label) for label in wrong[:3])
        raise UsageError(
            f"{source}: labels must be integers, got {shown}; task {task} has {classes}: map each class to its number."
        )
    outside = sorted({label for label in labels if not 0 <= label < num_labels})
    if outside:
        raise UsageError(
            f"{source}: labels {', '.join(map(str, outside[:5]))} are outside task {task}'s {classes}; relabel the "
            "file, or pick a --task with as many classes."
        )
