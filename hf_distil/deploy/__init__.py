"""Deployment: ONNX export with a checked int8 model, running and timing exported models, and the deployment
table (the paper's Table 3, extended)."""

from .deployment import format_deployment, measure_deployment
from .export import (
    EXPORT_REPORT_FILE,
    FP32_FILE,
    FP32_KEY,
    INT8_FILE,
    STUDENT_KEY,
    TASKS,
    TEACHER_KEY,
    ExportReport,
    copy_sentence_transformers_modules,
    export_onnx,
    export_student,
    task_of,
)
from .fidelity import fidelity_feeds, held_out_sentences
from .quantization import SCHEME_NAMES
from .runtime import describe_machine, latencies, onnx_runner, session, torch_runner

__all__ = [
    "EXPORT_REPORT_FILE",
    "ExportReport",
    "FP32_FILE",
    "FP32_KEY",
    "INT8_FILE",
    "SCHEME_NAMES",
    "STUDENT_KEY",
    "TASKS",
    "TEACHER_KEY",
    "copy_sentence_transformers_modules",
    "describe_machine",
    "export_onnx",
    "export_student",
    "fidelity_feeds",
    "format_deployment",
    "held_out_sentences",
    "latencies",
    "measure_deployment",
    "onnx_runner",
    "session",
    "task_of",
    "torch_runner",
]
