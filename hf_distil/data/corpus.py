"""The corpus pipeline: the offline Wikipedia excerpt, tokenising and chunking, token counts."""

from __future__ import annotations

import bz2
import codecs
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER
from transformers.utils import logging

from ..errors import UsageError
from .collator import DataCollatorForDistillation

logger = logging.get_logger(__name__)

# The reference (lm_seqs_dataset.py) drops sequences of 11 tokens or fewer.
MIN_TOKENS = 12
# --train_file suffix → the `datasets` builder that reads it.
FILE_BUILDERS = {"txt": "text", "jsonl": "json", "json": "json", "csv": "csv"}
# Part of every cache key: bump it when the same inputs would give other sequences (chunking, split).
CACHE_VERSION = 2
_HELD_OUT_SHARE = 0.05


@dataclass
class DataArguments:
    """Where the text comes from and how it is cut (recipes)."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id (needs the Hub); default: the gensim Wikipedia excerpt."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of --dataset_name."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local .txt (one text per line) or .json/.jsonl file with a text column."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out file in the same format; default: a 5% split of the train texts."}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    max_seq_length: int = field(
        default=128,
        metadata={"help": "Longest sequence; longer texts are cut into chunks, each wrapped in [CLS]/[SEP]."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only this many training sequences (quick runs)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many held-out sequences."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    data_cache_dir: str = field(
        default="outputs/data_cache",
        metadata={"help": "Processed data and token counts are kept here; a second run reuses them."},
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={
            "help": "Train from cached teacher top-k logits (a folder of build_teacher_cache) instead of a live "
            "teacher for L_ce; masks are the cached ones."
        },
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < MIN_TOKENS:
            raise UsageError(
                f"--max_seq_length {self.max_seq_length} is below {MIN_TOKENS}, the shortest sequence kept (as "
                "DistilBERT's reference); pass --max_seq_length 128 or so."
            )
        check_data_files(self)  # a missing, empty, binary or non-UTF-8 file fails now, before the teacher loads


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
    for start in tqdm(
        range(0, len(items), batch_size), desc="Counting tokens", unit="batch", disable=len(items) <= batch_size
    ):
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
    min_tokens: int = MIN_TOKENS,
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


def file_builder(path: str, flag: str) -> str:
    """The `datasets` builder for a data file's suffix; an unsupported suffix is one `UsageError` line."""
    builder = FILE_BUILDERS.get(Path(path).suffix.lstrip(".").lower())
    if builder is None:
        raise UsageError(f"{flag} {path}: unsupported suffix; use a .txt (one text per line), .json, .jsonl or .csv.")
    return builder


def file_digest(path: str, flag: str) -> str:
    """sha256 of the file's bytes, read once, checking on the way that it is non-empty UTF-8 text.

    The corpus cache is keyed by it, so a file fixed or grown in place is tokenised anew. Otherwise
    `datasets` fails later with a SchemaInferenceError (empty) or a UnicodeDecodeError that never names
    the file.
    """
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "no such file"
        raise UsageError(f"{flag} {path}: {what}; pass a UTF-8 file: .txt (one text per line), .json, .jsonl or .csv.")
    digest, decoder, offset = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")(), 0
    with file.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            if (nul := chunk.find(b"\0")) >= 0:
                where = f"NUL byte at offset {offset + nul}"
                raise UsageError(f"{flag} {path} is binary, not text ({where}); give a UTF-8 text file.")
            _decode(decoder, chunk, offset, flag, path)
            offset += len(chunk)
    _decode(decoder, b"", offset, flag, path)  # a file that ends inside a multi-byte character
    if offset == 0:
        raise UsageError(f"{flag} {path} is empty; give one text per line.")
    return digest.hexdigest()


def _decode(decoder: codecs.IncrementalDecoder, chunk: bytes, offset: int, flag: str, path: str) -> None:
    pending = len(decoder.getstate()[0])  # bytes of a character split across chunks, before `offset`
    try:
        decoder.decode(chunk, final=not chunk)
    except UnicodeDecodeError as error:
        at = offset - pending + error.start
        raise UsageError(
            f"{flag} {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {at}); "
            "convert it, e.g. iconv -f latin1 -t utf-8."
        ) from None


