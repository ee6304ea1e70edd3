"""Where a script may write: one rule for every script that writes, the main recipe's rule made general.

A script writes into a folder that is new, empty, or its own: one whose record (OUTPUT_RECORD, written before
the script's first file) names that script. It never writes into a file, nor into the folder of a model it reads
(spelled with `..` or through a symlink too). A folder holding anything else, another model or a user's own
README.md, is refused in one line before anything is written there, unless the user asks to write over it
(--overwrite_output_dir, for the scripts that have it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from ..run_folder import MODEL_FILES, refuse_source_folders

OUTPUT_RECORD = "hf_distil_output.json"
# The shipped models have no folder of their own; the scripts that read a folder get one, written once, here.
SHIPPED_MODEL_FOLDERS = {"default-teacher": "outputs/default_teacher", "default-student": "outputs/default_student"}


def check_output_dir(
    output_dir: str,
    script: str,
    *,
    sources: Iterable[tuple[str, str | None]] = (),
    beside: Iterable[str] = (),
    records: Iterable[str] = (),
    overwrite: bool | None = None,
    flag: str = "--output_dir",
) -> None:
    """Refuse `output_dir` unless `script` may write there; reads only, so call it before any heavy work.

    sources: (what, name or path) of the models the script reads, whose folders are never written into.
    beside: folders the script adds its files to by design (export.py writes ONNX beside the model it exports).
    records: globs whose match marks the folder as made by `script` before OUTPUT_RECORD existed.
    overwrite: the script's --overwrite_output_dir (True accepts a folder of others); None when it has no such flag.
    """
    folder = Path(output_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {output_dir} is a file; pass a folder (a new or empty one) for the output.")
    refuse_source_folders(output_dir, sources)
    if not folder.is_dir() or overwrite or folder.resolve() in {Path(b).expanduser().resolve() for b in beside}:
        return
    held = _held_by_others(folder, script, records)
    if held is None:
        return
    what, them, made = held
    way_out = (
        f"pass another {flag}, or --overwrite_output_dir to replace {them}"
        if overwrite is not None
        else f"pass another {flag} (a new or empty folder)"
    )
    raise UsageError(f"{flag} {output_dir} already holds {what} that this run did not make{made}; {way_out}.")


def _held_by_others(folder: Path, script: str, records: Iterable[str] = ()) -> tuple[str, str, str] | None:
    """(what the folder holds, "it"/"them", ", made by <its maker>" or "") when it holds anything that `script` did
    not make; None otherwise."""
    entries = sorted(p.name for p in folder.iterdir())
    maker = _maker(folder)
    if not entries or maker == script or any(next(folder.glob(pattern), None) for pattern in records):
        return None
    made = f", made by {maker}" if maker else ""
    models = [name for name in MODEL_FILES if name in entries]
    if models:
        return f"a model ({models[0]})", "it", made
    return f"files ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})", "them", made


def mark_output_dir(output_dir: str, script: str) -> None:
    """Create `output_dir` with the record that `script` made it; call once its checks passed, before writing."""
    folder = Path(output_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if _maker(folder) != script:
        (folder / OUTPUT_RECORD).write_text(json.dumps({"written_by": script}) + "\n")


def _maker(folder: Path) -> str | None:
    """The script named by the folder's record, or None (no record, or not one of ours)."""
    try:
        record = json.loads((folder / OUTPUT_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record.get("written_by") if isinstance(record, dict) else None


def shipped_model_folder(name: str, flag: str) -> str:
    """The folder of `name` when it is a shipped model (SHIPPED_MODEL_FOLDERS): written once, with its record, and
    reused only when that record names it, so neither a user's folder at that path nor a model of theirs there is
    ever written over or taken for the shipped one. Any other name is returned as given."""
    if name not in SHIPPED_MODEL_FOLDERS:
        return name
    folder, maker = Path(SHIPPED_MODEL_FOLDERS[name]), f"the shipped {name}"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {name} is written to {folder}, which is a file; move it away.")
    if folder.is_dir():
        held = _held_by_others(folder, maker)
        if held is not None:
            raise UsageError(
                f"{flag} {name} is written to {folder}, which already holds {held[0]} that hf_distil did not "
                f"write{held[2]}; move {held[1]} away, or pass {flag} with your own model's folder."
            )
        if (folder / "config.json").is_file():
            return str(folder)
    model, tokenizer = _build_shipped(name)
    mark_output_dir(str(folder), maker)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _build_shipped(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from ..student import init_student_from_teacher
    from ..teachers import load_default_teacher

    teacher, tokenizer = load_default_teacher()
    return (teacher if name == "default-teacher" else init_student_from_teacher(teacher)), tokenizer
