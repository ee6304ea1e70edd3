"""Bad input on every script (issue 24): one line that names the input and the fix, exit code 2, and every file that
must stay intact byte for byte as it was.

Each script runs once as a user runs it (a subprocess, marked slow); the other cases call its `__main__` in this
process, with `sys.argv` as the command line would set it (`in_process`), which skips 5-8 s of imports per case.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from conftest import save_recipe_assets, tiny_roberta, tiny_tokenizer
from transformers.utils import logging

from hf_distil.cli import OUTPUT_RECORD, shipped_model_folder, task_splits
from hf_distil.cli.output import SHIPPED_MODEL_FOLDERS
from hf_distil.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
SERVE = ROOT / "examples" / "browser" / "serve.py"


# ---- how a user runs a script ----


@pytest.fixture(autouse=True)
def _log_level_kept():
    """A script sets transformers' log level for the whole process; the tests after these keep theirs."""
    level = logging.get_verbosity()
    yield
    logging.set_verbosity(level)


def in_process(monkeypatch, capsys, script: str | Path, *flags: str) -> tuple[int, str]:
    """`python recipes/<script> FLAGS` in this process: (exit code, stderr)."""
    path = Path(script) if Path(script).is_absolute() else RECIPES / script
    monkeypatch.setattr(sys, "argv", [str(path), *flags])
    monkeypatch.delenv("HF_DISTIL_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(path), run_name="__main__")
    return done.value.code, capsys.readouterr().err


def subprocess_run(script: str, *flags: str, cwd: Path = ROOT) -> tuple[int, str]:
    """`python recipes/<script> FLAGS` as a subprocess, offline: (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_DISTIL_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, str(RECIPES / script), *flags], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stderr


def one_line(code: int, stderr: str, *expected: str, exit_code: int = 2) -> str:
    """The run ended with `exit_code` and one `error:` line holding every `expected` text, without a traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == exit_code and len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert all(text in lines[0] for text in expected), lines[0]
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path: added, removed and changed files all show."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# ---- what a user passes ----


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([header, *rows])
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny teacher, a text corpus and polarity-style CSV files, good and bad."""
    root = save_recipe_assets(tmp_path_factory.mktemp("scripts"))
    sentences = [f"the {w} cat sat on the {m}" for w in ("big", "small", "red", "blue", "old", "new") for m in "ab"]
    write_csv(root / "good.csv", ["sentence", "label"], [[s, i % 2] for i, s in enumerate(sentences)])
    write_csv(root / "no_label.csv", ["sentence"], [[s] for s in sentences])
    write_csv(
        root / "string_labels.csv",
        ["sentence", "label"],
        [[s, "pos" if i % 2 else "neg"] for i, s in enumerate(sentences)],
    )
    write_csv(root / "five_labels.csv", ["sentence", "label"], [[s, i % 5] for i, s in enumerate(sentences)])
    write_csv(root / "text_column.csv", ["text", "label"], [[s, i % 2] for i, s in enumerate(sentences)])
    write_csv(root / "one_class.csv", ["sentence", "label"], [[s, 1] for s in sentences])
    return root


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A folder of the user's own: a card and results that no script made."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("# my notes\n")
    (folder / "train_results.json").write_text('{"mine": true}\n')
    return folder


# ---- one output-folder policy: each script refuses a folder it did not make (issue 24, item 1) ----


@pytest.mark.slow  # the recipe as a subprocess
def test_distil_bert_keeps_a_users_readme_and_results(assets, user_folder):
    before = digests(user_folder)
    code, stderr = subprocess_run(
        "distil_bert.py", "--teacher", str(assets / "teacher"), "--train_file", str(assets / "train.txt"),
        "--output_dir", str(user_folder), "--data_cache_dir", str(assets / "cache"), "--max_steps", "2",
    )  # fmt: skip
    one_line(
        code,
        stderr,
        f"--output_dir {user_folder} already holds files (README.md, train_results.json) that this run did not make",
        "pass another --output_dir, or --overwrite_output_dir to replace them",
    )
    assert digests(user_folder) == before


@pytest.mark.slow  # the script as a subprocess
def test_export_refuses_a_folder_holding_another_model(assets, tmp_path):
    other = Path(shutil.copytree(assets / "teacher", tmp_path / "other_model"))
    before = digests(other)
    code, stderr = subprocess_run("export.py", "--model", str(assets / "teacher"), "--output_dir", str(other))
    one_line(code, stderr, f"--output_dir {other} already holds a model (config.json) that this run did not make")
    assert digests(other) == before


@pytest.mark.slow  # the script as a subprocess
def test_finetune_refuses_its_own_model_folder_as_output(assets, tmp_path):
    model = Path(shutil.copytree(assets / "teacher", tmp_path / "model"))
    before = digests(model)
    code, stderr = subprocess_run("finetune.py", "--model", "./model/../model", "--output_dir", "model", cwd=tmp_path)
    one_line(code, stderr, "--output_dir model is the folder of the model (./model/../model)", "pass another")
    assert digests(model) == before


@pytest.mark.slow  # the recipe as a subprocess
def test_distil_bilstm_refuses_the_teachers_folder_through_a_symlink(assets, tmp_path):
    teacher = Path(shutil.copytree(assets / "teacher", tmp_path / "teacher"))
    (tmp_path / "link").symlink_to(teacher)
    before = digests(teacher)
    code, stderr = subprocess_run(
        "distil_bilstm.py", "--teacher", str(teacher), "--output_dir", str(tmp_path / "link")
    )
    one_line(code, stderr, f"--output_dir {tmp_path / 'link'} is the folder of the teacher ({teacher})")
    assert digests(teacher) == before


OUTPUT_CASES = {
    "distil_bert.py": ["--teacher", "{a}/teacher", "--train_file", "{a}/train.txt"],
    "distil_embeddings.py": ["--teacher", "{a}/teacher", "--train_file", "{a}/train.txt"],
    "finetune.py": ["--model", "{a}/teacher", "--train_file", "{a}/good.csv"],
    "distil_bilstm.py": ["--teacher", "{a}/teacher", "--train_file", "{a}/good.csv"],
    "cache_teacher.py": ["--teacher", "{a}/teacher", "--train_file", "{a}/train.txt"],
    "export.py": ["--model", "{a}/teacher"],
    "ablation.py": ["--max_steps", "1"],
}


@pytest.mark.parametrize("script", sorted(OUTPUT_CASES))
def test_every_script_refuses_a_file_and_a_users_folder(assets, tmp_path, user_folder, monkeypatch, capsys, script):
    flags = [f.format(a=assets) for f in OUTPUT_CASES[script]]
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine\n")
    code, stderr = in_process(monkeypatch, capsys, script, *flags, "--output_dir", str(a_file))
    one_line(code, stderr, f"--output_dir {a_file} is a file; pass a folder")
    assert a_file.read_text() == "mine\n"

    before = digests(user_folder)
    code, stderr = in_process(monkeypatch, capsys, script, *flags, "--output_dir", str(user_folder))
    one_line(code, stderr, f"--output_dir {user_folder} already holds files (README.md, train_results.json)")
    assert digests(user_folder) == before


def test_cache_teacher_has_its_own_default_folder_and_never_writes_beside_a_model(
    assets, tmp_path, monkeypatch, capsys
):
    """Without --output_dir it wrote into the YAML's outputs/distil_bert, where the student lives."""
    student = Path(shutil.copytree(assets / "teacher", tmp_path / "outputs" / "distil_bert"))
    before = digests(student)
    monkeypatch.chdir(tmp_path)
    flags = ["--teacher", str(assets / "teacher"), "--train_file", str(assets / "train.txt")]
    flags += ["--data_cache_dir", str(tmp_path / "data_cache"), "--max_train_samples", "8", "--top_k", "4"]
    monkeypatch.setattr(sys, "argv", [str(RECIPES / "cache_teacher.py"), *flags])
    runpy.run_path(str(RECIPES / "cache_teacher.py"), run_name="__main__")
    assert digests(student) == before
    cache = tmp_path / "outputs" / "teacher_cache"
    assert json.loads((cache / OUTPUT_RECORD).read_text()) == {"written_by": "cache_teacher.py"}
    assert len(datasets.load_from_disk(str(cache))) > 0

    runpy.run_path(str(RECIPES / "cache_teacher.py"), run_name="__main__")  # its own folder: written again
    code, stderr = in_process(monkeypatch, capsys, "cache_teacher.py", *flags, "--output_dir", "outputs/distil_bert")
    one_line(code, stderr, "--output_dir outputs/distil_bert already holds a model (config.json)")
    assert digests(student) == before


@pytest.mark.parametrize("script, flag", [("export.py", "--model"), ("finetune.py", "--model")])
def test_the_shipped_models_folder_is_never_someone_elses(assets, tmp_path, monkeypatch, capsys, script, flag):
    """`--model default-student` (export.py) and `default-teacher` (finetune.py) are written once under outputs/:
    a folder there that hf_distil did not write was used as the shipped model, or written into."""
    monkeypatch.chdir(tmp_path)
    name = "default-student" if script == "export.py" else "default-teacher"
    folder = tmp_path / SHIPPED_MODEL_FOLDERS[name]
    shutil.copytree(assets / "teacher", folder)  # a model of the user's own, at that path
    before = digests(folder)
    code, stderr = in_process(monkeypatch, capsys, script, flag, name, "--output_dir", str(tmp_path / "out"))
    one_line(code, stderr, f"{flag} {name} is written to {SHIPPED_MODEL_FOLDERS[name]}, which already holds a model")
    assert digests(folder) == before and not (tmp_path / "out").exists()


def test_the_shipped_student_is_written_once_with_its_record_and_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path(shipped_model_folder("default-student", "--model"))
    assert json.loads((folder / OUTPUT_RECORD).read_text()) == {"written_by": "the shipped default-student"}
    written = digests(folder)
    assert shipped_model_folder("default-student", "--model") == str(folder) and digests(folder) == written
    assert shipped_model_folder(str(tmp_path / "mine"), "--model") == str(tmp_path / "mine")


@pytest.mark.parametrize(
    "where, expected",
    [("nothing", "does not exist"), ("teacher", "holds a model (config.json), not a teacher cache")],
)
def test_a_teacher_cache_path_is_checked_before_any_model_loads(
    assets, tmp_path, monkeypatch, capsys, where, expected
):
    """--teacher names no model here: the cache's line comes first, so nothing heavy ran before it."""
    cache = tmp_path / "nothing" if where == "nothing" else assets / "teacher"
    flags = ["--teacher", str(tmp_path / "no_teacher"), "--teacher_cache", str(cache), "--output_dir", str(tmp_path)]
    one_line(*in_process(monkeypatch, capsys, "distil_bert.py", *flags), f"--teacher_cache {cache} {expected}")


def test_export_of_a_folder_without_weights_is_one_line(assets, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "no_weights"
    shutil.copytree(assets / "teacher", folder)
    (folder / "model.safetensors").unlink()
    before = digests(folder)
    code, stderr = in_process(monkeypatch, capsys, "export.py", "--model", str(folder))
    one_line(code, stderr, f"--model {folder}: the folder holds config.json but no weights (model.safetensors)")
    assert digests(folder) == before


DIVERGING = {  # a learning rate of 1e30: finite weights of 1e30 whose gradients or held-out loss are NaN
    "finetune.py": ["--model", "{a}/teacher", "--per_device_train_batch_size", "4", "--report_to", "none"],
    "distil_bilstm.py": ["--base_model", "{a}/teacher", "--seeds", "1", "--teacher_steps", "1", "--n_iter", "1"],
}


@pytest.mark.parametrize("script", sorted(DIVERGING))
def test_a_run_that_diverges_yet_stays_finite_exits_1_and_writes_no_model(
    assets, tmp_path, monkeypatch, capsys, script
):
    """Item 3 for the task scripts: they saved the diverged weights and reported a score, exit 0."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    flags = [f.format(a=assets) for f in DIVERGING[script]] + ["--train_file", str(assets / "good.csv")]
    flags += ["--max_steps", "2", "--learning_rate", "1e30", "--warmup_steps", "0", "--output_dir", str(out)]
    line = one_line(*in_process(monkeypatch, capsys, script, *flags), "Lower the learning rate", exit_code=1)
    assert "held-out loss is nan" in line or "skipped for NaN/Inf gradients" in line, line
    assert not list(out.glob("*.safetensors")) and not (out / "README.md").exists()
    assert not (tmp_path / "outputs").exists()  # no results table either


# ---- task data files: columns, labels, missing files (finetune.py and distil_bilstm.py share the check) ----

TASK_FILE_CASES = {
    "no_label": ("--train_file {a}/no_label.csv", "has no column 'label' (it has sentence)"),
    "string_labels": ("--train_file {a}/string_labels.csv", "labels must be integers, got 'neg', 'pos'"),
    "five_labels": ("--train_file {a}/five_labels.csv", "labels 2, 3, 4 are outside task polarity's 2 classes"),
    "text_column": ("--train_file {a}/text_column.csv", "has no column 'sentence' (it has text, label)"),
    "one_class": ("--train_file {a}/one_class.csv", "every training example has label 1"),
    "missing_train": ("--train_file {a}/nope.csv", "--train_file {a}/nope.csv: no such file"),
    "missing_validation": (
        "--train_file {a}/good.csv --validation_file {a}/nope.csv",
        "--validation_file {a}/nope.csv: no such file",
    ),
}
MODEL_FLAG = {"finetune.py": "--model", "distil_bilstm.py": "--teacher"}


@pytest.mark.parametrize("script", sorted(MODEL_FLAG))
@pytest.mark.parametrize("case", sorted(TASK_FILE_CASES))
def test_task_files_are_checked_in_one_line(assets, tmp_path, monkeypatch, capsys, script, case):
    flags, expected = TASK_FILE_CASES[case]
    flags = [*flags.format(a=assets).split(), MODEL_FLAG[script], str(assets / "teacher")]
    code, stderr = in_process(monkeypatch, capsys, script, *flags, "--output_dir", str(tmp_path / "out"))
    one_line(code, stderr, expected.format(a=assets))
    assert not (tmp_path / "out").exists()


def test_a_training_file_alone_is_split_and_never_scored_on_its_own_rows(assets, tmp_path):
    """Item 5: without --validation_file the BiLSTM scored "held out" on its training file."""
    train, held_out, described = task_splits("polarity", str(assets / "good.csv"), None)
    assert (len(train), len(held_out)) == (9, 3) and not set(train["sentence"]) & set(held_out["sentence"])
    assert described == f"20% of {assets / 'good.csv'} held out (seed 0)"
    three = write_csv(tmp_path / "three.csv", ["sentence", "label"], [["a", 0], ["b", 1], ["c", 0]])
    with pytest.raises(UsageError, match="holds 3 examples; holding 20% out needs at least 5"):
        task_splits("polarity", str(three), None)


EMBEDDING_CASES = {
    "missing train file": (["--train_file", "{a}/missing.txt"], "--train_file {a}/missing.txt: no such file"),
    "two teachers": (["--teacher", "{a}/teacher", "{a}/teacher"], "learns from one teacher's embeddings; pass one"),
    "MobileBERT student": (["--student_architecture", "mobilebert"], "pass --student_architecture same (the"),
    "student folder without weights": (["--student", "{a}/no_weights"], "holds config.json but no weights"),
}


@pytest.mark.parametrize("case", sorted(EMBEDDING_CASES))
def test_the_embedding_recipes_inputs_are_checked_in_one_line(assets, tmp_path, monkeypatch, capsys, case):
    (assets / "no_weights").mkdir(exist_ok=True)
    shutil.copy(assets / "teacher" / "config.json", assets / "no_weights" / "config.json")
    flags, expected = EMBEDDING_CASES[case]
    flags = [f.format(a=assets) for f in flags] + ["--output_dir", str(tmp_path / "out")]
    code, stderr = in_process(monkeypatch, capsys, "distil_embeddings.py", *flags)
    one_line(code, stderr, expected.format(a=assets))
    assert not (tmp_path / "out").exists()


# ---- Hub datasets while offline, counts of 0, and the BiLSTM's tasks ----

OFFLINE_CASES = {
    "distil_bert.py": (["--teacher", "{a}/teacher", "--dataset_name", "wikitext"], "--dataset_name reads the Hub"),
    "finetune.py": (["--model", "{a}/teacher", "--task", "sst2"], "--task sst2 reads the Hub dataset nyu-mll/glue"),
    "distil_bilstm.py": (["--teacher", "{a}/teacher", "--task", "sst2"], "--task sst2 reads the Hub dataset"),
}


@pytest.mark.parametrize("script", sorted(OFFLINE_CASES))
def test_a_hub_dataset_while_offline_is_one_line(assets, tmp_path, monkeypatch, capsys, script):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    flags, expected = OFFLINE_CASES[script]
    flags = [f.format(a=assets) for f in flags] + ["--output_dir", str(tmp_path / "out")]
    code, stderr = in_process(monkeypatch, capsys, script, *flags)
    one_line(code, stderr, expected, "cannot be reached (OfflineModeIsEnabled)", "or run once online to cache it")


COUNT_CASES = {
    "distil_bert.py": (["--teacher", "{a}/teacher", "--per_device_train_batch_size", "0"], "batch_size 0: must be"),
    "finetune.py": (
        ["--model", "{a}/teacher", "--gradient_accumulation_steps", "0"],
        "--gradient_accumulation_steps 0",
    ),
    "distil_bilstm.py": (["--teacher", "{a}/teacher", "--teacher_batch_size", "0"], "--teacher_batch_size 0: must"),
    "cache_teacher.py": (["--teacher", "{a}/teacher", "--cache_batch_size", "0"], "--cache_batch_size 0: must be at"),
}


@pytest.mark.parametrize("script", sorted(COUNT_CASES))
def test_a_batch_size_or_accumulation_of_0_is_one_line(assets, tmp_path, monkeypatch, capsys, script):
    flags, expected = COUNT_CASES[script]
    flags = [f.format(a=assets) for f in flags] + ["--output_dir", str(tmp_path / "out")]
    one_line(*in_process(monkeypatch, capsys, script, *flags), expected, "pass e.g. --")


def test_the_bilstm_offers_classification_tasks_only_and_names_them_whole(monkeypatch, capsys):
    code, stderr = in_process(monkeypatch, capsys, "distil_bilstm.py", "--task", "squad")
    line = one_line(code, stderr, "--task squad: not a classification task", "polarity, newsgroups.")
    assert "squad" not in line.partition("choose one of")[2]
    monkeypatch.setattr(sys, "argv", ["distil_bilstm.py", "--help"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(RECIPES / "distil_bilstm.py"), run_name="__main__")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "One of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, imdb, polarity, newsgroups." in help_text


# ---- lines that misled ----


def test_the_architecture_advice_names_the_flag(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "roberta"
    tiny_roberta(len(tiny_tokenizer())).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    (tmp_path / "train.txt").write_text("the big cat sat on the mat and the small dog ran to the house\n" * 20)
    flags = [
        "--teacher",
        str(folder),
        "--train_file",
        str(tmp_path / "train.txt"),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    code, stderr = in_process(monkeypatch, capsys, "distil_bert.py", *flags)
    one_line(code, stderr, "pass architecture='same' (--student_architecture same on the command line)")


def test_the_retry_command_of_a_failed_push_is_quoted(assets, tmp_path, monkeypatch, capsys):
    model = Path(shutil.copytree(assets / "teacher", tmp_path / "my model"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    code, stderr = in_process(monkeypatch, capsys, "push_to_hub.py", "--model", str(model), "--repo_id", "you/a b")
    line = one_line(code, stderr, exit_code=1)
    assert line.endswith(
        f"from the shell: python {shlex.quote(str(RECIPES / 'push_to_hub.py'))} --model {shlex.quote(str(model))} "
        "--repo_id 'you/a b'"
    )


# ---- the page server ----


def test_the_page_server_refuses_a_bad_port_in_one_line(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("serve", SERVE)
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    (tmp_path / "outputs" / "onnx_demo" / "onnx").mkdir(parents=True)
    (tmp_path / "outputs" / "onnx_demo" / "onnx" / "model_quantized.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(serve, "ROOT", tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [(port, f"--port {port}: cannot listen on it"), (70000, "--port 70000 is not a TCP")]
        cases.append(("eighty", "argument --port: invalid int value: 'eighty'; --port: 0 to 65535; 0 takes any free"))
        for value, expected in cases:
            monkeypatch.setattr(sys, "argv", [str(SERVE), "--port", str(value)])
            with pytest.raises(SystemExit) as done:
                serve.run_script(serve.main)
            one_line(done.value.code, capsys.readouterr().err, expected, "any free")
