"""Runs that used to end "successfully" with wrong or lost data: each must now stop in one line, with the
right exit code, leaving what was on disk byte for byte as it was (issue 12)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_trainer, save_recipe_assets, save_tiny_teacher, tiny_bert_config, tiny_tokenizer
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForSequenceClassification,
    BertForMaskedLM,
    BertModel,
    TrainerCallback,
)
from transformers.utils import logging

from hf_distil import DistillationTrainer, init_student_from_teacher
from hf_distil.callbacks import NonFiniteLossGuard
from hf_distil.cli import OUTPUT_RECORD
from hf_distil.errors import RunFailed, UsageError
from hf_distil.evaluation import masked_lm_metrics
from hf_distil.run_folder import RUN_SETTINGS_FILE, check_checkpoint
from hf_distil.teachers.prepare import check_model_source, load_teacher, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "distil_bert.py"


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny teacher folder and a text file, as a user would pass them; the corpus cache is shared."""
    return save_recipe_assets(tmp_path_factory.mktemp("assets"))


def recipe_flags(assets: Path, teacher: Path | str | None = None) -> list[str]:
    """The tiny teacher, the text file and the shared corpus cache, as a user passes them."""
    return [
        "--teacher",
        str(teacher or assets / "teacher"),
        "--train_file",
        str(assets / "train.txt"),
        "--data_cache_dir",
        str(assets / "cache"),
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "1",
        "--save_total_limit",
        "5",
    ]


def recipe(
    assets: Path, *flags: str, teacher: Path | str | None = None, cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess:
    """`python recipes/distil_bert.py` as a user runs it, offline, on the tiny teacher unless told otherwise."""
    cmd = [sys.executable, str(RECIPE), *recipe_flags(assets, teacher), *flags]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **env}
    env.pop("HF_DISTIL_TRACEBACK", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def error_line(done: subprocess.CompletedProcess, code: int) -> str:
    """The one `error:` line of a run that must end with `code`, and no traceback."""
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path: added, removed and changed files all show."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def trained(assets: Path, out: Path, *flags: str) -> Path:
    done = recipe(assets, "--output_dir", str(out), *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


# ---- 1. the output folder is the teacher's own ----


@pytest.mark.slow  # the recipe as a subprocess
def test_output_dir_at_the_teacher_folder_is_refused_before_anything_is_written(assets, tmp_path):
    teacher = Path(shutil.copytree(assets / "teacher", tmp_path / "teacher"))
    before = digests(teacher)
    # Spelled differently from --teacher, and --overwrite_output_dir does not make it acceptable.
    done = recipe(assets, "--output_dir", "./teacher/", "--overwrite_output_dir", teacher=teacher, cwd=tmp_path)
    line = error_line(done, 2)
    assert line == (
        f"error: --output_dir ./teacher/ is the folder of the teacher ({teacher}); the run would "
        "overwrite its config.json and weights; pass another --output_dir."
    )
    assert digests(teacher) == before


def test_trainer_refuses_the_teacher_folder_as_output_dir(tmp_path, dataset):
    folder = save_tiny_teacher(tmp_path / "teacher")
    before = digests(folder)
    teacher = BertForMaskedLM.from_pretrained(folder)
    student = init_student_from_teacher(teacher, layers=[0, 3])
    with pytest.raises(UsageError, match=r"output_dir .*teacher is the folder of the teacher"):
        make_trainer(tmp_path, student, teacher, train_dataset=dataset, output_dir=str(folder))
    assert digests(folder) == before


@pytest.mark.slow  # the recipe as a subprocess
def test_output_dir_holding_another_model_is_refused(assets, tmp_path):
    other = Path(shutil.copytree(assets / "teacher", tmp_path / "someone_elses_model"))
    before = digests(other)
    line = error_line(recipe(assets, "--output_dir", str(other), "--max_steps", "2"), 2)
    assert "already holds a model (config.json) that this run did not make" in line
    assert "pass another --output_dir, or --overwrite_output_dir to replace it" in line
    assert digests(other) == before


# ---- 2. a finished (or interrupted) folder re-run with other settings ----


@pytest.mark.slow  # the recipe as a subprocess
def test_a_finished_folder_is_not_resumed_with_other_settings_and_overwrite_starts_afresh(assets, tmp_path):
    out = trained(assets, tmp_path / "out", "--max_steps", "4", "--save_steps", "2")
    before = digests(out)
    # The README's MLM-only baseline, in the folder of the triple-loss run.
    baseline = ("--max_steps", "4", "--save_steps", "2", "--alpha_ce", "0", "--alpha_cos", "0")
    line = error_line(recipe(assets, "--output_dir", str(out), *baseline), 2)
    assert "holds a model with other settings (alpha_ce 5.0 → 0.0, alpha_cos 1.0 → 0.0" in line
    assert "pass another --output_dir, or --overwrite_output_dir to start afresh" in line
    assert digests(out) == before

    # Interrupted instead of finished: its last checkpoint is checked when training starts.
    for name in ("config.json", "model.safetensors", RUN_SETTINGS_FILE):
        (out / name).unlink()
    before = digests(out)
    line = error_line(recipe(assets, "--output_dir", str(out), *baseline), 2)
    assert f"checkpoint {out / 'checkpoint-4'} was made with other settings (alpha_ce 5.0 → 0.0" in line
    assert digests(out) == before

    done = recipe(assets, "--output_dir", str(out), *baseline, "--overwrite_output_dir")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / RUN_SETTINGS_FILE).read_text())["alpha_ce"] == 0.0
    losses = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert [h["step"] for h in losses] == [1, 2, 3, 4] and not any("loss_ce" in h for h in losses)  # 4 new steps


