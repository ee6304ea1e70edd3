"""Is this output folder safe to write, and does its checkpoint belong to this run?

Every model a run saves (checkpoints and the final one) gets RUN_SETTINGS_FILE beside it: the settings that
shape the loss (weights, temperature, masking, teachers, student, data). A later run in the same folder
compares them before it resumes or overwrites anything, so a run with other settings never "resumes" a
finished model, and a folder holding someone else's model (the teacher's, above all) is never written over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers import PreTrainedModel, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import logging

from .config import LOSS_WEIGHTS, DistillationArguments
from .errors import UsageError
from .models.layer_map import PROVENANCE_KEY

logger = logging.get_logger(__name__)

RUN_SETTINGS_FILE = "distillation_settings.json"
# Any of these in a folder means a saved model lives there (weights, sharded or not, or at least its config).
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
LOSS_SETTINGS = (
    "temperature",
    "similarity_temperature",
    *LOSS_WEIGHTS,
    "restrict_ce_to_mask",
    "intermediate_layers",
    "attention_maps",
    "relation_heads",
    "relation_teacher_layer",
    "teacher_weights",
    "loss_schedules",
    "mlm_probability",
    "mask_replace_prob",
    "random_replace_prob",
    "mlm_smoothing",
    "whole_word_masking",
)
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_TWO_WAYS_OUT = "pass another --output_dir, or --overwrite_output_dir to start afresh"


def run_settings(
    args: TrainingArguments, teachers: Iterable[PreTrainedModel], student: PreTrainedModel, train_dataset: Any
) -> dict:
    """The settings a checkpoint must share with a run that resumes it (JSON-able, compared key by key)."""
    teachers = list(teachers)
    return {
        **{name: getattr(args, name) for name in LOSS_SETTINGS},
        "teachers": [_source(t.name_or_path) for t in teachers],
        "teacher_configs": [_config_digest(t) for t in teachers],
        "student_config": _config_digest(student),
        "train_data": _data_digest(train_dataset),
    }


def _loss_defaults() -> dict:
    fields = {f.name: f for f in dataclasses.fields(DistillationArguments)}
    return _as_json({name: fields[name].default for name in LOSS_SETTINGS if name in fields})


def save_run_settings(folder: str | Path, settings: dict) -> None:
    Path(folder, RUN_SETTINGS_FILE).write_text(json.dumps(_as_json(settings), indent=2) + "\n")


def refuse_source_folders(output_dir: str, sources: Iterable[tuple[str, str | None]]) -> None:
    """Refuse an output folder that is where a model of this run comes from: saving would overwrite it.

    sources: (what, name or path) pairs, e.g. ("the teacher", "models/bert"); Hub ids never match a folder.
    """
    out = Path(output_dir).expanduser().resolve()
    for what, name in sources:
        if name and Path(name).expanduser().is_dir() and Path(name).expanduser().resolve() == out:
            raise UsageError(
                f"--output_dir {output_dir} is the folder of {what} ({name}); the run would overwrite its config.json "
                "and weights; pass another --output_dir."
            )


def resume_point(args: TrainingArguments, settings: dict) -> str | None:
    """The checkpoint a recipe run resumes from (None: start afresh), once `args.output_dir` is known safe.

    A folder holding a model of another run (or of no hf_distil run) is refused unless
    `overwrite_output_dir`, which deletes its checkpoints first: a fresh run must never pick them up later.
    The checkpoint itself is checked by `check_checkpoint` when training starts.
    """
    if args.overwrite_output_dir and args.resume_from_checkpoint:
        raise UsageError(
            f"--overwrite_output_dir starts afresh but --resume_from_checkpoint {args.resume_from_checkpoint} asks to "
            "resume; drop one of them."
        )
    folder = Path(args.output_dir)
    if not folder.is_dir():
        return args.resume_from_checkpoint
    if args.overwrite_output_dir:
        stale = _checkpoints(folder) + [p for p in [folder / RUN_SETTINGS_FILE] if p.exists()]
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if stale:
            logger.warning(f"--overwrite_output_dir: deleted {', '.join(p.name for p in stale)} in {folder}")
        return None
    if any((folder / name).exists() for name in MODEL_FILES):
        recorded = _read_settings(folder)
        if recorded is None:
            raise UsageError(
                f"--output_dir {args.output_dir} already holds a model ({_first_model_file(folder)}) that this run "
                "did not make (no record of its settings); pass another --output_dir, or --overwrite_output_dir to "
                "replace it."
            )
        _refuse_other_settings(f"--output_dir {args.output_dir} holds a model", recorded, settings)
    return args.resume_from_checkpoint or get_last_checkpoint(str(folder))


def check_checkpoint(checkpoint: str | Path, settings: dict) -> None:
    """Before resuming: the checkpoint is readable, and was made with these settings (when it says so).

    Cheap checks only: JSON parses, safetensors headers match their file sizes, torch archives have their zip
    directory (a truncated file loses it first). A damaged checkpoint is named with the one to use instead.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():  # a typo is no damage: nothing there to delete
        found = [str(p) for p in _checkpoints(checkpoint.parent)]
        there = (
            f"the checkpoints there are {', '.join(found)}" if found else f"{checkpoint.parent} holds no checkpoint"
        )
        what = "is not a folder" if checkpoint.exists() else "does not exist"
        raise UsageError(f"--resume_from_checkpoint {checkpoint} {what}; {there}.")
    damage = _damage(checkpoint)
    if damage:
        older = [p for p in reversed(_checkpoints(checkpoint.parent)) if _step(p) < _step(checkpoint)]
        earlier = [p for p in older if not _damage(p)]
        way_out = (
            f"resume from the one before with --resume_from_checkpoint {earlier[0]}, or delete {checkpoint}"
            if earlier
            else f"no earlier intact checkpoint is there: delete {checkpoint}, or {_TWO_WAYS_OUT}"
        )
        raise UsageError(f"checkpoint {checkpoint} is damaged ({damage}); {way_out}.")
    recorded = _read_settings(checkpoint)
    if recorded is None:
        logger.warning(f"{checkpoint} has no {RUN_SETTINGS_FILE} (an older run?): its settings cannot be compared")
        return
    _refuse_other_settings(f"checkpoint {checkpoint} was made", recorded, settings)


