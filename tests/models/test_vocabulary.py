"""Vocabulary trimming: the kept tokens, a tokenizer and a student that stock clients load, the teacher's view."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bert_config
from gensim.test.utils import datapath
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertForMaskedLM, pipeline

from hf_distil import UsageError, init_student_from_teacher, trim_vocabulary
from hf_distil.models import (
    choose_vocabulary,
    keep_vocabulary_rows,
    mass_outside,
    restrict_teacher,
    trim_tokenizer,
)
from hf_distil.teachers.prepare import Teachers


def _lines(name: str) -> list[str]:
    with open(datapath(name), encoding="latin-1") as stream:
        return [line.strip() for line in stream if line.strip()]


@pytest.fixture(scope="module")
def bert_tokenizer(minilm_folder):
    """The real bert-base-uncased WordPiece tokenizer (30,522 tokens), offline."""
    return AutoTokenizer.from_pretrained(str(minilm_folder))


@pytest.fixture(scope="module")
def news():
    """100 of gensim's background news documents to choose from; lee.cor (another 50) is never chosen from."""
    return _lines("lee_background.cor")[:100], _lines("lee.cor")


@pytest.fixture(scope="module")
def chosen(bert_tokenizer, news):
    return choose_vocabulary(bert_tokenizer, news[0], 3000)


def test_kept_tokens_hold_the_specials_and_characters_and_held_out_news_has_almost_no_unk(
    bert_tokenizer, news, chosen
):
    train, held_out = news
    assert len(chosen) == 3000 and chosen == sorted(set(chosen))
    assert set(bert_tokenizer.all_special_ids) <= set(chosen)
    tokens = set(bert_tokenizer.convert_ids_to_tokens(chosen))
    assert {*"abcxyz019.,", "##a", "##z", "##9"} <= tokens
    trimmed = trim_tokenizer(bert_tokenizer, chosen)
    full = bert_tokenizer(held_out, add_special_tokens=False)["input_ids"]
    cut = trimmed(held_out, add_special_tokens=False)["input_ids"]
    pieces = sum(map(len, cut))
    assert sum(ids.count(trimmed.unk_token_id) for ids in cut) / pieces <= 0.005
    assert sum(map(len, full)) < pieces < 2 * sum(map(len, full))  # more tokens: words split into more pieces
    # Same text back, and the same pieces wherever the teacher's pieces were all kept.
    assert trimmed.batch_decode(cut) == bert_tokenizer.batch_decode(full)
    assert {*"£$%°"} <= set(trimmed.convert_ids_to_tokens(range(len(trimmed))))  # held-out news needs them
    words = " ".join(held_out).split()[:3000]
    kept, pairs = (
        set(chosen),
        zip(*(t(words, add_special_tokens=False)["input_ids"] for t in (bert_tokenizer, trimmed))),
    )
    same = [(f, c) for f, c in pairs if set(f) <= kept]
    assert len(same) > 2000 and all(
        trimmed.convert_ids_to_tokens(c) == bert_tokenizer.convert_ids_to_tokens(f) for f, c in same
    )


def test_the_teachers_order_keeps_a_common_word_the_corpus_lacks_over_a_rare_one(bert_tokenizer, news, chosen):
    backend = bert_tokenizer.backend_tokenizer
    words = {
        w
        for text in news[0]
        for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))
    }
    common, rare = bert_tokenizer.convert_tokens_to_ids(["album", "guitarist"])  # whole words, early and late
    assert "album" not in words and "guitarist" not in words and common < rare  # equal corpus counts: none
    plain = set(choose_vocabulary(bert_tokenizer, news[0], 3000, prior_weight=0))
    assert common in chosen and rare not in chosen
    assert common not in plain and rare not in plain  # the corpus alone keeps neither
    assert len(plain & set(chosen)) > 0.9 * 3000  # the corpus still chooses most of the vocabulary


def test_a_size_below_the_required_tokens_is_refused_in_one_line(bert_tokenizer, news):
    with pytest.raises(UsageError, match=r"vocabulary size 50 is below the \d+ special and single-character"):
        choose_vocabulary(bert_tokenizer, news[0][:5], 50)


