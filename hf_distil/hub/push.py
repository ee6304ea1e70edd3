"""Uploading a saved student with its card: safetensors, JSON, tokenizer, card, plot and ONNX files; never a pickle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from transformers.utils import logging

from ..errors import RunFailed, UsageError
from .card import CARD_FILE, save_model_card
from .plot import PLOT_FILE
from .report import BiLSTMCardReport, CardReport

logger = logging.get_logger(__name__)

# What reaches the Hub, and nothing else of the folder: weights as safetensors, configs, tokenizer, metrics and
# arguments (JSON), the card and its plot, an ONNX export in the layout Optimum and transformers.js read, and the
# modules' configs of the Sentence Transformers layout (1_Pooling/config.json, 2_Normalize/config.json).
UPLOAD_PATTERNS = [
    "*.safetensors",
    "*.json",
    CARD_FILE,
    PLOT_FILE,
    "vocab.txt",
    "merges.txt",
    "onnx/*.onnx",
    "*_Pooling/config.json",
    "*_Normalize/config.json",
]
# A tokenizer's SentencePiece model is a protobuf; a pickle saved under that name is not (_is_sentencepiece).
SENTENCEPIECE_PATTERN = "*.model"
# What a Trainer leaves in its output folder that never leaves the machine (pickles, checkpoints, TensorBoard logs).
TRAINER_LEFTOVERS = ["*.bin", "*.pt", "*.pth", "checkpoint-*/", "runs/"]
# JSON that describes the local folder, not the model: the record of which script made it (the scripts' output-folder
# rule, hf_distil.cli.output.OUTPUT_RECORD; named here because the hub layer sits below the command-line layer).
LOCAL_RECORDS = ["hf_distil_output.json"]
ARGS_FILE = "training_args.json"


def save_training_arguments(args: Any, folder: str | Path) -> None:
    """The training arguments as JSON (Trainer's own copy is a pickle, which never leaves the machine).

    `TrainingArguments.to_json_string` already replaces every `*_token` value by a placeholder.
    """
    Path(folder, ARGS_FILE).write_text(args.to_json_string())


def _write_card(card: CardReport | BiLSTMCardReport | ModelCard, folder: Path, repo_id: str) -> None:
    if isinstance(card, ModelCard):
        card.save(folder / CARD_FILE)
    else:
        save_model_card(card, folder, repo_id)


def push_to_hub(
    folder_or_trainer: str | Path | Any,
    repo_id: str,
    *,
    card: CardReport | BiLSTMCardReport | ModelCard | None = None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str | None:
    """Upload a saved student (a folder, or a Trainer's output) with its card; returns the commit URL.

    The card is `card` (a report to render, or a card), else: for a Trainer, its `create_model_card` (the
    DistillationTrainer's states what training knows), for a folder the README.md already there, or a card that
    names only the model. Given a Trainer, every process saves (ZeRO-3 gathers the weights) and the main process
    uploads (the others return None). Only safetensors weights, JSON, the tokenizer, the card, its plot and ONNX
    files leave the machine. Honours HF_ENDPOINT, read at call time. The token comes from `token`, else HF_TOKEN
    or `hf auth login`. A failed upload changes nothing local and raises `RunFailed` with one line saying how to
    retry.
    """
    if isinstance(folder_or_trainer, (str, Path)):
        folder = Path(folder_or_trainer)
        if not (folder / "config.json").exists():
            raise UsageError(f"{folder} holds no saved model (config.json); save the student there first.")
        if card is not None:
            _write_card(card, folder, repo_id)
        elif not (folder / CARD_FILE).exists():
            save_model_card(CardReport(), folder, repo_id)
    else:  # a Trainer, duck-typed: the hub does not depend on the trainer
        trainer = folder_or_trainer
        folder = Path(trainer.args.output_dir)
        # With args.push_to_hub, save_model would push again (and so on): Trainer's own guard stops that.
        trainer.save_model(str(folder), _internal_call=True)
        if not trainer.is_world_process_zero():
            return None
        trainer.state.save_to_json(str(folder / "trainer_state.json"))
        save_training_arguments(trainer.args, folder)
        if card is not None:
            _write_card(card, folder, repo_id)
        else:
            trainer.create_model_card(model_name=repo_id)
    uploaded, left_out = files_to_upload(folder)
    if left_out:
        shown = ", ".join(left_out[:8]) + (f" and {len(left_out) - 8} more" if len(left_out) > 8 else "")
        # Trainer's pickles, checkpoints and logs are always left out; anything else the user should hear of.
        usual = all(any(_matches(Path(f), p) for p in TRAINER_LEFTOVERS + LOCAL_RECORDS) for f in left_out)
        log = logger.info if usual else logger.warning
        log(f"not uploaded from {folder}, as no part of a model folder: {shown}")
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT"), token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"Upload distilled model from {folder.name}",
            allow_patterns=uploaded,
        )
    # huggingface_hub raises HfHubHTTPError for an HTTP answer, OSError (OfflineModeIsEnabled) offline, and its
    # HTTP client's own transport errors when nothing answers: whatever the cause, nothing local was changed.
    except Exception as error:
        raise RunFailed(
            f"upload of {folder} to {repo_id} failed ({_reason(error)}); the folder is intact: "
            f"call push_to_hub again, e.g. hf_distil.push_to_hub({str(folder)!r}, {repo_id!r})"
        ) from None
    logger.info(f"pushed {folder} to {info.commit_url}")
    return info.commit_url


def files_to_upload(folder: Path) -> tuple[list[str], list[str]]:
    """(files to upload, files left out) of `folder`, as paths relative to it: only what a model folder holds
    (UPLOAD_PATTERNS, and *.model files that are SentencePiece models); checkpoints, logs, pickles, notes and
    anything else stay on the machine."""
    uploaded, left_out = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder)
        wanted = any(_matches(name, pattern) for pattern in UPLOAD_PATTERNS) or (
            _matches(name, SENTENCEPIECE_PATTERN) and _is_sentencepiece(path)
        )
        wanted = wanted and not any(_matches(name, pattern) for pattern in LOCAL_RECORDS)
        (uploaded if wanted else left_out).append(name.as_posix())
    for skipped in ("checkpoint-", "runs/"):  # one entry per folder of them, not their thousands of files
        inside = [f for f in left_out if f.startswith(skipped)]
        if inside:
            folders = sorted({f.split("/")[0] + "/" for f in inside})
            left_out = [f for f in left_out if f not in inside] + folders
    return uploaded, left_out


def _matches(name: Path, pattern: str) -> bool:
    """The whole relative path matches (`*.json` is a file of the folder itself, not of a checkpoint in it)."""
    return len(name.parts) == len(Path(pattern).parts) and name.match(pattern)


def _is_sentencepiece(path: Path) -> bool:
    """A SentencePiece ModelProto starts with its first piece: field 1 (tag 0x0A), a length, then the piece's own
    field 1 (its text). A pickle starts with 0x80 (protocol 2+) or an opcode letter."""
    head = path.read_bytes()[:16]
    if len(head) < 3 or head[0] != 0x0A:
        return False
    i = 1
    while i < len(head) and head[i] & 0x80:  # the length, a varint
        i += 1
    return i + 1 < len(head) and head[i + 1] == 0x0A


def _reason(error: Exception) -> str:
    """A short, token-free account of why an upload failed."""
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    first_line = (str(error).strip().splitlines() or [""])[0][:120]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
