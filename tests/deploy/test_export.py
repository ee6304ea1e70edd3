"""ONNX export: fp32 parity with PyTorch for every head, the int8 gate, the report, the recipe as users run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_bert_config, tiny_tokenizer
from onnx import TensorProto, helper, numpy_helper
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertModel,
)

from hf_distil import init_student_from_teacher
from hf_distil.deploy import (
    EXPORT_REPORT_FILE,
    FP32_FILE,
    INT8_FILE,
    TASKS,
    export_onnx,
    export_student,
    held_out_sentences,
    session,
    task_of,
)
from hf_distil.deploy.export import input_names
from hf_distil.deploy.fidelity import (
    _best_span,
    agreement,
    answers,
    correlation,
    fidelity_feeds,
    largest_relative_error,
)
from hf_distil.deploy.quantization import SCHEME_NAMES, SCHEMES, feed_forward_matmuls, quantize_embedding_rows
from hf_distil.errors import UsageError
from hf_distil.hub import card

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(num_sentences=20, speed_sentences=3, speed_rounds=1)  # the gate and timing on a handful of sentences


def tiny_distilbert(cls: type, tokenizer) -> torch.nn.Module:
    names = {0: "negative", 1: "neutral", 2: "positive"}
    labels = {} if cls is DistilBertForQuestionAnswering else {"id2label": names}  # QA heads have 2 outputs
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
        **labels,
    )
    return cls(config).eval()


def tiny_student(kind: str) -> torch.nn.Module:
    """Randomly initialised (seeded by conftest): on 20 held-out sentences, int8 `dynamic` keeps 91.7% of its
    top-1 at [MASK] and `dynamic_per_channel` 97.9%, so the gate has something to tell apart."""
    tokenizer = tiny_tokenizer()
    if kind == "bert-classifier":  # BERT heads take token_type_ids: the export must pass them on
        return BertForSequenceClassification(tiny_bert_config(len(tokenizer))).eval()
    classes = {
        "masked-lm": DistilBertForMaskedLM,
        "classifier": DistilBertForSequenceClassification,
        "qa": DistilBertForQuestionAnswering,
        "encoder": DistilBertModel,
    }
    return tiny_distilbert(classes[kind], tokenizer)


def saved(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["masked-lm", "classifier", "bert-classifier", "qa", "encoder"])
def test_fp32_export_equals_pytorch_on_batches_of_other_sizes_and_lengths(tmp_path, kind):
    model, tokenizer = tiny_student(kind), tiny_tokenizer()
    task = task_of(saved(model, tmp_path / "model"))
    path = export_onnx(model, tokenizer, tmp_path / FP32_FILE, task)
    ort_session = session(path)
    names = input_names(model, tokenizer)
    assert [i.name for i in ort_session.get_inputs()] == names
    assert [o.name for o in ort_session.get_outputs()] == list(task.outputs)
    assert ("token_type_ids" in names) == (kind == "bert-classifier")
    sentences = held_out_sentences()
    for batch in (sentences[:5], sentences[5:6]):  # traced with 2 sentences: other batch sizes and lengths
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="pt")
        assert len(set(encoded["attention_mask"].sum(1).tolist())) == len(batch)  # really different lengths
        with torch.no_grad():
            expected = model(**{n: encoded[n] for n in names}, return_dict=True)
        got = ort_session.run(None, {n: encoded[n].numpy() for n in names})
        for name, value in zip(task.outputs, got):
            np.testing.assert_allclose(value, expected[name].numpy(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def shipped_student(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    from hf_distil.teachers import load_default_teacher

    teacher, tokenizer = load_default_teacher()
    student = init_student_from_teacher(teacher).eval()
    folder = tmp_path_factory.mktemp("shipped_student")
    student.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, student


def test_fp32_export_of_the_shipped_teachers_student_equals_pytorch(shipped_student, tmp_path):
    folder, student = shipped_student
    tokenizer = AutoTokenizer.from_pretrained(folder)
    path = export_onnx(student, tokenizer, tmp_path / FP32_FILE, TASKS["ForMaskedLM"])
    sentences = held_out_sentences()[:6]
    encoded = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = student(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits.numpy()
    got = session(path).run(None, {n: encoded[n].numpy() for n in ("input_ids", "attention_mask")})[0]
    assert got.shape == expected.shape == (6, encoded["input_ids"].shape[1], 30522)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_export_student_writes_the_layout_transformers_js_reads_and_a_report_that_checks_out(tmp_path):
    folder = saved(tiny_student("masked-lm"), tmp_path / "student")
    out = tmp_path / "out"
    report = export_student(folder, out, min_agreement=0.95, try_all=True, **FAST)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        FP32_FILE,
        INT8_FILE,
        EXPORT_REPORT_FILE,
    }
    assert json.loads((out / EXPORT_REPORT_FILE).read_text()) == json.loads(json.dumps(report.to_dict()))
    assert [s.name for s in report.schemes] == SCHEME_NAMES  # try_all: every scheme measured
    assert [s.passed for s in report.schemes][:2] == [False, True]  # dynamic falls short, per channel passes
    assert report.chosen == "dynamic_per_channel" and report.int8_file == INT8_FILE and report.task == "fill-mask"
    assert report.fp32_max_abs_diff < 1e-4 and report.items > 50
    assert all(s.latency_ms > 0 and s.size_mb > 0 for s in report.schemes)
    assert {"student, PyTorch fp32", "student, ONNX fp32"} <= set(report.latency_ms)
    # The kept file is int8 and gives, on the same inputs, exactly the agreement the report states.
    ops = {n.op_type for n in onnx.load(str(out / INT8_FILE)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "MatMulNBits"}
    tokenizer, task = AutoTokenizer.from_pretrained(out), TASKS["ForMaskedLM"]
    feeds = fidelity_feeds(task, tokenizer, held_out_sentences()[:20], ["input_ids", "attention_mask"], 64)
    fp32, int8 = session(out / FP32_FILE), session(out / INT8_FILE)
    reference = answers(task, [fp32.run(None, f) for f in feeds], feeds, tokenizer.mask_token_id)
    ours = answers(task, [int8.run(None, f) for f in feeds], feeds, tokenizer.mask_token_id)
    assert agreement(ours, reference) == next(s.agreement for s in report.schemes if s.name == report.chosen)


def test_the_gate_tries_schemes_in_order_and_stops_at_the_first_that_passes(tmp_path):
    folder = saved(tiny_student("masked-lm"), tmp_path / "student")
    report = export_student(folder, tmp_path / "out", min_agreement=0.95, **FAST)
    assert [s.name for s in report.schemes] == ["dynamic", "dynamic_per_channel"]
    assert report.chosen == "dynamic_per_channel" and report.schemes[0].agreement < 0.95


def test_when_no_scheme_passes_only_fp32_is_written_and_a_stale_int8_file_goes(tmp_path):
    folder = saved(tiny_student("masked-lm"), tmp_path / "student")
    out = tmp_path / "out"
    (out / "onnx").mkdir(parents=True)
    (out / INT8_FILE).write_bytes(b"an int8 file from an earlier export")
    report = export_student(folder, out, min_agreement=0.95, schemes=["dynamic"], **FAST)
    assert report.schemes[0].agreement < 0.95 and not report.schemes[0].passed
    assert report.chosen is None and report.int8_file is None
    assert (out / FP32_FILE).exists() and not (out / INT8_FILE).exists()
    assert not (out / "onnx" / "candidates").exists()

    # min_agreement 0: the same scheme is kept, whatever it keeps of fp32's answers.
    report = export_student(folder, out, min_agreement=0, schemes=["dynamic"], **FAST)
    assert report.chosen == "dynamic" and report.schemes[0].agreement < 0.95 and (out / INT8_FILE).exists()


@pytest.mark.parametrize("kind", ["classifier", "qa", "encoder"])
def test_every_head_goes_through_the_gate(tmp_path, kind):
    report = export_student(
        saved(tiny_student(kind), tmp_path / "m"), tmp_path / "out", min_agreement=0.01, schemes=["per_token"], **FAST
    )
    items = {"classifier": 20, "qa": 18, "encoder": 20}[kind]  # sentences; questions use sentence i+1, i+2
    assert report.items == items and report.chosen == "per_token" and (tmp_path / "out" / INT8_FILE).exists()
    assert (
        report.task
        == {"classifier": "text-classification", "qa": "question-answering", "encoder": "feature-extraction"}[kind]
    )


@pytest.mark.parametrize("scheme", ["smooth_split", "outlier_split"])
@pytest.mark.parametrize("kind", ["masked-lm", "classifier", "qa", "encoder"])
def test_the_calibrated_schemes_learn_from_sentences_the_gate_does_not_measure(tmp_path, kind, scheme):
    report = export_student(saved(tiny_student(kind), tmp_path / "m"), tmp_path / "out", schemes=[scheme], **FAST)
    assert report.calibration_sentences == 64 and report.sentences == 20  # sentences 20-83 calibrate, 0-19 measure
    kept = report.schemes[0]
    assert report.chosen == scheme and kept.agreement >= 0.95 and (tmp_path / "out" / INT8_FILE).exists()
    ops = {n.op_type for n in onnx.load(str(tmp_path / "out" / INT8_FILE)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops


def test_the_int8_embeddings_scheme_stores_the_embedding_tables_in_int8_one_scale_per_row(tmp_path):
    """(Its file is smaller on a real student only: a tiny model's tables are smaller than what the rewrite adds.)"""
    folder = saved(tiny_student("masked-lm"), tmp_path / "m")
    report = export_student(
        folder, tmp_path / "out", schemes=["smooth_split_int8_embeddings"], min_agreement=0.5, **FAST
    )
    assert report.chosen == "smooth_split_int8_embeddings" and report.schemes[0].agreement >= 0.5
    graph = onnx.load(str(tmp_path / "out" / INT8_FILE)).graph
    weights = {t.name: t for t in graph.initializer}
    read = [weights[n.input[0]] for n in graph.node if n.op_type == "Gather" and n.input[0] in weights]
    tables = [t for t in read if t.dims[1] > 1]
    assert [t.data_type for t in tables] == [onnx.TensorProto.INT8] * 2  # word and position embeddings, in int8
    assert all(t.dims[1] == 1 and t.data_type == onnx.TensorProto.FLOAT for t in read if t not in tables)  # scales
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {n.op_type for n in graph.node}


def test_embedding_rows_in_int8_give_the_table_back_to_half_a_step_per_row(tmp_path):
    table = (np.random.default_rng(0).normal(size=(50, 8)) * np.linspace(0.01, 3, 50)[:, None]).astype(np.float32)
    ids = onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [None])
    out = onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [None, 8])
    gather = onnx.helper.make_node("Gather", ["table", "ids"], ["out"], name="embed")
    graph = onnx.helper.make_graph([gather], "g", [ids], [out], [onnx.numpy_helper.from_array(table, "table")])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "a.onnx")
    quantize_embedding_rows(tmp_path / "a.onnx", tmp_path / "b.onnx")
    rows = session(tmp_path / "b.onnx").run(None, {"ids": np.arange(50)})[0]
    step = np.abs(table).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(rows - table) <= step / 2 + 1e-7) and (tmp_path / "b.onnx").stat().st_size < table.nbytes


