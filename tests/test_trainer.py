"""DistillationTrainer on tiny models: reference parity, accumulation, the frozen teacher, logging."""

from __future__ import annotations

import copy
import re

import datasets
import pytest
import torch
from conftest import (
    TallestOfWidth,
    make_args,
    make_trainer,
    one_sgd_step,
    sharpen_attention,
    tiny_bert_config,
    tiny_roberta,
)
from safetensors.torch import load_file
from torch import nn
from transformers import DistilBertConfig, DistilBertForMaskedLM

from hf_distil import (
    DataCollatorForDistillation,
    DistillationArguments,
    DistillationTrainer,
    init_student_from_teacher,
    trim_vocabulary,
)
from hf_distil.errors import UsageError
from hf_distil.losses._ops import fused_linear
from hf_distil.models import heads
from hf_distil.models.heads import hidden_and_row_logits


def reference_step(student, teacher, batch, T=2.0, restrict=False, alphas=(5.0, 2.0, 1.0, 0.0)):
    """An independent transcription of the reference distiller.step: full logits, then masked_select."""
    a_ce, a_mlm, a_cos, a_mse = alphas
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    s_out = student(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    with torch.no_grad():
        t_out = teacher(
            input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), output_hidden_states=True
        )
    s_logits, t_logits = s_out.logits, t_out.logits
    sel = (labels > -1) if restrict else mask.bool()
    sel = sel.unsqueeze(-1).expand_as(s_logits)
    V = s_logits.size(-1)
    s_slct, t_slct = torch.masked_select(s_logits, sel).view(-1, V), torch.masked_select(t_logits, sel).view(-1, V)
    loss_ce = (
        nn.KLDivLoss(reduction="batchmean")(
            nn.functional.log_softmax(s_slct / T, -1), nn.functional.softmax(t_slct / T, -1)
        )
        * T**2
    )
    loss_mlm = nn.CrossEntropyLoss(ignore_index=-100)(s_logits.view(-1, V), labels.view(-1))
    loss_mse = nn.MSELoss(reduction="sum")(s_slct, t_slct) / s_slct.size(0)
    hs, ht = s_out.hidden_states[-1], t_out.hidden_states[-1]
    m = mask.bool().unsqueeze(-1).expand_as(hs)
    H = hs.size(-1)
    hs_s, ht_s = torch.masked_select(hs, m).view(-1, H), torch.masked_select(ht, m).view(-1, H)
    loss_cos = nn.CosineEmbeddingLoss()(hs_s, ht_s, hs_s.new_ones(hs_s.size(0)))
    return a_ce * loss_ce + a_mlm * loss_mlm + a_cos * loss_cos + a_mse * loss_mse


@pytest.mark.parametrize("restrict", [False, True])
def test_compute_loss_matches_the_reference_formulas(tmp_path, teacher, student, tokenizer, dataset, restrict):
    trainer = make_trainer(
        tmp_path, student, teacher, tokenizer=tokenizer, restrict_ce_to_mask=restrict, alpha_mse=0.5
    )
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    batch.pop("token_type_ids", None)
    student.train()
    loss = trainer.compute_loss(student, dict(batch))
    expected = reference_step(student, teacher, batch, restrict=restrict, alphas=(5.0, 2.0, 1.0, 0.5))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("model_kind", ["bert", "distilbert"])
