import dataclasses
import json

import pytest
from transformers import HfArgumentParser, TrainingArguments

from hf_distil import DistillationArguments
from hf_distil.errors import UsageError


def make(**kwargs) -> DistillationArguments:
    return DistillationArguments(output_dir="unused", report_to="none", **kwargs)


def test_defaults_are_distilberts_own_run():
    args = make()
    assert (args.temperature, args.alpha_ce, args.alpha_mlm, args.alpha_cos) == (2.0, 5.0, 2.0, 1.0)
    assert (args.alpha_mse, args.alpha_clm, args.restrict_ce_to_mask) == (0.0, 0.0, False)
    assert (args.mlm_probability, args.mask_replace_prob, args.random_replace_prob, args.mlm_smoothing) == (
        0.15,
        0.8,
        0.1,
        0.7,
    )


def test_every_added_field_is_documented():
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    added = [f for f in dataclasses.fields(DistillationArguments) if f.name not in inherited]
    assert len(added) >= 12
    for f in added:
        assert f.metadata.get("help", "").strip(), f"{f.name} has no help"


def test_parsable_by_hf_argument_parser():
    (args,) = HfArgumentParser(DistillationArguments).parse_args_into_dataclasses(
        [
            "--output_dir",
            "x",
            "--temperature",
            "3",
            "--alpha_mse",
            "1.5",
            "--restrict_ce_to_mask",
            "--report_to",
            "none",
        ]
    )
    assert args.temperature == 3.0 and args.alpha_mse == 1.5 and args.restrict_ce_to_mask


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 0.0}, "every loss weight is 0"),
        ({"alpha_cos": -1.0}, "must be >= 0"),
        ({"mlm_probability": 1.5}, r"mlm_probability must lie in \(0, 1\]"),
        ({"mlm_probability": 0.0}, r"mlm_probability must lie in \(0, 1\]"),
        ({"random_replace_prob": -0.1}, r"random_replace_prob must lie in \[0, 1\]"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.3}, "sum must be <= 1"),
        ({"alpha_clm": 1.0}, "alpha_mlm and alpha_clm are both > 0"),
        ({"mlm_smoothing": -0.5}, "mlm_smoothing must be >= 0"),
    ],
)
def test_invalid_settings_fail_at_construction_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        make(**kwargs)
    assert "\n" not in str(info.value)


def test_typed_list_and_mapping_settings_parse_from_yaml_and_flags(tmp_path):
    from hf_distil.cli.arguments import ModelArguments, parse_with_config
    from hf_distil.data.corpus import DataArguments
    from hf_distil.losses.schedules import Schedule, parse_schedules

    config = tmp_path / "run.yaml"
    config.write_text(
        "teacher_weights: [0.7, 0.3]\nloss_schedules:\n  temperature: [4, 1, cosine]\n  alpha_mlm: [0, 2]\n"
        f"output_dir: {tmp_path / 'out'}\nreport_to: none\n"
    )
    types = (ModelArguments, DataArguments, DistillationArguments)
    *_, args = parse_with_config(types, [], config)
    assert args.teacher_weights == [0.7, 0.3]
    assert parse_schedules(args.loss_schedules) == {
        "temperature": Schedule(4, 1, "cosine"),
        "alpha_mlm": Schedule(0, 2),
    }
    *_, args = parse_with_config(
        types, ["--teacher_weights", "1", "3", "--loss_schedules", '{"alpha_ce": [5, 1]}'], config
    )
    assert args.teacher_weights == [1.0, 3.0] and args.loss_schedules == {"alpha_ce": [5, 1]}  # flags win
    # hf_distil 0.1's forms still work, with a deprecation warning, and are stored in the new shapes
    *_, args = parse_with_config(
        types, ["--teacher_weights", "0.6,0.4", "--loss_schedules", "alpha_ce=5:1:cosine"], config
    )
    assert args.teacher_weights == [0.6, 0.4] and args.loss_schedules == {"alpha_ce": [5.0, 1.0, "cosine"]}
    assert json.loads(args.to_json_string())["loss_schedules"] == {"alpha_ce": [5.0, 1.0, "cosine"]}


@pytest.mark.parametrize(
    "yaml_text, flags, student_layers, intermediate_layers",
    [
        ("", [], "distilbert", "tinybert"),
        ("student_layers: [0, 2, 4]\nintermediate_layers: [[1, 2], [2, 4]]\n", [], [0, 2, 4], [[1, 2], [2, 4]]),
        ("intermediate_layers: ['1:2', '3:6']\n", [], "distilbert", [[1, 2], [3, 6]]),
        ("student_layers: last\nintermediate_layers: pkd_last\n", [], "last", "pkd_last"),
        (
            "student_layers: [0, 2]\n",
            ["--student_layers", "1", "3", "--intermediate_layers", "2:4", "0:0"],
            [1, 3],
            [[2, 4], [0, 0]],
        ),
        ("", ["--student_layers", "even", "--intermediate_layers", "init"], "even", "init"),
        # hf_distil 0.1's comma strings and old rule names: read, with a warning, stored in the new shapes
        (
            "student_layers: 0,2,4,7,9,11\n",
            ["--intermediate_layers", "1:2,2:4"],
            [0, 2, 4, 7, 9, 11],
            [[1, 2], [2, 4]],
        ),
        ("", ["--student_layers", "0,3", "--intermediate_layers", "skip"], [0, 3], "pkd_skip"),
    ],
)
def test_layer_settings_are_a_list_or_one_rule_from_yaml_and_flags(
    tmp_path, yaml_text, flags, student_layers, intermediate_layers
):
    from hf_distil.cli.arguments import ModelArguments, parse_with_config
    from hf_distil.data.corpus import DataArguments

    config = tmp_path / "run.yaml"
    config.write_text(yaml_text + f"output_dir: {tmp_path / 'out'}\nreport_to: none\n")
    model_args, _, args = parse_with_config((ModelArguments, DataArguments, DistillationArguments), flags, config)
    assert model_args.student_layers == model_args.layers == student_layers
    assert args.intermediate_layers == intermediate_layers
    assert json.loads(args.to_json_string())["intermediate_layers"] == intermediate_layers


def test_layer_settings_built_in_python_take_lists_and_pairs():
    from hf_distil.cli.arguments import ModelArguments

    assert ModelArguments(student_layers=[0, 3]).layers == [0, 3]
    assert make(intermediate_layers=[(1, 2), (2, 4)]).intermediate_layers == [[1, 2], [2, 4]]
    with pytest.raises(ValueError, match=r"--intermediate_layers '1:2 3': layer pairs must look like"):
        make(intermediate_layers=["1:2", "3"])
    with pytest.raises(ValueError, match=r"--student_layers '2 1' repeats or reorders layers"):
        ModelArguments(student_layers=[2, 1])


def test_an_fsdp_launch_that_loads_weights_on_one_process_only_is_refused(monkeypatch):
    """What `accelerate launch` sets for `fsdp_cpu_ram_efficient_loading: true` (TRL's example FSDP2 config)."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    with pytest.raises(UsageError, match=r"^fsdp_cpu_ram_efficient_loading: true has transformers load models on"):
        make(use_cpu=True)
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    assert make(use_cpu=True).use_cpu  # one process without a launcher: nothing to refuse
