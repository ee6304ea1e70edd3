"""--fp16 and --bf16: the distillation step under autocast against fp32, on every path of the loss.

The loss maths run in fp32 whatever the forwards' dtype (losses/terms.py), so autocast moves the terms and the
gradients only by the rounding of the forwards. Tolerances, from what these tiny models show (a few times the
largest deviation seen): fp16 (10 mantissa bits) terms within 0.2% (+3e-5 absolute, for terms near 0) and the
gradient within 0.3% in norm; bf16 (7 bits) 1% (+1.5e-4) and 2%. A CPU runs fp16 autocast without a GradScaler
(Accelerate has one for GPUs only); the `gpu` tests repeat the checks on CUDA (benchmarks/gpu_check.py runs them).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import make_args, make_trainer, sharpen_attention, tiny_distilbert
from torch import nn
from transformers import TrainerCallback

from hf_distil import DataCollatorForDistillation, DistillationTrainer
from hf_distil.callbacks import NonFiniteLossGuard
from hf_distil.teachers.cache import CachedSignalsCollator, build_teacher_cache

HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}
TEACHER_DTYPE = {"fp16": "float16", "bf16": "bfloat16"}
TERM_RTOL = {"fp16": 2e-3, "bf16": 1e-2}
TERM_ATOL = {"fp16": 3e-5, "bf16": 1.5e-4}
GRAD_RTOL = {"fp16": 3e-3, "bf16": 2e-2}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.py)")


@pytest.fixture
def sharp_teacher(teacher):
    """Random weights give near-uniform distributions, whose KL (~1e-6) is all rounding: sharpen the head and the
    attention so that every term has something to measure."""
    with torch.no_grad():
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(20)
    return sharpen_attention(teacher, 4.0)


def step(trainer: DistillationTrainer, batch: dict) -> tuple[torch.Tensor, dict, dict, set]:
    """One forward and backward as Trainer.training_step runs them (inside compute_loss_context_manager):
    (total, terms, gradients by name, dtypes the student's and teachers' linear layers returned)."""
    model = trainer.model
    model.zero_grad()
    projection = trainer.hidden_projection
    if projection is not None:
        projection.zero_grad()
    dtypes: set[torch.dtype] = set()
    linears = [m for net in (model, *trainer.teachers.models) for m in net.modules() if type(m) is nn.Linear]
    hooks = [m.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype)) for m in linears]
    try:
        with trainer.compute_loss_context_manager():
            total, out = trainer.compute_loss(model, dict(batch), return_outputs=True)
    finally:
        for hook in hooks:
            hook.remove()
    total.backward()
    named = [*model.named_parameters(), *(projection.named_parameters("projection") if projection else ())]
    return total, out["terms"], {n: p.grad.clone() for n, p in named if p.grad is not None}, dtypes


def assert_close_to_fp32(precision: str, reference: tuple, mixed: tuple) -> None:
    total_32, terms_32, grads_32, dtypes_32 = reference
    total, terms, grads, dtypes = mixed
    assert dtypes_32 == {torch.float32} and dtypes == {HALF[precision]}  # autocast ran the forwards, and only them
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in terms.values())  # fp32 loss maths
    assert set(terms) == set(terms_32) and len(terms) >= 2
    rel, tol = TERM_RTOL[precision], TERM_ATOL[precision]
    for name, value in terms.items():
        assert value.item() == pytest.approx(terms_32[name].item(), rel=rel, abs=tol), name
    assert total.item() == pytest.approx(total_32.item(), rel=rel)
    assert set(grads) == set(grads_32)
    g, g32 = (torch.cat([d[n].float().flatten() for n in sorted(d)]) for d in (grads, grads_32))
    assert torch.isfinite(g).all() and g32.norm() > 0
    assert ((g - g32).norm() / g32.norm()).item() < GRAD_RTOL[precision]


def compare(tmp_path, precision: str, student, teacher, batch: dict, **settings) -> None:
    """The same step on copies of the same models, in fp32 and under `precision`; the width projection (if any)
    starts from the same seed."""
    runs = []
    for mixed in (False, True):
        torch.manual_seed(1)
        pair = (copy.deepcopy(student), copy.deepcopy(teacher))
        extra = {precision: True, **settings} if mixed else {k: v for k, v in settings.items() if k != "teacher_dtype"}
        trainer = make_trainer(tmp_path / str(mixed), *pair, data_collator=lambda x: x, **extra)
        for model in pair:
            if model is not None:
                model.eval()  # no dropout: the two runs differ by precision only
        runs.append(step(trainer, batch))
    assert_close_to_fp32(precision, *runs)


@pytest.fixture
def batch(tokenizer, dataset) -> dict:
    return DataCollatorForDistillation(tokenizer, seed=0)([dataset[i] for i in range(8)])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_step_matches_fp32_on_both_kl_paths(tmp_path, kl_path, precision, student, sharp_teacher, batch):
    """DistilBERT's triple loss at every token, the vocabulary projection inside the loss (fused head)."""
    compare(tmp_path, precision, student, sharp_teacher, batch)