def test_row_projection_equals_full_logits_then_selection(teacher, student, tokenizer, dataset, model_kind):
    model = teacher if model_kind == "bert" else student.eval()
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    rows = batch["labels"] != -100
    with torch.no_grad():
        h_split, rows_split, *_ = hidden_and_row_logits(model, inputs, rows, split=True)
        h_full, rows_full, full, *_ = hidden_and_row_logits(model, inputs, rows, split=False)
    assert rows_split.shape == (int(rows.sum()), len(tokenizer)) and full.shape[:2] == rows.shape
    torch.testing.assert_close(rows_split, rows_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(h_split, h_full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("model_kind", ["bert", "distilbert", "roberta"])
def test_deferred_projection_gives_the_heads_logits(teacher, student, tokenizer, dataset, model_kind):
    """The head split into its transform and its vocabulary projection (for the loss to run) is the whole head."""
    roberta = tiny_roberta(len(tokenizer))
    model = {"bert": teacher, "distilbert": student.eval(), "roberta": roberta.eval()}[model_kind]
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    rows = batch["attention_mask"].bool()
    with torch.no_grad():
        deferred = hidden_and_row_logits(model, inputs, rows, split=True, defer_projection=True).row_logits
        full = hidden_and_row_logits(model, inputs, rows, split=False).row_logits
    assert isinstance(deferred, heads.LinearLogits) and deferred.features.shape == (int(rows.sum()), 32)
    torch.testing.assert_close(deferred.logits(), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("restrict", [False, True])
def test_projection_in_the_loss_gives_the_losses_and_gradients_of_materialised_logits(
    tmp_path, monkeypatch, teacher, student, tokenizer, dataset, restrict
):
    """The step never holds the rows' logits, and gives what they give: terms, total, every gradient."""
    monkeypatch.setattr(fused_linear, "_CPU_BLOCK_ELEMENTS", 4 * len(tokenizer))
    with torch.no_grad():  # a random teacher's outputs are nearly uniform: sharpen them so that L_ce is far from 0
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(50)
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(48)])
    selected = int((batch["labels"] != -100).sum() if restrict else batch["attention_mask"].sum())
    student.train()
    results, tallest = [], []
    for in_loss in (True, False):
        trainer = DistillationTrainer(
            model=student, teacher_model=teacher, args=make_args(tmp_path, restrict_ce_to_mask=restrict)
        )
        trainer.projection_in_loss = in_loss
        with TallestOfWidth(len(tokenizer)) as seen:
            loss, out = trainer.compute_loss(student, dict(batch), return_outputs=True)
            loss.backward()
        tallest.append(seen.rows)
        grads = {name: p.grad.clone() for name, p in student.named_parameters()}
        student.zero_grad(set_to_none=True)
        results.append((loss.item(), {k: v.item() for k, v in out["terms"].items()}, grads))
    # the transposed (H × V) projection is the tallest vocabulary-wide block left; the rows' logits are gone
    assert tallest == [student.config.dim, selected] and selected > student.config.dim
    (loss, terms, grads), (expected, expected_terms, expected_grads) = results
    assert loss == pytest.approx(expected, rel=1e-6)
    assert terms == pytest.approx(expected_terms, rel=1e-6) and set(terms) == {"ce", "mlm", "cos"}
    assert "vocab_projector.bias" in grads and grads["vocab_projector.bias"].abs().sum() > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def premasked(tokenizer, texts, n=8, length=24):
    """A fixed masked dataset with varying padding, so that per-micro-batch means would be wrong."""
    g = torch.Generator().manual_seed(5)
    rows = []
    for i, text in enumerate(texts[:n]):
        enc = tokenizer(text, padding="max_length", max_length=length, truncation=True, return_token_type_ids=False)
        ids, mask = torch.tensor(enc["input_ids"]), torch.tensor(enc["attention_mask"])
        chosen = (torch.rand(length, generator=g) < 0.1 + 0.05 * (i % 4)) & mask.bool() & (ids > 4)
        chosen[1] = True
        labels = torch.where(chosen, ids, -100)
        rows.append(
            {
                "input_ids": ids.masked_fill(chosen, tokenizer.mask_token_id).tolist(),
                "attention_mask": mask.tolist(),
                "labels": labels.tolist(),
            }
        )
    return datasets.Dataset.from_list(rows)


def stack(features):
    return {k: torch.tensor([f[k] for f in features]) for k in features[0]}


def assert_same_update(big: nn.Module, acc: nn.Module, base: nn.Module) -> None:
    """Both students took the same step from `base`, and a real one."""
    moved = 0.0
    for (name, p_big), p_acc, p0 in zip(big.named_parameters(), acc.parameters(), base.parameters()):
        torch.testing.assert_close(p_acc, p_big, rtol=1e-4, atol=1e-6, msg=name)
        moved = max(moved, (p_big - p0).abs().max().item())
    assert moved > 1e-3  # the step really changed the weights


INTERMEDIATE = {"alpha_hidden_mse": 1.0, "alpha_attention_mse": 3.0, "alpha_pkd": 0.5}


@pytest.mark.parametrize("extra", [{}, INTERMEDIATE], ids=["triple", "with_intermediate"])
def test_accumulation_equals_one_large_batch(tmp_path, teacher, tokenizer, texts, extra):
    data = premasked(tokenizer, texts)
    base = init_student_from_teacher(teacher, layers=[0, 3])
    big, acc = copy.deepcopy(base), copy.deepcopy(base)
    big_log = one_sgd_step(tmp_path / "a", big, teacher, data, stack, batch=8, accumulation=1, **extra)
    acc_log = one_sgd_step(tmp_path / "b", acc, teacher, data, stack, batch=4, accumulation=2, **extra)
    keys = ["loss", "loss_ce", "loss_mlm", "loss_cos"] + [f"loss_{k.removeprefix('alpha_')}" for k in extra]
    for key in keys:
        assert acc_log[key] == pytest.approx(big_log[key], rel=1e-5, abs=1e-9), key
    assert_same_update(big, acc, base)


def test_a_trimmed_student_accumulates_like_one_large_batch_taught_through_the_kept_ids(
    tmp_path, teacher, tokenizer, texts
):
    """GA 2 × 4 = GA 1 × 8 with the student's vocabulary trimmed and the full teacher handed to the trainer; L_ce is
    the KL to the teacher's distribution over the kept ids, renormalised, the teacher reading the same pieces."""
    base = init_student_from_teacher(teacher, layers=[0, 3])
    student, trimmed_tokenizer, kept = trim_vocabulary(base, tokenizer, texts, 36)
    assert student.config.vocab_size == len(kept) == 36 < teacher.config.vocab_size
    with torch.no_grad():  # a student that disagrees with its teacher: L_ce has work to do
        student.vocab_projector.bias.normal_(0, 1)
    data = premasked(trimmed_tokenizer, texts)
    big, acc = copy.deepcopy(student), copy.deepcopy(student)
    big_log = one_sgd_step(tmp_path / "a", big, teacher, data, stack, batch=8, accumulation=1)
    acc_log = one_sgd_step(tmp_path / "b", acc, teacher, data, stack, batch=4, accumulation=2)
    for key in ("loss", "loss_ce", "loss_mlm", "loss_cos"):
        assert acc_log[key] == pytest.approx(big_log[key], rel=1e-5, abs=1e-9), key
    assert_same_update(big, acc, student)
    # L_ce by hand: the full teacher on the same pieces in its own ids, its logits at the kept ids (T 2, every token).
    batch, index = stack([data[i] for i in range(8)]), torch.tensor(kept)
    with torch.no_grad():
        t = teacher(input_ids=index[batch["input_ids"]], attention_mask=batch["attention_mask"]).logits[..., index]
        s = student.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rows = batch["attention_mask"].bool()
    target, log_q = (t[rows] / 2).softmax(-1), (s[rows] / 2).log_softmax(-1)
    expected = 4 * (target * (target.log() - log_q)).sum(-1).mean()
    assert big_log["loss_ce"] == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("triple", [False, True], ids=["relation_alone", "relation_and_triple"])
def test_relation_term_accumulates_like_one_large_batch(tmp_path, teacher, tokenizer, texts, triple):
    """GA 2 × 4 = GA 1 × 8 for MiniLMv2's term: averaged over the real queries of the whole accumulated batch."""
    data = premasked(tokenizer, texts)
    base = init_student_from_teacher(sharpen_attention(teacher), layers=[0, 3])
    with torch.no_grad():  # a student whose relations differ from those of the teacher's last layer
        base.distilbert.transformer.layer[1].attention.q_lin.weight.mul_(0.1)
    weights = {"alpha_relation": 2.0, "relation_heads": 8} | (
        {} if triple else {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0}
    )
    big, acc = copy.deepcopy(base), copy.deepcopy(base)
    big_log = one_sgd_step(tmp_path / "a", big, teacher, data, stack, batch=8, accumulation=1, **weights)
    acc_log = one_sgd_step(tmp_path / "b", acc, teacher, data, stack, batch=4, accumulation=2, **weights)
    assert big_log["loss_relation"] > 1e-2
    for key in [k for k in big_log if k.startswith("loss")]:
        assert acc_log[key] == pytest.approx(big_log[key], rel=1e-5), key
    assert_same_update(big, acc, base)


@pytest.mark.slow
def test_training_lowers_the_loss_and_leaves_the_teacher_untouched(
    tmp_path, teacher, tokenizer, dataset, tiny_trainer
):
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    student = DistilBertForMaskedLM(config)
    with torch.no_grad():  # a random teacher's outputs are nearly uniform: sharpen them so L_ce has work to do
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(50)
    before_teacher = copy.deepcopy(teacher.state_dict())
    before_student = copy.deepcopy(student.state_dict())
    trainer = tiny_trainer(
        model=student, max_steps=40, learning_rate=3e-3, logging_steps=5, save_strategy="steps", save_steps=40
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs[-1]["loss_ce"] < 0.7 * logs[0]["loss_ce"]
    assert logs[-1]["loss"] < logs[0]["loss"]
    for log in logs:
        assert log["loss"] == pytest.approx(5 * log["loss_ce"] + 2 * log["loss_mlm"] + log["loss_cos"], rel=1e-4)
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before_teacher[name]), name
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters()) and not teacher.training
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert any(not torch.equal(v, before_student[k]) for k, v in student.state_dict().items())
    saved = load_file(str(tmp_path / "out" / "checkpoint-40" / "model.safetensors"))
    assert set(saved) <= set(student.state_dict()) and not any(k.startswith("bert.") for k in saved)


