"""The teacher side: loading, freezing and placing teachers (prepare.py), their signals cached once (cache.py),
and the offline teachers that the project builds and ships, by name (minilm.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from . import minilm
from .cache import (
    CACHE_COLUMNS,
    CachedSignalsCollator,
    build_teacher_cache,
    bytes_per_token,
    load_teacher_cache,
    read_teacher_cache,
)
from .minilm import packaged_encoder_path
from .prepare import check_model_source, load_teacher, load_tokenizer, prepare_teacher

TEACHERS: dict[str, Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]] = {
    minilm.NAME: minilm.load_minilm_wiki_mlm,
}
DEFAULT_TEACHER = minilm.NAME
# The Hub model each shipped teacher is built on: the model card's `base_model`.
BASE_MODELS = {minilm.NAME: minilm.BASE_MODEL}


def base_model_of(teacher: str | None) -> str | None:
    """The Hub model a teacher is or is built on (the card's `base_model`): a shipped teacher's base, a name that
    can be a Hub id as it is, and None for a local folder, which the Hub cannot link to."""
    if not teacher:
        return None
    if teacher in BASE_MODELS:
        return BASE_MODELS[teacher]
    return teacher if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", teacher) and not Path(teacher).exists() else None


def load_default_teacher(name: str = DEFAULT_TEACHER) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(BertForMaskedLM, tokenizer) of a shipped teacher; needs no network."""
    if name not in TEACHERS:
        raise UsageError(f"unknown shipped teacher {name!r}; available: {sorted(TEACHERS)}.")
    return TEACHERS[name]()


__all__ = [
    "BASE_MODELS",
    "CACHE_COLUMNS",
    "CachedSignalsCollator",
    "DEFAULT_TEACHER",
    "base_model_of",
    "build_teacher_cache",
    "bytes_per_token",
    "check_model_source",
    "load_default_teacher",
    "load_teacher",
    "load_teacher_cache",
    "read_teacher_cache",
    "load_tokenizer",
    "minilm",
    "packaged_encoder_path",
    "prepare_teacher",
]
