"""Vocabulary trimming: a student that knows only the WordPiece tokens its corpus uses.

In a small student the vocabulary dominates: the word embeddings and the MLM decoder are (V, H) each, and the
vocabulary projection is the largest matrix product per token. `trim_vocabulary` keeps the N tokens the corpus uses
most (its counts smoothed by the teacher's own vocabulary order, a prior on text the corpus lacks), plus every special
token and every single character (and its `##` continuation) the corpus needs, so that any text in those characters
still tokenises without [UNK]. The kept ids are a subset of the teacher's, kept in the teacher's order: a token's row
in the student is its teacher row, and `restrict_teacher` gives a view of the teacher over the same ids, so both
models read the same pieces at the same positions and the teacher's distribution is its own restricted to the kept
ids, renormalised (a softmax over the kept logits).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..errors import UsageError
from .layer_map import PROVENANCE_KEY

logger = logging.get_logger(__name__)

# Where a student records the teacher ids it kept, in its order (inside config.hf_distil): a trainer handed the full
# teacher restricts it to them (teachers.prepare), and a run that resumes finds the same vocabulary.
KEPT_IDS_KEY = "teacher_vocabulary"
# Characters kept whatever the corpus, with their `##` forms (as the tokenizer normalises them): held-out text in the
# corpus's script meets digits, punctuation and symbols (£, °, ½) the corpus may lack, for a few hundred rows at most.
_ALWAYS_KEPT_CHARACTERS = "".join(chr(c) for c in [*range(33, 127), *range(0xA1, 0x100)])


# How much the teacher's order weighs in `choose_vocabulary`, as a share of the corpus's words: the corpus stays 2:1
# the larger voice. Chosen on news and Wikipedia that are neither trained on nor the held-out news the docs report.
PRIOR_WEIGHT = 0.5


class TrimmedVocabulary(NamedTuple):
    model: PreTrainedModel  # the student, with the kept rows only
    tokenizer: PreTrainedTokenizerBase  # a fast tokenizer over the kept tokens, ids 0..N-1 in the kept order
    kept_ids: list[int]  # the teacher id of each student id


def trim_vocabulary(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], size: int
) -> TrimmedVocabulary:
    """`model` (changed in place) and a new tokenizer, both over the at most `size` tokens `texts` need most
    (`choose_vocabulary`). `model` must share `tokenizer`'s ids (a student cut from the teacher)."""
    if model.config.vocab_size != len(tokenizer):
        raise UsageError(
            f"the model's vocabulary ({model.config.vocab_size}) is not the tokenizer's ({len(tokenizer)}); "
            "trim a model that uses this tokenizer, e.g. one from init_student_from_teacher(teacher)."
        )
    kept = choose_vocabulary(tokenizer, texts, size)
    return TrimmedVocabulary(keep_vocabulary_rows(model, kept), trim_tokenizer(tokenizer, kept), kept)


