"""Bad inputs end in one line that names the input and the fix, exit code 2, and nothing changed on disk (issue 12).

The recipe runs as a user runs it (a subprocess, a tiny teacher folder, tiny files), once per kind of input;
the variants of each check call the library directly.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from conftest import WORDS, make_args, make_trainer, save_tiny_teacher, tiny_tokenizer
from transformers import AutoTokenizer, BertTokenizerFast
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from hf_distil import DataCollatorForDistillation
from hf_distil.cli import OUTPUT_RECORD
from hf_distil.data.corpus import DataArguments, fit_max_seq_length, prepare_corpus
from hf_distil.errors import UsageError
from hf_distil.launch import check_deepspeed_config

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "distil_bert.py"


def text_lines(count: int, low: int, high: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) + "\n" for _ in range(count))


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """One tiny teacher folder (64 positions, 56 tokens) and the files a user could pass, shared by the module."""
    root = tmp_path_factory.mktemp("bad_inputs")
    save_tiny_teacher(root / "teacher")
    save_tiny_teacher(root / "teacher_bigger_tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(root / "teacher_bigger_tokenizer")
    tokenizer.add_tokens(["zebra", "yak"])  # ids 56 and 57: past the model's 56 embeddings
    tokenizer.save_pretrained(root / "teacher_bigger_tokenizer")
    (root / "train.txt").write_text(text_lines(60, 12, 40))
    (root / "empty.txt").write_text("")
    (root / "short.txt").write_text("the cat\n\n  \na big dog\n" * 10)
    (root / "latin1.txt").write_bytes("the cat sat in the café\n".encode("latin-1"))
    (root / "bad_ds.json").write_text('{"zero_optimization": {"stage": 2,}}')
    return root


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_recipe(assets: Path, tmp_path: Path, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(RECIPE),
        "--teacher",
        str(assets / "teacher"),
        "--output_dir",
        str(tmp_path / "out"),
        "--data_cache_dir",
        str(tmp_path / "cache"),
        "--max_steps",
        "2",
        "--report_to",
        "none",
        *flags,
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets"),
        **(env or {}),
    }
    environment.pop("HF_DISTIL_TRACEBACK", None)
    return subprocess.run(cmd, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


# ---- the recipe, as a user runs it: a case or two per item (the other variants use the API below) ----

RECIPE_CASES = {
    # item 5: nothing masked, only L_cos would learn
    "mlm_probability_0": (["--train_file", "{a}/train.txt", "--mlm_probability", "0"], ["mlm_probability", "(0, 1]"]),
    # item 7: files that datasets rejects with a traceback that never names them
    "empty_file": (["--train_file", "{a}/empty.txt"], ["--train_file {a}/empty.txt is empty"]),
    "not_utf8": (
        ["--train_file", "{a}/latin1.txt"],
        ["--train_file {a}/latin1.txt", "not UTF-8", "0xe9 at offset 22"],
    ),
    "short_lines": (
        ["--train_file", "{a}/short.txt"],
        ["--train_file {a}/short.txt", "no sequence of at least 12 tokens"],
    ),
    # item 11: ids past the student's embeddings
    "tokenizer_bigger_than_student": (
        ["--train_file", "{a}/train.txt", "--teacher", "{a}/teacher_bigger_tokenizer"],
        ["tokenizer has 58 tokens but the student's vocabulary is 56"],
    ),
    # item 12: DeepSpeed JSON, given as --deepspeed or through `accelerate launch`'s deepspeed_config_file
    "deepspeed_invalid_json": (
        ["--train_file", "{a}/train.txt", "--deepspeed", "{a}/bad_ds.json"],
        ["--deepspeed {a}/bad_ds.json is not valid JSON", "line 1 column 35"],
    ),
    # relation heads that do not divide both widths (MiniLMv2's term), found when the trainer is built
    "relation_heads": (
        ["--train_file", "{a}/train.txt", "--alpha_relation", "1", "--relation_heads", "5"],
        ["relation_heads 5 must divide both hidden sizes, student 32 and teacher 32; pick a divisor of 32"],
    ),
    # item 13: malformed list flags, named with their value and the expected form (every form: tests/cli/)
    "teacher_weights": (
        ["--train_file", "{a}/train.txt", "--teacher_weights", "a", "b"],
        ["--teacher_weights", "invalid float value: 'a'", "--teacher_weights 0.7 0.3"],
    ),
    "intermediate_layers": (
        ["--train_file", "{a}/train.txt", "--intermediate_layers", "1:2,2:4"],
        ["--intermediate_layers 1:2,2:4: '1:2,2:4' is not a student:teacher pair", "--intermediate_layers 1:2 2:4"],
    ),
}


@pytest.mark.slow  # the recipe as a subprocess
@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_recipe_refuses_in_one_line_and_leaves_the_disk_alone(assets, tmp_path, case):
    flags, expected = RECIPE_CASES[case]
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()  # an earlier run's folder (its record), where the user keeps a file of their own
    (out / OUTPUT_RECORD).write_text(json.dumps({"written_by": "distil_bert.py"}))
    (out / "notes.txt").write_text("a user's file in the output folder\n")
    before = snapshot(out)
    done = run_recipe(assets, tmp_path, *(f.format(a=assets) for f in flags))
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr[-3000:]
    assert last.startswith("error: ") and all(e.format(a=assets) in last for e in expected), last
    assert "Traceback" not in done.stderr
    assert snapshot(out) == before
    if case not in ("tokenizer_bigger_than_student", "relation_heads"):  # found once the corpus is cached
        assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.slow  # the recipe as a subprocess
def test_recipe_names_accelerates_deepspeed_config_file(assets, tmp_path):
    """What `accelerate launch --config_file` with `deepspeed_config_file:` sets for the script (item 12).

    Under the real launcher each process prints this line and exits 2; torch's elastic launcher then adds
    its own ChildFailedError report and exits 1, which is outside this project.
    """
    missing = tmp_path / "ds.json"
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(missing)}
    done = run_recipe(assets, tmp_path, "--train_file", str(assets / "train.txt"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: deepspeed_config_file {missing}: no such file; pass the path of a DeepSpeed JSON config file."
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the recipe as a subprocess
def test_recipe_refuses_fsdp_on_cpu_processes(assets, tmp_path):
    """What `accelerate launch --config_file ds_configs/fsdp2.yaml` sets for a process on a machine without GPUs
    (here one process, world of 1): Accelerate would drop FSDP and train with DDP, without a word."""
    env = {
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": "2",
        **{"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"},
    }
    done = run_recipe(assets, tmp_path, "--train_file", str(assets / "train.txt"), "--use_cpu", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: the launch config asks for FSDP, which Accelerate runs on GPUs only (on CPU processes it would "
        "silently train with DDP); on CPUs launch with a multi-CPU config (accelerate config: distributed_type "
        "MULTI_CPU), or run FSDP on GPUs."
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the recipe as a subprocess
def test_recipe_clamps_max_seq_length_and_reads_a_grown_file_anew(assets, tmp_path):
    """Item 10: sequences longer than the 64 positions failed at step 1; item 3: the cache was keyed by path."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text_lines(30, 60, 150))
    quick = (
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "no",
        "--max_eval_samples",
        "2",
    )
    first = run_recipe(assets, tmp_path, "--train_file", str(corpus), "--max_seq_length", "100", *quick)
    assert first.returncode == 0, first.stderr[-3000:]
    warnings = [line for line in first.stderr.splitlines() if "--max_seq_length 100" in line]
    assert warnings == [
        "--max_seq_length 100 is longer than BertForMaskedLM's max_position_embeddings (64); "
        "using 64. Pass --max_seq_length 64 or less to silence this."
    ]
    (cached,) = (tmp_path / "cache").iterdir()
    sequences = datasets.load_from_disk(str(cached))["train"]["input_ids"]
    assert max(map(len, sequences)) == 64

    with corpus.open("a") as stream:  # grown in place: same path, new content
        stream.write(text_lines(30, 60, 150, seed=1))
    # Another output folder: the first one's model was trained on the shorter file, and resuming it with other data
    # is refused (see tests/test_run_safety.py).
    second = run_recipe(
        assets,
        tmp_path,
        "--train_file",
        str(corpus),
        "--max_seq_length",
        "64",
        *quick,
        "--output_dir",
        str(tmp_path / "out_grown"),
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "--max_seq_length" not in second.stderr  # 64 fits: no warning
    (grown,) = set((tmp_path / "cache").iterdir()) - {cached}
    assert len(datasets.load_from_disk(str(grown))["train"]) > len(sequences)


# ---- item 3: the corpus cache follows the content of the files, the tokenizer and the chunking ----


def test_cache_is_keyed_by_content_tokenizer_and_settings(tmp_path, tokenizer):
    corpus, held_out = tmp_path / "corpus.txt", tmp_path / "held_out.txt"
    corpus.write_text(text_lines(20, 12, 30))
    held_out.write_text(text_lines(3, 12, 30, seed=5))
    args = DataArguments(train_file=str(corpus), validation_file=str(held_out), data_cache_dir=str(tmp_path / "cache"))
    train, test, counts = prepare_corpus(args, tokenizer)
    assert (len(train), len(test)) == (20, 3)

    with corpus.open("a") as stream:  # the case: a 20 → 300-line file kept its old sequences
        stream.write(text_lines(280, 12, 30, seed=1))
    with held_out.open("a") as stream:
        stream.write(text_lines(2, 12, 30, seed=6))
    train, test, grown_counts = prepare_corpus(args, tokenizer)
    assert (len(train), len(test)) == (300, 5) and grown_counts.sum() > counts.sum()

    copy = tmp_path / "copy.txt"  # the same bytes elsewhere: the cache is reused
    copy.write_text(corpus.read_text())
    prepare_corpus(DataArguments(**{**vars(args), "train_file": str(copy)}), tokenizer)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    cased = BertTokenizerFast(vocab=tokenizer.get_vocab(), do_lower_case=False)  # same vocabulary, other ids
    prepare_corpus(args, cased)
    prepare_corpus(DataArguments(**{**vars(args), "max_seq_length": 16}), tokenizer)
    assert len(list((tmp_path / "cache").iterdir())) == 4


# ---- item 5: the collator checks what the arguments check, with the same message ----


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mlm_probability": 0.0}, r"mlm_probability must lie in \(0, 1\]"),
        ({"mlm_probability": 1.5}, r"mlm_probability must lie in \(0, 1\]"),
        ({"random_replace_prob": -0.1}, r"random_replace_prob must lie in \[0, 1\]"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.5}, r"mask_replace_prob \+ random_replace_prob = 1.3"),
        ({"mlm_smoothing": -1.0}, "mlm_smoothing must be >= 0"),
    ],
)
def test_collator_refuses_what_the_arguments_refuse(tmp_path, tokenizer, kwargs, message):
    with pytest.raises(UsageError, match=message) as from_collator:
        DataCollatorForDistillation(tokenizer, **kwargs)
    with pytest.raises(UsageError) as from_arguments:
        make_args(tmp_path, **kwargs)
    assert str(from_collator.value) == str(from_arguments.value)


