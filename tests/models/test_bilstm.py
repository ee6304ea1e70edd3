import pytest
import torch
from conftest import tiny_bert_config
from transformers import AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification

from hf_distil.errors import UsageError
from hf_distil.models.bilstm import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    bilstm_from_teacher,
    left_align,
    non_embedding_parameters,
)

SENTENCES = ["the cat sat", "a big dog ran home on the mat", "dog"]
SECONDS = ["on the mat", "ran home", "a small red house and a blue tree"]


@pytest.fixture
def bert_teacher(tokenizer):
    model = BertForSequenceClassification(tiny_bert_config(len(tokenizer)))
    return model.eval()


def student(teacher, **kwargs):
    """A student with large random weights, so that its logits are far from 0 and differences show."""
    model = bilstm_from_teacher(teacher, num_labels=3, hidden_size=8, classifier_size=6, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("embeddings"):
                p.normal_(0, 0.5)
    return model.eval()


def test_embeddings_start_as_the_teachers_and_the_teacher_is_recorded(bert_teacher):
    model = student(bert_teacher)
    assert torch.equal(model.embeddings.weight, bert_teacher.bert.embeddings.word_embeddings.weight)
    assert model.config.vocab_size == bert_teacher.config.vocab_size
    assert model.config.embedding_size == bert_teacher.config.hidden_size
    assert model.config.hf_distil["teacher_parameters"] == bert_teacher.num_parameters()
    # LSTM: 2 directions x 4 gates x 8 x (32 inputs + 8 recurrent + 2 biases); then 16 -> 6 -> 3
    assert non_embedding_parameters(model) == 2 * 4 * 8 * (32 + 8 + 2) + 16 * 6 + 6 + 6 * 3 + 3


@pytest.mark.parametrize("pooling", ["max", "last"])
def test_a_sentence_gets_the_same_logits_alone_and_padded_in_a_batch(bert_teacher, tokenizer, pooling):
    model = student(bert_teacher, pooling=pooling)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    logits = model(**batch).logits
    assert logits.shape == (3, 3)
    for i, sentence in enumerate(SENTENCES):
        alone = model(**tokenizer([sentence], return_tensors="pt")).logits
        torch.testing.assert_close(alone[0], logits[i], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(logits[0], logits[1])


def test_last_pooling_reads_the_final_states_of_both_directions(bert_teacher, tokenizer):
    model = student(bert_teacher, pooling="last")
    ids = tokenizer(["a big dog ran home"], return_tensors="pt")["input_ids"]
    states, (final, _) = model.lstm(model.embeddings(ids))
    expected = torch.cat([final[0], final[1]], dim=-1)
    torch.testing.assert_close(model.encode(ids, torch.ones_like(ids, dtype=torch.bool)), expected)
    torch.testing.assert_close(expected, torch.cat([states[0, -1, :8], states[0, 0, 8:]]).unsqueeze(0))


def test_max_pooling_is_the_max_over_real_tokens_only(bert_teacher, tokenizer):
    model = student(bert_teacher)
    ids = tokenizer(["a big dog"], return_tensors="pt")["input_ids"]
    states, _ = model.lstm(model.embeddings(ids))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=ids.dtype)], dim=1)
    mask = padded != 0
    torch.testing.assert_close(model.encode(padded, mask), states.max(dim=1).values)


