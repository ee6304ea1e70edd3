"""Distil a BERT-family masked LM into a shallower student, as DistilBERT (Sanh et al. 2019).

    accelerate launch -q recipes/distil_bert.py    # offline default, about 7-12 minutes on 2 CPU cores
    accelerate launch --config_file ds_configs/multi_gpu.yaml recipes/distil_bert.py \\
        --config recipes/configs/distil_bert_paper.yaml --teacher bert-base-uncased --dataset_name wikipedia ...

Settings come from a YAML file (`--config`, default `recipes/configs/distil_bert.yaml`), then from the
command line, which wins. Every option: `python recipes/distil_bert.py --help`.

The story of a run: arguments → logging → output folder check → seed → teacher and tokenizer → student
(extracted from the teacher's layers; --vocabulary_size N trims it to N tokens) → corpus (tokenised once, cached) →
masking collator → DistillationTrainer → train (resuming this run's own last checkpoint) → save → evaluate teacher
and student on held-out text → summary table → model card → push to the Hub (--push_to_hub --hub_model_id NAME).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, set_seed
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.utils import logging

from hf_distil import (
    DataCollatorForDistillation,
    DistillationArguments,
    DistillationTrainer,
    UsageError,
    count_parameters,
    init_student_from_teacher,
    trim_vocabulary,
)
from hf_distil.callbacks import NonFiniteLossGuard, TeacherAgreementCallback
from hf_distil.cli import (
    ModelArguments,
    check_corpus_dataset,
    check_output_dir,
    mark_output_dir,
    parse_with_config,
    retry_from_the_shell,
    run_script,
)
from hf_distil.config import loss_weights
from hf_distil.data import DataArguments, load_texts, prepare_corpus
from hf_distil.evaluation import (
    REPORT_FILE,
    RunReport,
    describe_hardware,
    masked_lm_metrics,
    relative_speed,
    whole_model,
)
from hf_distil.hub import CardReport, HeldOut, Speed, describe_speedup, save_model_card, save_training_arguments
from hf_distil.losses import terms_needing_a_teacher
from hf_distil.models import mobilebert_student, restrict_teacher
from hf_distil.run_folder import RUN_SETTINGS_FILE, resume_point
from hf_distil.student import PROVENANCE_KEY
from hf_distil.teachers import (
    DEFAULT_TEACHER,
    CachedSignalsCollator,
    base_model_of,
    check_model_source,
    load_default_teacher,
    load_teacher,
    load_teacher_cache,
    load_tokenizer,
    minilm,
    prepare_teacher,
    read_teacher_cache,
)

logger = logging.get_logger("distil_bert")
DEFAULT_CONFIG = Path(__file__).with_name("configs") / "distil_bert.yaml"
SCRIPT = "distil_bert.py"  # in the output folder's record


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, DistillationArguments]:
    """YAML values first (--config FILE, default recipes/configs/distil_bert.yaml), then the flags, which win."""
    return parse_with_config((ModelArguments, DataArguments, DistillationArguments), argv, DEFAULT_CONFIG)


def main() -> None:
    model_args, data_args, args = parse_arguments(sys.argv[1:])

    # Logging: info on the main process, warnings elsewhere.
    logging.set_verbosity(args.get_process_log_level())
    logger.info(f"model {model_args}\ndata {data_args}")
    if "--hub_token" in sys.argv:
        logger.warning(
            "--hub_token puts the token in shell history and in launchers' error reports; "
            "prefer HF_TOKEN or `hf auth login` (the token is never written into the output folder)."
        )

    # The output folder: new, empty or this recipe's own (its settings files count as its record), never where a
    # model comes from: the student would be saved over it.
    teacher_names = model_args.teacher or []
    sources = [*(("the teacher", name) for name in teacher_names), ("the student", model_args.student)]
    check_output_dir(
        args.output_dir,
        SCRIPT,
        sources=sources,
        records=(RUN_SETTINGS_FILE, f"checkpoint-*/{RUN_SETTINGS_FILE}"),
        overwrite=args.overwrite_output_dir,
    )
    check_corpus_dataset(data_args)
    if model_args.vocabulary_size and data_args.teacher_cache:
        raise UsageError(
            f"--teacher_cache {data_args.teacher_cache} holds the whole vocabulary's soft targets, --vocabulary_size "
            f"{model_args.vocabulary_size} trims it; drop one of the two."
        )
    if model_args.vocabulary_size and is_deepspeed_zero3_enabled():
        raise UsageError(
            f"--vocabulary_size {model_args.vocabulary_size} cuts the teacher's vocabulary rows, which ZeRO-3 "
            "partitions across processes; launch with DDP or ZeRO-2, or drop --vocabulary_size."
        )
    if data_args.teacher_cache:  # the path now; whether it fits this run's teacher and corpus once they are loaded
        read_teacher_cache(data_args.teacher_cache)
    set_seed(args.seed)

    # Teacher and tokenizer: a Hub id or folder, else the teacher this project ships (offline).
    other_teachers = []
    if teacher_names:
        first, *others = teacher_names
        teacher = load_teacher(first)
        tokenizer = load_tokenizer(first)
        other_teachers = [load_teacher(name) for name in others]
    else:
        logger.info(f"no --teacher given: using the shipped offline teacher {DEFAULT_TEACHER}")
        teacher, tokenizer = load_default_teacher()
    teacher_name = teacher_names[0] if teacher_names else DEFAULT_TEACHER

    # Student: taken from the teacher's layers (DistilBERT's initialisation) unless one is given.
    if model_args.student:
        check_model_source(model_args.student, "--student")
        student = AutoModelForMaskedLM.from_pretrained(model_args.student)
    elif model_args.student_architecture == "mobilebert":
        student = mobilebert_student(teacher, model_args.student_num_layers)
    else:
        student = init_student_from_teacher(
            teacher, model_args.student_layers, model_args.student_num_layers, model_args.student_architecture
        )
        if model_args.random_init_student:
            student = type(student)(student.config)
    teacher_parameters = count_parameters(teacher)  # the whole teacher's, whatever view of it teaches
    # A trimmed vocabulary: the student keeps the rows its training text needs, and the teacher (training and every
    # evaluation) reads the same pieces through the kept ids (hf_distil.models.restrict_teacher).
    if model_args.vocabulary_size:
        texts = load_texts(data_args)["train"]["text"]
        student, tokenizer, kept_ids = trim_vocabulary(student, tokenizer, texts, model_args.vocabulary_size)
        logger.info(f"vocabulary trimmed to {len(kept_ids)} of the teacher's {teacher.config.vocab_size} tokens")
        teacher = restrict_teacher(teacher, kept_ids)

    # Corpus: tokenised, chunked and counted once (main process first), then read from the cache.
    with args.main_process_first(desc="corpus preparation"):
        train, held_out, counts = prepare_corpus(data_args, tokenizer, models=[teacher, *other_teachers, student])
    collator = DataCollatorForDistillation.from_arguments(tokenizer, args, token_counts=counts)
    if data_args.teacher_cache:  # pre-masked sequences with the teacher's top-k logits, made as this run would
        restrict, length = args.restrict_ce_to_mask, data_args.max_seq_length
        train = load_teacher_cache(data_args.teacher_cache, teacher, collator, train, restrict, length)

    # Callbacks: skip NaN/Inf updates, agreement with the teacher at each evaluation. With --push_to_hub the
    # trainer pushes each checkpoint in the background (safetensors and JSON only, never pickles).
    guard = NonFiniteLossGuard()
    callbacks = [guard, TeacherAgreementCallback(teacher, held_out, tokenizer)]

    # Train.
    needs_teacher = bool(
        terms_needing_a_teacher(loss_weights(args), cached_soft_targets=bool(data_args.teacher_cache))
    )
    trainer = DistillationTrainer(
        model=student,
        teacher_model=[teacher, *other_teachers] if needs_teacher else None,
        args=args,
        train_dataset=train,
        eval_dataset=held_out,
        data_collator=CachedSignalsCollator(tokenizer) if data_args.teacher_cache else collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if trainer.teacher is None:  # the loss does not use it, the evaluations do: placed (ZeRO-3: wrapped) alike
        prepare_teacher(teacher, trainer.accelerator)
    # Resume from this run's last checkpoint, if any; a folder holding another run's model is refused.
    # Beside what the trainer records (run_folder.py): where the student's first weights came from.
    origin = ("student", "student_layers", "student_num_layers", "random_init_student", "vocabulary_size")
    trainer.run_settings.update({name: getattr(model_args, name) for name in origin})
    with args.main_process_first(desc="output folder check"):
        checkpoint = resume_point(args, trainer.run_settings)
    if checkpoint:  # the folder holds this recipe's checkpoints, its record; the checkpoint is checked in train()
        logger.warning(f"resuming from {checkpoint}; --overwrite_output_dir or another --output_dir starts afresh")
    elif args.should_save:
        mark_output_dir(args.output_dir, SCRIPT)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    guard.raise_if_failed(args.output_dir)  # stopped, or ended on NaN/Inf gradients: no model, card or push
    train_seconds = time.time() - started

    # Evaluate teacher and student on held-out text: masked-token accuracy, perplexity, agreement, speed.
    # Every process takes part: under ZeRO-3 each holds only shards of both models, gathered at each forward.
    student = trainer.accelerator.unwrap_model(trainer.model)
    every_process = args.world_size > 1
    student_metrics = masked_lm_metrics(student, held_out, tokenizer, teacher=teacher, all_processes=every_process)
    guard.raise_if_failed(args.output_dir, student_metrics["loss"])  # weights that diverged yet stayed finite
    checksums = replica_checksums(trainer)
    metrics = {
        **result.metrics,
        "replicas": len(checksums),
        "replica_checksum_spread": max(checksums) - min(checksums),
    }
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    save_training_arguments(trainer.args, args.output_dir)

    # Speed and sizes need whole models in one process (under ZeRO-3, copies from the gathered shards).
    whole_teacher, whole_student = whole_model(teacher), whole_model(student)
    card = None
    if trainer.is_world_process_zero():
        device = whole_student.device
        speed_rows = held_out.select(range(min(100, len(held_out))))
        sentences = [{k: torch.tensor([v]).to(device) for k, v in row.items()} for row in speed_rows]
        # Seconds per model, not a noisy fraction of one: a pass over 100 sentences takes the shipped teacher seconds
        # on 2 CPU cores (docs/results.md); the cap of 10 passes keeps tiny test models quick.
        speed = relative_speed(whole_teacher, whole_student, sentences, min_seconds=3.0, max_repeats=10)
        report = RunReport(
            teacher_name=teacher_name,
            base_model=None if model_args.teacher else minilm.BASE_MODEL,  # a --teacher Hub id is used as is
            other_teachers=teacher_names[1:],
            teacher=student_metrics.pop("teacher"),
            student=student_metrics,
            eval_dataset=data_args.dataset_name
            or data_args.validation_file
            or data_args.train_file
            or "gensim enwiki excerpt, held-out articles",
            speed_batch_1=speed,
            speed_sentences=len(sentences),
            params={"teacher": teacher_parameters, "student": count_parameters(whole_student)},
            teacher_layers=teacher.config.num_hidden_layers,
            # what init_student_from_teacher recorded in the student's config, or the folder of a given student
            layer_map=model_args.student or getattr(student.config, PROVENANCE_KEY).get("teacher_layers"),
            hardware=describe_hardware(),
            world_size=args.world_size,
            train_seconds=round(train_seconds, 1),
        )
        report.save(args.output_dir)
        print_summary(report)
        card = card_report(trainer, report, data_args)

    # Save the student and its card. With --push_to_hub, push_to_hub saves them and publishes them (after the
    # checkpoint pushes): safetensors, JSON, tokenizer, card and plot, never a pickle. Every process saves (under
    # ZeRO-3 the weights are gathered), the main one writes the card.
    if args.push_to_hub:
        retry = ["python", "recipes/push_to_hub.py", "--model", args.output_dir, "--repo_id", args.hub_model_id]
        with retry_from_the_shell(retry):
            trainer.push_to_hub(card=card)
    else:
        trainer.save_model()
        if trainer.is_world_process_zero():
            save_model_card(card, args.output_dir, args.hub_model_id)
    if trainer.is_world_process_zero():
        print(
            f"student written to {Path(args.output_dir).resolve()}: model.safetensors, config.json and tokenizer "
            f"(load with from_pretrained), README.md (model card, loss_terms.png), {REPORT_FILE}, train_results.json"
        )
        if args.push_to_hub:
            print(f"published to {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}/{args.hub_model_id}")

    # Every process waits for the others, then the process group is closed: a process that left first would tear
    # its gloo group down under the others' feet ("terminate called without an active exception", exit -6).
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def card_report(trainer: DistillationTrainer, report: RunReport, data_args: DataArguments) -> CardReport:
    """The model card's report: what the trainer knows, and what this run measured on held-out text."""
    speed = report.speed_batch_1
    return dataclasses.replace(
        trainer.card_report(),
        teacher=report.teacher_name,
        base_model=base_model_of(report.teacher_name),
        datasets=[data_args.dataset_name] if data_args.dataset_name else None,
        teacher_layers=report.teacher_layers,
        teacher_parameters=report.params["teacher"],
        student_parameters=report.params["student"],
        layer_map=report.layer_map,
        eval_dataset=report.eval_dataset,
        teacher_results=HeldOut.from_metrics(report.teacher),
        student_results=HeldOut.from_metrics(report.student),
        speed=Speed(
            report.speed_sentences,
            speed["teacher_seconds"],
            speed["student_seconds"],
            speed["encoder_teacher_seconds"],
            speed["encoder_student_seconds"],
        ),
        hardware=report.hardware,
        train_seconds=report.train_seconds,
    )