def test_teacher_receives_token_types_the_student_does_not_take(tmp_path, teacher, student, tokenizer, texts):
    data = datasets.Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"]
    )
    data = data.map(lambda ex: {"token_type_ids": [1] * len(ex["input_ids"])})
    trainer = make_trainer(tmp_path, student, teacher, train_dataset=data, tokenizer=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "token_type_ids" in batch and (batch["token_type_ids"][batch["attention_mask"].bool()] == 1).all()
    student.train()
    with_types = trainer.compute_loss(student, dict(batch))
    batch.pop("token_type_ids")
    assert with_types.item() != pytest.approx(trainer.compute_loss(student, dict(batch)).item(), rel=1e-4)


def test_evaluate_reports_each_term(tmp_path, teacher, student, tokenizer, dataset):
    trainer = make_trainer(tmp_path, student, teacher, eval_dataset=dataset, tokenizer=tokenizer)
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_loss_ce", "eval_loss_mlm", "eval_loss_cos"} <= set(metrics)
    assert metrics["eval_loss"] == pytest.approx(
        5 * metrics["eval_loss_ce"] + 2 * metrics["eval_loss_mlm"] + metrics["eval_loss_cos"], rel=1e-4
    )


def test_loss_is_fp32_under_bf16_autocast(tmp_path, teacher, student, tokenizer, dataset):
    trainer = make_trainer(tmp_path, student, teacher, tokenizer=tokenizer, bf16=True)
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(student, dict(batch))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_mlm_only_baseline_needs_no_teacher(tmp_path, student, tokenizer, dataset):
    trainer = make_trainer(
        tmp_path, student, train_dataset=dataset, tokenizer=tokenizer, alpha_ce=0.0, alpha_cos=0.0, max_steps=2
    )
    trainer.train()
    assert [k for k in trainer.state.log_history[0] if k.startswith("loss_")] == ["loss_mlm"]


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        ("vocab", {}, "teacher vocab 60 ≠ student vocab"),
        ("hidden", {}, "teacher hidden size 48 ≠ student 32"),
        ("none", {}, "alpha_ce, alpha_cos > 0 but no teacher_model was given"),
    ],
)
def test_incompatible_teachers_fail_at_construction(tmp_path, tokenizer, student, change, kwargs, message):
    from transformers import BertForMaskedLM

    teacher = {
        "vocab": BertForMaskedLM(tiny_bert_config(60)),
        "hidden": BertForMaskedLM(tiny_bert_config(len(tokenizer), hidden=48)),
        "none": None,
    }[change]
    with pytest.raises(ValueError, match=message) as info:
        make_trainer(tmp_path, student, teacher, **kwargs)
    assert "\n" not in str(info.value)


