"""The causal path (alpha_clm > 0, DataCollatorForDistillation(mlm=False)) through DistillationTrainer, on a tiny
GPT-2 built in code over the tiny WordPiece vocabulary: L_clm is logged, equals next-token cross-entropy by hand,
falls with training, and accumulates exactly; distilled from a causal teacher, L_ce equals the KL by hand."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
from conftest import make_trainer, one_sgd_step
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from hf_distil import DataCollatorForDistillation

CLM_ONLY = dict(alpha_clm=1.0, alpha_mlm=0.0, alpha_ce=0.0, alpha_cos=0.0)


def tiny_gpt2(tokenizer, layers: int = 2) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=layers,
        n_head=4,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return GPT2LMHeadModel(config)


@pytest.fixture
def causal_data(tokenizer, texts) -> datasets.Dataset:
    # No token_type_ids: GPT-2 would add them through its word embeddings (wte), a shift no test here wants.
    encode = lambda b: tokenizer(b["text"], return_token_type_ids=False)  # noqa: E731
    return datasets.Dataset.from_dict({"text": texts}).map(encode, batched=True, remove_columns=["text"])


def next_token_ce(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """By hand: logits at position i score the token at i + 1; mean over real next tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)


def test_compute_loss_is_next_token_cross_entropy(tmp_path, tokenizer, causal_data):
    student = tiny_gpt2(tokenizer).eval()
    collator = DataCollatorForDistillation(tokenizer, mlm=False)
    batch = collator([causal_data[i] for i in range(8)])
    assert (batch["attention_mask"] == 0).any()  # padding to ignore
    trainer = make_trainer(tmp_path, student, data_collator=collator, **CLM_ONLY)
    loss, out = trainer.compute_loss(student, dict(batch), return_outputs=True)
    assert set(out["terms"]) == {"clm"}
    with torch.no_grad():
        expected = next_token_ce(student, batch)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0.5 * torch.log(torch.tensor(len(tokenizer))).item() < expected.item()  # a random model: near log V


@pytest.mark.slow
def test_training_logs_loss_clm_from_the_first_batch_and_lowers_it(tmp_path, tokenizer, causal_data):
    student = tiny_gpt2(tokenizer)
    initial = copy.deepcopy(student).eval()
    collator = DataCollatorForDistillation(tokenizer, mlm=False)
    trainer = make_trainer(
        tmp_path,
        student,
        train_dataset=causal_data,
        data_collator=collator,
        max_steps=8,
        learning_rate=1e-2,
        train_sampling_strategy="sequential",
        **CLM_ONLY,
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 8 and all({k for k in h if k.startswith("loss_")} == {"loss_clm"} for h in logs)
    assert all(h["loss"] == pytest.approx(h["loss_clm"], rel=1e-6) for h in logs)
    with torch.no_grad():  # step 1 logs the loss of the first 8 sequences under the initial weights
        first = next_token_ce(initial, collator([causal_data[i] for i in range(8)]))
    assert logs[0]["loss_clm"] == pytest.approx(first.item(), rel=1e-5)
    assert logs[-1]["loss_clm"] < 0.9 * logs[0]["loss_clm"]  # 4.02 -> 3.39 in 8 steps


@pytest.mark.parametrize("accepts_loss_kwargs, with_teacher", [(True, False), (False, False), (True, True)])
def test_accumulation_2x4_equals_one_batch_of_8(tmp_path, tokenizer, causal_data, accepts_loss_kwargs, with_teacher):
    """Exact whatever the student's `accepts_loss_kwargs`: before transformers 5.19 (Trainer.loss_is_scaled_for_ga)
    Trainer divided the loss of such a student once more by the accumulation steps. With a causal teacher, L_ce too."""
    data = causal_data.select(range(8))
    lengths = [len(x) for x in data["input_ids"]]
    assert sum(lengths[:4]) != sum(lengths[4:])  # the micro-batches hold different token counts
    collator = DataCollatorForDistillation(tokenizer, mlm=False)
    base = tiny_gpt2(tokenizer)
    base.accepts_loss_kwargs = accepts_loss_kwargs  # what Trainer reads to decide whether to rescale
    big, acc = copy.deepcopy(base), copy.deepcopy(base)
    teacher = tiny_gpt2(tokenizer, layers=4) if with_teacher else None
    weights = {**CLM_ONLY, "alpha_ce": 5.0} if with_teacher else CLM_ONLY
    step = dict(train_sampling_strategy="sequential", **weights)
    big_log = one_sgd_step(tmp_path / "a", big, teacher, data, collator, batch=8, accumulation=1, **step)
    acc_log = one_sgd_step(tmp_path / "b", acc, teacher, data, collator, batch=4, accumulation=2, **step)
    assert {k for k in big_log if k.startswith("loss_")} == ({"loss_clm", "loss_ce"} if with_teacher else {"loss_clm"})
    for key in ("loss", "loss_clm", "loss_ce")[: 3 if with_teacher else 2]:
        assert acc_log[key] == pytest.approx(big_log[key], rel=1e-5), key
    with torch.no_grad():
        assert big_log["loss_clm"] == pytest.approx(next_token_ce(base.eval(), collator(list(data))).item(), rel=1e-5)
    moved = 0.0
    for (name, p_big), p_acc, p0 in zip(big.named_parameters(), acc.parameters(), base.parameters(), strict=True):
        torch.testing.assert_close(p_acc, p_big, rtol=1e-4, atol=1e-6, msg=name)
        moved = max(moved, (p_big - p0).abs().max().item())
    assert moved > 1e-3  # the step really changed the weights


def test_causal_student_distilled_from_a_causal_teacher(tmp_path, tokenizer, causal_data):
    """L_ce over the real tokens' rows of both models' logits, L_clm over the student's full logits."""
    teacher, student = tiny_gpt2(tokenizer, layers=4).eval(), tiny_gpt2(tokenizer).eval()
    collator = DataCollatorForDistillation(tokenizer, mlm=False)
    batch = collator([causal_data[i] for i in range(8)])
    trainer = make_trainer(
        tmp_path, student, teacher, data_collator=collator, alpha_clm=1.0, alpha_mlm=0.0, alpha_ce=5.0, alpha_cos=0.0
    )
    _, out = trainer.compute_loss(student, dict(batch), return_outputs=True)
    real = batch["attention_mask"].bool()
    with torch.no_grad():  # both models score the next token at each real position: the rows align unshifted
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[real] / 2
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[real] / 2
    kl = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(s, -1), torch.softmax(t, -1)) * 4
    assert out["terms"]["ce"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert out["terms"]["clm"].item() == pytest.approx(next_token_ce(student, batch).item(), rel=1e-6)


def test_a_gpt2_student_gets_no_token_types_while_a_bert_teacher_does(tokenizer, teacher):
    from hf_distil.models.heads import model_inputs

    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "token_type_ids": torch.zeros(2, 3, dtype=torch.long)}
    assert "token_type_ids" not in model_inputs(tiny_gpt2(tokenizer), batch)  # GPT-2 would add them as tokens
    assert "token_type_ids" in model_inputs(teacher, batch)