def replica_checksums(trainer: DistillationTrainer) -> list[float]:
    """Sum of the student's weights on every process: replicas that drifted apart show at once.

    (Under ZeRO-3 and FSDP each process holds shards, so the sums differ by design.)
    """
    student = trainer.accelerator.unwrap_model(trainer.model)
    local = torch.tensor([sum(float(p.detach().double().sum()) for p in student.parameters())], dtype=torch.float64)
    return trainer.accelerator.gather(local.to(trainer.args.device)).tolist()


def print_summary(report: RunReport) -> None:
    t, s = report.teacher, report.student
    p, speed = report.params, report.speed_batch_1
    rows = [
        ("params (M)", f"{p['teacher'] / 1e6:.1f}", f"{p['student'] / 1e6:.1f}"),
        ("top-1 at [MASK] (%)", f"{100 * t['accuracy']:.1f}", f"{100 * s['accuracy']:.1f}"),
        ("top-5 at [MASK] (%)", f"{100 * t['top5_accuracy']:.1f}", f"{100 * s['top5_accuracy']:.1f}"),
        ("MLM loss", f"{t['loss']:.3f}", f"{s['loss']:.3f}"),
        ("perplexity", f"{t['perplexity']:.1f}", f"{s['perplexity']:.1f}"),
        ("top-1 agreement with teacher (%)", "100.0", f"{100 * s['teacher_agreement']:.1f}"),
        ("masked LM time, batch 1 (s)", f"{speed['teacher_seconds']:.3f}", f"{speed['student_seconds']:.3f}"),
        ("encoder time, batch 1 (s)", *(f"{speed[f'encoder_{m}_seconds']:.3f}" for m in ("teacher", "student"))),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'held-out (' + report.teacher_name + ')':<{width}}  {'teacher':>9}  {'student':>9}"]
    lines += [f"{name:<{width}}  {a:>9}  {b:>9}" for name, a, b in rows]
    lines += [
        f"times: a pass over {report.speed_sentences} held-out sentences at batch 1, median of {speed['passes']}",
        f"masked LM (encoder + vocabulary head): student is {describe_speedup(speed['speedup'])}",
        f"encoder alone (the paper's Table 3 setting): student is {describe_speedup(speed['encoder_speedup'])}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    run_script(main)