def test_a_calibrated_scheme_without_sentences_left_to_calibrate_on_is_refused(tmp_path):
    folder = saved(tiny_student("masked-lm"), tmp_path / "student")
    texts = held_out_sentences()[:12]
    with pytest.raises(UsageError, match="outlier_split calibrates on held-out sentences beyond the 12 measured"):
        export_student(folder, tmp_path / "out", texts=texts, schemes=["outlier_split"], **FAST)


def regression_student(folder: Path, outlier: bool = False) -> Path:
    """A saved one-output classifier (STS-B-like scores). `outlier`: one huge weight in every linear layer, which
    int8 with one scale per tensor cannot hold beside the others (they all round to 0): a model int8 damages."""
    config = DistilBertConfig(
        vocab_size=len(tiny_tokenizer()), dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64
    )
    model = DistilBertForSequenceClassification(DistilBertConfig(**{**config.to_dict(), "num_labels": 1})).eval()
    with torch.no_grad():
        for linear in (m for m in model.modules() if outlier and isinstance(m, torch.nn.Linear)):
            linear.weight[0, 0] = 1000 * linear.weight.std()
    return saved(model, folder)


def test_a_regression_head_is_gated_on_the_correlation_of_its_scores_with_fp32(tmp_path):
    """An argmax of one score always agrees (1.0 whatever int8 does): the gate correlates the scores instead."""
    healthy = export_student(regression_student(tmp_path / "ok"), tmp_path / "ok_out", schemes=["per_token"], **FAST)
    assert healthy.agreement_measure == "Pearson correlation with fp32 predictions" and healthy.items == 20
    kept = healthy.schemes[0]
    assert kept.passed and kept.agreement > 0.99 and 0 < kept.max_relative_error < 1e-3
    assert healthy.chosen == "per_token" and (tmp_path / "ok_out" / INT8_FILE).exists()
    row = dict((r[0], r[2]) for r in card._onnx_section(healthy.for_card())["rows"])[INT8_FILE]
    assert row.startswith(f"Pearson correlation with fp32 predictions: {kept.agreement:.3f}, largest error 0.0%")

    out = tmp_path / "damaged_out"
    damaged = export_student(regression_student(tmp_path / "damaged", outlier=True), out, schemes=["dynamic"], **FAST)
    scheme = damaged.schemes[0]
    assert scheme.agreement < 0.5 and scheme.max_relative_error > 0.5 and not scheme.passed
    assert damaged.chosen is None and not (out / INT8_FILE).exists()
    saved_report = json.loads((out / EXPORT_REPORT_FILE).read_text())
    assert saved_report["regression"] and saved_report["schemes"][0]["max_relative_error"] > 0.5
    assert damaged.shown(0.95) == "0.950" and healthy.shown(1.0) == "1.000"  # a correlation, not a share