def test_intermediate_terms_vanish_for_an_identity_student_and_match_by_hand(tmp_path, teacher, tokenizer, dataset):
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    batch.pop("token_type_ids", None)
    identity = init_student_from_teacher(teacher, layers=[0, 1, 2, 3]).eval()
    trainer = make_trainer(tmp_path, identity, teacher, **INTERMEDIATE)
    _, out = trainer.compute_loss(identity, dict(batch), return_outputs=True)
    for name in ("hidden_mse", "attention_mse", "pkd"):
        assert out["terms"][name].item() == pytest.approx(0.0, abs=1e-6), name
    half = init_student_from_teacher(teacher, layers=[1, 3]).eval()
    trainer = make_trainer(tmp_path, half, teacher, intermediate_layers="tinybert", **INTERMEDIATE)
    assert trainer.layer_pairs == [(0, 0), (1, 2), (2, 4)]
    _, out = trainer.compute_loss(half, dict(batch), return_outputs=True)
    with torch.no_grad():
        s = half.distilbert(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
            output_attentions=True,
        )
        t = teacher.bert(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
            output_attentions=True,
        )
    real = batch["attention_mask"].bool()
    by_hand = sum(
        ((s.hidden_states[i][real] - t.hidden_states[j][real]) ** 2).mean() for i, j in [(0, 0), (1, 2), (2, 4)]
    )
    assert out["terms"]["hidden_mse"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    pairs = (real[:, None, :, None] & real[:, None, None, :]).expand_as(s.attentions[0])
    by_hand = sum(((s.attentions[i - 1][pairs] - t.attentions[j - 1][pairs]) ** 2).mean() for i, j in [(1, 2), (2, 4)])
    assert out["terms"]["attention_mse"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    by_hand = sum(
        ((unit(s.hidden_states[i][:, 0]) - unit(t.hidden_states[j][:, 0])) ** 2).sum(-1).mean()
        for i, j in [(1, 2), (2, 4)]
    )
    assert out["terms"]["pkd"].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_narrower_student_learns_a_projection_saved_beside_it(tmp_path, teacher, tokenizer, dataset, tiny_trainer):
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=16, n_layers=2, n_heads=4, hidden_dim=32, max_position_embeddings=64
    )
    DistilBertForMaskedLM(config).save_pretrained(tmp_path / "student")  # a resume reloads it from a folder
    student = DistilBertForMaskedLM.from_pretrained(tmp_path / "student")
    settings = dict(
        alpha_cos=0.0,
        alpha_hidden_mse=1.0,
        alpha_pkd=1.0,
        intermediate_layers="pkd_skip",
        max_steps=3,
        save_strategy="steps",
        save_steps=3,
    )
    trainer = tiny_trainer(model=student, **settings)
    before = trainer.hidden_projection.weight.detach().clone()
    trainer.train()
    assert trainer.hidden_projection.weight.shape == (32, 16) and not torch.equal(
        before, trainer.hidden_projection.weight
    )
    checkpoint = tmp_path / "out" / "checkpoint-3"
    assert (checkpoint / "hidden_projection.safetensors").exists()
    assert not any("projection" in k and "vocab" not in k for k in load_file(str(checkpoint / "model.safetensors")))
    assert {"loss_hidden_mse", "loss_pkd"} <= set(trainer.state.log_history[0])
    resumed = tiny_trainer(model=DistilBertForMaskedLM.from_pretrained(tmp_path / "student"), **settings)
    assert not torch.equal(resumed.hidden_projection.weight, trainer.hidden_projection.weight.cpu())
    resumed.train(resume_from_checkpoint=str(checkpoint))  # at max_steps already: restores, trains no further
    assert torch.equal(resumed.hidden_projection.weight, trainer.hidden_projection.weight.cpu())


def test_attention_loss_needs_equal_head_counts(tmp_path, teacher, tokenizer):
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    with pytest.raises(ValueError, match="the student has 2 heads and the teacher 4"):
        make_trainer(tmp_path, DistilBertForMaskedLM(config), teacher, alpha_attention_mse=1.0)


def test_several_teachers_mix_their_soft_targets(tmp_path, teacher, student, tokenizer, dataset):
    with torch.no_grad():  # peaked teacher distributions, so that L_ce is far from 0
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(50)
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    batch.pop("token_type_ids", None)
    student.eval()

    def terms(teachers, weights=None):
        trainer = make_trainer(tmp_path, student, teachers, teacher_weights=weights)
        return trainer.compute_loss(student, dict(batch), return_outputs=True)[1]["terms"]

    single = terms(teacher)
    assert terms([teacher, teacher])["ce"].item() == pytest.approx(single["ce"].item(), rel=1e-5)
    assert terms([teacher, other], [1.0, 0.0])["ce"].item() == pytest.approx(single["ce"].item(), rel=1e-5)
    mixed = terms([teacher, other], [0.5, 0.5])
    assert mixed["cos"].item() == pytest.approx(
        single["cos"].item(), rel=1e-6
    )  # hidden terms follow the first teacher
    rows = batch["attention_mask"].bool()
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows] / 2
        p = sum(
            0.5
            * torch.softmax(
                t(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows] / 2, -1
            )
            for t in (teacher, other)
        )
    by_hand = (p * (p.log() - torch.log_softmax(s, -1))).sum(-1).mean() * 4
    assert mixed["ce"].item() == pytest.approx(by_hand.item(), rel=1e-4)
    with pytest.raises(ValueError, match=re.escape("[1.0, 2.0, 3.0] gives 3 weights for 2 teachers; pass one weight")):
        terms([teacher, other], [1.0, 2.0, 3.0])


