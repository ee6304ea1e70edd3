"""DistillationTrainer with the pooled sentence-embedding terms: models without an LM head, each model reading the
text with its own tokenizer, accumulation equal to one large batch, GradCache's replayed dropout."""

from __future__ import annotations

import copy
import random

import datasets
import pytest
import torch
from conftest import WORDS, make_trainer, one_sgd_step, tiny_bert_config
from test_trainer import assert_same_update
from transformers import AutoModel, AutoTokenizer, BertModel, DistilBertModel

from hf_distil import DistillationArguments, init_student_from_teacher
from hf_distil.data.sentences import SentenceCollator
from hf_distil.errors import UsageError
from hf_distil.losses import similarity_kl
from hf_distil.models.pooling import Pooling

POOLED_ONLY = {"alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 0.0}
SENTENCES = [
    "the cat sat on the mat",
    "a small dog ran to the house",
    "stocks fell sharply on monday",
    "the weather will be sunny and warm",
    "she plays the guitar in a band",
    "heavy rain is expected tomorrow",
    "markets rallied after the announcement",
    "the kitten slept under a red tree",
]


def sentences(n: int = 16, seed: int = 1) -> datasets.Dataset:
    rng = random.Random(seed)
    return datasets.Dataset.from_dict(
        {"text": [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]}
    )


def triplets(n: int = 8, seed: int = 2) -> datasets.Dataset:
    rng = random.Random(seed)
    text = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))  # noqa: E731
    return datasets.Dataset.from_dict({c: [text() for _ in range(n)] for c in ("query", "positive", "negative")})


@pytest.fixture
def encoder(tokenizer) -> BertModel:
    """A tiny BERT encoder without any head, its attention sharpened so that its sentences differ."""
    model = BertModel(tiny_bert_config(len(tokenizer)), add_pooling_layer=False)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.attention.self.query.weight.mul_(5)
            layer.attention.self.key.weight.mul_(5)
    return model.eval()


TERMS = {
    "similarity_kl_alone": {"alpha_similarity_kl": 1.0, "similarity_temperature": 0.1},
    "every_pooled_term_with_hidden_mse": {
        "alpha_embedding_mse": 1.0,
        "alpha_embedding_cos": 1.0,
        "alpha_similarity_kl": 1.0,
        "alpha_margin_mse": 0.1,
        "alpha_hidden_mse": 1.0,
    },
}


@pytest.mark.parametrize("term", list(TERMS))
def test_pooled_terms_accumulate_like_one_large_batch(tmp_path, encoder, tokenizer, term):
    """GA 2 × 4 = GA 1 × 8, the in-batch similarity KL included: its batch is the whole accumulated one."""
    data = triplets() if "alpha_margin_mse" in TERMS[term] else sentences(8)
    base = init_student_from_teacher(encoder, layers=[0, 3], architecture="same")
    with torch.no_grad():  # a student far from the teacher's sentence geometry
        base.encoder.layer[1].attention.self.value.weight.normal_(0, 0.5)
    settings = {**POOLED_ONLY, **TERMS[term], "processing_class": tokenizer}
    if "alpha_margin_mse" in TERMS[term]:  # unnormalised dot products: margins far from 0 between random encoders
        settings["pooling"] = Pooling("mean", normalize=False)
    big, acc = copy.deepcopy(base), copy.deepcopy(base)
    big_log = one_sgd_step(tmp_path / "a", big, encoder, data, None, batch=8, accumulation=1, **settings)
    acc_log = one_sgd_step(tmp_path / "b", acc, encoder, data, None, batch=4, accumulation=2, **settings)
    logged = [k for k in big_log if k.startswith("loss_")]
    assert sorted(logged) == sorted(f"loss_{k.removeprefix('alpha_')}" for k in TERMS[term] if k.startswith("alpha"))
    assert all(big_log[k] > 1e-4 for k in logged), big_log
    for key in ["loss", *logged]:
        assert acc_log[key] == pytest.approx(big_log[key], rel=1e-5), key
    assert_same_update(big, acc, base)


