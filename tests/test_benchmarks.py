"""Each benchmark runs in its --tiny mode and prints one JSON line with its ratios and the machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each benchmark runs as a subprocess


def script(name: str, *flags: str, **env: str) -> subprocess.CompletedProcess:
    """benchmarks/`name` run with `flags` in a fresh interpreter, `env` added to the environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *flags],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def bench(name: str, *flags: str) -> dict:
    done = script(name, "--tiny", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_train_step_reports_step_against_its_parts():
    report = bench("train_step.py", "--repeats", "2")
    assert report["device"] in ("cpu", "cuda") and report["torch"] and report["threads"] >= 1
    for key in ("all_tokens", "restrict_ce_to_mask"):
        seconds = report[key]["seconds"]
        assert set(seconds) == {"teacher_forward", "student_forward_backward", "distillation_step"}
        assert all(v > 0 for v in seconds.values())
        assert report[key]["step_over_parts"] == pytest.approx(
            seconds["distillation_step"] / (seconds["teacher_forward"] + seconds["student_forward_backward"]), rel=0.01
        )


def test_kl_kernel_benchmark_compares_both_paths_on_the_same_logits():
    report = bench("kl_kernel.py", "--repeats", "2")
    assert report["shape"] == [64, 1000] and set(report["seconds"]) == {"kernel", "torch_ops"}
    assert report["torch_ops_over_kernel"] == pytest.approx(
        report["seconds"]["torch_ops"] / report["seconds"]["kernel"], rel=0.02
    )
    assert report["kl_relative_difference"] < 1e-5  # the same KL from both paths


def test_train_step_without_the_reference_code_says_where_to_get_it(tmp_path):
    done = script("train_step.py", "--tiny", "--reference_dir", str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"--reference_dir {tmp_path}: cannot import the reference Distiller")
    assert "transformers-research-projects" in last and "{" not in done.stdout  # no report


def test_inference_reports_params_and_speed_ratios():
    report = bench("inference.py", "--repeats", "2", "--json")
    assert report["params"]["student"] < report["params"]["teacher"] and report["layers"] == {
        "teacher": 4,
        "student": 2,
    }
    for part in ("encoder", "masked_lm"):
        for size in (1, 32):
            timing = report[f"cpu_{part}_batch_{size}"]
            assert timing["speedup"] == pytest.approx(timing["teacher_seconds"] / timing["student_seconds"], rel=0.01)
    assert report["passes"] >= 2


def test_inference_prints_the_papers_table_by_default():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "inference.py"), "--tiny", "--repeats", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()]
    rows = {row[0]: row[1:] for row in cells if len(row) >= 3}
    assert rows["layers"] == ["4", "2"] and float(rows["parameters (M)"][1]) < float(rows["parameters (M)"][0])
    for part in ("encoder", "masked LM"):
        for size in (1, 32):
            teacher, student, speedup = rows[f"CPU seconds, {part}, batch {size}"]
            ratio = float(re.search(r"(\d+\.\d+)x", speedup).group(1))
            assert ratio == pytest.approx(float(teacher) / float(student), rel=0.05)  # times are printed to 4 decimals
            assert ("faster" in speedup) == (ratio > 1.0) and ("slower" in speedup) == (ratio < 1.0)
    assert "median of 1 passes" in done.stdout and "{" not in done.stdout


def test_inference_adds_the_deployment_table_on_request():
    report = bench("inference.py", "--repeats", "1", "--deployment", "--json", "--threads", "1")
    rows = {(r["model"], r["runtime"]): r for r in report["deployment"]}
    assert set(rows) == {
        (model, runtime)
        for model in ("teacher", "student")
        for runtime in ("PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8")
    }
    assert report["params"] == {m: rows[m, "PyTorch fp32"]["parameters"] for m in ("teacher", "student")}
    for row in rows.values():
        assert set(row["ms_per_sentence"]) == {"1", "32"} and min(row["ms_per_sentence"].values()) > 0
        assert row["size_mb"] > 0 and 0 <= row["agreement"] <= 1
    assert report["threads"] == 1 and report["layers"] == {"teacher": 4, "student": 2}


