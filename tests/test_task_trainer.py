import copy
import dataclasses
import math
import random

import datasets
import pytest
import torch
import torch.nn.functional as F
from conftest import WORDS, tiny_bert_config
from transformers import (
    BertForQuestionAnswering,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    TrainingArguments,
)

from hf_distil import (
    DistillationArguments,
    TaskDistillationArguments,
    TaskDistillationTrainer,
    bilstm_from_teacher,
    label_with_teacher,
)
from hf_distil.losses.task import gold_label_loss


def args(tmp_path, **kwargs):
    return TaskDistillationArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, **kwargs)


def test_loss_is_task_plus_scaled_kl(tmp_path, tokenizer):
    torch.manual_seed(0)
    config = tiny_bert_config(len(tokenizer))
    config.num_labels = 3
    student, teacher = BertForSequenceClassification(config), BertForSequenceClassification(config)
    trainer = TaskDistillationTrainer(
        model=student, teacher_model=teacher, args=args(tmp_path, temperature=2.0, alpha_task=0.5, alpha_kd=2.0)
    )
    batch = tokenizer(["the cat sat", "a big dog ran home"], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 2])
    student.eval()
    loss = trainer.compute_loss(student, {**batch, "labels": labels})
    with torch.no_grad():
        s, t = student(**batch).logits, teacher(**batch).logits
    kl = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4
    assert loss.item() == pytest.approx((0.5 * F.cross_entropy(s, labels) + 2.0 * kl).item(), rel=1e-5)


def test_label_count_mismatch_fails(tmp_path, tokenizer):
    a, b = tiny_bert_config(len(tokenizer)), tiny_bert_config(len(tokenizer))
    a.num_labels, b.num_labels = 2, 3
    with pytest.raises(ValueError, match="teacher has 3 labels, student 2"):
        TaskDistillationTrainer(
            model=BertForSequenceClassification(a), teacher_model=BertForSequenceClassification(b), args=args(tmp_path)
        )


def test_bad_weights_fail(tmp_path):
    with pytest.raises(ValueError, match="not both 0"):
        args(tmp_path, alpha_task=0.0, alpha_kd=0.0)


def test_mse_objective_mixes_squared_logit_error_with_gold_cross_entropy(tmp_path, tokenizer):
    """Tang et al.: alpha_task · CE(labelled) + alpha_kd · Σ_c (t − s)² averaged over examples; the teacher's
    logits come from the transfer set's column, no teacher runs."""
    student = bilstm_from_teacher(BertForSequenceClassification(tiny_bert_config(len(tokenizer))), num_labels=2)
    student.eval()
    written = torch.tensor([[2.0, -1.0], [0.5, 0.25], [-3.0, 1.0]])
    dataset = datasets.Dataset.from_dict({"input_ids": [[2, 5, 3]] * 3, "teacher_logits": written.tolist()})
    trainer = TaskDistillationTrainer(
        model=student,
        teacher_model=None,
        args=args(tmp_path, kd_loss="mse", alpha_task=0.5, alpha_kd=2.0),
        train_dataset=dataset,
    )
    batch = tokenizer(["the cat sat", "a big dog ran home", "dog"], padding=True, return_tensors="pt")
    labels = torch.tensor([1, -100, 0])  # the middle one is augmented text: no gold label
    loss = trainer.compute_loss(student, {**batch, "labels": labels, "teacher_logits": written})
    with torch.no_grad():
        s = student(**batch).logits
    ce = F.cross_entropy(s[[0, 2]], labels[[0, 2]])
    mse = ((written - s) ** 2).sum() / 3
    assert loss.item() == pytest.approx((0.5 * ce + 2.0 * mse).item(), rel=1e-5)


def test_gold_label_loss_leaves_out_unlabelled_examples_and_is_zero_without_any():
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert gold_label_loss(logits, torch.tensor([-100, -100])).item() == 0.0
    assert gold_label_loss(logits, torch.tensor([0, -100])).item() == pytest.approx(
        F.cross_entropy(logits[:1], torch.tensor([0])).item()
    )
    assert gold_label_loss(torch.tensor([[2.0], [5.0]]), torch.tensor([1.0, -100])).item() == pytest.approx(1.0)


