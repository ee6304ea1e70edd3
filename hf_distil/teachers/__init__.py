"""Offline teachers that the project builds and ships, by name."""

from __future__ import annotations

from collections.abc import Callable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from . import minilm

TEACHERS: dict[str, Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]] = {
    minilm.NAME: minilm.load_minilm_wiki_mlm,
}
DEFAULT_TEACHER = minilm.NAME
# The Hub model each shipped teacher is built on: the model card's `base_model`.
BASE_MODELS = {minilm.NAME: minilm.BASE_MODEL}


def load_default_teacher(name: str = DEFAULT_TEACHER) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(BertForMaskedLM, tokenizer) of a shipped teacher; needs no network."""
    if name not in TEACHERS:
        raise UsageError(f"unknown shipped teacher {name!r}; available: {sorted(TEACHERS)}.")
    return TEACHERS[name]()