def test_grad_cache_replays_the_dropout_of_its_first_pass(tmp_path, encoder, tokenizer):
    """With dropout on, the gradient through the cached similarity KL is that of the KL of the very embeddings
    the replayed forward computes: the first pass and the pass with grad drew the same dropout."""
    student = init_student_from_teacher(encoder, layers=[0, 3], architecture="same")
    student.config.hidden_dropout_prob = 0.3
    for module in student.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    args = {**POOLED_ONLY, "alpha_similarity_kl": 1.0, "similarity_temperature": 0.1}
    trainer = make_trainer(tmp_path, student, encoder, train_dataset=sentences(8), processing_class=tokenizer, **args)
    batch = trainer.data_collator([{"text": t} for t in SENTENCES])
    trainer.model_wrapped = student
    trainer._share_similarity([batch])
    share = batch["_hf_distil_similarity"]
    trainer.compute_loss(student, dict(batch)).backward()
    cached = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)
    with share.random_state.replayed():
        hidden = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    with torch.no_grad():
        teacher = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    pooled = trainer.pooling
    similarity_kl(pooled(hidden, batch["attention_mask"]), pooled(teacher, batch["attention_mask"]), 0.1).backward()
    for name, p in student.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(cached[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)
    assert len(cached) > 10


@pytest.mark.slow
def test_student_with_its_own_tokenizer_learns_from_the_packaged_minilm(tmp_path, minilm_folder, tokenizer):
    """Cross-tokenizer: the teacher reads bert-base-uncased word pieces, the student the tiny vocabulary, each the
    same sentences; the student is narrower (32 vs 384), so the embedding MSE goes through the width projection."""
    teacher = AutoModel.from_pretrained(str(minilm_folder))
    student = BertModel(tiny_bert_config(len(tokenizer)), add_pooling_layer=False)
    data = sentences(8)
    trainer = make_trainer(
        tmp_path,
        student,
        teacher,
        train_dataset=data,
        processing_class=tokenizer,
        teacher_processing_class=AutoTokenizer.from_pretrained(str(minilm_folder)),
        max_steps=6,
        learning_rate=3e-3,
        **POOLED_ONLY,
        alpha_embedding_mse=100.0,
        alpha_embedding_cos=1.0,
        alpha_similarity_kl=1.0,
    )
    assert isinstance(trainer.data_collator, SentenceCollator) and trainer.data_collator.teacher_tokenizer is not None
    assert trainer.pooling == Pooling("mean", normalize=True) and trainer.hidden_projection is not None
    batch = trainer.data_collator([{"text": "Unbelievably, the cat sat."}])
    assert batch["teacher_input_ids"].shape != batch["input_ids"].shape  # each read it its own way
    before = trainer.evaluate(data)
    trainer.train()
    after = trainer.evaluate(data)
    for key in ("eval_loss", "eval_loss_embedding_cos", "eval_loss_embedding_mse"):
        assert after[key] < 0.9 * before[key], (key, before, after)


@pytest.mark.slow
def test_minilm_encoder_without_a_head_distils_into_its_layers(tmp_path, minilm_folder):
    """all-MiniLM-L6-v2 as AutoModel (no MLM head), the student a DistilBertModel of its layers 0, 2, 4: pooled
    terms with MiniLMv2's relations train, the pooling comes from the teacher's Sentence Transformers folder, the
    embedding loss on the training sentences falls."""
    teacher = AutoModel.from_pretrained(str(minilm_folder))
    student = init_student_from_teacher(teacher, layers=[0, 2, 4])
    assert isinstance(student, DistilBertModel)
    data = datasets.Dataset.from_dict({"text": SENTENCES})
    trainer = make_trainer(
        tmp_path,
        student,
        teacher,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(str(minilm_folder)),
        max_steps=4,
        learning_rate=1e-4,
        **POOLED_ONLY,
        alpha_embedding_cos=1.0,
        alpha_similarity_kl=1.0,
        alpha_relation=1.0,
    )
    assert trainer.pooling == Pooling.from_folder(minilm_folder) and trainer.hidden_projection is None
    assert trainer.data_collator.max_length == 256  # as SentenceTransformer(folder).encode truncates
    before = trainer.evaluate(data)
    trainer.train()
    after = trainer.evaluate(data)
    assert after["eval_loss_embedding_cos"] < 0.95 * before["eval_loss_embedding_cos"], (before, after)
    assert after["eval_loss"] < before["eval_loss"]


def test_token_level_terms_across_tokenizers_are_refused_in_one_line(tmp_path, minilm_folder, tokenizer, encoder):
    with pytest.raises(
        UsageError, match=r"^the teacher's tokenizer and the student's differ.*alpha_cos, alpha_hidden_mse > 0"
    ):
        make_trainer(
            tmp_path,
            encoder,
            AutoModel.from_pretrained(str(minilm_folder)),
            train_dataset=sentences(),
            processing_class=tokenizer,
            teacher_processing_class=AutoTokenizer.from_pretrained(str(minilm_folder)),
            alpha_ce=0.0,
            alpha_mlm=0.0,
            alpha_hidden_mse=1.0,
            alpha_embedding_cos=1.0,
        )


def test_same_tokenizer_twice_reads_the_student_ids(tmp_path, tokenizer, encoder):
    """A teacher tokenizer that tokenises as the student's is no reason to tokenise twice (nor to refuse terms)."""
    trainer = make_trainer(
        tmp_path,
        copy.deepcopy(encoder),
        encoder,
        train_dataset=sentences(),
        processing_class=tokenizer,
        teacher_processing_class=copy.deepcopy(tokenizer),
        **POOLED_ONLY,
        alpha_embedding_cos=1.0,
        alpha_hidden_mse=1.0,
    )
    assert trainer.data_collator.teacher_tokenizer is None


@pytest.mark.parametrize(
    ("settings", "data", "message"),
    [
        (
            {"alpha_mlm": 2.0, "alpha_ce": 0.0, "alpha_cos": 0.0, "alpha_embedding_cos": 1.0},
            "text",
            r"^alpha_mlm > 0 read the student's LM head, but the BertModel has none",
        ),
        (
            {**POOLED_ONLY, "alpha_margin_mse": 1.0},
            "text",
            r"^alpha_margin_mse > 0 reads \(query, positive, negative\) rows",
        ),
    ],
)
def test_settings_the_data_or_models_cannot_train_are_refused(tmp_path, tokenizer, encoder, settings, data, message):
    with pytest.raises(UsageError, match=message):
        make_trainer(
            tmp_path,
            copy.deepcopy(encoder),
            encoder,
            train_dataset=sentences(),
            processing_class=tokenizer,
            **settings,
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"similarity_temperature": 0.0, "alpha_similarity_kl": 1.0}, r"^similarity_temperature must be > 0"),
        ({"alpha_margin_mse": 1.0}, r"^alpha_margin_mse reads .* but alpha_ce, alpha_mlm > 0 read them"),
    ],
)
def test_pooled_settings_that_make_no_sense_are_refused(tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        DistillationArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, **settings)