def choose_vocabulary(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], size: int, prior_weight: float = PRIOR_WEIGHT
) -> list[int]:
    """Teacher ids to keep, ascending: every special token, every character of `texts` (and printable ASCII) with
    its `##` form, and the at most `size` tokens in all that cost the fewest extra pieces to lose.

    Plain frequency would drop a long word used a few times before a short piece used a little more, though the word
    costs several pieces where it appears and the piece one. Instead, starting from every token the texts use, the
    tenth (at most) whose removal adds the fewest pieces to the corpus, re-segmented by WordPiece's own greedy
    longest-match rule, goes at each round (ties: the less used first), as vocabulary pruning does for unigram
    models; the costs are recomputed after each round.

    The corpus alone is a small sample of what the student will read: a common word it happens to lack would be
    split into pieces everywhere else. The teacher's WordPiece vocabulary was written roughly in order of frequency
    in its far larger pretraining text (in BERT's, the words after the block of single characters), a prior on
    what unseen text uses. So the counts are smoothed with it, as a Dirichlet prior adds pseudo-counts: the
    teacher's whole-word tokens count as words seen `prior_weight` × (the corpus's word count) times in all,
    shared by Zipf's law over their order (the r-th gets a share ∝ 1/r), those under one occurrence left out as
    less than the corpus can say of any word. Only words in the corpus's characters take part.
    `prior_weight=0` chooses from the corpus alone.
    """
    _check_wordpiece(tokenizer)
    backend = tokenizer.backend_tokenizer
    model = json.loads(backend.to_str())["model"]
    prefix, longest = model["continuing_subword_prefix"], model["max_input_chars_per_word"]
    normalise = backend.normalizer.normalize_str if backend.normalizer else str
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalise(text)))
    vocab = tokenizer.get_vocab()
    characters = {c for word in [*words, normalise(_ALWAYS_KEPT_CHARACTERS)] for c in word}
    required = {tokenizer.convert_ids_to_tokens(i) for i in tokenizer.all_special_ids}
    required |= {t for c in characters for t in (c, prefix + c) if t in vocab}
    if len(required) > size:
        raise UsageError(
            f"vocabulary size {size} is below the {len(required)} special and single-character tokens the corpus "
            f"needs; pass a size of at least {len(required)}."
        )
    words = Counter({w: n for w, n in words.items() if len(w) <= longest})  # longer ones are [UNK] whatever is kept
    if prior_weight > 0:
        words.update(_teacher_prior(vocab, prefix, characters, prior_weight * words.total(), backend, normalise))
    kept = set(vocab)
    while True:
        pieces = {w: p for w in words if (p := _wordpiece(w, kept, prefix))}  # None: [UNK] whatever is kept
        used: Counter[str] = Counter()
        for word, split in pieces.items():
            for piece in split:
                used[piece] += words[word]
        kept = required | set(used)
        if len(kept) <= size:
            return sorted(vocab[t] for t in kept)
        cost: Counter[str] = Counter({t: 0 for t in kept - required})
        for word, split in pieces.items():
            for piece in set(split) - required:
                kept.discard(piece)
                without = _wordpiece(word, kept, prefix)
                kept.add(piece)
                cost[piece] += words[word] * ((len(without) if without else longest) - len(split))
        ranked = sorted(cost, key=lambda t: (cost[t], used[t], vocab[t]))
        kept -= set(ranked[: min(len(kept) - size, max(1, len(kept) // 10))])


def _teacher_prior(
    vocab: dict[str, int], prefix: str, characters: set[str], mass: float, backend: Tokenizer, normalise
) -> dict[str, float]:
    """Pseudo-counts for the teacher's whole-word tokens, `mass` in all, the one at rank r (by teacher id, among the
    words written in `characters`) getting mass / (r · H), H the harmonic sum: Zipf's law over the teacher's order."""
    candidates = [
        token
        for token in sorted(vocab, key=vocab.__getitem__)
        if len(token) > 1
        and not token.startswith(prefix)
        and set(token) <= characters
        and [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(normalise(token))] == [token]
    ]
    harmonic = sum(1 / rank for rank in range(1, len(candidates) + 1))
    counts = {token: mass / (rank * harmonic) for rank, token in enumerate(candidates, 1)}
    return {token: n for token, n in counts.items() if n >= 1}


def _wordpiece(word: str, vocab: set[str], prefix: str) -> list[str] | None:
    """`word` in pieces of `vocab` by WordPiece's greedy longest match (as `tokenizers` splits it); None for [UNK]."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:
            return None
        pieces.append(piece)
        start = end
    return pieces


def trim_tokenizer(tokenizer: PreTrainedTokenizerBase, kept_ids: Sequence[int]) -> PreTrainedTokenizerBase:
    """A tokenizer of `tokenizer`'s class whose WordPiece model holds the kept tokens, numbered in order, with the
    same normaliser, pre-tokeniser and decoder and the special ids renumbered in its post-processor and padding.

    The WordPiece model is rebuilt in the serialised form `tokenizers` reads back (`Tokenizer.from_str`), which is
    also what transformers.js reads from tokenizer.json: the same file serves every client.
    """
    _check_wordpiece(tokenizer)
    new_id = {old: new for new, old in enumerate(kept_ids)}
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state["model"]["vocab"] = {token: new_id[old] for token, old in state["model"]["vocab"].items() if old in new_id}
    for added in state["added_tokens"]:
        added["id"] = new_id[added["id"]]
    if state.get("padding"):
        state["padding"]["pad_id"] = new_id[state["padding"]["pad_id"]]
    state["post_processor"] = _renumbered(state["post_processor"], new_id)
    backend = Tokenizer.from_str(json.dumps(state))
    keep = ("do_lower_case", "tokenize_chinese_chars", "strip_accents", "model_max_length", "padding_side")
    settings = {k: v for k, v in tokenizer.init_kwargs.items() if k in keep}
    specials = {k: str(v) for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    trimmed = type(tokenizer)(tokenizer_object=backend, **settings, **specials)
    trimmed.backend_tokenizer.post_processor = backend.post_processor  # a class may rebuild its own: keep ours
    assert len(trimmed) == len(kept_ids), f"trimmed tokenizer holds {len(trimmed)} ids, {len(kept_ids)} were kept"
    for name, token_id in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids, strict=True):
        assert trimmed.convert_tokens_to_ids(name) == new_id[token_id], f"{name} lost its place"
    return trimmed


def _renumbered(processor: dict | None, new_id: dict[int, int]) -> dict | None:
    """A post-processor's special-token ids renumbered (TemplateProcessing, BertProcessing, Sequence)."""
    if processor is None:
        return None
    kind = processor["type"]
    if kind == "TemplateProcessing":
        for special in processor["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key] = [processor[key][0], new_id[processor[key][1]]]
    elif kind == "Sequence":
        processor["processors"] = [_renumbered(p, new_id) for p in processor["processors"]]
    return processor


def _check_wordpiece(tokenizer: PreTrainedTokenizerBase) -> None:
    if not tokenizer.is_fast or json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"] != "WordPiece":
        raise UsageError(
            f"vocabulary trimming needs a fast WordPiece tokenizer (BERT's), got {type(tokenizer).__name__}; "
            "leave the vocabulary size unset for this teacher."
        )


@torch.no_grad()
def keep_vocabulary_rows(model: PreTrainedModel, kept_ids: Sequence[int]) -> PreTrainedModel:
    """`model` (in place) with only the kept rows of its word embeddings, MLM decoder and decoder bias, in the kept
    order; tied weights stay tied, and the config's vocabulary size and special ids follow. The kept ids are
    recorded in the config (`config.hf_distil["teacher_vocabulary"]`)."""
    index = torch.as_tensor(list(kept_ids), dtype=torch.long)
    if index.numel() and int(index.max()) >= model.config.vocab_size:
        raise UsageError(f"kept ids reach {int(index.max())}, beyond the model's {model.config.vocab_size} tokens.")
    new_id = {old: new for new, old in enumerate(index.tolist())}
    old_in = model.get_input_embeddings()
    if hasattr(old_in.weight, "ds_numel"):  # each process holds a shard of each row: there are no rows to pick
        raise UsageError(
            "the model is partitioned by DeepSpeed ZeRO-3, so its vocabulary rows cannot be picked: trim the "
            "vocabulary with the whole model on each process (DDP or ZeRO-2)."
        )
    new_in = nn.Embedding(len(index), old_in.embedding_dim, dtype=old_in.weight.dtype, device=old_in.weight.device)
    new_in.weight.copy_(old_in.weight[index.to(old_in.weight.device)])
    new_in.padding_idx = new_id.get(old_in.padding_idx) if old_in.padding_idx is not None else None
    model.set_input_embeddings(new_in)
    old_out = model.get_output_embeddings()
    if old_out is not None:
        weight = old_out.weight
        new_out = nn.Linear(weight.shape[1], len(index), bias=old_out.bias is not None)
        new_out.to(device=weight.device, dtype=weight.dtype)
        new_out.weight.copy_(weight[index.to(weight.device)])
        if old_out.bias is not None:
            new_out.bias.copy_(old_out.bias[index.to(weight.device)])
        model.set_output_embeddings(new_out)
    teacher_vocabulary = model.config.vocab_size
    model.config.vocab_size = len(index)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        old = getattr(model.config, name, None)
        if isinstance(old, int):
            setattr(model.config, name, new_id.get(old))
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    recorded = dict(getattr(model.config, PROVENANCE_KEY, None) or {})
    previous = recorded.get(KEPT_IDS_KEY)  # trimmed twice: ids of the first teacher, through the first trim
    recorded[KEPT_IDS_KEY] = [previous[i] for i in index.tolist()] if previous else index.tolist()
    recorded.setdefault("teacher_vocabulary_size", teacher_vocabulary)
    setattr(model.config, PROVENANCE_KEY, recorded)
    return model


def kept_teacher_ids(model: PreTrainedModel) -> list[int] | None:
    """The teacher id of each of `model`'s ids, if its vocabulary was trimmed (`keep_vocabulary_rows`), else None."""
    return (getattr(model.config, PROVENANCE_KEY, None) or {}).get(KEPT_IDS_KEY)


def restrict_teacher(teacher: PreTrainedModel, kept_ids: Sequence[int]) -> PreTrainedModel:
    """The teacher seen through the kept ids: a copy whose word embeddings, decoder and bias hold the kept rows,
    sharing every other weight with `teacher` (nothing else is copied).

    Feeding it student ids equals feeding `teacher` the mapped teacher ids (an embedding lookup of the same rows),
    and its logits are the teacher's at the kept ids, so a softmax over them is the teacher's distribution
    restricted to the kept vocabulary and renormalised: the target of L_ce across the two vocabularies.
    """
    rows = [m for m in (teacher.get_input_embeddings(), teacher.get_output_embeddings()) if m is not None]
    vocabulary = {id(p) for m in rows for p in m.parameters()}  # BERT's head bias is its decoder's bias
    shared = {id(t): t for t in [*teacher.parameters(), *teacher.buffers()] if id(t) not in vocabulary}
    view = copy.deepcopy(teacher, memo=shared)
    return keep_vocabulary_rows(view, kept_ids)


def mass_outside(teacher_logits: torch.Tensor, kept_ids: Sequence[int], temperature: float = 1.0) -> torch.Tensor:
    """Per row, the probability the teacher puts on tokens outside `kept_ids`: what restricting its distribution to
    the kept vocabulary renormalises away. teacher_logits (N, V) over the full vocabulary; returns (N,)."""
    log_probs = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    index = torch.as_tensor(list(kept_ids), dtype=torch.long, device=teacher_logits.device)
    return 1.0 - log_probs.index_select(-1, index).exp().sum(-1)


def match_teacher_vocabulary(teacher: PreTrainedModel, student: PreTrainedModel) -> PreTrainedModel:
    """`teacher` as it can teach `student`: itself when their vocabularies agree, its view through the student's
    kept ids (`restrict_teacher`) when the student was trimmed from a vocabulary of the teacher's size."""
    kept = kept_teacher_ids(student)
    recorded = (getattr(student.config, PROVENANCE_KEY, None) or {}).get("teacher_vocabulary_size")
    if kept is None or teacher.config.vocab_size == student.config.vocab_size:
        return teacher
    if teacher.config.vocab_size != recorded:
        raise UsageError(
            f"the student's vocabulary was trimmed from {recorded} tokens, the teacher has "
            f"{teacher.config.vocab_size}; pass the teacher whose tokenizer the vocabulary was trimmed from."
        )
    return restrict_teacher(teacher, kept)
