"""Sentences for distilling an embedder: the offline corpora cut into sentences, or the user's own texts as given.

The offline default joins two corpora of gensim's test data: the Wikipedia excerpt (its training articles; the
held-out articles, `HELD_OUT_ARTICLES`, give the held-out sentences) and `lee_background.cor`, 300 news articles
that the corpus of Lee et al. (2005) came with as background text. The 50 documents that Lee et al. rated
(`lee.cor`) are the evaluation and never among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import datasets

from ..errors import UsageError
from .corpus import DataArguments, load_texts, wikipedia_splits

NEWS_BACKGROUND = "lee_background.cor"
MIN_WORDS = 4  # shorter pieces are headings, captions and list items rather than sentences
# A sentence ends at ., ! or ? followed by white space: good enough for edited prose, and no model to download.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+")


def split_sentences(texts: Iterable[str], min_words: int = MIN_WORDS) -> list[str]:
    """The sentences of `texts` in order, those of fewer than `min_words` words left out."""
    return [s.strip() for text in texts for s in _BOUNDARY.split(text) if len(s.split()) >= min_words]


def news_background() -> list[str]:
    """The 300 news articles of gensim's `lee_background.cor`, one per line (latin-1 text)."""
    import gensim

    path = Path(gensim.__file__).parent / "test" / "test_data" / NEWS_BACKGROUND
    return [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]


def sentence_splits(data_args: DataArguments) -> datasets.DatasetDict:
    """ "train" and "test" splits with a "text" column: the user's texts (--train_file, --dataset_name) as they
    are, one per row, or the offline default's sentences."""
    if data_args.train_file or data_args.dataset_name:
        splits = load_texts(data_args).filter(lambda row: bool(row["text"] and row["text"].strip()))
    else:
        wikipedia = wikipedia_splits()
        train = split_sentences([*wikipedia["train"]["text"], *news_background()])
        splits = datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict({"text": train}),
                "test": datasets.Dataset.from_dict({"text": split_sentences(wikipedia["test"]["text"])}),
            }
        )
    for name, split in splits.items():
        if len(split) < 2:
            raise UsageError(
                f"the {name} texts hold {len(split)} non-empty line(s); the in-batch terms and the agreement "
                "measures compare texts with each other: give at least 2, one per line."
            )
    if data_args.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(data_args.max_train_samples, len(splits["train"]))))
    if data_args.max_eval_samples is not None:
        splits["test"] = splits["test"].select(range(min(data_args.max_eval_samples, len(splits["test"]))))
    return splits