def check_data_files(data_args: DataArguments) -> None:
    """--train_file and --validation_file exist, share a supported format and are non-empty UTF-8 text.

    Called when the arguments are parsed, so a bad file fails in one line before the teacher loads.
    """
    if data_args.validation_file and not data_args.train_file:
        raise UsageError(f"--validation_file {data_args.validation_file} needs --train_file (the texts to train on).")
    if not data_args.train_file:
        return
    builder = file_builder(data_args.train_file, "--train_file")
    file_digest(data_args.train_file, "--train_file")
    if data_args.validation_file:
        if file_builder(data_args.validation_file, "--validation_file") != builder:
            raise UsageError(
                f"--validation_file {data_args.validation_file} is not in the format of --train_file "
                f"{data_args.train_file}; give both as .txt, both as .json/.jsonl, or both as .csv."
            )
        file_digest(data_args.validation_file, "--validation_file")


def _source_name(data_args: DataArguments) -> str:
    if data_args.dataset_name:
        return f"--dataset_name {data_args.dataset_name}"
    if data_args.train_file:
        return f"--train_file {data_args.train_file}"
    return "the gensim Wikipedia excerpt"


def load_texts(data_args: DataArguments) -> datasets.DatasetDict:
    """Raw texts with "train" and "test" splits: the Hub, local files, or the offline Wikipedia excerpt."""
    if data_args.dataset_name:
        raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    elif data_args.train_file:
        files = {"train": data_args.train_file}
        if data_args.validation_file:
            files["test"] = data_args.validation_file
        builder = file_builder(data_args.train_file, "--train_file")
        try:
            raw = datasets.load_dataset(builder, data_files=files)
        except datasets.exceptions.DatasetGenerationError as error:  # a malformed .json/.csv line
            cause = " ".join(str(error.__cause__ or error).split())[:200]
            raise UsageError(f"could not read {' and '.join(files.values())} as {builder}: {cause}") from None
    else:
        raw = wikipedia_splits()
    if "test" not in raw:
        if "validation" in raw:
            raw["test"] = raw.pop("validation")
        elif len(raw["train"]) < 2:
            raise UsageError(
                f"{_source_name(data_args)} holds {len(raw['train'])} text; holding {_HELD_OUT_SHARE:.0%} out needs "
                "at least 2: give more lines, or pass --validation_file."
            )
        else:
            raw = raw["train"].train_test_split(test_size=_HELD_OUT_SHARE, seed=0)
    for name, split in raw.items():
        if data_args.text_column not in split.column_names:
            raise UsageError(
                f"split {name} has columns {split.column_names}; pass --text_column with the text's column."
            )
    column = data_args.text_column
    renames = {column: "text"} if column != "text" else {}
    splits = {k: raw[k].select_columns([column]).rename_columns(renames) for k in ("train", "test")}
    return datasets.DatasetDict(splits)


def fit_max_seq_length(
    max_seq_length: int, tokenizer: PreTrainedTokenizerBase, models: Sequence[PreTrainedModel] = ()
) -> int:
    """`max_seq_length`, lowered with a one-line warning to the positions the models can embed.

    Longer sequences fail only at step 1, with a size mismatch in the position embeddings. The tokenizer's
    `model_max_length` counts too: RoBERTa's 514 position embeddings hold 512 tokens. run_mlm.py clamps
    the same way.
    """
    limits = [
        (model.config.max_position_embeddings, f"{type(model).__name__}'s max_position_embeddings")
        for model in models
        if hasattr(model.config, "max_position_embeddings")
    ]
    if tokenizer.model_max_length < VERY_LARGE_INTEGER:  # the tokenizer's "unknown" sentinel
        limits.append((tokenizer.model_max_length, f"{type(tokenizer).__name__}'s model_max_length"))
    if not limits or min(limits)[0] >= max_seq_length:
        return max_seq_length
    limit, source = min(limits)
    logger.warning(
        f"--max_seq_length {max_seq_length} is longer than {source} ({limit}); using {limit}. "
        f"Pass --max_seq_length {limit} or less to silence this."
    )
    return limit


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Everything that decides the ids: a fast tokenizer's pipeline (vocabulary, normaliser such as lower-
    casing, pre-tokeniser, added tokens), less its padding/truncation state, which a call may leave set."""
    if tokenizer.is_fast:
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = {"vocab": tokenizer.get_vocab(), "init": tokenizer.init_kwargs}
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id]
    text = json.dumps([type(tokenizer).__name__, state, specials], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_key(data_args: DataArguments, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    """Content, not paths: the files' bytes, the tokenizer, the chunking and split settings."""
    if data_args.dataset_name:
        source = [data_args.dataset_name, data_args.dataset_config_name]
    elif data_args.train_file:
        train_file = data_args.train_file
        source = [file_builder(train_file, "--train_file"), file_digest(train_file, "--train_file")]
        if data_args.validation_file:
            source.append(file_digest(data_args.validation_file, "--validation_file"))
    else:
        source = [f"gensim:{WIKI_EXCERPT}", *HELD_OUT_ARTICLES]
    settings = [CACHE_VERSION, source, data_args.text_column, max_length, MIN_TOKENS, _HELD_OUT_SHARE]
    return hashlib.sha256(json.dumps([settings, tokenizer_fingerprint(tokenizer)]).encode()).hexdigest()[:16]