def test_a_causal_student_needs_no_mlm_probability(tmp_path, tokenizer):
    assert DataCollatorForDistillation(tokenizer, mlm=False, mlm_probability=0.0).mlm_probability == 0.0
    assert make_args(tmp_path, alpha_mlm=0.0, alpha_clm=1.0, mlm_probability=0.0).mlm_probability == 0.0


# ---- item 7: data files, checked when the arguments are parsed, and their sequences after chunking ----


def test_bad_files_fail_when_parsed(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(text_lines(3, 12, 20))
    bad_late = tmp_path / "late.txt"  # a bad byte past the first 1 MiB block, and one split across blocks
    bad_late.write_bytes(b"a" * (1 << 20) + b"\xff")
    split = tmp_path / "split.txt"
    split.write_bytes(b"a" * ((1 << 20) - 1) + "é".encode() + b"\n\xc3")
    (tmp_path / "binary.txt").write_bytes(b"PK\x03\x04\x00\x00")
    (tmp_path / "folder.txt").mkdir()
    cases = {
        (str(tmp_path / "nope.txt"), None): "--train_file {t}/nope.txt: no such file",
        (str(tmp_path / "folder.txt"), None): "--train_file {t}/folder.txt: is a directory",
        (str(tmp_path / "train.parquet"), None): "--train_file {t}/train.parquet: unsupported suffix",
        (str(tmp_path / "binary.txt"), None): "--train_file {t}/binary.txt is binary, not text (NUL byte at offset 4)",
        (str(bad_late), None): f"--train_file {{t}}/late.txt is not UTF-8 text (byte 0xff at offset {1 << 20})",
        (str(split), None): f"--train_file {{t}}/split.txt is not UTF-8 text (byte 0xc3 at offset {(1 << 20) + 2})",
        (str(good), str(tmp_path / "held_out.csv")): "--validation_file {t}/held_out.csv is not in the format of",
        (None, str(good)): "--validation_file {t}/good.txt needs --train_file",
    }
    for (train_file, validation_file), message in cases.items():
        with pytest.raises(UsageError) as info:
            DataArguments(train_file=train_file, validation_file=validation_file)
        assert str(info.value).startswith(message.format(t=tmp_path)), str(info.value)
    with pytest.raises(UsageError, match="--max_seq_length 8 is below 12"):
        DataArguments(max_seq_length=8)


def test_splits_without_sequences_fail_before_the_cache_is_written(tmp_path, tokenizer):
    cache = tmp_path / "cache"
    long_text = text_lines(1, 20, 30)
    lines = [long_text] * 20
    # The row that load_texts holds out (5%, seed 0) gets a line too short to keep.
    (held,) = datasets.Dataset.from_dict({"i": list(range(20))}).train_test_split(test_size=0.05, seed=0)["test"]["i"]
    lines[held] = "the cat\n"
    cases = {
        ("".join(lines), None): r"the held-out 5% of --train_file .*corpus.txt \(1 texts\): no sequence of at least "
        r"12 tokens .* pass --validation_file or more text",
        ("the cat\n", None): "holds 1 text; holding 5% out needs at least 2",
        (long_text, "a dog\n\n"): r"--validation_file .*held_out.txt: no sequence of at least 12 tokens",
    }
    for (train, held_out), message in cases.items():
        (tmp_path / "corpus.txt").write_text(train)
        validation_file = None
        if held_out is not None:
            (tmp_path / "held_out.txt").write_text(held_out)
            validation_file = str(tmp_path / "held_out.txt")
        args = DataArguments(
            train_file=str(tmp_path / "corpus.txt"), validation_file=validation_file, data_cache_dir=str(cache)
        )
        with pytest.raises(UsageError, match=message):
            prepare_corpus(args, tokenizer)
    assert not cache.exists()


def test_a_malformed_json_line_names_the_file(tmp_path, tokenizer):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "the cat sat"}\n{"text": oops}\n')
    with pytest.raises(UsageError, match=rf"could not read {corpus} as json"):
        prepare_corpus(DataArguments(train_file=str(corpus), data_cache_dir=str(tmp_path / "cache")), tokenizer)