PATHS = {
    "whole logits": {"projection_in_loss": False},
    "masked rows only": {"restrict_ce_to_mask": True, "alpha_mse": 1.0},
    "half teacher": {"teacher_dtype": None},  # the teacher cast to the autocast dtype
}


# Each path in one precision (the other differs only in its tolerances), the half teacher in both.
@pytest.mark.parametrize(
    "path, precision",
    [("whole logits", "bf16"), ("masked rows only", "fp16"), ("half teacher", "fp16"), ("half teacher", "bf16")],
)
def test_every_path_of_the_loss_under_autocast(tmp_path, monkeypatch, path, precision, student, sharp_teacher, batch):
    settings = dict(PATHS[path])
    if "projection_in_loss" in settings:
        monkeypatch.setattr(DistillationTrainer, "projection_in_loss", settings.pop("projection_in_loss"))
    if "teacher_dtype" in settings:
        settings["teacher_dtype"] = TEACHER_DTYPE[precision]
    compare(tmp_path, precision, student, sharp_teacher, batch, **settings)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_layer_and_relation_terms_under_autocast(tmp_path, precision, tokenizer, sharp_teacher, batch):
    """A half-width student: TinyBERT's hidden and attention-score MSE through the learned projection (fp32
    inside the loss), BERT-PKD and MiniLMv2's relations."""
    student = tiny_distilbert(len(tokenizer), dim=16, heads=4)
    layers = {"alpha_hidden_mse": 1.0, "alpha_attention_mse": 1.0, "attention_maps": "scores", "alpha_pkd": 1.0}
    compare(tmp_path, precision, student, sharp_teacher, batch, alpha_cos=0.0, alpha_relation=1.0, **layers)


@pytest.mark.parametrize("precision", ["bf16"])
def test_cached_topk_teacher_under_autocast(tmp_path, precision, student, sharp_teacher, tokenizer, dataset):
    cache = build_teacher_cache(sharp_teacher, dataset.select(range(8)), DataCollatorForDistillation(tokenizer), 8)
    batch = CachedSignalsCollator(tokenizer)([cache[i] for i in range(8)])
    compare(tmp_path, precision, student, None, batch, train_dataset=cache, alpha_cos=0.0)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_trainer_trains_with_mixed_precision_on_cpu(tmp_path, precision, student, teacher, tokenizer, dataset):
    """`--fp16`/`--bf16` on a CPU process: accepted, autocast without a GradScaler, finite updates."""
    trainer = make_trainer(
        tmp_path, student, teacher, tokenizer=tokenizer, train_dataset=dataset, max_steps=2, **{precision: True}
    )
    before = [p.detach().clone() for p in student.parameters()]
    trainer.train()
    assert trainer.accelerator.scaler is None
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(math.isfinite(h["loss"]) and math.isfinite(h["grad_norm"]) for h in logged)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_half_teacher_teaches_an_fp32_student(tmp_path, student, sharp_teacher, batch):
    """teacher_dtype alone (no autocast): the teacher runs in bf16, the student and the loss in fp32."""
    trainer = make_trainer(tmp_path, student, sharp_teacher, data_collator=lambda x: x, teacher_dtype="bfloat16")
    assert {p.dtype for p in sharp_teacher.parameters()} == {torch.bfloat16}
    total, terms, grads, _ = step(trainer, batch)
    assert total.dtype == torch.float32 and {p.dtype for p in student.parameters()} == {torch.float32}
    assert set(terms) == {"ce", "mlm", "cos"} and all(torch.isfinite(v) for v in terms.values()) and grads


def test_teacher_dtype_is_checked_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="teacher_dtype must be one of float32, float16, bfloat16, got 'half'"):
        make_trainer(tmp_path, None, teacher_dtype="half")


def test_bf16_under_accelerate_launch_cpu(tmp_path, monkeypatch):
    """`accelerate launch --cpu ... --bf16` sets ACCELERATE_USE_CPU, not use_cpu, which TrainingArguments' bf16
    check reads ("Your setup doesn't support bf16/gpu")."""
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    args = make_args(tmp_path, bf16=True, use_cpu=False)
    assert args.use_cpu and args.device.type == "cpu"