def test_correlation_is_zero_for_a_constant_or_non_finite_prediction():
    reference = np.array([0.1, 0.5, 0.2, 0.9])
    assert correlation(2 * reference + 1, reference) == pytest.approx(1.0)
    assert correlation(np.full(4, 0.4), reference) == 0.0 and correlation(reference * np.nan, reference) == 0.0
    assert largest_relative_error(reference + np.array([0, 0.09, 0, 0]), reference) == pytest.approx(0.1)


def test_answers_are_what_a_pipeline_user_sees():
    fill, classify = TASKS["ForMaskedLM"], TASKS["ForSequenceClassification"]
    logits = np.zeros((1, 4, 5))
    logits[0, 1, 3] = logits[0, 2, 4] = logits[0, 3, 2] = 1
    feed = {"input_ids": np.array([[2, 4, 9, 4]])}  # [MASK] (id 4) at positions 1 and 3 only
    assert answers(fill, [[logits]], [feed], mask_token_id=4).tolist() == [3, 2]
    assert answers(classify, [[np.array([[0.1, 0.7, 0.2]])]], [{}], None).tolist() == [1]
    embeddings = [np.array([[[1.0, 0.0]]]), np.array([[[0.9, 0.1]]]), np.array([[[0.0, 1.0]]])]
    assert answers(TASKS["Model"], [[e] for e in embeddings], [{}] * 3, None).tolist() == [1, 0, 1]
    assert agreement(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]])) == 0.5  # a span: both ends count


