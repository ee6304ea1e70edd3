"""push_to_hub and the model card, against a local Hub-protocol server (tests/hub_server.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import save_file

from hf_distil import DistillationTrainer, push_to_hub
from hf_distil.cli import OUTPUT_RECORD
from hf_distil.hub import CardReport, HeldOut, Speed, render_model_card, save_model_card

TOKEN = "hf_testsecret0123456789"
pytestmark = pytest.mark.slow  # each test trains a student first (the `trained` fixture)


@pytest.fixture
def trained(tmp_path, teacher, student, tokenizer, dataset, tiny_trainer) -> DistillationTrainer:
    trainer = tiny_trainer(processing_class=tokenizer, max_steps=6, hub_token=TOKEN)
    trainer.train()
    return trainer


def test_push_uploads_safetensors_card_and_arguments_only(trained, hub, caplog):
    with caplog.at_level(logging.INFO):
        url = push_to_hub(trained, "alice/tiny-distil", token=TOKEN)
    assert url.startswith("http://127.0.0.1:") and "/alice/tiny-distil/commit/" in url
    files = hub.files[("alice/tiny-distil", "main")]
    assert {
        "model.safetensors",
        "config.json",
        "README.md",
        "training_args.json",
        "loss_terms.png",
        "tokenizer.json",
    } <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    assert files["loss_terms.png"].startswith(b"\x89PNG")
    for name, content in files.items():
        assert TOKEN.encode() not in content, name
    assert TOKEN not in caplog.text
    assert json.loads(files["training_args.json"])["alpha_ce"] == 5.0
    card = ModelCard(files["README.md"].decode())
    assert {"distillation", "distilbert", "fill-mask"} <= set(card.data.tags)
    assert card.data.pipeline_tag == "fill-mask" and card.data.license == "apache-2.0"
    assert 'pipeline("fill-mask"' in card.text and "loss_terms.png" in card.text


def test_failed_upload_leaves_the_folder_and_can_be_retried(trained, hub, tmp_path):
    folder = tmp_path / "out"
    trained.save_model()
    before = sorted(p.name for p in folder.iterdir())
    hub.fail_commits = 1
    with pytest.raises(RuntimeError, match="folder is intact: call push_to_hub again") as info:
        push_to_hub(folder, "alice/retry", token=TOKEN)
    assert TOKEN not in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in folder.iterdir() if p.name not in ("README.md", "loss_terms.png")) == [
        n for n in before if n not in ("README.md", "loss_terms.png")
    ]
    assert push_to_hub(folder, "alice/retry", token=TOKEN)
    assert "model.safetensors" in hub.files[("alice/retry", "main")]


def test_revision_and_private(trained, hub, tmp_path):
    trained.save_model()
    push_to_hub(tmp_path / "out", "alice/branchy", private=True, revision="v1", commit_message="first cut")
    assert hub.repos["alice/branchy"]["visibility"] == "private"
    assert "config.json" in hub.files[("alice/branchy", "v1")]
    assert hub.commits[-1]["message"] == "first cut"


def test_rendered_card_round_trips(trained):
    report = dataclasses.replace(
        trained.card_report(),
        teacher="bert-base-uncased",
        base_model="bert-base-uncased",
        datasets=["wikipedia"],
        layer_map=[0, 2, 4, 7, 9, 11],
        teacher_layers=12,
        hardware="2 CPU cores",
        train_seconds=12.5,
        teacher_parameters=110_000_000,
        student_parameters=66_000_000,
        speed=Speed(10, teacher_seconds=2.0, student_seconds=1.2),
        teacher_results=HeldOut(accuracy=0.5, top5_accuracy=0.7, perplexity=5.0),
        student_results=HeldOut(accuracy=0.4, top5_accuracy=0.6, perplexity=7.0, teacher_agreement=0.55),
    )
    card = render_model_card(report, "alice/distil")
    text = str(card)
    header = yaml.safe_load(text.split("---")[1])
    assert header["base_model"] == "bert-base-uncased" and header["datasets"] == ["wikipedia"]
    index = header["model-index"][0]["results"]
    assert {m["type"]: m["value"] for r in index for m in r["metrics"]}["accuracy"] == 40.0
    assert "1.67x" in text and "| top-1 accuracy at [MASK] (%) | 50.00 | 40.00 |" in text
    assert ModelCard(text).data.to_dict() == card.data.to_dict()


def published(hub, repo: str) -> dict[str, bytes]:
    return hub.files[(repo, "main")]


def test_trainer_push_to_hub_publishes_exactly_what_hf_distil_push_to_hub_does(trained, hub):
    push_to_hub(trained, "alice/by-function", token=TOKEN)
    trained.args.hub_model_id = "alice/by-method"
    url = trained.push_to_hub()
    assert "/alice/by-method/commit/" in url
    by_function, by_method = published(hub, "alice/by-function"), published(hub, "alice/by-method")
    assert set(by_method) == set(by_function) and "training_args.bin" not in by_method
    assert {"model.safetensors", "README.md", "loss_terms.png", "training_args.json"} <= set(by_method)
    assert "hf_distil" in ModelCard(by_method["README.md"].decode()).data.tags  # our card, not Trainer's


def test_push_to_hub_argument_pushes_each_checkpoint_without_pickles(
    tmp_path, teacher, student, tokenizer, dataset, hub, tiny_trainer
):
    trainer = tiny_trainer(
        processing_class=tokenizer,
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        push_to_hub=True,
        hub_model_id="alice/ckpts",
        hub_token=TOKEN,
    )
    assert hub.requests == []  # constructing the trainer does not reach the Hub
    trainer.train()
    trainer.push_to_hub()
    assert [c["message"] for c in hub.commits] == ["Checkpoint at step 2", "Checkpoint at step 4", "End of training"]
    assert not [f for c in hub.commits for f in c["files"] if f.endswith((".bin", ".pt", ".pth"))]


def test_the_token_stays_out_of_every_saved_file(trained, tmp_path):
    import torch

    trained.save_model()
    args = torch.load(tmp_path / "out" / "training_args.bin", weights_only=False)
    assert args.hub_token is None and trained.args.hub_token == TOKEN  # dropped from the pickle only
    for path in (tmp_path / "out").rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def test_saved_weights_are_readable_like_the_other_files(trained, tmp_path):
    trained.save_model()
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir() if p.is_file()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o644


@pytest.mark.parametrize("where", ["unreachable", "offline"])
def test_a_push_that_cannot_reach_the_hub_fails_in_one_line_and_keeps_the_folder(
    trained, tmp_path, monkeypatch, where
):
    from hf_distil.errors import RunFailed

    trained.save_model()
    folder = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    if where == "unreachable":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    else:
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(RunFailed, match="folder is intact") as info:
        push_to_hub(folder, "alice/nowhere", token=TOKEN)
    message = str(info.value)
    assert "\n" not in message and TOKEN not in message
    assert ("HF_HUB_OFFLINE" if where == "offline" else "ConnectError") in message
    assert f"hf_distil.push_to_hub('{folder}', 'alice/nowhere')" in message
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k not in ("README.md", "loss_terms.png")} == {
        k: v for k, v in before.items() if k not in ("README.md", "loss_terms.png")
    }


def test_card_from_the_python_api_states_only_what_the_trainer_knows(trained, tmp_path, teacher):
    from journeys.test_readme import assert_card_states_only_what_is_known

    trained.save_model()
    card = str(save_model_card(trained.card_report(), tmp_path / "out", "alice/api-card"))
    files = {p.name: b"" for p in (tmp_path / "out").iterdir()}
    assert_card_states_only_what_is_known(card, files)
    assert "| layers | 4 | 2 |" in card and "| optimizer steps | 6 |" in card and "loss_terms.png" in files
    assert f"| parameters | {teacher.num_parameters() / 1e3:.1f}K |" in card


def test_card_calls_a_slower_student_slower(trained):
    speed = Speed(
        10, teacher_seconds=1.0, student_seconds=2.0, encoder_teacher_seconds=1.0, encoder_student_seconds=1.92
    )
    report = dataclasses.replace(trained.card_report(), hardware="CPU", speed=speed)
    text = str(render_model_card(report, "alice/slow"))
    assert "student's encoder runs **0.52x the speed of the teacher (slower)**" in text
    assert "faster" not in text.split("## Citation")[0]  # the paper's title says "faster"; the card must not
    assert "| CPU time per sentence, batch 1, encoder | 100.0 ms | 192.0 ms |" in text


@pytest.fixture
def exported(tmp_path, student, tokenizer):
    """A student folder with its ONNX export beside the weights (`export_student(folder, folder)`)."""
    from hf_distil.deploy.export import export_student

    folder = tmp_path / "student"
    student.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    card_before = str(render_model_card(CardReport(), "alice/onnx"))
    report = export_student(folder, folder, min_agreement=0.5, num_sentences=20, speed_sentences=3, speed_rounds=1)
    return folder, report, card_before


def test_push_uploads_the_onnx_export_and_the_card_says_how_to_run_it(exported, hub):
    from journeys.test_readme import assert_card_states_only_what_is_known

    folder, report, card_before = exported
    push_to_hub(folder, "alice/onnx", card=CardReport(onnx=report.for_card()), token=TOKEN)
    files = published(hub, "alice/onnx")
    for name in ("onnx/model.onnx", "onnx/model_quantized.onnx", "export_report.json", "model.safetensors"):
        assert files[name] == (folder / name).read_bytes(), name
    card = files["README.md"].decode()
    assert_card_states_only_what_is_known(card, files)
    assert {"onnx", "transformers.js"} <= set(ModelCard(card).data.tags)
    kept = next(s for s in report.schemes if s.name == report.chosen)
    assert (
        f"| `onnx/model_quantized.onnx` | int8 (`{report.chosen}`) | keeps {kept.agreement:.1%} of fp32's answers "
        f"(top-1 agreement at [MASK], {report.items} items of held-out text) |"
    ) in card
    assert f"| `onnx/model.onnx` | fp32 | largest difference from PyTorch: {report.fp32_max_abs_diff:.0e} |" in card
    assert 'pipeline("fill-mask", "alice/onnx", { dtype: "q8" })' in card
    assert "ONNX Runtime" not in card_before and "onnx" not in ModelCard(card_before).data.tags


def test_card_of_an_export_without_int8_offers_fp32_only(exported):
    _, report, _ = exported
    fp32_only = dataclasses.replace(report, int8_file=None, chosen=None)  # as when no scheme passed the gate
    card = str(render_model_card(CardReport(onnx=fp32_only.for_card()), "alice/onnx"))
    assert "`onnx/model.onnx` | fp32" in card and "model_quantized" not in card
    assert '{ dtype: "fp32" }' in card and "q8" not in card


def test_a_folder_push_uploads_only_what_a_model_folder_holds_and_says_what_it_left_out(tmp_path, hub, caplog):
    folder = tmp_path / "model"
    (folder / "onnx").mkdir(parents=True)
    (folder / "checkpoint-2").mkdir()
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "checkpoint-2/config.json"):
        (folder / name).write_text("{}")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (folder / "onnx" / "model.onnx").write_bytes(b"onnx")
    (folder / "spiece.model").write_bytes(b"\x0a\x09\x0a\x05<unk>\x15\x00")  # a SentencePiece protobuf's head
    (folder / "evil.model").write_bytes(pickle.dumps({"not": "a tokenizer"}))
    (folder / "notes.txt").write_text("my private notes")
    (folder / OUTPUT_RECORD).write_text('{"written_by": "export.py"}')  # which script made the folder: local only
    with caplog.at_level(logging.WARNING):
        push_to_hub(folder, "alice/folder", token=TOKEN)
    assert sorted(hub.files[("alice/folder", "main")]) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "onnx/model.onnx",
        "spiece.model",
        "tokenizer.json",
        "vocab.txt",
    ]
    assert (
        f"not uploaded from {folder}, as no part of a model folder: evil.model, {OUTPUT_RECORD}, notes.txt, "
        "checkpoint-2/" in caplog.text
    )
