"""Fine-tune and evaluate a teacher or a student on a downstream task, optionally with task distillation.

    python recipes/finetune.py --model default-teacher --output_dir outputs/ft/teacher       # offline demo
    python recipes/finetune.py --model outputs/distil_bert --output_dir outputs/ft/student
    python recipes/finetune.py --model outputs/distil_bert --teacher outputs/ft/teacher \\
        --output_dir outputs/ft/student_d
    accelerate launch recipes/finetune.py --model bert-base-uncased --task mrpc --output_dir outputs/ft/mrpc

Tasks: the GLUE tasks (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli), imdb and squad (v1.1, EM/F1) from the
Hub, any local
CSV/JSON file with the same columns (--train_file/--validation_file), and offline the 200 labelled movie
review sentences of gensim's pang_lee_polarity (--task polarity, the default). With --teacher (a model
already fine-tuned on the task) the student is trained with the paper's "DistilBERT (D)" loss.
Metrics come from a metric module kept in hf_distil (Matthews for CoLA, Pearson/Spearman for STS-B,
accuracy and F1 for MRPC/QQP, exact match and F1 for SQuAD, accuracy otherwise). Each run adds its row to
outputs/finetune_results.json and prints the table so far, laid out like the paper's Tables 1 and 2.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import evaluate
import numpy as np
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)
from transformers.utils import logging

from hf_distil import TaskDistillationArguments, TaskDistillationTrainer
from hf_distil.callbacks import train_guarded
from hf_distil.cli import (
    check_output_dir,
    check_saved_model,
    mark_output_dir,
    parse_with_config,
    run_script,
    shipped_model_folder,
    task_splits,
)
from hf_distil.errors import UsageError
from hf_distil.tasks import MAIN_METRIC, TASKS, encode_pairs
from hf_distil.tasks import qa as qa_lib
from hf_distil.tasks.metrics import metric_path
from hf_distil.teachers import load_teacher, load_tokenizer

logger = logging.get_logger("finetune")

RESULTS = Path("outputs/finetune_results.json")
SCRIPT = "finetune.py"  # in the output folder's record


@dataclass
class TaskArguments:
    model: str = field(
        default="default-teacher",
        metadata={"help": "Model folder or Hub id; 'default-teacher' is the shipped offline teacher."},
    )
    teacher: str | None = field(
        default=None, metadata={"help": "A teacher fine-tuned on this task: enables task distillation."}
    )
    task: str = field(default="polarity", metadata={"help": f"One of {', '.join(TASKS)}."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local CSV/JSON training file with the task's columns and 'label'."}
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "Local evaluation file in the same format; default: 20% of --train_file, held out."},
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Longer inputs are truncated (SQuAD: cut into windows; 384 in the paper)."}
    )
    doc_stride: int = field(
        default=128, metadata={"help": "SQuAD: tokens shared by consecutive windows of a long context."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    export_int8: bool = field(
        default=False,
        metadata={
            "help": "Also export the fine-tuned model to ONNX (recipes/export.py's gate, into --output_dir) and "
            "score its int8 file on the evaluation set beside fp32 (needs pip install hf_distil[export])."
        },
    )

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}.")
        if self.export_int8 and self.task == "squad":
            raise UsageError("--export_int8 scores classifiers; export a SQuAD model with recipes/export.py instead.")


def main() -> None:
    task, args = parse_with_config((TaskArguments, TaskDistillationArguments), sys.argv[1:])
    logging.set_verbosity(args.get_process_log_level())
    set_seed(args.seed)

    # The output folder (new, empty or this script's own, never a model's), then the models' folders.
    path = shipped_model_folder(task.model, "--model")
    sources = [("the model", path), ("the teacher", task.teacher)]
    check_output_dir(args.output_dir, SCRIPT, sources=sources)
    check_saved_model(path, "--model")
    if task.teacher:
        check_saved_model(task.teacher, "--teacher")

    # Data: the task's two text columns and its label, checked; without --validation_file, part of the training
    # file is held out.
    _, _, (first, second), num_labels, _ = TASKS[task.task]
    train, held_out, _ = task_splits(task.task, task.train_file, task.validation_file)
    if task.max_train_samples:
        train = train.select(range(min(task.max_train_samples, len(train))))

    # Model and tokenizer; the teacher, when given, must already know the task.
    tokenizer = load_tokenizer(path, "--model")  # also says in one line when the folder is missing
    qa = task.task == "squad"
    model_class = AutoModelForQuestionAnswering if qa else AutoModelForSequenceClassification
    model = model_class.from_pretrained(path) if qa else model_class.from_pretrained(path, num_labels=num_labels)

    # Features: windows with answer spans for SQuAD, tokenised text pairs otherwise.
    with args.main_process_first(desc="tokenizing"):
        if qa:
            train = train.map(
                qa_lib.train_features,
                batched=True,
                remove_columns=train.column_names,
                desc="SQuAD windows",
                fn_kwargs=dict(tokenizer=tokenizer, max_length=task.max_seq_length, stride=task.doc_stride),
            )
            eval_features = held_out.map(
                qa_lib.eval_features,
                batched=True,
                remove_columns=held_out.column_names,
                desc="SQuAD eval windows",
                fn_kwargs=dict(tokenizer=tokenizer, max_length=task.max_seq_length, stride=task.doc_stride),
            )
        else:
            train = train.map(
                encode_pairs,
                batched=True,
                remove_columns=[c for c in train.column_names if c != "label"],
                desc="Tokenizing train",
                fn_kwargs=dict(tokenizer=tokenizer, columns=(first, second), max_length=task.max_seq_length),
            )
            held_out = held_out.map(
                encode_pairs,
                batched=True,
                remove_columns=[c for c in held_out.column_names if c != "label"],
                desc="Tokenizing eval",
                fn_kwargs=dict(tokenizer=tokenizer, columns=(first, second), max_length=task.max_seq_length),
            )

    metric = (
        evaluate.load(metric_path("squad_v1"))
        if qa
        else evaluate.load(metric_path("glue_like"), task.task if task.task in MAIN_METRIC else "accuracy")
    )

    def compute_metrics(prediction) -> dict:
        logits, labels = prediction
        predictions = logits.squeeze(-1) if num_labels == 1 else np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=labels)

    # Train: plain fine-tuning, or task distillation from the fine-tuned teacher.
    common = dict(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    if not qa:
        common.update(eval_dataset=held_out, compute_metrics=compute_metrics)
    if task.teacher:
        teacher = load_teacher(task.teacher, auto_class=model_class)  # refused if its task head is untrained
        trainer: Trainer = TaskDistillationTrainer(teacher_model=teacher, **common)
    else:
        trainer = Trainer(**common)
    if args.should_save:
        mark_output_dir(args.output_dir, SCRIPT)
    _, guard = train_guarded(trainer)  # ends on NaN/Inf gradients: RunFailed, nothing saved
    if qa:  # spans from the best window of each question, then EM/F1 against every gold answer
        output = trainer.predict(eval_features.remove_columns(["example_id", "offset_mapping"]))
        spans = qa_lib.best_spans(held_out[:], eval_features[:], *output.predictions)
        scores = metric.compute(
            predictions=[spans[i] for i in held_out["id"]], references=[a["text"] for a in held_out["answers"]]
        )
        metrics = {f"eval_{k}": v / 100 for k, v in scores.items()}
    else:
        metrics = trainer.evaluate()
        guard.raise_if_failed(args.output_dir, metrics["eval_loss"])  # weights that diverged yet stayed finite
    trainer.save_model()
    if task.export_int8 and trainer.is_world_process_zero():
        metrics.update(int8_metrics(args.output_dir, held_out, compute_metrics))
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)

    # The table so far (one row per model, one column per task).
    if trainer.is_world_process_zero():
        label = task.model + (" (D)" if task.teacher else "")
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        score = metrics.get(f"eval_{MAIN_METRIC.get(task.task, 'accuracy')}")
        row = results.setdefault(label, {}).setdefault(task.task, {"scores": {}})
        row["scores"][str(args.seed)] = round(100 * score, 2)  # one score per seed; the table shows their mean
        row["params"] = model.num_parameters()
        int8_score = metrics.get(f"eval_int8_{MAIN_METRIC.get(task.task, 'accuracy')}")
        if int8_score is not None:  # the int8 export's row, beside the fp32 one
            int8_row = results.setdefault(f"{label} int8 ({metrics['eval_int8_scheme']})", {})
            int8_row = int8_row.setdefault(task.task, {"scores": {}})
            int8_row["scores"][str(args.seed)] = round(100 * int8_score, 2)
            int8_row["params"] = row["params"]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(format_table(results))

    # As in distil_bert.py: no process tears its gloo/NCCL group down while another still uses it.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def int8_metrics(folder: str, held_out: datasets.Dataset, compute_metrics) -> dict:
    """Export `folder` through the int8 gate (hf_distil.export) and score its int8 file on `held_out` at batch 1,
    as a deployed model sees its inputs: eval_int8_<metric>, the scheme kept and its label agreement with fp32
    (a regression head: the correlation of its scores).
    When no scheme passes the gate there is no int8 file and no score, only eval_int8_scheme "none"."""
    from hf_distil.deploy import export_student, session

    report = export_student(folder, folder, speed_sentences=5, speed_rounds=1)
    if report.int8_file is None:
        return {"eval_int8_scheme": "none"}
    runner = session(Path(folder, report.int8_file))
    names = [i.name for i in runner.get_inputs()]
    logits = np.concatenate(
        [runner.run(["logits"], {n: np.array([row[n]], dtype=np.int64) for n in names})[0] for row in held_out]
    )
    scores = compute_metrics((logits, np.array(held_out["label"])))
    kept = next(s for s in report.schemes if s.name == report.chosen)
    gate = "fp32_correlation" if kept.max_relative_error is not None else "label_agreement"  # regression: scores
    return {
        **{f"eval_int8_{name}": value for name, value in scores.items()},
        "eval_int8_scheme": report.chosen,
        f"eval_int8_{gate}": kept.agreement,
    }


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """Mean score over the seeds run, ± their standard deviation when there are several."""
    tasks = sorted({t for row in results.values() for t in row})
    name_width = max(len(m) for m in results) + 2
    lines = [f"{'Model':<{name_width}}" + "".join(f"{t:>16}" for t in tasks) + f"{'seeds':>7}{'params (M)':>12}"]
    for model, row in results.items():
        cells = ""
        for t in tasks:
            scores = list(row[t]["scores"].values()) if t in row else []
            spread = f" ± {np.std(scores, ddof=1):.2f}" if len(scores) > 1 else ""
            cells += f"{f'{np.mean(scores):.2f}{spread}':>16}" if scores else f"{'-':>16}"
        seeds = max(len(r["scores"]) for r in row.values())
        params = next(iter(row.values()))["params"] / 1e6
        lines.append(f"{model:<{name_width}}{cells}{seeds:>7}{params:>12.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    run_script(main)