def test_trimmed_student_saves_as_a_folder_that_stock_transformers_load_and_matches_the_teacher_rows(
    bert_tokenizer, news, chosen, tmp_path
):
    torch.manual_seed(0)
    teacher = BertForMaskedLM(tiny_bert_config(len(bert_tokenizer))).eval()
    student = init_student_from_teacher(teacher, layers=[0, 3])
    reference = init_student_from_teacher(teacher, layers=[0, 3]).eval()
    trimmed = trim_vocabulary(student, bert_tokenizer, news[0], 3000)
    assert trimmed.kept_ids == chosen and trimmed.model.config.vocab_size == 3000
    assert trimmed.model.vocab_projector.weight is trimmed.model.distilbert.embeddings.word_embeddings.weight  # tied
    trimmed.model.save_pretrained(tmp_path)
    trimmed.tokenizer.save_pretrained(tmp_path)

    loaded, tokenizer = AutoModelForMaskedLM.from_pretrained(tmp_path).eval(), AutoTokenizer.from_pretrained(tmp_path)
    sentence = news[1][0]
    ids = tokenizer(sentence, return_tensors="pt", truncation=True, max_length=48)
    assert ids["input_ids"].tolist()[0] == trimmed.tokenizer(sentence, truncation=True, max_length=48)["input_ids"]
    kept = torch.tensor(chosen)
    with torch.no_grad():  # the same sequence of pieces, in teacher ids, through the untrimmed student
        full = reference(input_ids=kept[ids["input_ids"]], attention_mask=ids["attention_mask"]).logits
        cut = loaded(**{k: v for k, v in ids.items() if k != "token_type_ids"}).logits
    torch.testing.assert_close(cut, full[..., kept], rtol=0, atol=1e-5)

    fill = pipeline("fill-mask", model=str(tmp_path))
    guesses = fill(f"the prime minister said {tokenizer.mask_token} today.")
    assert len(guesses) == 5 and all(0 <= g["token"] < 3000 for g in guesses)


def test_the_teacher_view_gives_the_teachers_renormalised_distribution_over_the_kept_ids(teacher):
    kept = [0, 1, 2, 3, 4, 9, 12, 20, 33]
    view = restrict_teacher(teacher, kept)
    assert view.config.vocab_size == len(kept) and teacher.config.vocab_size > len(kept)
    assert (
        view.bert.encoder.layer[0].attention.self.query.weight
        is teacher.bert.encoder.layer[0].attention.self.query.weight
    )
    assert view.cls.predictions.decoder.weight is view.bert.embeddings.word_embeddings.weight
    student_ids = torch.tensor([[2, 5, 8, 6, 3]])
    with torch.no_grad():
        full = teacher(input_ids=torch.tensor(kept)[student_ids]).logits
        restricted = view(input_ids=student_ids).logits
    torch.testing.assert_close(restricted, full[..., kept], rtol=0, atol=1e-6)
    probs = full.softmax(-1)
    outside = mass_outside(full[0], kept)
    torch.testing.assert_close(outside, 1 - probs[0][:, kept].sum(-1))
    torch.testing.assert_close(restricted.softmax(-1)[0], probs[0][:, kept] / (1 - outside)[:, None])


def test_a_trainer_handed_the_full_teacher_teaches_the_trimmed_student_through_its_view(teacher, student):
    kept = [0, 1, 2, 3, 4, 9, 12, 20, 33]
    keep_vocabulary_rows(student, kept)
    weights = {"ce": 1.0, "mlm": 1.0, "cos": 1.0}
    view = Teachers.build(teacher, student, weights=None, loss_weights=weights).first
    assert view.config.vocab_size == len(kept) and view is not teacher and teacher.config.vocab_size > len(kept)
    other = BertForMaskedLM(tiny_bert_config(50))
    with pytest.raises(UsageError, match=f"trimmed from {teacher.config.vocab_size} tokens, the teacher has 50"):
        Teachers.build(other, student, weights=None, loss_weights=weights)