def test_best_span_stays_inside_the_context_and_within_the_length_limit():
    ids = np.array([[2, 7, 8, 3, 10, 11, 12, 13, 3]])  # [CLS] question [SEP] context [SEP]
    start = np.array([9.0, 9, 9, 9, 1, 0, 0, 0, 9])  # the question and separators score higher: not allowed
    end = np.array([9.0, 9, 9, 9, 0, 0, 2, 0, 9])
    assert _best_span(start, end, {"input_ids": ids}) == (4, 6)
    assert _best_span(end, start, {"input_ids": ids}) == (6, 6)  # an end before the start is never chosen


def test_feed_forward_matmuls_are_found_by_their_weight_shape(tmp_path):
    model = tiny_student("masked-lm")
    path = export_onnx(model, tiny_tokenizer(), tmp_path / FP32_FILE, TASKS["ForMaskedLM"])
    found = feed_forward_matmuls(path, model.config.to_dict())
    assert len(found) == 2 * model.config.n_layers and all("/ffn/lin" in name for name in found)


def one_matmul(path: Path, weight: np.ndarray) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_per_token_scales_keep_small_tokens_exact_where_one_scale_per_tensor_does_not(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(16, 8)).astype(np.float32)
    x = rng.normal(size=(3, 16)).astype(np.float32)
    x[0] *= 100  # one token with very large activations, as [CLS]/[SEP] have
    expected = x @ weight
    errors = {}
    for scheme in (s for s in SCHEMES if s.name in ("dynamic", "per_token")):
        target = tmp_path / f"{scheme.name}.onnx"
        scheme.quantize(one_matmul(tmp_path / "fp32.onnx", weight), target, {})
        got = session(target).run(None, {"x": x})[0]
        errors[scheme.name] = np.abs(got - expected).max(1) / np.abs(expected).max(1)  # relative, per token
    assert errors["per_token"].max() < 0.02  # every token, the large one and the small ones, to 8 bits
    assert errors["dynamic"][1:].min() > 5 * errors["per_token"][1:].max()  # one scale: small tokens lose
    assert not [n for n in onnx.load(str(tmp_path / "per_token.onnx")).graph.initializer if n.name == "w"]


