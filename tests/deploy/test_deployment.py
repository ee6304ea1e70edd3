"""The deployment table on tiny models: every runtime of teacher and student, measured and consistent."""

from __future__ import annotations

import json

from conftest import tiny_bert_config, tiny_tokenizer
from transformers import BertForMaskedLM

from hf_distil import init_student_from_teacher, trim_vocabulary
from hf_distil.deploy.deployment import ONNX_FP32, ONNX_INT8, PYTORCH, format_deployment, measure_deployment
from hf_distil.deploy.export import EXPORT_REPORT_FILE, held_out_sentences


def test_the_table_has_each_runtime_of_each_model_with_its_size_speed_and_fidelity(tmp_path):
    tokenizer = tiny_tokenizer()
    teacher = BertForMaskedLM(tiny_bert_config(len(tokenizer))).eval()
    held_out = held_out_sentences()
    # A student with a trimmed vocabulary reads its own pieces: each model's tokenizer is its own.
    student, trimmed_tokenizer, _ = trim_vocabulary(init_student_from_teacher(teacher), tokenizer, held_out, 40)
    assert len(trimmed_tokenizer) == 40 < len(tokenizer)
    rows = measure_deployment(
        {"teacher": teacher, "student": student.eval()},
        {"teacher": tokenizer, "student": trimmed_tokenizer},
        tmp_path,
        held_out[:40],  # timed: one batch of 32 and one of 8
        held_out[-20:],
        rounds=1,
        min_agreement=0.5,
        schemes=["dynamic_per_channel"],
        num_sentences=20,
        speed_sentences=1,
        speed_rounds=1,
    )
    assert [(r.model, r.runtime) for r in rows] == [
        (model, runtime) for model in ("teacher", "student") for runtime in (PYTORCH, ONNX_FP32, ONNX_INT8)
    ]
    by = {(r.model, r.runtime): r for r in rows}
    for model in ("teacher", "student"):
        pytorch, fp32, int8 = (by[model, runtime] for runtime in (PYTORCH, ONNX_FP32, ONNX_INT8))
        assert pytorch.agreement == 1.0  # the reference
        assert fp32.agreement == 1.0  # fp32 ONNX equals PyTorch to 1e-5: the same top-1 everywhere
        assert 0.5 <= int8.agreement <= 1.0 and int8.size_mb < fp32.size_mb
        report = json.loads((tmp_path / model / "onnx" / EXPORT_REPORT_FILE).read_text())
        assert int8.scheme == report["chosen"] and pytorch.scheme is None
        assert pytorch.parameters == fp32.parameters == int8.parameters
    assert by["student", PYTORCH].parameters < by["teacher", PYTORCH].parameters
    assert all(r.size_mb > 0 and r.ms_per_sentence[1] > 0 and r.ms_per_sentence[32] > 0 for r in rows)

    table = format_deployment(rows).splitlines()
    assert len(table) == 7 and "teacher, PyTorch fp32" in table[1] and "as fast as the teacher in PyTorch" in table[1]
    assert f"student, ONNX Runtime int8 ({by['student', ONNX_INT8].scheme})" in table[6]