def test_pair_encoder_encodes_each_segment_alone_and_compares_them(bert_teacher, tokenizer):
    model = student(bert_teacher, pair_encoder=True)
    assert model.dense.in_features == 4 * 16
    batch = tokenizer(SENTENCES, SECONDS, padding=True, return_tensors="pt")
    logits = model(**batch).logits
    for i in range(3):
        a = tokenizer([SENTENCES[i]], return_tensors="pt")["input_ids"]  # [CLS] a [SEP]
        b = tokenizer([SECONDS[i]], return_tensors="pt")["input_ids"][:, 1:]  # b [SEP]
        ea = model.encode(a, torch.ones_like(a, dtype=torch.bool))
        eb = model.encode(b, torch.ones_like(b, dtype=torch.bool))
        features = torch.cat([ea, eb, (ea - eb).abs(), ea * eb], dim=-1)
        expected = model.out(torch.relu(model.dense(features)))
        torch.testing.assert_close(logits[i], expected[0], rtol=1e-5, atol=1e-6)
    swapped = model(**tokenizer(SECONDS, SENTENCES, padding=True, return_tensors="pt")).logits
    assert not torch.allclose(swapped, logits)  # the order of the pair matters: [a, b, ...]
    with pytest.raises(ValueError, match="token_type_ids"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_left_align_moves_kept_positions_to_the_front_in_order():
    ids = torch.tensor([[5, 6, 7, 8, 9], [1, 2, 3, 4, 0]])
    keep = torch.tensor([[False, True, False, True, True], [True, True, True, True, False]])
    moved, mask = left_align(ids, keep)
    assert moved[0, :3].tolist() == [6, 8, 9] and mask[0].tolist() == [True, True, True, False, False]
    assert moved[1, :4].tolist() == [1, 2, 3, 4] and mask[1].tolist() == [True] * 4 + [False]


@pytest.mark.parametrize("pair_encoder", [False, True])
def test_save_and_load_round_trip_through_the_auto_classes(bert_teacher, tokenizer, tmp_path, pair_encoder):
    model = student(bert_teacher, pair_encoder=pair_encoder, pooling="last")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert type(AutoConfig.from_pretrained(tmp_path)) is BiLSTMConfig
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is BiLSTMForSequenceClassification
    assert loaded.config.pair_encoder is pair_encoder and loaded.config.pooling == "last"
    batch = tokenizer(SENTENCES, SECONDS, padding=True, return_tensors="pt")
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


def test_labels_give_the_usual_classification_loss(bert_teacher, tokenizer):
    model = student(bert_teacher)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    labels = torch.tensor([0, 2, 1])
    out = model(**batch, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    out.loss.backward()
    assert model.embeddings.weight.grad is not None and model.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_unknown_pooling_is_refused():
    with pytest.raises(UsageError, match="pooling must be one of max, last"):
        BiLSTMConfig(pooling="mean")


@pytest.mark.parametrize("pair_encoder", [False, True])
def test_onnx_export_matches_pytorch_and_passes_the_int8_gate(bert_teacher, tokenizer, tmp_path, pair_encoder):
    """recipes/export.py on a BiLSTM folder: packed sequences become ONNX LSTMs with sequence lengths, so padded
    batches give PyTorch's numbers; a single-text model's graph drops token_type_ids and is fed without them."""
    import numpy as np

    from hf_distil.deploy.export import FP32_FILE, INT8_FILE, export_student, held_out_sentences, session

    model = student(bert_teacher, pair_encoder=pair_encoder)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    report = export_student(
        tmp_path / "m",
        tmp_path / "out",
        schemes=["dynamic"],
        min_agreement=0.5,
        num_sentences=20,
        speed_sentences=3,
        speed_rounds=1,
    )
    assert report.task == "text-classification" and report.fp32_max_abs_diff < 1e-5
    assert report.chosen == "dynamic" and (tmp_path / "out" / INT8_FILE).exists()
    onnx_model = session(tmp_path / "out" / FP32_FILE)
    names = [i.name for i in onnx_model.get_inputs()]
    assert names == ["input_ids", "attention_mask", *(["token_type_ids"] if pair_encoder else [])]
    sentences = held_out_sentences()[:6]
    batch = tokenizer(sentences[:3], sentences[3:], padding=True, return_tensors="pt")
    expected = model(**batch).logits.detach().numpy()
    np.testing.assert_allclose(onnx_model.run(None, {n: batch[n].numpy() for n in names})[0], expected, atol=1e-5)