def test_bad_inputs_are_one_actionable_line(tmp_path):
    folder = saved(tiny_student("masked-lm"), tmp_path / "student")
    with pytest.raises(UsageError, match="holds no saved model"):
        export_student(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(UsageError, match=r"min_agreement must be in \[0, 1\], got 1.5"):
        export_student(folder, tmp_path / "out", min_agreement=1.5)
    with pytest.raises(UsageError, match="unknown int8 scheme"):
        export_student(folder, tmp_path / "out", schemes=["int4"])
    from transformers import DistilBertForTokenClassification

    saved(tiny_distilbert(DistilBertForTokenClassification, tiny_tokenizer()), tmp_path / "tagger")
    with pytest.raises(UsageError, match="export handles masked LMs"):
        export_student(tmp_path / "tagger", tmp_path / "out")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UsageError, match=re.escape('config.json names no architecture (no "architectures" entry)')):
        task_of(tmp_path / "bare")
    (tmp_path / "bare" / "config.json").write_text('{"model_type": ')
    with pytest.raises(UsageError, match=re.escape("config.json cannot be read (JSONDecodeError); save the model")):
        task_of(tmp_path / "bare")


def run_export(*flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "recipes/export.py", *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.recipe
def test_recipe_prints_the_table_and_exits_1_with_fp32_only_when_no_scheme_passes(tmp_path):
    folder = saved(tiny_student("masked-lm"), tmp_path / "student")
    fast = ["--num_sentences", "20", "--speed_sentences", "3", "--speed_rounds", "1"]
    done = run_export("--model", str(folder), "--output_dir", str(tmp_path / "ok"), "--min_agreement", "0.01", *fast)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "student, ONNX int8 dynamic" in done.stdout and "(int8 dynamic)" in done.stdout
    failed = run_export("--model", str(folder), "--output_dir", str(tmp_path / "no"), "--schemes", "dynamic", *fast)
    assert failed.returncode == 1 and "student, ONNX int8 dynamic" in failed.stdout
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .startswith("error: no int8 scheme reached 95.0% top-1 agreement at [MASK]")
    )
    assert (tmp_path / "no" / FP32_FILE).exists() and not (tmp_path / "no" / INT8_FILE).exists()
    bad = run_export("--model", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'} holds no saved model (config.json); pass a folder a recipe wrote, "
        "e.g. outputs/distil_bert."
    ]


@pytest.mark.slow
def test_shipped_students_int8_keeps_95_percent_of_fp32s_top1_at_mask(shipped_student, tmp_path):
    from hf_distil.teachers import load_default_teacher

    report = export_student(
        shipped_student[0], tmp_path / "out", teacher=load_default_teacher()[0], speed_sentences=10
    )
    kept = next(s for s in report.schemes if s.name == report.chosen)
    assert kept.agreement >= 0.95 and report.items > 1500
    assert [s.name for s in report.schemes][-1] == report.chosen  # every faster scheme was tried and failed
    assert report.latency_ms["teacher, PyTorch fp32"] > kept.latency_ms  # int8 student faster than the teacher
