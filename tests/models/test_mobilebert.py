import torch
from conftest import make_args, tiny_bert_config
from transformers import BertForMaskedLM, MobileBertForMaskedLM

from hf_distil import DistillationTrainer
from hf_distil.models import heads
from hf_distil.models.mobilebert import mobilebert_student, principal_embeddings

TINY = dict(hidden_size=16, intra_bottleneck_size=8, intermediate_size=16, embedding_size=8, num_attention_heads=2)


def test_principal_embeddings_keep_distances_when_wide_enough_and_the_top_variance_otherwise():
    torch.manual_seed(0)
    low_rank = torch.randn(50, 3) @ torch.randn(3, 8) + torch.randn(8)  # rank 3 around a mean
    projected = principal_embeddings(low_rank, 3)
    assert projected.shape == (50, 3)
    exact = "donot_use_mm_for_euclid_dist"
    torch.testing.assert_close(
        torch.cdist(projected, projected, compute_mode=exact), torch.cdist(low_rank, low_rank, compute_mode=exact)
    )
    full = torch.randn(50, 8)
    kept = principal_embeddings(full, 2).pow(2).sum()
    singular = torch.linalg.svdvals(full - full.mean(0))
    torch.testing.assert_close(kept, singular[:2].pow(2).sum(), rtol=1e-4, atol=0)


def test_student_is_a_thin_mobilebert_with_the_teachers_vocabulary_and_depth(tokenizer):
    teacher = BertForMaskedLM(tiny_bert_config(len(tokenizer)))
    student = mobilebert_student(teacher, **TINY)
    assert isinstance(student, MobileBertForMaskedLM)
    c = student.config
    assert (c.vocab_size, c.num_hidden_layers, c.hidden_size, c.num_feedforward_networks) == (len(tokenizer), 4, 16, 4)
    assert c.hf_distil["teacher_parameters"] == teacher.num_parameters()
    word = student.get_input_embeddings().weight
    torch.testing.assert_close(word, principal_embeddings(teacher.get_input_embeddings().weight, 8))
    assert student.cls.predictions.decoder.weight is word  # the LM head reads the same embeddings
    assert mobilebert_student(teacher, num_layers=2, **TINY).config.num_hidden_layers == 2


def test_lm_head_at_chosen_rows_equals_the_full_forward(tokenizer):
    student = mobilebert_student(BertForMaskedLM(tiny_bert_config(len(tokenizer))), **TINY).eval()
    batch = dict(tokenizer(["the cat sat on the mat", "a dog"], padding=True, return_tensors="pt"))
    rows = batch["attention_mask"].bool()
    assert heads.can_split(student)
    split = heads.hidden_and_row_logits(student, batch, rows, split=True).row_logits
    torch.testing.assert_close(split, student(**batch).logits[rows], rtol=1e-5, atol=1e-5)


def test_distils_with_soft_targets_mlm_and_hidden_mse_through_the_learned_projection(
    tmp_path, teacher, dataset, tokenizer
):
    student = mobilebert_student(teacher, **TINY)
    args = make_args(tmp_path, alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=0.0, alpha_hidden_mse=1.0, max_steps=6)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    projection = trainer.hidden_projection
    assert (projection.in_features, projection.out_features) == (16, teacher.config.hidden_size)
    before = projection.weight.detach().clone()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss_hidden_mse" in h]
    assert len(logs) == 6 and all(h["loss_ce"] > 0 and h["loss_mlm"] > 0 and h["loss_hidden_mse"] > 0 for h in logs)
    assert not torch.equal(projection.weight.detach(), before)  # the projection trains with the student
    trainer.save_model()
    assert (tmp_path / "out" / "hidden_projection.safetensors").exists()


def test_projection_in_the_loss_gives_the_gradients_of_materialised_logits(tmp_path, teacher, dataset, tokenizer):
    """The head's decoder and extra dense block, stacked into one projection, get their gradients through it."""
    from hf_distil import DataCollatorForDistillation

    student = mobilebert_student(teacher, **TINY).train()
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    grads = []
    for in_loss in (True, False):
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=make_args(tmp_path, alpha_cos=0.0))
        trainer.projection_in_loss = in_loss
        trainer.compute_loss(student, dict(batch)).backward()
        grads.append({name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None})
        student.zero_grad(set_to_none=True)
    assert grads[0].keys() == grads[1].keys() and "cls.predictions.dense.weight" in grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_teacher_narrower_than_the_embeddings_fills_their_first_columns(tokenizer):
    teacher = BertForMaskedLM(tiny_bert_config(len(tokenizer)))  # hidden 32 < embedding_size 40
    student = mobilebert_student(teacher, **{**TINY, "hidden_size": 48, "embedding_size": 40})
    word = student.get_input_embeddings().weight
    assert torch.allclose(word[:, :32], principal_embeddings(teacher.get_input_embeddings().weight, 32))