def _check_sequences(processed: datasets.DatasetDict, raw: datasets.DatasetDict, data_args: DataArguments) -> None:
    """Zero sequences in a split would fail much later (an empty DataLoader, a NaN held-out loss)."""
    why = f"no sequence of at least {MIN_TOKENS} tokens after tokenising: lines are too short or blank"
    if len(processed["train"]) == 0:
        raise UsageError(
            f"{_source_name(data_args)}: {why} ({len(raw['train'])} texts); give one text per line, "
            "a dozen words or more each, or more text."
        )
    if len(processed["test"]) == 0:
        if data_args.validation_file:
            raise UsageError(f"--validation_file {data_args.validation_file}: {why}; give longer held-out texts.")
        raise UsageError(
            f"the held-out {_HELD_OUT_SHARE:.0%} of {_source_name(data_args)} ({len(raw['test'])} texts): {why}; "
            "pass --validation_file or more text."
        )


def prepare_corpus(
    data_args: DataArguments, tokenizer: PreTrainedTokenizerBase, models: Sequence[PreTrainedModel] = ()
) -> tuple[datasets.Dataset, datasets.Dataset, torch.Tensor]:
    """(train, held-out, token counts of train), tokenised and chunked once, then reused from the disk cache.

    The cache key covers the content of the files (a file fixed or grown in place is read anew), the
    tokenizer and the chunking settings, so a change of any of them rebuilds it. `models` (teacher,
    student) cap the sequence length at the positions they embed (`fit_max_seq_length`).
    """
    max_length = fit_max_seq_length(data_args.max_seq_length, tokenizer, models)
    folder = Path(data_args.data_cache_dir) / _cache_key(data_args, tokenizer, max_length)
    if not (folder / "counts.npy").exists():
        raw = load_texts(data_args)
        workers = data_args.preprocessing_num_workers
        processed = datasets.DatasetDict(
            {name: tokenize_and_chunk(split, tokenizer, max_length, num_proc=workers) for name, split in raw.items()}
        )
        _check_sequences(processed, raw, data_args)
        processed.save_to_disk(str(folder))
        np.save(folder / "counts.npy", token_counts(processed["train"], tokenizer).numpy())
    processed = datasets.load_from_disk(str(folder))
    train, held_out = processed["train"], processed["test"]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.max_eval_samples is not None:
        held_out = held_out.select(range(min(data_args.max_eval_samples, len(held_out))))
    return train, held_out, torch.from_numpy(np.load(folder / "counts.npy"))


def datasets_from_text(
    model: PreTrainedModel,
    args: TrainingArguments,
    tokenizer: PreTrainedTokenizerBase | None,
    train_dataset: datasets.Dataset | None,
    eval_dataset: datasets.Dataset | None,
    data_collator: Any,
) -> tuple[datasets.Dataset | None, datasets.Dataset | None, Any]:
    """(train, eval, collator): datasets of raw text (a "text" column, no "input_ids") tokenised and chunked by
    `tokenize_and_chunk`, others as given; without a collator, DistilBERT's masking collator with the training
    text's token counts."""
    max_length = min(model.config.max_position_embeddings, getattr(tokenizer, "model_max_length", 10**9))
    split = {"train_dataset": train_dataset, "eval_dataset": eval_dataset}
    for key, dataset in split.items():
        columns = getattr(dataset, "column_names", None)
        if columns is None or "text" not in columns or "input_ids" in columns:  # tokenised, or cached teacher signals
            continue
        if tokenizer is None:
            raise UsageError(f"{key} holds raw text; pass processing_class=tokenizer so the trainer can tokenise it.")
        split[key] = tokenize_and_chunk(dataset, tokenizer, max_length=max_length)
    train_dataset, eval_dataset = split["train_dataset"], split["eval_dataset"]
    if data_collator is None and (train_dataset or eval_dataset) is not None:
        if tokenizer is None:
            raise UsageError(
                "pass data_collator=DataCollatorForDistillation(tokenizer, ...) or processing_class=tokenizer."
            )
        counts = token_counts(train_dataset, tokenizer) if train_dataset is not None else None
        data_collator = DataCollatorForDistillation.from_arguments(tokenizer, args, token_counts=counts)
    return train_dataset, eval_dataset, data_collator
