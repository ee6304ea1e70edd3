"""The command line's words and a YAML run config's values become the typed settings of the argument classes;
a malformed value ends as one UsageError line naming the flag (the recipes' exit code: tests/test_bad_inputs.py)."""

from __future__ import annotations

import json

import pytest

from hf_distil import DistillationArguments
from hf_distil.cli.arguments import ModelArguments, parse_with_config
from hf_distil.data.corpus import DataArguments
from hf_distil.errors import UsageError

TYPES = (ModelArguments, DataArguments, DistillationArguments)


@pytest.fixture
def parse(tmp_path):
    """parse_with_config over a run config holding `yaml_text` (plus an output folder)."""

    def run(flags: list[str], yaml_text: str = "") -> tuple[ModelArguments, DataArguments, DistillationArguments]:
        config = tmp_path / "run.yaml"
        config.write_text(yaml_text + f"output_dir: {tmp_path / 'out'}\nreport_to: none\n")
        return parse_with_config(TYPES, flags, config)

    return run


@pytest.mark.parametrize(
    "flags, setting, expected",
    [
        ([], "intermediate_layers", "tinybert"),
        (["--intermediate_layers", "pkd_last"], "intermediate_layers", "pkd_last"),
        (["--intermediate_layers", "1:2", "2:4", "0:0"], "intermediate_layers", [[1, 2], [2, 4], [0, 0]]),
        (["--intermediate_layers", "3:6"], "intermediate_layers", [[3, 6]]),
        ([], "student_layers", "distilbert"),
        (["--student_layers", "even"], "student_layers", "even"),
        (["--student_layers", "0", "2", "4"], "student_layers", [0, 2, 4]),
        (["--student_layers", "3"], "student_layers", [3]),
        ([], "loss_schedules", {}),
        (
            ["--loss_schedules", '{"temperature": [4, 1, "cosine"], "alpha_mlm": [0, 2]}'],
            "loss_schedules",
            {"temperature": [4.0, 1.0, "cosine"], "alpha_mlm": [0.0, 2.0, "linear"]},
        ),
        ([], "teacher_weights", None),
        (["--teacher_weights", "0.7", "0.3"], "teacher_weights", [0.7, 0.3]),
        ([], "teacher", None),
        (["--teacher", "bert-base-uncased"], "teacher", ["bert-base-uncased"]),
        (["--teacher", "bert-base-uncased", "roberta-base"], "teacher", ["bert-base-uncased", "roberta-base"]),
    ],
)
def test_command_line_words_become_the_typed_value(parse, flags, setting, expected):
    model_args, _, args = parse(flags)
    assert getattr(model_args if setting in ("teacher", "student_layers") else args, setting) == expected
    if setting not in ("teacher", "student_layers"):  # what training_args.json records
        assert json.loads(args.to_json_string())[setting] == expected


@pytest.mark.parametrize(
    "yaml_text, setting, expected",
    [
        ("intermediate_layers: [[1, 2], [2, 4]]\n", "intermediate_layers", [[1, 2], [2, 4]]),
        ("intermediate_layers: pkd_skip\n", "intermediate_layers", "pkd_skip"),
        ("student_layers: [0, 2, 4, 7, 9, 11]\n", "student_layers", [0, 2, 4, 7, 9, 11]),
        ("student_layers: last\n", "student_layers", "last"),
        (
            "loss_schedules:\n  temperature: [4, 1, cosine]\n  alpha_mlm: [0, 2]\n",
            "loss_schedules",
            {"temperature": [4.0, 1.0, "cosine"], "alpha_mlm": [0.0, 2.0, "linear"]},
        ),
        ("teacher_weights: [0.7, 0.3]\n", "teacher_weights", [0.7, 0.3]),
        ("teacher: [bert-base-uncased, roberta-base]\n", "teacher", ["bert-base-uncased", "roberta-base"]),
        ("teacher: bert-base-uncased\n", "teacher", ["bert-base-uncased"]),  # one name: a list of one
        ("relation_heads: null\ntemperature: 3\n", "temperature", 3.0),
    ],
)
def test_a_run_configs_values_are_the_typed_values(parse, yaml_text, setting, expected):
    model_args, _, args = parse([], yaml_text)
    assert getattr(model_args if setting in ("teacher", "student_layers") else args, setting) == expected


def test_flags_win_over_the_run_config(parse):
    yaml_text = (
        "student_layers: [0, 2]\nintermediate_layers: [[1, 2]]\nteacher_weights: [0.7, 0.3]\n"
        "loss_schedules: {alpha_mlm: [0, 2]}\nteacher: [a, b]\n"
    )
    flags = ["--student_layers", "1", "3", "--intermediate_layers", "init", "--teacher_weights", "1", "3"]
    flags += ["--loss_schedules", '{"alpha_ce": [5, 1]}', "--teacher", "c"]
    model_args, _, args = parse(flags, yaml_text)
    assert (model_args.student_layers, model_args.teacher) == ([1, 3], ["c"])
    assert (args.intermediate_layers, args.teacher_weights) == ("init", [1.0, 3.0])
    assert args.loss_schedules == {"alpha_ce": [5.0, 1.0, "linear"]}