def test_resume_through_the_api_checks_the_settings_and_the_data(tmp_path, teacher, student, tokenizer, dataset):
    def trainer(train_dataset, **settings) -> DistillationTrainer:
        return make_trainer(
            tmp_path,
            copy.deepcopy(student),
            teacher,
            train_dataset=train_dataset,
            tokenizer=tokenizer,
            max_steps=2,
            save_strategy="steps",
            save_steps=2,
            **settings,
        )

    trainer(dataset).train()
    checkpoint = str(tmp_path / "out" / "checkpoint-2")
    with pytest.raises(UsageError, match=r"was made with other settings \(alpha_cos 1.0 → 0.0\)"):
        trainer(dataset, alpha_cos=0.0).train(resume_from_checkpoint=checkpoint)
    with pytest.raises(UsageError, match=r"other settings \(train_data "):
        trainer(dataset.select(range(32))).train(resume_from_checkpoint=True)
    trainer(dataset).train(resume_from_checkpoint=True)  # the same settings and data resume
    # A checkpoint from before the relation settings existed resumes while they stay at their defaults.
    settings_file = Path(checkpoint, RUN_SETTINGS_FILE)
    recorded = json.loads(settings_file.read_text())
    assert (recorded["alpha_relation"], recorded["relation_heads"], recorded["relation_teacher_layer"]) == (
        0.0,
        None,
        -1,
    )
    for key in ("alpha_relation", "relation_heads", "relation_teacher_layer"):
        del recorded[key]
    settings_file.write_text(json.dumps(recorded))
    trainer(dataset).train(resume_from_checkpoint=checkpoint)
    with pytest.raises(UsageError, match=r"other settings \(alpha_relation 0.0 → 1.0\)"):
        trainer(dataset, alpha_relation=1.0).train(resume_from_checkpoint=checkpoint)


# ---- 4, 8. teachers that cannot teach, and teachers that cannot be found ----


@pytest.mark.slow  # the recipe as a subprocess
def test_a_teacher_without_a_trained_masked_lm_head_is_refused(assets, tmp_path):
    folder = tmp_path / "encoder_only"
    BertModel(tiny_bert_config(len(tiny_tokenizer()))).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    line = error_line(recipe(assets, "--output_dir", str(tmp_path / "out"), "--max_steps", "2", teacher=folder), 2)
    assert f"--teacher {folder}: 6 weights are not in the checkpoint and would start random (cls.predictions." in line
    assert "not a bare BertModel" in line and not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="a teacher already fine-tuned for this task"):  # as recipes/finetune.py
        load_teacher(str(folder), auto_class=AutoModelForSequenceClassification, num_labels=2)


@pytest.mark.slow  # the recipe as a subprocess
def test_a_hub_teacher_while_offline_is_named_in_one_line(assets, tmp_path):
    out = str(tmp_path / "out")
    done = recipe(assets, "--output_dir", out, teacher="bert-base-uncased", HF_HUB_CACHE=str(tmp_path))  # empty cache
    assert error_line(done, 2) == (
        "error: --teacher bert-base-uncased: no such folder, and the Hugging Face Hub cannot be reached (offline: "
        "HF_HUB_OFFLINE=1) while the local cache lacks it; pass a local folder, or run once online to cache it."
    )