def test_feature_cost_reports_a_ratio_per_feature():
    report = bench("feature_cost.py", "--repeats", "1")
    assert set(report["step_ratio"]) == {
        "triple_loss_again",
        "hidden_mse",
        "attention_mse",
        "attention_mse_scores",
        "pkd",
        "relation",
        "two_teachers",
        "loss_schedules",
        "cached_teacher",
    }
    assert report["step_ratio"]["pkd"] == pytest.approx(
        report["seconds"]["pkd"] / report["seconds"]["triple_loss"], rel=0.01
    )


def test_peak_memory_reports_each_phase_from_a_fresh_process():
    report = bench("peak_memory.py", "--steps", "1")
    assert report["benchmark"] == "peak_memory" and report["device"] in ("cpu", "cuda")
    assert set(report["peak_mib"]) == {"mlm", "distil", "distil_logits"}
    assert all(len(seconds) == 1 for seconds in report["step_seconds"].values())
    peak, baseline = report["peak_mib"], report["baseline_mib"]
    assert all(peak[p] > 0 for p in peak)
    if report["device"] == "cpu":  # a resident set: the imports, then the models and a step on top
        assert all(peak[p] > baseline[p] > 100 for p in peak)
    assert report["distil_over_mlm"] == pytest.approx(peak["distil"] / peak["mlm"], rel=0.01)
    assert report["net_distil_over_mlm"] == pytest.approx(
        (peak["distil"] - baseline["distil"]) / (peak["mlm"] - baseline["mlm"]), rel=0.01
    )


def test_gpu_check_dry_run_builds_every_part_on_cpu(tmp_path):
    """--dry-run: the plan, the gpu tests collected, each part run on tiny CPU shapes, one table and the report."""
    report_path = tmp_path / "gpu_check.json"
    done = script("gpu_check.py", "--dry-run", "--report", str(report_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "plan:" in done.stdout and "step / (teacher fwd + student fwd-bwd)" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["dry_run"] and report["machine"]["device"] == "cpu" and report["machine"]["torch"]
    assert report["gpu_tests"]["passed"] and re.search(r"[1-9]\d*/\d+ tests collected", report["gpu_tests"]["summary"])
    step = report["paper_step"]
    seconds = step["seconds"]
    parts = seconds["teacher_forward"] + seconds["student_forward_backward"]
    assert (
        step["step_over_parts"] == pytest.approx(seconds["step"] / parts, rel=0.01) and step["tokens_per_second"] > 0
    )
    assert report["training"]["steps"] == 2 and report["training"]["finite"]
    assert set(report["table3"]) == {"batch_1", "batch_32"}


def test_gpu_check_without_cuda_stops_at_once_naming_the_torch_it_found():
    done = script("gpu_check.py", CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 1 and "plan:" not in done.stdout
    assert f"error: no CUDA device: torch {torch.__version__}" in done.stderr


def test_embedder_inference_times_the_four_encoders_in_turn_and_reports_the_int8_gate():
    report = bench("embedder_inference.py", "--threads", "1", "--json")
    assert report["benchmark"] == "embedder_inference" and report["threads"] == 1 and report["sentences"] == 4
    assert list(report["ms"]) == [
        "teacher, PyTorch fp32",
        "student, PyTorch fp32",
        "student, ONNX fp32",
        "student, ONNX int8",
    ]
    assert all(ms > 0 for ms in report["ms"].values())
    ms = report["ms"]
    assert report["int8_over_teacher"] == pytest.approx(ms["teacher, PyTorch fp32"] / ms["student, ONNX int8"])
    assert report["int8_scheme"] == "blockwise" and report["gate_sentences"] == 20
    assert report["nn_agreement"] >= 0.95 and 0.999 < report["mean_cosine"] < 1


def test_vocabulary_compares_the_trimmed_student_with_the_untrimmed_one_on_the_same_pieces():
    report = bench("vocabulary.py")
    assert report["vocabulary"] == [30522, 2000] and report["param_ratio"] < 0.2
    lee, held = report["lee_cor"], report["held_out"]
    assert lee["texts"] == 50 and lee["token_growth"] > 0 and lee["unk_rate"][1] <= 0.005
    assert 0 < held["agreeing_share"] < 1 and held["masked_positions"] > 0
    # A random teacher spreads its mass evenly: outside 2,000 of 30,522 tokens lies 1 - 2000/30522 of it.
    assert held["teacher_mass_outside"]["masked"] == pytest.approx(1 - 2000 / 30522, abs=0.01)
