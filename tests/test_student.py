import pytest
import torch
from conftest import tiny_roberta
from transformers import (
    AutoModelForMaskedLM,
    BertForMaskedLM,
    BertModel,
    DistilBertForMaskedLM,
    DistilBertModel,
    RobertaForMaskedLM,
)

from hf_distil import init_student_from_teacher
from hf_distil.student import select_layers


@pytest.fixture
def batch(tokenizer):
    enc = tokenizer(
        ["the cat sat on the mat", "a big dog ran to the house and the red tree"], padding=True, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def test_all_layers_reproduce_the_teacher_exactly(teacher, batch):
    input_ids, mask = batch
    student = init_student_from_teacher(teacher, layers=list(range(4))).eval()
    assert isinstance(student, DistilBertForMaskedLM)
    expected = teacher(input_ids=input_ids, attention_mask=mask).logits
    got = student(input_ids=input_ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=0)


@pytest.mark.parametrize("pooler", [True, False])
@torch.no_grad()
def test_a_bare_bert_encoder_gives_a_bare_distilbert_or_bert_of_its_layers(teacher, batch, pooler):
    """A headless sentence encoder (AutoModel, with or without its pooler) gives a headless student: DistilBertModel
    or its own class, both computing what the teacher's kept layers compute."""
    input_ids, mask = batch
    encoder = BertModel(teacher.config, add_pooling_layer=pooler).eval()
    encoder.load_state_dict(teacher.bert.state_dict(), strict=False)
    expected = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
    for architecture, kind in (("distilbert", DistilBertModel), ("same", BertModel)):
        student = init_student_from_teacher(encoder, layers=list(range(4)), architecture=architecture).eval()
        assert type(student) is kind and (getattr(student, "pooler", None) is not None) == (
            kind is BertModel and pooler
        )
        got = student(input_ids=input_ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-4, rtol=0)


@torch.no_grad()
def test_without_folding_token_type_row_zero_the_student_would_differ(teacher, batch):
    input_ids, mask = batch
    student = init_student_from_teacher(teacher, layers=list(range(4))).eval()
    student.distilbert.embeddings.position_embeddings.weight -= teacher.bert.embeddings.token_type_embeddings.weight[0]
    diff = (
        (
            student(input_ids=input_ids, attention_mask=mask).logits
            - teacher(input_ids=input_ids, attention_mask=mask).logits
        )
        .abs()
        .max()
    )
    assert diff > 1e-2


def test_kept_layers_are_copied_and_token_types_pooler_dropped(teacher):
    student = init_student_from_teacher(teacher, layers=[1, 3])
    assert student.config.n_layers == 2 and not student.config.sinusoidal_pos_embds
    names = set(student.state_dict())
    assert not any("token_type" in n or "pooler" in n for n in names)
    torch.testing.assert_close(
        student.distilbert.transformer.layer[1].ffn.lin1.weight,
        teacher.bert.encoder.layer[3].intermediate.dense.weight,
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        student.vocab_transform.weight, teacher.cls.predictions.transform.dense.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(student.vocab_projector.bias, teacher.cls.predictions.bias, rtol=0, atol=0)
    assert student.vocab_projector.weight.data_ptr() == student.distilbert.embeddings.word_embeddings.weight.data_ptr()


@pytest.mark.parametrize(
    "layers, n, expected",
    [
        ("uniform", 6, [0, 2, 4, 7, 9, 11]),  # DistilBERT's own choice
        ("even", 6, [0, 2, 4, 6, 8, 10]),
        ("last", 3, [9, 10, 11]),
        ("uniform", None, [0, 2, 4, 7, 9, 11]),
        ([0, 5, 11], None, [0, 5, 11]),
    ],
)
def test_layer_rules(layers, n, expected):
    assert select_layers(12, layers, n) == expected


@pytest.mark.parametrize(
    "layers, message",
    [
        ("odd", "unknown layer rule 'odd'"),
        ([0, 12], r"layers \[12\] are out of range"),
        ([3, 1], "strictly increasing"),
        ([-1], "out of range"),
    ],
)
def test_bad_layer_maps_fail_in_one_line(teacher, layers, message):
    with pytest.raises(ValueError, match=message) as info:
        init_student_from_teacher(teacher, layers=layers)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("depth, expected", [(12, [0, 2, 4, 7, 9, 11]), (6, [0, 2, 4]), (4, [0, 2]), (5, [0, 2, 4])])
def test_default_map_is_distilbert_for_12_layers_and_one_of_two_otherwise(depth, expected):
    assert select_layers(depth, "distilbert") == expected


def test_default_student_of_a_4_layer_teacher_keeps_layers_0_and_2_and_records_them(teacher):
    student = init_student_from_teacher(teacher)
    record = student.config.hf_distil
    assert student.config.n_layers == 2 and record["teacher_layers"] == [0, 2] and record["teacher_num_layers"] == 4
    assert record["teacher_parameters"] == teacher.num_parameters()
    assert student.config.to_dict()["hf_distil"] == record  # saved in config.json


@torch.no_grad()
def test_same_architecture_bert_identity_and_subset(teacher, batch):
    input_ids, mask = batch
    full = init_student_from_teacher(teacher, layers="last", num_layers=4, architecture="same").eval()
    assert isinstance(full, BertForMaskedLM)
    torch.testing.assert_close(
        full(input_ids=input_ids, attention_mask=mask).logits, teacher(input_ids=input_ids, attention_mask=mask).logits
    )
    half = init_student_from_teacher(teacher, layers=[0, 2], architecture="same")
    assert half.config.num_hidden_layers == 2
    torch.testing.assert_close(
        half.bert.encoder.layer[1].output.dense.weight,
        teacher.bert.encoder.layer[2].output.dense.weight,
        rtol=0,
        atol=0,
    )


@torch.no_grad()
def test_same_architecture_roberta(tokenizer):
    teacher = tiny_roberta(len(tokenizer), layers=4).eval()
    student = init_student_from_teacher(teacher, layers="even", num_layers=2, architecture="same")
    assert isinstance(student, RobertaForMaskedLM) and student.config.num_hidden_layers == 2
    torch.testing.assert_close(
        student.roberta.encoder.layer[1].attention.self.query.weight,
        teacher.roberta.encoder.layer[2].attention.self.query.weight,
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="architecture='same'"):
        init_student_from_teacher(teacher, layers=[0, 1])


@torch.no_grad()
def test_student_round_trips_as_safetensors(teacher, batch, tmp_path):
    input_ids, mask = batch
    student = init_student_from_teacher(teacher, layers=[0, 3]).eval()
    student.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, DistilBertForMaskedLM) and not loaded.config.sinusoidal_pos_embds
    torch.testing.assert_close(
        loaded(input_ids=input_ids, attention_mask=mask).logits,
        student(input_ids=input_ids, attention_mask=mask).logits,
    )
