"""push_to_hub and the model card, against a local Hub-protocol server (tests/hub_server.py)."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from conftest import make_args
from huggingface_hub import ModelCard

from hf_distil import DataCollatorForDistillation, DistillationTrainer, push_to_hub
from hf_distil.hub import render_model_card

TOKEN = "hf_testsecret0123456789"


@pytest.fixture
def trained(tmp_path, teacher, student, tokenizer, dataset) -> DistillationTrainer:
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=make_args(tmp_path, max_steps=6, hub_token=TOKEN),
        train_dataset=dataset, data_collator=DataCollatorForDistillation(tokenizer), processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def test_push_uploads_safetensors_card_and_arguments_only(trained, hub, caplog):
    with caplog.at_level(logging.INFO):
        url = push_to_hub(trained, "alice/tiny-distil", token=TOKEN)
    assert url.startswith("http://127.0.0.1:") and "/alice/tiny-distil/commit/" in url
    files = hub.files[("alice/tiny-distil", "main")]
    assert {"model.safetensors", "config.json", "README.md", "training_args.json", "loss_terms.png", "tokenizer.json"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    assert files["loss_terms.png"].startswith(b"\x89PNG")
    for name, content in files.items():
        assert TOKEN.encode() not in content, name
    assert TOKEN not in caplog.text
    assert json.loads(files["training_args.json"])["alpha_ce"] == 5.0
    card = ModelCard(files["README.md"].decode())
    assert {"distillation", "distilbert", "fill-mask"} <= set(card.data.tags)
    assert card.data.pipeline_tag == "fill-mask" and card.data.license == "apache-2.0"
    assert "pipeline(\"fill-mask\"" in card.text and "loss_terms.png" in card.text


def test_failed_upload_leaves_the_folder_and_can_be_retried(trained, hub, tmp_path):
    folder = tmp_path / "out"
    trained.save_model()
    before = sorted(p.name for p in folder.iterdir())
    hub.fail_commits = 1
    with pytest.raises(RuntimeError, match="folder is intact: call push_to_hub again") as info:
        push_to_hub(folder, "alice/retry", token=TOKEN)
    assert TOKEN not in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in folder.iterdir() if p.name not in ("README.md", "loss_terms.png")) == [n for n in before if n not in ("README.md", "loss_terms.png")]
    assert push_to_hub(folder, "alice/retry", token=TOKEN)
    assert "model.safetensors" in hub.files[("alice/retry", "main")]


def test_revision_and_private(trained, hub, tmp_path):
    trained.save_model()
    push_to_hub(tmp_path / "out", "alice/branchy", private=True, revision="v1", commit_message="first cut")
    assert hub.repos["alice/branchy"]["visibility"] == "private"
    assert "config.json" in hub.files[("alice/branchy", "v1")]
    assert hub.commits[-1]["message"] == "first cut"


def test_rendered_card_round_trips(tmp_path, trained):
    folder = tmp_path / "out"
    trained.save_model()
    trained.state.save_to_json(str(folder / "trainer_state.json"))
    results = {
        "teacher_name": "bert-base-uncased", "layer_map": [0, 2, 4, 7, 9, 11], "teacher_layers": 12, "hardware": "2 CPU cores",
        "train_seconds": 12.5, "params": {"teacher": 110e6, "student": 66e6}, "speed_sentences": 10,
        "speed_batch_1": {"teacher_seconds": 2.0, "student_seconds": 1.2, "speedup": 1.67},
        "teacher": {"accuracy": 0.5, "top5_accuracy": 0.7, "perplexity": 5.0},
        "student": {"accuracy": 0.4, "top5_accuracy": 0.6, "perplexity": 7.0, "teacher_agreement": 0.55},
    }
    (folder / "held_out_results.json").write_text(json.dumps(results))
    card = render_model_card(folder, repo_id="alice/distil", datasets=["wikipedia"])
    text = str(card)
    header = yaml.safe_load(text.split("---")[1])
    assert header["base_model"] == "bert-base-uncased" and header["datasets"] == ["wikipedia"]
    index = header["model-index"][0]["results"]
    assert {m["type"]: m["value"] for r in index for m in r["metrics"]}["accuracy"] == 40.0
    assert "1.67x" in text and "| top-1 accuracy at [MASK] (%) | 50.00 | 40.00 |" in text
    assert ModelCard(text).data.to_dict() == card.data.to_dict()