def test_teacher_logits_column_survives_the_trainer_and_trains_the_student(tmp_path, tokenizer):
    torch.manual_seed(0)
    config = tiny_bert_config(len(tokenizer))
    config.num_labels = 2
    teacher = BertForSequenceClassification(config).eval()
    texts = ["the cat sat on the mat", "a big dog ran home", "the red house", "a small blue tree"] * 4
    dataset = datasets.Dataset.from_dict({"text": texts, "label": [0, 1, 0, 1] * 3 + [-100] * 4})
    dataset = dataset.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])
    labelled = label_with_teacher(teacher, dataset, DataCollatorWithPadding(tokenizer), batch_size=3)
    for row in (0, 5, 15):  # each example's logits as if alone: padding in the labelling batches changes nothing
        alone = teacher(**tokenizer([texts[row]], return_tensors="pt")).logits[0]
        torch.testing.assert_close(torch.tensor(labelled[row]["teacher_logits"]), alone, rtol=1e-4, atol=1e-5)
    student = bilstm_from_teacher(teacher, num_labels=2, hidden_size=8, classifier_size=8)
    trainer = TaskDistillationTrainer(
        model=student,
        teacher_model=None,
        args=args(
            tmp_path,
            kd_loss="mse",
            max_steps=30,
            learning_rate=1e-2,
            per_device_train_batch_size=8,
            logging_steps=10,
            save_strategy="no",
        ),
        train_dataset=labelled,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_without_a_teacher_the_transfer_set_must_carry_its_logits(tmp_path, tokenizer):
    student = bilstm_from_teacher(BertForSequenceClassification(tiny_bert_config(len(tokenizer))), num_labels=2)
    with pytest.raises(ValueError, match="no teacher: pass teacher_model, or a train_dataset with a 'teacher_logits'"):
        TaskDistillationTrainer(
            model=student,
            teacher_model=None,
            args=args(tmp_path),
            train_dataset=datasets.Dataset.from_dict({"input_ids": [[2, 3]]}),
        )
    with pytest.raises(ValueError, match="kd_loss must be one of kl, mse"):
        args(tmp_path, kd_loss="l1")


def sentences(tokenizer, labels: list) -> datasets.Dataset:
    """len(labels) tokenised sentences of varying length (per-micro-batch padding and means would differ)."""
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in labels]
    dataset = datasets.Dataset.from_dict({"text": texts, "label": labels})
    return dataset.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])


def classifiers(tokenizer, num_labels: int) -> tuple[BertForSequenceClassification, BertForSequenceClassification]:
    """(student, teacher); the teacher's head is scaled up, as a fine-tuned one is sure of itself."""
    config = tiny_bert_config(len(tokenizer))
    config.num_labels = num_labels
    student, teacher = BertForSequenceClassification(config), BertForSequenceClassification(config)
    with torch.no_grad():
        teacher.classifier.weight.mul_(20)
    return student, teacher


def sgd_run(tmp_path, student, teacher, data, tokenizer, batch: int, accumulation: int, **settings) -> list[dict]:
    """Three plain SGD updates (lr 0.5, no clipping) of batch × accumulation examples; returns the logged steps."""
    trainer = TaskDistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args(
            tmp_path,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=3,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
            logging_steps=1,
            save_strategy="no",
            **settings,
        ),
        train_dataset=data,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


UNLABELLED = [i % 3 if i % 4 else -100 for i in range(24)]  # every fourth transfer-set example: no gold label


@pytest.mark.parametrize(
    "num_labels, labels, kd_loss, written",
    [
        (3, UNLABELLED, "kl", False),
        (3, UNLABELLED, "mse", True),
        (1, [i / 8 if i % 4 else -100.0 for i in range(24)], "kl", False),
    ],
    ids=["kl_unlabelled_rows", "mse_transfer_set", "regression"],
)
def test_accumulation_equals_one_large_batch(tmp_path, tokenizer, num_labels, labels, kd_loss, written):
    """GA 2 × 4 = GA 1 × 8: the same weights after three updates and the same logged loss and terms (each term is
    divided by its count over the accumulated batch, not averaged per micro-batch and summed)."""
    base, teacher = classifiers(tokenizer, num_labels)
    data = sentences(tokenizer, labels)
    if written:  # the teacher labelled the transfer set beforehand; no teacher runs during training
        data, teacher = label_with_teacher(teacher, data, DataCollatorWithPadding(tokenizer)), None
    big, acc = copy.deepcopy(base), copy.deepcopy(base)
    big_log = sgd_run(tmp_path / "a", big, teacher, data, tokenizer, 8, 1, kd_loss=kd_loss)
    acc_log = sgd_run(tmp_path / "b", acc, teacher, data, tokenizer, 4, 2, kd_loss=kd_loss)
    assert len(big_log) == len(acc_log) == 3
    for big_step, acc_step in zip(big_log, acc_log):
        for key in ("loss", "loss_task", "loss_kd"):
            assert acc_step[key] == pytest.approx(big_step[key], rel=1e-5, abs=1e-7), key
    moved = 0.0
    for (name, p_big), p_acc, p0 in zip(big.named_parameters(), acc.parameters(), base.parameters()):
        torch.testing.assert_close(p_acc, p_big, rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, (p_big - p0).abs().max().item())
    assert moved > 1e-2  # the updates really changed the weights