@pytest.mark.parametrize(
    "flags, expected",
    [
        # the command line's words, read by hf_distil.cli
        (["--intermediate_layers", "1:2:3"], "--intermediate_layers 1:2:3: '1:2:3' is not a student:teacher pair"),
        (["--intermediate_layers", "1:a"], "--intermediate_layers 1:a: '1:a' is not a student:teacher pair"),
        (["--intermediate_layers", "1:2,2:4"], "--intermediate_layers 1:2,2:4: '1:2,2:4' is not"),
        (["--intermediate_layers", "tinybert", "1:2"], "--intermediate_layers tinybert 1:2: 'tinybert' is"),
        (["--student_layers", "0,2,4"], "--student_layers 0,2,4: '0,2,4' is not a layer index; write teacher layers"),
        (["--student_layers", "0", "x"], "--student_layers 0 x: 'x' is not a layer index"),
        (["--loss_schedules", "alpha_ce=5:1"], "--loss_schedules 'alpha_ce=5:1' is not valid JSON (Expecting value)"),
        (["--loss_schedules", "[4, 1]"], "--loss_schedules '[4, 1]' is not a JSON object {name: [start, end, kind]}"),
        (
            ["--loss_schedules", '{"alpha_ce": [1, 2], "alpha_ce": [2, 3]}'],
            '--loss_schedules \'{"alpha_ce": [1, 2], "alpha_ce": [2, 3]}\': alpha_ce is scheduled twice',
        ),
        # argparse's complaint, with the flag's help (its expected form)
        (["--teacher_weights", "0.7,0.3"], "invalid float value: '0.7,0.3'; --teacher_weights: With several"),
        (["--teacher_weights", "a", "b"], "invalid float value: 'a'; --teacher_weights: With several teachers"),
        (["--teacher"], "argument --teacher: expected at least one argument; --teacher: Hub id"),
        (["--alpha_cee", "1"], "unrecognized arguments: --alpha_cee 1; did you mean --alpha_ce?"),
        # the typed values, checked by the argument classes
        (["--intermediate_layers", "odd"], "intermediate_layers 'odd' is not a layer rule; pass (student, teacher)"),
        (["--student_layers", "4", "2"], "student_layers [4, 2] repeats or reorders layers; pass one of"),
        (["--student_layers", "odd"], "student_layers 'odd' is not a layer rule; pass one of"),
        (["--teacher_weights", "0.5", "-1"], "teacher_weights [0.5, -1.0]: weights must be finite, >= 0 and not all"),
        (["--teacher_weights", "0", "0"], "teacher_weights [0.0, 0.0]: weights must be finite, >= 0 and not all 0"),
        (["--loss_schedules", '{"temperature": ["x", 1]}'], "bad loss schedule temperature: ['x', 1], start and"),
        (["--loss_schedules", '{"alpha_ce": [NaN, 1]}'], "bad loss schedule alpha_ce: [nan, 1]: kind must"),
        (["--loss_schedules", '{"alpha_nope": [1, 2]}'], "loss_schedules: bad loss schedule alpha_nope: [1, 2]"),
    ],
)
def test_a_malformed_flag_is_one_line_naming_it(parse, flags, expected):
    with pytest.raises(UsageError) as info:
        parse(flags)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert flags[0] in message or flags[0].removeprefix("--") in message  # the flag, or its setting


def test_a_malformed_run_config_value_is_one_line_naming_the_setting(parse):
    with pytest.raises(UsageError, match=r"^intermediate_layers \[\[1, 2, 3\]\]: pass \(student, teacher\) pairs"):
        parse([], "intermediate_layers: [[1, 2, 3]]\n")
    with pytest.raises(UsageError, match=r"^teacher_weights \['a'\] is not a list of numbers"):
        parse([], "teacher_weights: [a]\n")
    with pytest.raises(UsageError, match=r"^--student_layers 0,2,4: '0,2,4' is not a layer index"):
        parse([], "student_layers: 0,2,4\n")


def test_model_arguments_in_python_take_the_typed_forms_only():
    assert ModelArguments(student_layers=[0, 3], teacher=["a", "b"]).student_layers == [0, 3]
    assert ModelArguments(student_layers="last").student_layers == "last"
    assert ModelArguments(student_layers=None).student_layers == "distilbert"
    with pytest.raises(UsageError, match=r"^student_layers '0,3' is not a layer rule; .* student_layers=\[0, 2, 4\]"):
        ModelArguments(student_layers="0,3")
    with pytest.raises(UsageError, match=r"^student_layers \['0', '3'\]: pass one of"):
        ModelArguments(student_layers=["0", "3"])
    with pytest.raises(UsageError, match=r"^teacher 'bert-base-uncased' is one name; pass a list, teacher=\['bert"):
        ModelArguments(teacher="bert-base-uncased")
    with pytest.raises(UsageError, match=r"^--vocabulary_size 0: pass a positive number of tokens"):
        ModelArguments(vocabulary_size=0)
    with pytest.raises(UsageError, match=r"^--vocabulary_size trims a student extracted .* --student s/x is given"):
        ModelArguments(vocabulary_size=8000, student="s/x")


def test_help_shows_text_with_percent_signs_as_written(parse, capsys):
    with pytest.raises(SystemExit) as info:
        parse(["--help"])
    assert info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "default: a 5% split of the train texts" in shown  # --validation_file's help
    assert "--intermediate_layers INTERMEDIATE_LAYERS [INTERMEDIATE_LAYERS ...]" in shown
    assert "--config FILE: a YAML file of settings" in shown
