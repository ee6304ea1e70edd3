"""The pooling read from a Sentence Transformers folder reproduces sentence-transformers' own embeddings."""

import json

import pytest
import torch

from hf_distil.errors import UsageError
from hf_distil.models.pooling import Pooling, pool


def test_mean_pooling_ignores_padding_and_normalises():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(pool(hidden, mask, Pooling("mean", normalize=False)), torch.tensor([[2.0, 2.0]]))
    unit = pool(hidden, mask, Pooling("mean"))
    assert torch.allclose(unit, torch.tensor([[2.0, 2.0]]) / 8**0.5)
    assert torch.allclose(pool(hidden, mask, Pooling("cls", normalize=False)), torch.tensor([[1.0, 0.0]]))


def test_packaged_minilm_folder_is_mean_normalised(minilm_folder):
    assert Pooling.from_folder(minilm_folder) == Pooling("mean", normalize=True)


def test_plain_folder_has_no_pooling(tmp_path):
    assert Pooling.from_folder(tmp_path) is None


def test_unsupported_pooling_is_one_line(tmp_path):
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(UsageError, match="max_tokens.*mean or CLS"):
        Pooling.from_folder(tmp_path)
    with pytest.raises(UsageError, match="'max'"):
        Pooling("max")


def test_equals_sentence_transformers_encode(minilm_folder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from transformers import AutoModel, AutoTokenizer

    sentences = ["The cat sat on the mat.", "Markets fell sharply after the announcement of new tariffs today."]
    reference = sentence_transformers.SentenceTransformer(str(minilm_folder), device="cpu").encode(
        sentences, convert_to_tensor=True
    )
    tokenizer, model = AutoTokenizer.from_pretrained(minilm_folder), AutoModel.from_pretrained(minilm_folder)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = Pooling.from_folder(minilm_folder)(model(**batch).last_hidden_state, batch["attention_mask"])
    assert torch.allclose(ours, reference, atol=1e-5)
