"""`DataCollatorForDistillation`: pad, then mask anew for every batch (no NSP, no student token types)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from . import masking

# The masking settings of DistillationArguments a collator takes (from_arguments), and a teacher cache records.
MASKING_SETTINGS = (
    "mlm_probability",
    "mask_replace_prob",
    "random_replace_prob",
    "mlm_smoothing",
    "whole_word_masking",
)


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, role: str = "student") -> None:
    """Every id the tokenizer (and the collator's random replacement) can give must index `model`'s embeddings;
    otherwise step 1 fails with "IndexError: index out of range in self". A smaller tokenizer is fine."""
    embeddings = model.get_input_embeddings()
    rows = embeddings.num_embeddings if embeddings is not None else model.config.vocab_size
    if len(tokenizer) > rows:
        raise UsageError(
            f"tokenizer has {len(tokenizer)} tokens but the {role}'s vocabulary is {rows}; use the tokenizer the "
            f"{role} was trained with, or grow it first with model.resize_token_embeddings({len(tokenizer)})."
        )


class DataCollatorForDistillation:
    """Dynamic padding and DistilBERT's dynamic masking.

    Unlike `DataCollatorForLanguageModeling`, it draws ceil(p × real tokens) positions per batch with
    DistilBERT's count^-0.7 weights (pass `token_counts`, see `hf_distil.token_counts`), and never emits
    next-sentence labels. `token_type_ids` present in the features are padded and passed on: the trainer
    gives them to a teacher that takes them, never to a student that does not.

    seed: the masks of a batch are a function of (seed, epoch, the batch's token ids), drawn from a private
    generator. Every batch of an epoch differs, so masks are still drawn anew for each batch and each
    epoch (`set_epoch`, called by `DistillationTrainer`), yet a resumed run redraws exactly the masks of
    the uninterrupted one: no draw depends on how many batches the data loader prefetched, and the
    global RNG (dropout) is left alone.
    mlm=False: causal students; labels are the input ids, -100 on padding.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        token_counts: torch.Tensor | Sequence[int] | None = None,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        mlm_smoothing: float = 0.7,
        whole_word_masking: bool = False,
        pad_to_multiple_of: int | None = None,
        seed: int = 0,
        mlm: bool = True,
    ) -> None:
        if mlm and tokenizer.mask_token_id is None:
            raise UsageError(f"{type(tokenizer).__name__} has no mask token; pass mlm=False for a causal student.")
        if tokenizer.pad_token_id is None:
            raise UsageError(f"{type(tokenizer).__name__} has no pad token; set tokenizer.pad_token first.")
        # The arguments run the same check; an API user who builds the collator alone gets it here.
        masking.check_masking_settings(mlm_probability, mask_replace_prob, random_replace_prob, mlm_smoothing, mlm=mlm)
        self.tokenizer = tokenizer
        self.mlm = mlm
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.mlm_smoothing = mlm_smoothing
        self.whole_word_masking = whole_word_masking
        self.pad_to_multiple_of = pad_to_multiple_of
        self.vocab_size = len(tokenizer)
        specials = sorted(set(tokenizer.all_special_ids))
        if token_counts is None:
            weights = masking.token_weights(torch.ones(self.vocab_size), 0.0, specials)
        else:
            counts = torch.as_tensor(token_counts)
            if counts.numel() != self.vocab_size:
                raise UsageError(
                    f"token_counts has {counts.numel()} entries but the tokenizer has {self.vocab_size} tokens; "
                    "count with hf_distil.token_counts(texts, tokenizer) using this tokenizer."
                )
            weights = masking.token_weights(counts, mlm_smoothing, specials)
        self.weights = weights
        self.is_continuation = self._continuation_table(tokenizer) if whole_word_masking else None
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_arguments(
        cls, tokenizer: PreTrainedTokenizerBase, args: Any, token_counts: torch.Tensor | None = None, **kwargs: Any
    ) -> DataCollatorForDistillation:
        """The collator of a run: masking settings and seed from `DistillationArguments` (their one home)."""
        settings = {k: getattr(args, k) for k in MASKING_SETTINGS}
        return cls(tokenizer, token_counts=token_counts, seed=args.seed, **settings, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, input_ids: torch.Tensor) -> torch.Generator:
        digest = hashlib.blake2b(input_ids.numpy().tobytes(), digest_size=8, key=f"{self.seed}:{self.epoch}".encode())
        return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1)

    @staticmethod
    def _continuation_table(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
        # WordPiece marks word-inner pieces with "##"; other tokenizers mark word starts instead.
        table = torch.zeros(len(tokenizer), dtype=torch.bool)
        for token, index in tokenizer.get_vocab().items():
            if token.startswith("##"):
                table[index] = True
        if not table.any():
            raise UsageError(
                f"whole_word_masking needs a WordPiece vocabulary ('##' pieces); {type(tokenizer).__name__} has none."
            )
        return table

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        keep = ("input_ids", "attention_mask", "token_type_ids")
        batch = self.tokenizer.pad(
            [{k: v for k, v in f.items() if k in keep} for f in features],
            return_tensors="pt",
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        batch = dict(batch)
        input_ids = batch["input_ids"]
        if not self.mlm:
            batch["labels"] = input_ids.masked_fill(~batch["attention_mask"].bool(), masking.IGNORE_INDEX)
            return batch
        word_ids = None
        if self.is_continuation is not None:
            eligible = batch["attention_mask"].bool() & self.weights[input_ids].gt(0)
            word_ids = masking.word_ids_from_continuation(input_ids, eligible, self.is_continuation)
        generator = self._generator(input_ids)
        chosen = masking.choose_positions(
            input_ids, batch["attention_mask"], self.mlm_probability, self.weights, generator, word_ids
        )
        batch["input_ids"], batch["labels"] = masking.apply_replacements(
            input_ids,
            chosen,
            self.tokenizer.mask_token_id,
            self.vocab_size,
            self.mask_replace_prob,
            self.random_replace_prob,
            generator,
        )
        return batch