def test_a_hub_teachers_pooling_and_length_come_from_its_sentence_transformers_files(
    tmp_path, hub, encoder, tokenizer, monkeypatch
):
    """A teacher loaded by Hub id (its config's name_or_path): the trainer reads how it pools and how long its inputs
    are from the Hub (tests/hub_server.py), as from a folder; a Hub teacher without them gets mean, normalised."""
    import json

    import huggingface_hub

    from hf_distil.models.sentence_layout import save_sentence_transformers_layout

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    folder = tmp_path / "layout"
    save_sentence_transformers_layout(folder, Pooling("cls", normalize=False), encoder.config.hidden_size, 40)
    hub.files[("alice/cls-teacher", "main")] = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    hub.files[("alice/plain-teacher", "main")] = {"config.json": json.dumps({"model_type": "bert"}).encode()}
    student = init_student_from_teacher(encoder, layers=[0, 2])
    for repo, pooling, length in (
        ("alice/cls-teacher", Pooling("cls", False), 40),
        ("alice/plain-teacher", Pooling(), 64),
    ):
        encoder.config.name_or_path = repo
        trainer = make_trainer(
            tmp_path / repo, student, encoder, train_dataset=sentences(), processing_class=tokenizer,
            **POOLED_ONLY, alpha_embedding_cos=1.0,
        )  # fmt: skip
        assert (trainer.pooling, trainer.data_collator.max_length) == (pooling, length), repo