def test_teacher_weights_with_one_teacher_say_there_is_one_teacher(tmp_path, teacher, student):
    with pytest.raises(UsageError) as raised:
        make_trainer(tmp_path, student, teacher, teacher_weights=[0.7, 0.3])
    assert str(raised.value) == (
        "teacher_weights [0.7, 0.3] gives 2 weights, but there is one teacher: the weights mix several teachers' "
        "targets; leave teacher_weights out, or pass one teacher per weight."
    )


def test_attention_scores_are_the_logits_of_the_eager_attention_maps(teacher, tokenizer, dataset):
    """softmax(scores + padding mask) reproduces eager attention's probabilities, for BERT and DistilBERT layers."""
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(6)])
    student = init_student_from_teacher(teacher, layers=[1, 3]).eval()
    real = batch["attention_mask"].bool()
    assert not real.all()  # the batch has padding to mask
    for model, base in ((copy.deepcopy(teacher), "bert"), (student, "distilbert")):
        model.set_attn_implementation("eager")
        layers = list(range(1, model.config.num_hidden_layers + 1))
        with torch.no_grad(), heads.capture_attention_scores(model, layers) as captured:
            out = getattr(model, base)(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True
            )
            scores = captured()
        for i, probabilities in enumerate(out.attentions, start=1):
            rebuilt = torch.softmax(scores[i].masked_fill(~real[:, None, None, :], float("-inf")), dim=-1)
            torch.testing.assert_close(rebuilt, probabilities, rtol=1e-5, atol=1e-6)


