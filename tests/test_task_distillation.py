import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from hf_distil.task_distillation import (
    TaskDistillationArguments,
    TaskDistillationTrainer,
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
