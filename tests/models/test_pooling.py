"""The pooling read from a Sentence Transformers folder reproduces sentence-transformers' own embeddings."""

import json

import pytest
import torch

from hf_distil.errors import UsageError
from hf_distil.models.pooling import Pooling, folder_max_seq_length, pool, sentence_transformers_folder


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


def test_a_hub_models_pooling_is_read_from_its_settings_files_alone(hub, tmp_path):
    """A Hub id: modules.json, the config.json of the Pooling module it names (here a CLS-pooled, unnormalised
    model whose pooling sits behind a Dense module) and sentence_bert_config.json come down through
    hf_hub_download, served by tests/hub_server.py; the weights do not. A repo without modules.json: None."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 2, "name": "2", "path": "2_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    hub.files[("alice/cls-embedder", "main")] = {
        "modules.json": json.dumps(modules).encode(),
        "2_Pooling/config.json": json.dumps(pooling).encode(),
        "sentence_bert_config.json": b'{"max_seq_length": 77}',
        "1_Dense/config.json": b"{}",
        "model.safetensors": b"weights",
    }
    hub.files[("alice/plain", "main")] = {"config.json": b"{}"}

    folder = sentence_transformers_folder("alice/cls-embedder", cache_dir=tmp_path)
    assert Pooling.from_folder(folder) == Pooling("cls", normalize=False) and folder_max_seq_length(folder) == 77
    fetched = sorted(r.split("/resolve/main/")[1] for r in hub.requests if r.startswith("GET"))
    assert fetched == ["2_Pooling/config.json", "modules.json", "sentence_bert_config.json"]
    assert sentence_transformers_folder("alice/plain", cache_dir=tmp_path) is None
    assert sentence_transformers_folder(tmp_path) == tmp_path  # a local folder as it is
