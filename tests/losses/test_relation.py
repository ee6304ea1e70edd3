"""MiniLMv2 relation distillation: the maths against a by-hand loop, padding, widths, the plan's checks, the hooks."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_args, sharpen_attention, tiny_bert_config, tiny_distilbert, tiny_roberta
from transformers import (
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
)

from hf_distil import DataCollatorForDistillation, DistillationArguments, DistillationTrainer
from hf_distil.losses.relation import relation_kl
from hf_distil.losses.terms import distillation_loss
from hf_distil.models import heads
from hf_distil.models.layer_map import plan_relation

RELATION_ONLY = dict(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_relation=1.0)


def relation_row(x: torch.Tensor, b: int, head: int, heads: int, query: int, keys: list[int]) -> list[float]:
    """softmax over `keys` of <x_query, x_key> / √d_r, in relation head `head` of sequence b, one number at a time."""
    size = x.shape[-1] // heads
    part = lambda j: x[b, j, head * size : (head + 1) * size]  # noqa: E731
    logits = [float((part(query) * part(key)).sum()) / math.sqrt(size) for key in keys]
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return [e / sum(exps) for e in exps]


def by_hand(student_qkv, teacher_qkv, mask: torch.Tensor, heads: int) -> float:
    """MiniLMv2's definition written out: for each relation, sequence, relation head and real query, the KL of
    the teacher's row from the student's over the real keys; then the mean over relations, heads and queries."""
    total, queries = 0.0, 0
    for b in range(mask.shape[0]):
        real = [j for j in range(mask.shape[1]) if mask[b, j]]
        queries += len(real)
        for student, teacher in zip(student_qkv, teacher_qkv):
            for head in range(heads):
                for query in real:
                    p = relation_row(teacher, b, head, heads, query, real)
                    q = relation_row(student, b, head, heads, query, real)
                    total += sum(p_k * math.log(p_k / q_k) for p_k, q_k in zip(p, q))
    return total / (3 * heads * queries)


def projections(generator: torch.Generator, width: int, batch: int = 3, length: int = 6) -> list[torch.Tensor]:
    return [torch.randn(batch, length, width, generator=generator, dtype=torch.float64) * 2 for _ in range(3)]


def test_relation_kl_golden():
    """One head of size 1, two real tokens and a padding one: the teacher's first row is softmax(ln 3, 0) =
    (3/4, 1/4), its second (1/2, 1/2); the student (all zeros) is uniform. KL = (3/4 ln 3/2 + 1/4 ln 1/2) / 2."""
    teacher = torch.tensor([[[math.sqrt(math.log(3))], [0.0], [7.0]]])
    student = torch.tensor([[[0.0], [0.0], [-5.0]]])
    mask = torch.tensor([[1, 1, 0]])
    expected = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    value = relation_kl([student] * 3, [teacher] * 3, mask, heads=1)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("student_width, teacher_width, heads", [(12, 12, 3), (8, 12, 4), (16, 8, 2)])
def test_relation_kl_equals_the_definition_computed_by_hand(student_width, teacher_width, heads):
    g = torch.Generator().manual_seed(0)
    student, teacher = projections(g, student_width), projections(g, teacher_width)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    value = relation_kl(student, teacher, mask, heads)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(by_hand(student, teacher, mask, heads), rel=1e-9)
    assert value.item() > 0.1  # different projections, a real divergence
    assert relation_kl(teacher, teacher, mask, heads).item() == pytest.approx(0.0, abs=1e-12)


def test_padding_queries_and_keys_are_excluded():
    g = torch.Generator().manual_seed(1)
    student, teacher = projections(g, 8), projections(g, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    pads = ~mask.bool()
    scrambled = [x.masked_fill(pads[..., None], 1e3) for x in student]
    value = relation_kl(student, teacher, mask, heads=2)
    assert relation_kl(scrambled, teacher, mask, heads=2).item() == pytest.approx(value.item(), rel=1e-12)
    # The padded sequence alone, cut to its 3 real tokens, weighs its 3 queries like any others.
    cut = relation_kl([x[1:2, :3] for x in student], [x[1:2, :3] for x in teacher], mask[1:2, :3], heads=2)
    padded = relation_kl([x[1:2] for x in student], [x[1:2] for x in teacher], mask[1:2], heads=2)
    assert padded.item() == pytest.approx(cut.item(), rel=1e-12)
    # No gradient reaches padding positions; an all-padding sequence stays finite.
    leaves = [x.clone().requires_grad_() for x in student]
    relation_kl(leaves, teacher, mask, heads=2).backward()
    assert all(leaf.grad[pads].abs().max() == 0 and leaf.grad[~pads].abs().max() > 0 for leaf in leaves)
    empty = torch.zeros_like(mask)
    nothing = relation_kl(leaves, teacher, empty, heads=2)
    nothing.backward()
    assert nothing.item() == 0 and all(torch.isfinite(leaf.grad).all() for leaf in leaves)


def test_num_items_and_the_distillation_loss_entry():
    g = torch.Generator().manual_seed(2)
    student, teacher = projections(g, 8), projections(g, 12)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])  # 12 real tokens
    alone = relation_kl(student, teacher, mask, heads=4)
    assert relation_kl(student, teacher, mask, 4, num_items=24).item() == pytest.approx(alone.item() / 2, rel=1e-12)
    total, terms = distillation_loss(
        student_logits=None,
        teacher_logits=None,
        labels=None,
        attention_mask=mask,
        weights={"relation": 3.0},
        num_items={"tokens": torch.tensor(12)},
        relation={"student_qkv": student, "teacher_qkv": teacher, "heads": 4},
    )
    assert list(terms) == ["relation"] and terms["relation"].item() == pytest.approx(alone.item(), rel=1e-12)
    assert total.item() == pytest.approx(3 * alone.item(), rel=1e-12)


def test_projection_hooks_read_each_layers_own_query_key_and_value(teacher, tokenizer, dataset):
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(4)])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    roberta = tiny_roberta(len(tokenizer)).eval()
    student = tiny_distilbert(len(tokenizer))
    cases = [
        (teacher, teacher.bert.encoder.layer, lambda a: (a.self.query, a.self.key, a.self.value)),
        (roberta, roberta.roberta.encoder.layer, lambda a: (a.self.query, a.self.key, a.self.value)),
        (student.eval(), student.distilbert.transformer.layer, lambda a: (a.q_lin, a.k_lin, a.v_lin)),
    ]
    for model, layers, linears in cases:
        with torch.no_grad(), heads.capture_projections(model, [1, 2]) as captured:
            states = model(**inputs, output_hidden_states=True).hidden_states
            kept = captured()
        for i in (1, 2):
            for got, linear in zip(kept[i], linears(layers[i - 1].attention)):
                torch.testing.assert_close(got, linear(states[i - 1]), rtol=1e-5, atol=1e-6)


def test_a_narrower_student_learns_the_teachers_relations_through_the_trainer(tmp_path, teacher, tokenizer, dataset):
    """Student 16 wide with 2 attention heads, teacher 32 wide with 4: 4 relation heads of 4 and 8 units."""
    teacher = sharpen_attention(teacher)
    student = tiny_distilbert(len(tokenizer))
    args = make_args(
        tmp_path,
        max_steps=12,
        learning_rate=3e-2,
        lr_scheduler_type="constant",
        relation_teacher_layer=-2,
        **RELATION_ONLY,
    )
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForDistillation(tokenizer, seed=0),
    )
    assert tuple(trainer.relation) == (2, 3, 4)
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    batch.pop("token_type_ids", None)
    mask = batch["attention_mask"]
    assert not mask.bool().all()  # padding to exclude
    student.eval()
    _, out = trainer.compute_loss(student, dict(batch), return_outputs=True)
    with torch.no_grad():
        s_states = student.distilbert(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True)
        t_states = teacher.bert(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True)
        s_attention = student.distilbert.transformer.layer[1].attention
        t_attention = teacher.bert.encoder.layer[2].attention.self
        s_qkv = [f(s_states.hidden_states[1]) for f in (s_attention.q_lin, s_attention.k_lin, s_attention.v_lin)]
        t_qkv = [f(t_states.hidden_states[2]) for f in (t_attention.query, t_attention.key, t_attention.value)]
    assert list(out["terms"]) == ["relation"]
    assert out["terms"]["relation"].item() == pytest.approx(by_hand(s_qkv, t_qkv, mask, 4), rel=1e-5)
    trainer.train()
    assert {"loss_relation"} == {k for k in trainer.state.log_history[0] if k.startswith("loss_")}
    student.eval()
    _, after = trainer.compute_loss(student, dict(batch), return_outputs=True)
    assert after["terms"]["relation"].item() < 0.5 * out["terms"]["relation"].item()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"relation_heads": 3}, "relation_heads 3 must divide both hidden sizes, student 16 and teacher 32; pick"),
        ({"relation_heads": 32}, "relation_heads 32 must divide both hidden sizes, student 16 and teacher 32"),
        ({"relation_teacher_layer": 5}, "relation_teacher_layer 5 is outside the teacher's 4 layers"),
        ({"relation_teacher_layer": -5}, "relation_teacher_layer -5 is outside the teacher's 4 layers"),
    ],
)
def test_bad_relation_settings_fail_at_construction_in_one_line(tmp_path, teacher, tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        DistillationTrainer(
            model=tiny_distilbert(len(tokenizer)),
            teacher_model=teacher,
            args=make_args(tmp_path, **RELATION_ONLY, **kwargs),
        )
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"relation_heads": 0}, "relation_heads must be >= 1, got 0"),
        ({"relation_teacher_layer": 0}, "relation_teacher_layer 0 is the embedding output"),
    ],
)
def test_relation_settings_are_checked_with_the_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        DistillationArguments(output_dir="unused", report_to="none", **kwargs)
    assert "\n" not in str(info.value)


def test_models_without_known_projections_are_refused(tokenizer):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64))
    bert = tiny_distilbert(len(tokenizer), dim=32, heads=4)
    with pytest.raises(ValueError, match="the student is a 'gpt2' model: use one of those or set alpha_relation=0"):
        plan_relation(gpt2, bert, None, -1)
    assert plan_relation(bert, bert, None, -1) == (2, 2, 4)
    assert plan_relation(bert, BertForMaskedLM(tiny_bert_config(len(tokenizer))), 8, 1) == (2, 1, 8)