# ---- item 10: sequences never longer than the positions the models embed ----


def test_max_seq_length_is_clamped_to_the_models_and_the_tokenizer(teacher, tokenizer):
    logger = logging.get_logger("hf_distil.data.corpus")
    with CaptureLogger(logger) as captured:
        assert fit_max_seq_length(128, tokenizer, [teacher]) == 64
    assert captured.out.strip() == (
        "--max_seq_length 128 is longer than BertForMaskedLM's max_position_embeddings (64); "
        "using 64. Pass --max_seq_length 64 or less to silence this."
    )
    with CaptureLogger(logger) as captured:
        assert fit_max_seq_length(64, tokenizer, [teacher]) == 64
    assert captured.out == ""
    tokenizer.model_max_length = 48  # e.g. RoBERTa: 514 position embeddings, 512 usable tokens
    assert fit_max_seq_length(128, tokenizer, [teacher]) == 48


# ---- item 11: a tokenizer larger than the student's vocabulary ----


def test_trainer_refuses_a_tokenizer_larger_than_the_student(tmp_path, teacher, student, dataset):
    bigger = tiny_tokenizer()
    bigger.add_tokens(["zebra", "yak"])
    message = r"tokenizer has 58 tokens but the student's vocabulary is 56; .*resize_token_embeddings\(58\)"
    with pytest.raises(UsageError, match=message):
        make_trainer(tmp_path, student, teacher, train_dataset=dataset, tokenizer=bigger)
    with pytest.raises(UsageError, match="tokenizer has 58 tokens"):
        make_trainer(tmp_path, student, teacher, train_dataset=dataset, processing_class=bigger)
    assert not (tmp_path / "out").exists()


