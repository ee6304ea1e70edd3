"""Cached teacher signals: run a large teacher once, keep its top-k logits per selected position.

Dynamic masking and a cache are at odds: the teacher's outputs depend on the masked input, so a cache
fixes the masks. `build_teacher_cache` therefore stores `copies` pre-masked versions of the corpus (as
RoBERTa's static masking did with 10 copies): one pass over the cache sees each sequence under
`copies` different masks, and more copies cost proportionally more space. Space
per cached position: k × (2 bytes fp16 value + 4 bytes int32 id) — 192 bytes for k = 32.
"""

from __future__ import annotations

import datasets
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.collator import DataCollatorForDistillation
from ..losses.terms import IGNORE_INDEX
from ..models import heads

CACHE_COLUMNS = ("teacher_topk_ids", "teacher_topk_values")
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
) -> datasets.Dataset:
    """One row per (copy, sequence): masked input_ids, attention_mask, labels, and the teacher's top-k
    (ids int32, values fp16) at each selected position — every real token, or the masked ones."""
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
    return datasets.Dataset.from_dict(rows, features=features)


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
