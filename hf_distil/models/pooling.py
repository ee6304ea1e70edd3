"""Sentence embeddings from token states: the pooling of a Sentence Transformers model, read from its folder.

Sentence Transformers stores a model as a chain of modules (`modules.json`): the transformer, a `Pooling` module
(`1_Pooling/config.json`: mean or [CLS]) and often a `Normalize` module. Distilling an embedder means reproducing that
chain exactly, so the pooling is read from the teacher's folder, not assumed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import UsageError

PoolingMode = Literal["mean", "cls"]
_POOLING_TYPE = "sentence_transformers.models.Pooling"
_NORMALIZE_TYPE = "sentence_transformers.models.Normalize"
_MODE_KEYS: dict[str, PoolingMode] = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


@dataclass(frozen=True)
class Pooling:
    """How token states become one sentence vector: `mode` over the real tokens, then L2 `normalize` or not."""

    mode: PoolingMode = "mean"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("mean", "cls"):
            raise UsageError(f"pooling mode {self.mode!r} is not supported; use 'mean' or 'cls'.")

    def __call__(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(hidden, attention_mask, self)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Pooling | None:
        """The pooling of a Sentence Transformers folder (its `modules.json`); None for a folder without one."""
        folder = Path(folder)
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            return None
        try:
            modules = json.loads(modules_file.read_text())
            pooling_module = next(m for m in modules if m.get("type") == _POOLING_TYPE)
            settings = json.loads((folder / pooling_module["path"] / "config.json").read_text())
        except (OSError, ValueError, StopIteration, KeyError, TypeError) as error:
            raise UsageError(
                f"{folder} has a modules.json but no readable Pooling module ({error}); pass the pooling explicitly, "
                "e.g. Pooling('mean')."
            ) from error
        chosen = [key for key, on in settings.items() if key.startswith("pooling_mode_") and on]
        if len(chosen) != 1 or chosen[0] not in _MODE_KEYS:
            raise UsageError(
                f"{folder}'s pooling ({', '.join(chosen) or 'none'}) is not one of mean or CLS; hf_distil distils "
                "mean- or CLS-pooled embedders."
            )
        return cls(_MODE_KEYS[chosen[0]], normalize=any(m.get("type") == _NORMALIZE_TYPE for m in modules))


def folder_max_seq_length(folder: str | Path) -> int | None:
    """The longest input a Sentence Transformers folder's model reads (`sentence_bert_config.json`), which
    `SentenceTransformer.encode` truncates at; None for a folder without one."""
    try:
        return int(json.loads((Path(folder) / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sentence_transformers_folder(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> Path | None:
    """The local folder holding a model's Sentence Transformers settings, for `Pooling.from_folder` and
    `folder_max_seq_length`: a local folder as it is; for a Hub id, its `modules.json`, the `config.json` of the
    Pooling module that file names and `sentence_bert_config.json`, fetched file by file into the Hub cache (as
    sentence-transformers' `load_file_path` does: a few small files, not the repo). None for a repo without
    `modules.json` (a plain transformers model), a name that is no repo id, or, offline, a repo whose settings were
    never cached. Honours HF_ENDPOINT, read at call time; other Hub errors (access, network) propagate."""
    if Path(name_or_path).expanduser().is_dir():
        return Path(name_or_path).expanduser()
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    def fetch(filename: str) -> Path | None:
        try:
            path = hf_hub_download(
                str(name_or_path),
                filename,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                endpoint=os.environ.get("HF_ENDPOINT"),
                library_name="hf_distil",
            )
        except EntryNotFoundError:  # not in the repo, or (offline) not in the cache
            return None
        except HFValidationError:  # not a repo id either (e.g. a folder since removed): no settings to read
            return None
        return Path(path)

    modules_file = fetch("modules.json")
    if modules_file is None:
        return None
    try:
        modules = json.loads(modules_file.read_text())
    except ValueError:
        modules = []  # Pooling.from_folder reports the unreadable file
    for module in modules if isinstance(modules, list) else []:
        folder = module.get("path") if isinstance(module, dict) else None
        inside = isinstance(folder, str) and not PurePosixPath(folder).is_absolute() and ".." not in folder
        if module.get("type") == _POOLING_TYPE and inside:
            fetch(f"{folder}/config.json")
    fetch("sentence_bert_config.json")
    return modules_file.parent  # one revision's snapshot folder holds every file fetched


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(batch, seq, width) states and their (batch, seq) mask → (batch, width) sentence embeddings, in fp32: mean
    over the real tokens (as Sentence Transformers: padding excluded) or the first token's state."""
    hidden = hidden.float()
    if pooling.mode == "cls":
        pooled = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=-1) if pooling.normalize else pooled