def test_attention_mse_on_scores_matches_by_hand_and_keeps_sdpa(tmp_path, teacher, tokenizer, dataset):
    batch = DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])
    batch.pop("token_type_ids", None)
    teacher = copy.deepcopy(teacher)
    with torch.no_grad():  # random init gives scores ~1e-4; sharpen them so that the layers' maps differ visibly
        for layer in teacher.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(20)
            layer.attention.self.key.weight.mul_(20)
    half = init_student_from_teacher(teacher, layers=[1, 3])
    trainer = make_trainer(tmp_path, half, teacher, alpha_attention_mse=1.0, attention_maps="scores")
    assert half.config._attn_implementation != "eager" and teacher.config._attn_implementation != "eager"
    _, out = trainer.compute_loss(half, dict(batch), return_outputs=True)
    out["terms"]["attention_mse"].backward()
    assert half.distilbert.transformer.layer[0].attention.q_lin.weight.grad.abs().sum() > 0
    with (
        torch.no_grad(),
        heads.capture_attention_scores(half, [1, 2]) as s_captured,
        heads.capture_attention_scores(teacher, [2, 4]) as t_captured,
    ):
        half(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        s_scores, t_scores = s_captured(), t_captured()
    real = batch["attention_mask"].bool()
    pairs = (real[:, None, :, None] & real[:, None, None, :]).expand_as(s_scores[1])
    by_hand = sum(((s_scores[i][pairs] - t_scores[j][pairs]) ** 2).mean() for i, j in [(1, 2), (2, 4)])
    assert out["terms"]["attention_mse"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert by_hand.item() > 1e-3  # a different student, a real difference


def test_attention_maps_setting_is_checked():
    with pytest.raises(ValueError, match="attention_maps must be 'probabilities' or 'scores'"):
        DistillationArguments(output_dir="unused", attention_maps="logits")


@pytest.mark.slow
def test_logged_terms_of_a_resumed_run_equal_the_uninterrupted_run(
    tmp_path, teacher, tokenizer, dataset, tiny_trainer
):
    """The first log after a resume averages over the steps since the resume, not since step 0."""

    def run(out: str, resume: str | None = None) -> dict[int, dict]:
        student = init_student_from_teacher(teacher, layers=[0, 3])
        trainer = tiny_trainer(
            model=student,
            output_dir=str(tmp_path / out),
            max_steps=6,
            save_strategy="steps",
            save_steps=3,
            train_sampling_strategy="sequential",
        )
        trainer.train(resume_from_checkpoint=resume)
        return {h["step"]: h for h in trainer.state.log_history if "loss_ce" in h}

    full = run("full")
    resumed = run("resumed", resume=str(tmp_path / "full" / "checkpoint-3"))
    assert sorted(resumed) == sorted(full) == [1, 2, 3, 4, 5, 6]  # steps 1-3 come from the checkpoint
    for step in (4, 5, 6):
        for name in ("loss", "loss_ce", "loss_mlm", "loss_cos"):
            assert resumed[step][name] == pytest.approx(full[step][name], rel=1e-5), (step, name)