# ---- item 12: DeepSpeed JSON ----


def test_deepspeed_config_is_checked_before_transformers_reads_it(tmp_path, monkeypatch):
    broken, listing = tmp_path / "broken.json", tmp_path / "list.json"
    broken.write_text('{"zero_optimization": {"stage": 2}\n"bf16": {}}')
    listing.write_text("[]")
    cases = {
        str(broken): "--deepspeed {t}/broken.json is not valid JSON (Expecting ',' delimiter at line 2 column 1)",
        str(tmp_path / "missing.json"): "--deepspeed {t}/missing.json: no such file",
        str(tmp_path): "--deepspeed {t} is a directory",
        str(listing): "--deepspeed {t}/list.json must hold one JSON object",
    }
    for value, message in cases.items():
        with pytest.raises(UsageError) as info:
            make_args(tmp_path, deepspeed=value)
        assert str(info.value).startswith(message.format(t=tmp_path)), str(info.value)
    valid = tmp_path / "ds.json"
    valid.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    for value in (str(valid), valid.read_text()):  # a file, or the JSON itself as transformers takes it
        check_deepspeed_config(value, "--deepspeed")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(broken))
    with pytest.raises(UsageError, match=f"deepspeed_config_file {broken} is not valid JSON"):
        make_args(tmp_path)
