import datasets
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_bert_config
from transformers import BertForSequenceClassification, DataCollatorWithPadding

from hf_distil.models.bilstm import bilstm_from_teacher
from hf_distil.task_trainer import (
    TaskDistillationArguments,
    TaskDistillationTrainer,
    gold_label_loss,
    label_with_teacher,
)


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