def test_logged_terms_are_the_weighted_parts_of_the_logged_loss(tmp_path, tokenizer):
    student, teacher = classifiers(tokenizer, 3)
    logged = sgd_run(tmp_path, student, teacher, sentences(tokenizer, UNLABELLED), tokenizer, 4, 2, alpha_kd=0.5)
    for step in logged:
        assert step["loss"] == pytest.approx(step["loss_task"] + 0.5 * step["loss_kd"], rel=1e-5)
    assert logged[0]["loss_task"] == pytest.approx(math.log(3), rel=0.05)  # an untrained 3-way classifier


def test_evaluation_without_a_teacher_reports_the_task_loss_alone(tmp_path, tokenizer):
    """A student trained on a transfer set's logits is evaluated on gold labels only: no teacher, no KD term."""
    student, teacher = classifiers(tokenizer, 3)
    collator = DataCollatorWithPadding(tokenizer)
    held_out = sentences(tokenizer, [0, 1, 2, 1, 0, 2])
    transfer = label_with_teacher(teacher, sentences(tokenizer, UNLABELLED), collator)
    trainer = TaskDistillationTrainer(
        model=student,
        args=args(tmp_path, alpha_task=0.5, per_device_eval_batch_size=2),
        train_dataset=transfer,
        data_collator=collator,
    )
    metrics = trainer.evaluate(held_out)
    assert "eval_loss_kd" not in metrics
    assert metrics["eval_loss"] == pytest.approx(0.5 * metrics["eval_loss_task"], rel=1e-5)
    with torch.no_grad():
        batches = [collator([held_out[j] for j in range(i, i + 2)]) for i in (0, 2, 4)]
        per_batch = [
            F.cross_entropy(student(b["input_ids"], b["attention_mask"]).logits, b["labels"]) for b in batches
        ]
    assert metrics["eval_loss_task"] == pytest.approx(torch.stack(per_batch).mean().item(), rel=1e-5)


def test_a_teacher_given_by_folder_is_loaded_with_the_students_task_head_and_frozen(tmp_path, tokenizer):
    student, teacher = classifiers(tokenizer, 3)
    teacher.save_pretrained(tmp_path / "teacher")
    by_name = TaskDistillationTrainer(model=student, teacher_model=str(tmp_path / "teacher"), args=args(tmp_path))
    by_model = TaskDistillationTrainer(model=student, teacher_model=teacher, args=args(tmp_path))
    assert isinstance(by_name.teacher, BertForSequenceClassification)
    assert not by_name.teacher.training and not any(p.requires_grad for p in by_name.teacher.parameters())
    batch = {**tokenizer(["the cat sat", "a big dog ran home"], padding=True, return_tensors="pt")}
    labels = torch.tensor([0, 2])
    student.eval()
    assert by_name.compute_loss(student, {**batch, "labels": labels}).item() == pytest.approx(
        by_model.compute_loss(student, {**batch, "labels": labels}).item(), rel=1e-6
    )


def test_question_answering_loss_is_the_span_loss_plus_the_mean_start_and_end_kl(tmp_path, tokenizer):
    config = tiny_bert_config(len(tokenizer))
    student, teacher = BertForQuestionAnswering(config).eval(), BertForQuestionAnswering(config)
    trainer = TaskDistillationTrainer(model=student, teacher_model=teacher, args=args(tmp_path, alpha_kd=3.0))
    batch = {**tokenizer(["the cat sat on the mat", "a dog"], padding=True, return_tensors="pt")}
    positions = {"start_positions": torch.tensor([1, 0]), "end_positions": torch.tensor([3, 2])}
    loss = trainer.compute_loss(student, {**batch, **positions})
    with torch.no_grad():
        s, t = student(**batch, **positions), teacher(**batch)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(a / 2, -1), F.softmax(b / 2, -1), reduction="batchmean") * 4

    kd = (kl(s.start_logits, t.start_logits) + kl(s.end_logits, t.end_logits)) / 2
    assert loss.item() == pytest.approx((s.loss + 3.0 * kd).item(), rel=1e-5)


def test_arguments_must_be_task_distillation_arguments(tmp_path, tokenizer):
    student, teacher = classifiers(tokenizer, 2)
    plain = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="args must be TaskDistillationArguments, got TrainingArguments"):
        TaskDistillationTrainer(model=student, teacher_model=teacher, args=plain)


def test_each_argument_has_a_help_and_temperature_is_the_distillation_arguments_own():
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    added = {f.name: f for f in dataclasses.fields(TaskDistillationArguments) if f.name not in inherited}
    assert set(added) == {"temperature", "alpha_task", "alpha_kd", "kd_loss"}
    assert all(f.metadata.get("help", "").strip() for f in added.values())
    shared = {f.name: f for f in dataclasses.fields(DistillationArguments)}["temperature"]
    assert added["temperature"].metadata is shared.metadata and added["temperature"].default == shared.default
