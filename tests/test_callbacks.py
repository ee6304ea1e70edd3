"""Each callback in a real Trainer run on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_trainer
from transformers import TrainerCallback

from hf_distil import DistillationTrainer
from hf_distil.callbacks import NonFiniteLossGuard, TeacherAgreementCallback
from hf_distil.evaluation.masked_lm import masked_lm_metrics
from hf_distil.hub import PushToHubCallback

pytestmark = pytest.mark.slow  # each test is a Trainer run of 2-20 steps


def build(tmp_path, teacher, student, tokenizer, dataset, callbacks, **kwargs) -> DistillationTrainer:
    held_out = dataset.select(range(16))
    return make_trainer(
        tmp_path,
        student,
        teacher,
        train_dataset=dataset,
        eval_dataset=held_out,
        tokenizer=tokenizer,
        callbacks=callbacks,
        **kwargs,
    )


def test_agreement_is_reported_at_each_evaluation_with_the_term_logs(tmp_path, teacher, student, tokenizer, dataset):
    callback = TeacherAgreementCallback(teacher, dataset.select(range(16)), tokenizer)
    trainer = build(
        tmp_path, teacher, student, tokenizer, dataset, [callback], max_steps=4, eval_strategy="steps", eval_steps=2
    )
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2
    for entry in evals:
        assert 0.0 <= entry["eval_teacher_agreement"] <= 1.0 and entry["eval_teacher_kl"] >= 0.0
        assert {"eval_loss_ce", "eval_loss_mlm", "eval_loss_cos"} <= set(entry)
    assert evals[0]["eval_teacher_kl"] != evals[1]["eval_teacher_kl"]  # measured anew at each evaluation
    # The last evaluation saw the final weights: its values are those of masked_lm_metrics on the same masks.
    final = masked_lm_metrics(student, dataset.select(range(16)), tokenizer, teacher=teacher, seeds=(0,))
    assert evals[-1]["eval_teacher_agreement"] == pytest.approx(final["teacher_agreement"], abs=1e-6)
    assert evals[-1]["eval_teacher_kl"] == pytest.approx(final["teacher_kl"], abs=1e-6)
    assert final["teacher_kl"] > 1e-3  # a student unlike its teacher: a teacher-vs-teacher mix-up would read 0
    assert all("loss_ce" in h for h in trainer.state.log_history if "loss" in h)
    identical = callback.teacher
    metrics = build(
        tmp_path,
        identical,
        copy.deepcopy(identical),
        tokenizer,
        dataset,
        [TeacherAgreementCallback(identical, dataset.select(range(16)), tokenizer)],
        alpha_cos=0.0,
    ).evaluate()
    assert metrics["eval_teacher_agreement"] == 1.0 and metrics["eval_teacher_kl"] == pytest.approx(0.0, abs=1e-6)


def test_push_on_save_runs_in_the_background_and_is_awaited(tmp_path, teacher, student, tokenizer, dataset, hub):
    callback = PushToHubCallback("alice/ckpts")
    trainer = build(
        tmp_path, teacher, student, tokenizer, dataset, [callback], max_steps=4, save_strategy="steps", save_steps=2
    )
    trainer.train()
    assert all(f.done() for f in callback.futures) and len(callback.futures) == 2
    assert [c["message"] for c in hub.commits] == ["Checkpoint at step 2", "Checkpoint at step 4"]
    files = hub.files[("alice/ckpts", "main")]
    assert "model.safetensors" in files and not any(f.endswith((".pt", ".pth", ".bin")) for f in files)


def test_push_failure_is_logged_and_training_finishes(tmp_path, teacher, student, tokenizer, dataset, hub):
    hub.fail_commits = 10
    callback = PushToHubCallback("alice/down")
    trainer = build(
        tmp_path, teacher, student, tokenizer, dataset, [callback], max_steps=2, save_strategy="steps", save_steps=2
    )
    trainer.train()
    assert callback.wait() == [] and (tmp_path / "out" / "checkpoint-2" / "model.safetensors").exists()


def poison_gradients(model: torch.nn.Module, steps: set[int], trainer_ref: list) -> None:
    """Make the gradients of chosen optimizer steps NaN (as an fp16 overflow would)."""
    param = next(model.parameters())
    param.register_hook(lambda g: g * float("nan") if trainer_ref[0].state.global_step + 1 in steps else g)


class WeightsPerStep(TrainerCallback):
    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.after = model, {}

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.after[state.global_step] = [p.detach().clone() for p in self.model.parameters()]


def test_isolated_nonfinite_steps_are_skipped(tmp_path, teacher, student, tokenizer, dataset):
    guard, weights = NonFiniteLossGuard(max_in_a_row=3), WeightsPerStep(student)
    trainer = build(tmp_path, teacher, student, tokenizer, dataset, [guard, weights], max_steps=6)
    poison_gradients(student, {2, 4}, [trainer])
    trainer.train()
    assert guard.skipped == [2, 4] and not guard.stopped and trainer.state.global_step == 6
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(weights.after[a], weights.after[b]))  # noqa: E731
    assert same(1, 2) and same(3, 4) and not same(2, 3)  # skipped updates change nothing, the others do
    assert all(torch.isfinite(p).all() for p in student.parameters())


def test_a_run_of_nonfinite_steps_stops_and_names_the_last_checkpoint_with_finite_gradients(
    tmp_path, teacher, student, tokenizer, dataset
):
    guard = NonFiniteLossGuard(max_in_a_row=3)
    args = dict(max_steps=20, save_strategy="steps", save_steps=1)
    trainer = build(tmp_path, teacher, student, tokenizer, dataset, [guard], **args)
    poison_gradients(student, set(range(3, 100)), [trainer])
    trainer.train()
    assert guard.stopped and guard.skipped == [3, 4, 5] and trainer.state.global_step == 5
    # Step 2's weights gave the NaN of step 3: only checkpoint-1 is known good; nothing is saved after step 2.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    checkpoint = tmp_path / "out" / "checkpoint-1"
    assert guard.message.startswith("stopped at step 5: 3 updates in a row had NaN/Inf gradients, all skipped")
    assert f"the newest checkpoint whose weights gave finite gradients is {checkpoint}" in guard.message