def test_missing_folders_and_tokenizers_are_named_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"^--teacher ./no/such/teacher: no such folder; pass an existing folder"):
        load_teacher("./no/such/teacher")  # transformers said "Repo id must use alphanumeric chars ..."
    with pytest.raises(UsageError, match=r"^--student /no/such: no such folder"):
        check_model_source("/no/such", "--student")
    monkeypatch.setattr("hf_distil.teachers.prepare.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError, match=r"^--student org/never-cached: no such folder, and the Hugging Face Hub"):
        check_model_source("org/never-cached", "--student")
    folder = tmp_path / "no_tokenizer"
    BertForMaskedLM(tiny_bert_config(50)).save_pretrained(folder)
    with pytest.raises(UsageError, match=r"the folder holds no tokenizer .*tokenizer.save_pretrained"):
        load_tokenizer(str(folder))  # transformers 5 would build a specials-only tokenizer: every word [UNK]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="the folder holds no config.json"):
        load_teacher(str(tmp_path / "empty"))


def test_a_teacher_with_nan_weights_is_refused(tmp_path):
    folder = save_tiny_teacher(tmp_path / "teacher")
    weights = load_file(str(folder / "model.safetensors"))
    weights["bert.encoder.layer.0.attention.self.query.weight"][0, 0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UsageError, match=r"NaN/Inf in 1 weight tensor\(s\) \(bert.encoder.layer.0.attention"):
        load_teacher(str(folder))


# ---- 6. NaN/Inf: the run fails, says which weights are usable, and logs NaN as NaN ----


@pytest.mark.slow  # the recipe as a subprocess
def test_a_diverging_run_exits_1_without_a_card_and_names_the_last_finite_checkpoint(assets, tmp_path):
    # Warm-up (5% of 8 steps) makes step 1's update zero; step 2's lr 1e30 blows the weights up, step 3 is NaN.
    out = tmp_path / "out"
    done = recipe(assets, "--output_dir", str(out), "--max_steps", "8", "--save_steps", "1", "--learning_rate", "1e30")
    line = error_line(done, 1)
    assert line.startswith("error: stopped at step 7: 5 updates in a row had NaN/Inf gradients")
    assert f"the newest checkpoint whose weights gave finite gradients is {out / 'checkpoint-1'}" in line
    # no model, card or results: only the checkpoints and the record that the recipe made the folder
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-2", OUTPUT_RECORD]
    assert largest_weight(out / "checkpoint-1") < 100 and largest_weight(out / "checkpoint-2") > 1e20
    assert "'loss': 'nan'" in done.stdout and "'loss': '0'" not in done.stdout and "'train_loss': 'nan'" in done.stdout


def largest_weight(checkpoint: Path) -> float:
    return max(float(t.abs().max()) for t in load_file(str(checkpoint / "model.safetensors")).values())


def test_nan_losses_are_logged_as_nan_not_as_zero(tmp_path, teacher, student, tokenizer, dataset, tiny_trainer):
    with torch.no_grad():
        teacher.cls.predictions.decoder.weight[0, 0] = float("nan")  # every teacher logit, hence L_ce, is NaN
    guard = NonFiniteLossGuard(max_in_a_row=2)
    trainer = tiny_trainer(callbacks=[guard], max_steps=6)
    result = trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert guard.stopped and [h["step"] for h in steps] == [1, 2]
    assert all(h["loss"] != h["loss"] and h["loss_ce"] != h["loss_ce"] for h in steps)  # NaN, where Trainer logs 0
    assert result.metrics["train_loss"] != result.metrics["train_loss"]
    assert "no step of this run had finite gradients" in guard.message


class BreakWeightsAt(TrainerCallback):
    """An update that leaves an Inf weight (as an overflowing optimizer step would), at one chosen step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_optimizer_step(self, args, state, control, model=None, **kwargs) -> None:
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                next(model.parameters())[0, 0] = float("inf")


def test_an_update_that_breaks_the_weights_stops_at_once_and_saves_nothing_more(
    tmp_path, teacher, student, tokenizer, dataset, tiny_trainer
):
    guard = NonFiniteLossGuard()
    trainer = tiny_trainer(callbacks=[BreakWeightsAt(3), guard], max_steps=6, save_strategy="steps", save_steps=1)
    trainer.train()
    out = tmp_path / "out"
    assert guard.stopped and trainer.state.global_step == 3
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert guard.message.startswith("stopped at step 3: the update made the weights NaN/Inf")
    assert f"is {out / 'checkpoint-2'} (--resume_from_checkpoint {out / 'checkpoint-2'})" in guard.message
    assert all(torch.isfinite(t).all() for t in load_file(str(out / "checkpoint-2" / "model.safetensors")).values())


def test_a_run_that_ends_on_skipped_updates_fails_and_says_no_checkpoint_holds_usable_weights(tmp_path, tiny_trainer):
    """lr 1e30 (issue 24): update 1 leaves finite weights of 1e30, whose gradients at step 2 are NaN (skipped, once
    only: no stop), and the run used to end there as a success."""
    guard = NonFiniteLossGuard()
    trainer = tiny_trainer(callbacks=[guard], max_steps=2, learning_rate=1e30, save_strategy="steps", save_steps=1)
    trainer.train()
    out = tmp_path / "out"
    assert guard.skipped == [2] and guard.stopped and sorted(p.name for p in out.iterdir()) == ["checkpoint-1"]
    with pytest.raises(RunFailed) as failed:
        guard.raise_if_failed(out)
    assert str(failed.value).startswith(
        "the run ended at step 2 with its last update skipped for NaN/Inf gradients, so its final weights fail; no "
        "checkpoint of this run holds weights that gave finite gradients (the last such step was 1); nothing more "
        f"was saved; {out / 'checkpoint-1'} holds weights that fail. Lower the learning rate"
    )


def test_a_final_student_whose_held_out_loss_is_not_finite_fails(tmp_path, tiny_trainer, tokenizer, dataset):
    guard = NonFiniteLossGuard()
    trainer = tiny_trainer(callbacks=[guard], max_steps=1, learning_rate=1e30)
    trainer.train()  # its one update had finite gradients and left finite weights, of 1e30
    assert not guard.stopped
    loss = masked_lm_metrics(trainer.model, dataset.select(range(8)), tokenizer)["loss"]
    assert math.isnan(loss)
    with pytest.raises(RunFailed, match=r"^the final student's held-out loss is nan; no checkpoint of this run"):
        guard.raise_if_failed(tmp_path / "out", loss)
    NonFiniteLossGuard().raise_if_failed(tmp_path / "out", 2.5)  # a finite loss: nothing to say


def in_process(monkeypatch, capsys, script: Path, *flags: str) -> tuple[int, list[str]]:
    """`python <script> FLAGS` in this process, offline: (exit code, its `error:` lines)."""
    monkeypatch.setattr(sys, "argv", [str(script), *flags])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DISTIL_TRACEBACK", raising=False)
    level = logging.get_verbosity()  # a script sets it for the whole process
    try:
        runpy.run_path(str(script), run_name="__main__")
        code = 0
    except SystemExit as done:
        code = done.code
    finally:
        logging.set_verbosity(level)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("steps", ["1", "2"])
def test_the_recipe_diverging_yet_finite_exits_1_and_writes_no_model_or_card(
    assets, tmp_path, monkeypatch, capsys, steps
):
    """In this process: 1 step ends on weights whose held-out loss is NaN, 2 steps on a skipped update."""
    out = tmp_path / "out"
    flags = ["--output_dir", str(out), "--max_steps", steps, "--learning_rate", "1e30", "--warmup_steps", "0"]
    code, errors = in_process(monkeypatch, capsys, RECIPE, *recipe_flags(assets), *flags)
    why = (
        "the final student's held-out loss is nan" if steps == "1" else "the run ended at step 2 with its last update"
    )
    assert code == 1 and len(errors) == 1 and errors[0].startswith(f"error: {why}")
    # no model, card, results or report; the end-of-training checkpoint of the 1-step run is named as failing
    kept = ["checkpoint-1", OUTPUT_RECORD] if steps == "1" else [OUTPUT_RECORD]
    assert sorted(p.name for p in out.iterdir()) == kept
    assert "no checkpoint of this run holds weights that gave finite gradients" in errors[0]
    assert (f"; {out / 'checkpoint-1'} holds weights that fail." in errors[0]) == (steps == "1")


# ---- issue 24, item 2: a teacher cache used by a run other than the one it was made for ----


def test_the_recipe_trains_from_its_own_teacher_cache_and_refuses_one_of_another_teacher(
    assets, tmp_path, monkeypatch, capsys
):
    cache, other = tmp_path / "cache", save_tiny_teacher(tmp_path / "other", dropout=0.1)
    made = ["--output_dir", str(cache), "--top_k", "4", "--max_train_samples", "16"]
    assert in_process(monkeypatch, capsys, ROOT / "recipes" / "cache_teacher.py", *recipe_flags(assets), *made)[0] == 0
    flags = ["--teacher_cache", str(cache), "--alpha_cos", "0", "--max_steps", "2", "--max_train_samples", "16"]
    out = tmp_path / "out"
    code, errors = in_process(
        monkeypatch, capsys, RECIPE, *recipe_flags(assets, other), *flags, "--output_dir", str(out)
    )
    assert code == 2 and errors == [
        f"error: --teacher_cache {cache} was made with teacher {assets / 'teacher'}, not {other}; rebuild it with the "
        "cache_teacher recipe (build_teacher_cache, then save_to_disk) for this run's teacher, tokenizer, corpus and "
        "settings, or run with those it was made with."
    ]
    assert not out.exists()
    code, errors = in_process(monkeypatch, capsys, RECIPE, *recipe_flags(assets), *flags, "--output_dir", str(out))
    assert (code, errors) == (0, []) and (out / "model.safetensors").exists()


# ---- 9. a damaged last checkpoint ----


@pytest.fixture(scope="module")
def finished(assets, tmp_path_factory) -> Path:
    """A run killed while saving its second checkpoint: checkpoint-3 intact, checkpoint-6 written, no final model."""
    out = trained(assets, tmp_path_factory.mktemp("run") / "out", "--max_steps", "6", "--save_steps", "3")
    for path in out.iterdir():
        if path.is_file():
            path.unlink()
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.slow  # the recipe as a subprocess
def test_a_damaged_last_checkpoint_is_named_and_the_one_before_resumes(assets, finished, tmp_path):
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    damaged, previous = out / "checkpoint-6", out / "checkpoint-3"
    truncate(damaged / "model.safetensors")
    before = digests(out)
    flags = ("--output_dir", str(out), "--max_steps", "6", "--save_steps", "3")
    assert error_line(recipe(assets, *flags), 2) == (
        f"error: checkpoint {damaged} is damaged (model.safetensors is truncated or unreadable); resume from the one "
        f"before with --resume_from_checkpoint {previous}, or delete {damaged}."
    )
    assert digests(out) == before
    done = recipe(assets, *flags, "--resume_from_checkpoint", str(previous))  # the advice works ...
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = load_file(str(out / "model.safetensors"))
    uninterrupted = load_file(str(finished / "checkpoint-6" / "model.safetensors"))
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)  # ... exactly


@pytest.mark.slow  # the `finished` fixture runs the recipe
@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda c: truncate(c / "optimizer.pt"), "optimizer.pt is truncated or unreadable"),
        (lambda c: (c / "rng_state.pth").write_bytes(b""), "rng_state.pth is truncated or unreadable"),
        (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json is missing: the save was interrupted"),
        (lambda c: (c / "trainer_state.json").write_text('{"global_step": 6'), "trainer_state.json is not valid JSON"),
        (lambda c: (c / "model.safetensors").unlink(), "it holds no model weights"),
    ],
    ids=["optimizer", "rng", "no state", "bad state", "no weights"],
)
def test_each_kind_of_damage_is_found_before_training(finished, tmp_path, damage, reason):
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    damage(out / "checkpoint-6")
    with pytest.raises(
        UsageError,
        match=re.escape(
            f"is damaged ({reason}); resume from the one before with --resume_from_checkpoint {out / 'checkpoint-3'}"
        ),
    ):
        check_checkpoint(out / "checkpoint-6", {})
    damage(out / "checkpoint-3")
    with pytest.raises(UsageError, match=re.escape(f"({reason}); no earlier intact checkpoint is there: delete ")):
        check_checkpoint(out / "checkpoint-6", {})


def test_a_checkpoint_that_does_not_exist_is_not_called_damaged_and_the_ones_there_are_listed(tmp_path):
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    listed = ", ".join(str(tmp_path / f"checkpoint-{step}") for step in (2, 4, 10))
    with pytest.raises(UsageError) as raised:
        check_checkpoint(tmp_path / "checkpoint-6", {})
    assert str(raised.value) == (
        f"--resume_from_checkpoint {tmp_path / 'checkpoint-6'} does not exist; the checkpoints there are {listed}."
    )
    with pytest.raises(UsageError, match=re.escape(f"does not exist; {tmp_path / 'none'} holds no checkpoint.")):
        check_checkpoint(tmp_path / "none" / "checkpoint-6", {})
