"""A student saved in the Sentence Transformers layout loads in sentence-transformers and encodes as we pool."""

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from hf_distil.models.pooling import Pooling
from hf_distil.models.sentence_layout import save_sentence_transformers_layout

SENTENCES = ["The cat sat on the mat.", "Markets fell sharply after the announcement of new tariffs today."]


def _saved(folder, model, tokenizer, pooling, max_seq_length=256):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_sentence_transformers_layout(folder, pooling, model.config.hidden_size, max_seq_length)
    return str(folder)


@pytest.mark.parametrize("pooling", [Pooling("mean", normalize=True), Pooling("cls", normalize=False)])
def test_sentence_transformers_encodes_what_our_pooling_gives(tmp_path, minilm_folder, pooling):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder)
    config = BertConfig.from_pretrained(minilm_folder, num_hidden_layers=2)
    model = BertModel(config).eval()  # random weights: nothing the packaged folder's own files could supply
    folder = _saved(tmp_path, model, tokenizer, pooling, max_seq_length=64)

    loaded = sentence_transformers.SentenceTransformer(folder, device="cpu")
    assert loaded.max_seq_length == 64
    assert loaded.similarity_fn_name == "cosine"
    assert Pooling.from_folder(folder) == pooling
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = pooling(model(**batch).last_hidden_state, batch["attention_mask"])
    assert torch.allclose(loaded.encode(SENTENCES, convert_to_tensor=True), ours, atol=1e-5)


def test_rewritten_minilm_keeps_its_embeddings(tmp_path, minilm_folder):
    """The packaged teacher re-saved by us: the same model to sentence-transformers, cut at the same length."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model, tokenizer = AutoModel.from_pretrained(minilm_folder), AutoTokenizer.from_pretrained(minilm_folder)
    folder = _saved(tmp_path, model, tokenizer, Pooling.from_folder(minilm_folder))
    original = sentence_transformers.SentenceTransformer(str(minilm_folder), device="cpu")
    ours = sentence_transformers.SentenceTransformer(folder, device="cpu")
    long_text = " ".join(SENTENCES * 60)  # past 256 tokens: truncation must match too
    texts = [*SENTENCES, long_text]
    assert ours.max_seq_length == original.max_seq_length == 256
    assert torch.allclose(ours.encode(texts, convert_to_tensor=True), original.encode(texts, convert_to_tensor=True))
