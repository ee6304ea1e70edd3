"""The corpus pipeline: the offline Wikipedia excerpt, tokenising and chunking, token counts."""

from __future__ import annotations

import bz2
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from .config import DataArguments
from .errors import UsageError


def token_counts(
    texts_or_dataset: Sequence[str] | Iterable[Sequence[int]] | datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Occurrences of every vocabulary id, (len(tokenizer),) long, for `DataCollatorForDistillation`.

    Accepts raw texts, sequences of token ids, or a `datasets.Dataset` with an `input_ids` (preferred)
    or `text` column. Texts are encoded with special tokens, as the model will see them.
    """
    column_names = getattr(texts_or_dataset, "column_names", None)
    if column_names is not None:
        column = "input_ids" if "input_ids" in column_names else "text"
        if column not in column_names:
            raise UsageError(f"the dataset has columns {column_names}; token_counts needs 'input_ids' or 'text'.")
        items: Sequence = texts_or_dataset[column]
    else:
        items = list(texts_or_dataset)
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for start in tqdm(range(0, len(items), batch_size), desc="Counting tokens", unit="batch", disable=len(items) <= batch_size):
        chunk = items[start : start + batch_size]
        if chunk and isinstance(chunk[0], str):
            chunk = tokenizer(list(chunk), add_special_tokens=True, truncation=False)["input_ids"]
        if chunk:
            flat = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in chunk])
            counts += np.bincount(flat, minlength=len(tokenizer))[: len(tokenizer)]
    return torch.from_numpy(counts)


# ---- the offline default corpus: the English Wikipedia excerpt shipped in gensim's test data ----

WIKI_EXCERPT = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# Never trained on, by the teacher build or the recipe: the held-out split for every quality figure.
HELD_OUT_ARTICLES = ("Albedo", "Alchemy", "Amphibian", "Andorra", "Apollo 8")
_MARKUP = re.compile(r"'{2,}")
_HEADING = re.compile(r"^=+.*=+$")


def wikipedia_excerpt(min_chars: int = 500) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of each article of gensim's English Wikipedia excerpt (CC BY-SA), offline."""
    try:
        import gensim
        from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    except ImportError as error:
        raise ImportError("the offline corpus ships with gensim: pip install gensim==4.4.0") from error
    path = Path(gensim.__file__).parent / "test" / "test_data" / WIKI_EXCERPT
    articles = []
    with bz2.BZ2File(path) as stream:
        for title, markup, _ in extract_pages(stream):
            text = filter_wiki(markup)
            if len(text) < min_chars:
                continue
            lines = (_MARKUP.sub("", line).strip() for line in text.splitlines())
            paragraphs = [line for line in lines if len(line.split()) > 3 and not _HEADING.match(line)]
            articles.append((title, paragraphs))
    return articles


def wikipedia_splits() -> datasets.DatasetDict:
    """One paragraph per row ("text", "title"); the test split holds HELD_OUT_ARTICLES."""
    rows = {"train": {"text": [], "title": []}, "test": {"text": [], "title": []}}
    for title, paragraphs in wikipedia_excerpt():
        split = rows["test" if title in HELD_OUT_ARTICLES else "train"]
        split["text"] += paragraphs
        split["title"] += [title] * len(paragraphs)
    return datasets.DatasetDict({name: datasets.Dataset.from_dict(columns) for name, columns in rows.items()})


def tokenize_and_chunk(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 128,
    min_tokens: int = 12,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Encode each text as [CLS] text [SEP], cut into chunks of at most `max_length` (each re-wrapped).

    As the reference (`lm_seqs_dataset.py`), chunks shorter than `min_tokens` (i.e. of 11 tokens or
    fewer by default) are dropped, and so are those at least half [UNK].
    """
    body = max_length - 2
    cls, sep, unk = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out = []
        for ids in tokenizer(batch["text"], add_special_tokens=False, truncation=False, verbose=False)["input_ids"]:
            for start in range(0, len(ids), body):
                chunk = [cls, *ids[start : start + body], sep]
                if len(chunk) >= min_tokens and 2 * chunk.count(unk) < len(chunk):
                    out.append(chunk)
        return {"input_ids": out}

    return dataset.map(
        encode, batched=True, remove_columns=dataset.column_names, num_proc=num_proc, desc="Tokenizing and chunking"
    )


def load_texts(data_args: DataArguments) -> datasets.DatasetDict:
    """Raw texts with "train" and "test" splits: the Hub, local files, or the offline Wikipedia excerpt."""
    if data_args.dataset_name:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    elif data_args.train_file:
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["test"] = data_args.validation_file
        suffix = Path(data_args.train_file).suffix.lstrip(".")
        builder = {"txt": "text", "jsonl": "json", "json": "json", "csv": "csv"}.get(suffix)
        if builder is None:
            raise UsageError(f"--train_file {data_args.train_file}: use a .txt, .json, .jsonl or .csv file.")
        raw = datasets.load_dataset(builder, data_files=files)
    else:
        raw = wikipedia_splits()
    if "test" not in raw:
        if "validation" in raw:
            raw["test"] = raw.pop("validation")
        else:
            raw = raw["train"].train_test_split(test_size=0.05, seed=0)
    for name, split in raw.items():
        if data_args.text_column not in split.column_names:
            raise UsageError(f"split {name} has columns {split.column_names}; pass --text_column with the text's column.")
    column = data_args.text_column
    return datasets.DatasetDict(
        {k: raw[k].select_columns([column]).rename_columns({column: "text"} if column != "text" else {}) for k in ("train", "test")}
    )


def prepare_corpus(
    data_args: DataArguments, tokenizer: PreTrainedTokenizerBase
) -> tuple[datasets.Dataset, datasets.Dataset, torch.Tensor]:
    """(train, held-out, token counts of train), tokenised and chunked once, then reused from the disk cache.

    The cache key covers the source, the tokenizer's vocabulary and the chunking settings, so a change of
    any of them rebuilds it.
    """
    source = data_args.dataset_name or data_args.train_file or f"gensim:{WIKI_EXCERPT}:{','.join(HELD_OUT_ARTICLES)}"
    vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    key = hashlib.sha256(
        json.dumps([source, data_args.dataset_config_name, data_args.validation_file, data_args.text_column, vocab, data_args.max_seq_length]).encode()
    ).hexdigest()[:16]
    folder = Path(data_args.data_cache_dir) / key
    if not (folder / "counts.npy").exists():
        raw = load_texts(data_args)
        processed = datasets.DatasetDict(
            {name: tokenize_and_chunk(split, tokenizer, data_args.max_seq_length, num_proc=data_args.preprocessing_num_workers) for name, split in raw.items()}
        )
        processed.save_to_disk(str(folder))
        np.save(folder / "counts.npy", token_counts(processed["train"], tokenizer).numpy())
    processed = datasets.load_from_disk(str(folder))
    train, held_out = processed["train"], processed["test"]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.max_eval_samples is not None:
        held_out = held_out.select(range(min(data_args.max_eval_samples, len(held_out))))
    return train, held_out, torch.from_numpy(np.load(folder / "counts.npy"))
