"""Cached teacher signals: run a large teacher once, keep its top-k logits per selected position.

Dynamic masking and a cache are at odds: the teacher's outputs depend on the masked input, so a cache
fixes the masks. `build_teacher_cache` therefore stores `copies` pre-masked versions of the corpus (as
RoBERTa's static masking did with 10 copies): one pass over the cache sees each sequence under
`copies` different masks, and more copies cost proportionally more space. Space
per cached position: k × (2 bytes fp16 value + 4 bytes int32 id) — 192 bytes for k = 32.

A cache records what made its values (`cache_record`: the teacher, the tokenizer, the training sequences and
the masking settings) in its dataset info, and `load_teacher_cache` refuses one made otherwise than the run that
reads it: ids from another tokenizer mean other words, and another teacher's logits teach another model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.collator import MASKING_SETTINGS, DataCollatorForDistillation
from ..data.corpus import tokenizer_fingerprint
from ..errors import UsageError
from ..losses.terms import IGNORE_INDEX
from ..models import heads

CACHE_COLUMNS = ("teacher_topk_ids", "teacher_topk_values")
RECORD_KEY = "hf_distil_teacher_cache"  # the record's key in the JSON of the cache's DatasetInfo.description
# How a cache is made, for the messages: the function, and the recipe that calls it.
HOW_TO_BUILD = "the cache_teacher recipe (build_teacher_cache, then save_to_disk)"
# A task teacher's whole logits per example, written once into a transfer set (`label_with_teacher`).
TEACHER_LOGITS = "teacher_logits"


@torch.no_grad()
def build_teacher_cache(
    teacher: PreTrainedModel,
    dataset: datasets.Dataset,
    collator: DataCollatorForDistillation,
    top_k: int = 32,
    copies: int = 1,
    batch_size: int = 32,
    restrict_to_mask: bool = False,
    max_seq_length: int | None = None,
) -> datasets.Dataset:
    """One row per (copy, sequence): masked input_ids, attention_mask, labels, and the teacher's top-k
    (ids int32, values fp16) at each selected position — every real token, or the masked ones. Its info holds
    `cache_record` (with `max_seq_length`, the setting the corpus was chunked with), which `load_teacher_cache`
    checks."""
    record = {**cache_record(teacher, collator, dataset, restrict_to_mask, max_seq_length), "top_k": top_k}
    teacher.eval()
    device = next(teacher.parameters()).device
    rows: dict[str, list] = {
        "input_ids": [],
        "attention_mask": [],
        "labels": [],
        CACHE_COLUMNS[0]: [],
        CACHE_COLUMNS[1]: [],
    }
    ids = dataset["input_ids"]
    for copy in range(copies):
        collator.set_epoch(copy)
        for start in tqdm(
            range(0, len(ids), batch_size),
            desc=f"Caching teacher top-{top_k} (copy {copy + 1}/{copies})",
            unit="batch",
        ):
            batch = collator([{"input_ids": x} for x in ids[start : start + batch_size]])
            chosen = batch["labels"].ne(IGNORE_INDEX) if restrict_to_mask else batch["attention_mask"].bool()
            on_device = {k: v.to(device) for k, v in batch.items()}
            logits = heads.hidden_and_row_logits(
                teacher, on_device, chosen.to(device), split=heads.can_split(teacher)
            ).row_logits
            values, top_ids = logits.float().topk(top_k, dim=-1)
            offset = 0
            for i, (n, length) in enumerate(zip(chosen.sum(1).tolist(), batch["attention_mask"].sum(1).tolist())):
                rows["input_ids"].append(batch["input_ids"][i, :length].tolist())
                rows["attention_mask"].append([1] * length)
                rows["labels"].append(batch["labels"][i, :length].tolist())
                rows[CACHE_COLUMNS[0]].append(top_ids[offset : offset + n].int().tolist())
                rows[CACHE_COLUMNS[1]].append(values[offset : offset + n].half().tolist())
                offset += n
    features = datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "attention_mask": datasets.Sequence(datasets.Value("int8")),
            "labels": datasets.Sequence(datasets.Value("int32")),
            CACHE_COLUMNS[0]: datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
            CACHE_COLUMNS[1]: datasets.Sequence(datasets.Sequence(datasets.Value("float16"))),
        }
    )
    info = datasets.DatasetInfo(description=json.dumps({RECORD_KEY: {**record, "copies": copies}}), features=features)
    return datasets.Dataset.from_dict(rows, features=features, info=info)


def cache_record(
    teacher: PreTrainedModel,
    collator: DataCollatorForDistillation,
    corpus: datasets.Dataset,
    restrict_to_mask: bool,
    max_seq_length: int | None,
) -> dict[str, Any]:
    """What decides a cache's values, as JSON: the teacher (name, and a digest of its config and weights), the
    tokenizer's fingerprint, the training sequences' digest, the masking settings and restrict_ce_to_mask."""
    return {
        "teacher_name": teacher.name_or_path or type(teacher).__name__,
        "teacher": _teacher_digest(teacher),
        "tokenizer": tokenizer_fingerprint(collator.tokenizer)[:16],
        "sequences": _sequences_digest(corpus),
        "max_seq_length": max_seq_length,
        "restrict_ce_to_mask": restrict_to_mask,
        **{name: getattr(collator, name) for name in MASKING_SETTINGS},
    }


def load_teacher_cache(
    path: str | Path,
    teacher: PreTrainedModel,
    collator: DataCollatorForDistillation,
    corpus: datasets.Dataset,
    restrict_to_mask: bool,
    max_seq_length: int | None,
) -> datasets.Dataset:
    """The cache saved in `path`, once it is known to be one and made as this run would make it (`cache_record`
    of the run's teacher, collator, training sequences and settings); one UsageError line otherwise, naming what
    the path holds or what differs."""
    cache = read_teacher_cache(path)
    recorded = _record_of(cache)
    current = cache_record(teacher, collator, corpus, restrict_to_mask, max_seq_length)
    differences = [_difference(key, recorded, current) for key in current if key != "teacher_name"]
    differences = [d for d in differences if d]
    if differences:
        raise UsageError(
            f"--teacher_cache {path} was made with {'; '.join(differences)}; rebuild it with {HOW_TO_BUILD} for "
            "this run's teacher, tokenizer, corpus and settings, or run with those it was made with."
        )
    return cache


def read_teacher_cache(path: str | Path) -> datasets.Dataset:
    """The cache saved in `path`, if it holds teacher signals and records what made them; one line saying what the
    path holds otherwise. Cheap (memory-mapped), so a script checks the path before loading any model."""
    path = Path(path)
    what_a_cache_is = f"a teacher cache is the folder written by {HOW_TO_BUILD}"
    if not path.exists():
        raise UsageError(f"--teacher_cache {path} does not exist; {what_a_cache_is}: build one, or fix the path.")
    if not path.is_dir():
        raise UsageError(f"--teacher_cache {path} is a file; {what_a_cache_is}.")
    if (path / "config.json").is_file():
        raise UsageError(
            f"--teacher_cache {path} holds a model (config.json), not a teacher cache; pass the model as --teacher, "
            f"and as --teacher_cache the cache made from it ({what_a_cache_is})."
        )
    try:
        cache = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError):  # datasets' own errors for a folder it did not write
        raise UsageError(f"--teacher_cache {path} holds no saved dataset; {what_a_cache_is}.") from None
    if isinstance(cache, datasets.DatasetDict):
        raise UsageError(
            f"--teacher_cache {path} holds a dataset of splits ({', '.join(cache)}), such as a tokenised corpus, "
            f"not a teacher cache; {what_a_cache_is}."
        )
    if not set(CACHE_COLUMNS) <= set(cache.column_names):
        raise UsageError(
            f"--teacher_cache {path} holds a dataset of {', '.join(cache.column_names)} without the teacher's top-k "
            f"logits ({', '.join(CACHE_COLUMNS)}), such as a tokenised corpus, not a teacher cache; {what_a_cache_is}."
        )
    if _record_of(cache) is None:
        raise UsageError(
            f"--teacher_cache {path} records nothing of what made it (the teacher, the tokenizer, the masking), so "
            f"it cannot be checked against this run; rebuild it with {HOW_TO_BUILD}."
        )
    return cache


def _record_of(cache: datasets.Dataset) -> dict[str, Any] | None:
    """The record `build_teacher_cache` put in the cache's info, or None (a cache from before records)."""
    try:
        info = json.loads(cache.info.description or "")
    except ValueError:
        return None
    return info.get(RECORD_KEY) if isinstance(info, dict) else None


def _difference(key: str, recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """How the cache's `key` differs from this run's, in words, or None."""
    theirs, ours = recorded.get(key), current[key]
    if theirs == ours:
        return None
    if key == "teacher":
        named, name = recorded.get("teacher_name"), current["teacher_name"]
        return f"teacher {named}, not {name}" if named != name else f"another {name} (other config or weights)"
    if key == "tokenizer":
        return "another tokenizer (vocabulary, special tokens or normalisation differ)"
    if key == "sequences":
        return "other training sequences (another corpus, max_train_samples, or chunking)"
    return f"{key} {theirs} (this run: {ours})"


def _teacher_digest(teacher: PreTrainedModel) -> str:
    """Config (less paths and versions) and the first values of every weight: cheap, and tells a fine-tuned copy
    with the same config apart."""
    config = {k: v for k, v in teacher.config.to_diff_dict().items() if not k.startswith("_") and k != "dtype"}
    config.pop("transformers_version", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in teacher.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _sequences_digest(corpus: datasets.Dataset) -> str:
    """sha256 of the input_ids, sequence by sequence (their lengths, then their ids), read in Arrow batches."""
    digest = hashlib.sha256()
    for batch in corpus.select_columns(["input_ids"]).with_format("arrow").iter(batch_size=10_000):
        ids = batch.column("input_ids")
        digest.update(np.asarray(pc.list_value_length(ids), dtype=np.int64).tobytes())
        digest.update(np.asarray(pc.list_flatten(ids), dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class CachedSignalsCollator:
    """Pads a cached batch; the cached top-k rows are concatenated in the order the trainer selects rows
    (sequence by sequence, position by position), as (N, k) tensors."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.pad(
            [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features],
            return_tensors="pt",
        )
        length = batch["input_ids"].shape[1]
        labels = torch.full((len(features), length), IGNORE_INDEX)
        for i, f in enumerate(features):
            labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        out = {**batch, "labels": labels}
        out[CACHE_COLUMNS[0]] = torch.tensor([row for f in features for row in f[CACHE_COLUMNS[0]]], dtype=torch.long)
        out[CACHE_COLUMNS[1]] = torch.tensor(
            [row for f in features for row in f[CACHE_COLUMNS[1]]], dtype=torch.float16
        )
        return out


def bytes_per_token(cache: datasets.Dataset) -> float:
    """Space the cached teacher signals take per real token (ids + values, as stored)."""
    positions = sum(len(x) for x in cache[CACHE_COLUMNS[0]])
    k = len(cache[0][CACHE_COLUMNS[0]][0]) if positions else 0
    tokens = sum(len(x) for x in cache["input_ids"])
    return positions * k * (4 + 2) / max(tokens, 1)