# ---- GPU only (benchmarks/gpu_check.py runs them: pytest -m gpu) ----


def overflow_run(tmp_path, student, teacher, tokenizer, dataset, max_grad_norm: float, **settings) -> None:
    """fp16 under a GradScaler with an Inf gradient at step 2: that update is skipped (weights and optimizer
    untouched), the scale lowered, the step logged with a non-finite grad_norm and counted by the guard, and
    training goes on."""
    guard = NonFiniteLossGuard(max_in_a_row=3)
    trainer = make_trainer(
        tmp_path,
        student,
        teacher,
        tokenizer=tokenizer,
        train_dataset=dataset,
        callbacks=[guard],
        max_steps=4,
        fp16=True,
        max_grad_norm=max_grad_norm,
        **settings,
    )
    if trainer.accelerator.scaler is None:  # a CPU: Accelerate has no GradScaler there; torch's CPU one stands in
        trainer.accelerator.scaler, trainer.accelerator.native_amp = torch.amp.GradScaler("cpu"), True
    weights: dict[int, list[torch.Tensor]] = {}
    scales: dict[int, float] = {}

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            weights[state.global_step] = [p.detach().clone() for p in student.parameters()]
            scales[state.global_step] = trainer.accelerator.scaler.get_scale()

    trainer.add_callback(Record())
    next(student.parameters()).register_hook(lambda g: g * math.inf if trainer.state.global_step + 1 == 2 else g)
    trainer.train()
    assert trainer.state.global_step == 4 and guard.skipped == [2] and not guard.stopped
    assert all(torch.equal(a, b) for a, b in zip(weights[1], weights[2]))  # skipped, never applied
    assert not any(torch.equal(a, b) for a, b in zip(weights[2], weights[3]))  # the next one applied
    assert scales[2] == scales[1] / 2 == scales[3]
    logged = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    assert not math.isfinite(logged[2]["grad_norm"]) and math.isfinite(logged[3]["grad_norm"])
    assert all(torch.isfinite(p).all() for p in student.parameters())


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0], ids=["unclipped", "clipped"])
def test_fp16_overflow_skips_the_update_under_a_grad_scaler(
    tmp_path, max_grad_norm, student, teacher, tokenizer, dataset
):
    """The GPU path with torch's CPU GradScaler forced in; unclipped, the scaler itself finds the Inf."""
    overflow_run(tmp_path, student, teacher, tokenizer, dataset, max_grad_norm)


@pytest.mark.parametrize("init_scale", [2.0**16, 0.5], ids=["scale 2^16", "scale below 1"])
def test_fp16_overflows_in_a_row_stop_the_run_only_once_the_loss_scale_is_below_1(
    tmp_path, init_scale, student, teacher, tokenizer, dataset
):
    """An initial loss scale of 2^16 overflows for several steps in a row: the scaler's business, not divergence."""
    guard = NonFiniteLossGuard(max_in_a_row=3)
    trainer = make_trainer(
        tmp_path, student, teacher, tokenizer=tokenizer, train_dataset=dataset, callbacks=[guard], max_steps=6,
        fp16=True, max_grad_norm=1.0,
    )  # fmt: skip
    trainer.accelerator.scaler = torch.amp.GradScaler(trainer.args.device.type, init_scale=init_scale)
    trainer.accelerator.native_amp = True
    next(student.parameters()).register_hook(lambda g: g * math.inf if trainer.state.global_step < 5 else g)
    trainer.train()
    if init_scale > 1:
        assert guard.skipped == [1, 2, 3, 4, 5] and not guard.stopped and trainer.state.global_step == 6
        assert trainer.accelerator.scaler.get_scale() == init_scale / 2**5
    else:
        assert guard.skipped == [1, 2, 3] and guard.stopped and trainer.state.global_step == 3


@pytest.mark.gpu
@cuda
def test_fp16_overflow_skips_the_update_on_cuda(tmp_path, student, teacher, tokenizer, dataset):
    overflow_run(tmp_path, student, teacher, tokenizer, dataset, 1.0, use_cpu=False)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_fused_losses_on_cuda_match_fp32(tmp_path, precision, student, sharp_teacher, batch):
    """The fused vocabulary head and the torch-op KL (the CPU kernel does not serve CUDA) under CUDA autocast."""
    cuda_batch = {k: v.cuda() for k, v in batch.items()}
    compare(tmp_path, precision, student.cuda(), sharp_teacher.cuda(), cuda_batch, use_cpu=False)