def _refuse_other_settings(what: str, recorded: dict, settings: dict) -> None:
    settings = _as_json(settings)  # as it would read back from the file (tuples become lists, ...)
    # A setting newer than the recorded file (e.g. alpha_relation) matches while this run leaves it at its default:
    # the older run trained as the default does.
    recorded = {**{k: v for k, v in _loss_defaults().items() if k not in recorded}, **recorded}
    changed = [k for k in sorted(set(recorded) | set(settings)) if recorded.get(k) != settings.get(k)]
    if changed:
        shown = ", ".join(f"{k} {_short(recorded.get(k))} → {_short(settings.get(k))}" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise UsageError(f"{what} with other settings ({shown}{more}); {_TWO_WAYS_OUT}.")


def _damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint folder, or None."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "trainer_state.json is missing: the save was interrupted"
    try:
        json.loads(state.read_text())
    except (ValueError, UnicodeDecodeError):
        return "trainer_state.json is not valid JSON"
    weights = ("pytorch_model", "global_step")  # also sharded, FSDP and DeepSpeed layouts
    if not any(p.suffix == ".safetensors" or p.name.startswith(weights) for p in checkpoint.iterdir()):
        return "it holds no model weights"
    for path in sorted(checkpoint.iterdir()):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt"):
                    pass
            elif path.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(path).close()  # torch.save writes a zip; its directory sits at the end
        except Exception:  # safetensors raises its own error type; any failure to read means damage
            return f"{path.name} is truncated or unreadable"
    return None


def _checkpoints(folder: Path) -> list[Path]:
    """checkpoint-N folders, oldest first."""
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=_step)


def _step(checkpoint: Path) -> int:
    match = _CHECKPOINT.match(checkpoint.name)
    return int(match.group(1)) if match else -1


def _read_settings(folder: Path) -> dict | None:
    path = folder / RUN_SETTINGS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not valid JSON; delete it, or {_TWO_WAYS_OUT}.") from None


def _first_model_file(folder: Path) -> str:
    return next(name for name in MODEL_FILES if (folder / name).exists())


def _as_json(settings: dict) -> dict:
    return json.loads(json.dumps(settings, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _source(name: str) -> str:
    """A local folder by its absolute path (./t and /abs/t are the same teacher); a Hub id as is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if name and path.is_dir() else name


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _config_digest(model: PreTrainedModel) -> str:
    """The architecture and sizes (and, for a student cut from a teacher, the layers it kept); private keys
    (`_name_or_path`, attention implementation), the transformers version and the spelling of the teacher's
    path are left out, as they change without changing the model."""
    config = {k: v for k, v in model.config.to_diff_dict().items() if not k.startswith("_")}
    config.pop("transformers_version", None)
    config.pop("architectures", None)  # set by save_pretrained, so absent before the first save
    if isinstance(config.get(PROVENANCE_KEY), dict):
        config[PROVENANCE_KEY] = {k: v for k, v in config[PROVENANCE_KEY].items() if k != "teacher"}
    return _digest(config)


def _data_digest(dataset: Any, samples: int = 16) -> str | None:
    """Row count and a few evenly spaced rows. Not `Dataset._fingerprint`: it is random whenever a `map`
    function cannot be hashed, and a resume would then be refused for no reason."""
    if dataset is None or not hasattr(dataset, "__len__") or not hasattr(dataset, "with_format"):
        return None
    rows = dataset.with_format(None)
    indices = sorted({i * (len(rows) - 1) // max(samples - 1, 1) for i in range(samples)}) if len(rows) else []
    return _digest([len(rows), [rows[i] for i in indices]])


def readable_like_other_files(paths: Any) -> None:
    """Give files the mode that the process' umask gives any new file (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)
