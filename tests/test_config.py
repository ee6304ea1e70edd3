import dataclasses
import json

import pytest
from conftest import tiny_bert_config
from transformers import BertModel, HfArgumentParser, TrainingArguments

from hf_distil import DistillationArguments
from hf_distil.errors import UsageError
from hf_distil.launch import check_fsdp_layer_classes


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


@pytest.mark.parametrize(
    "given, stored",
    [
        ("tinybert", "tinybert"),
        ("init", "init"),
        ([(1, 2), (2, 4)], [[1, 2], [2, 4]]),
        ([[1, 2], [0, 0]], [[1, 2], [0, 0]]),
        (None, "tinybert"),
    ],
)
def test_intermediate_layers_are_a_rule_or_pairs_stored_as_lists(given, stored):
    args = make(intermediate_layers=given)
    assert args.intermediate_layers == stored
    assert json.loads(args.to_json_string())["intermediate_layers"] == stored  # what training_args.json records


def test_teacher_weights_and_loss_schedules_are_a_list_and_a_mapping():
    from hf_distil.losses.schedules import Schedule

    args = make(teacher_weights=[7, 3], loss_schedules={"temperature": [4, 1, "cosine"], "alpha_mlm": [0, 2]})
    assert args.teacher_weights == [7.0, 3.0]
    assert args.loss_schedules == {"temperature": [4.0, 1.0, "cosine"], "alpha_mlm": [0.0, 2.0, "linear"]}
    assert make(loss_schedules={"alpha_ce": Schedule(5, 1)}).loss_schedules == {"alpha_ce": [5.0, 1.0, "linear"]}
    assert json.loads(make(loss_schedules={"alpha_ce": Schedule(5, 1)}).to_json_string())["loss_schedules"] == {
        "alpha_ce": [5.0, 1.0, "linear"]
    }
    assert (make().teacher_weights, make().loss_schedules) == (None, {})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        # the command line's words are not read in Python: the message gives the typed form
        (
            {"intermediate_layers": "1:2"},
            "intermediate_layers '1:2' is not a layer rule; pass (student, teacher) pairs, e.g. "
            "intermediate_layers=[(1, 2), (2, 4)]",
        ),
        ({"intermediate_layers": "uniform"}, "intermediate_layers 'uniform' is not a layer rule"),
        ({"intermediate_layers": ["1:2", "2:4"]}, "intermediate_layers ['1:2', '2:4']: pass (student, teacher) pairs"),
        ({"intermediate_layers": [(1, 2, 3)]}, "intermediate_layers [(1, 2, 3)]: pass (student, teacher) pairs"),
        ({"intermediate_layers": [(-1, 2)]}, "intermediate_layers [(-1, 2)]: pass (student, teacher) pairs"),
        ({"intermediate_layers": []}, "intermediate_layers []: pass (student, teacher) pairs"),
        ({"teacher_weights": "0.7,0.3"}, "teacher_weights '0.7,0.3' is not a list of numbers; pass one non-negative"),
        ({"teacher_weights": ["0.7"]}, "teacher_weights ['0.7'] is not a list of numbers; pass one non-negative"),
        ({"teacher_weights": [0.5, -1]}, "teacher_weights [0.5, -1]: weights must be finite, >= 0 and not all 0"),
        ({"teacher_weights": [0, 0]}, "teacher_weights [0, 0]: weights must be finite, >= 0 and not all 0"),
        ({"teacher_weights": [float("inf")]}, "weights must be finite"),
        ({"loss_schedules": '{"alpha_ce": [5, 1]}'}, "loss_schedules '{\"alpha_ce\": [5, 1]}' is not a mapping"),
        ({"loss_schedules": "alpha_ce=5:1"}, "loss_schedules 'alpha_ce=5:1' is not a mapping; write {name: [start"),
        ({"loss_schedules": {"alpha_nope": [1, 2]}}, "bad loss schedule alpha_nope: [1, 2]; write {name: [start"),
        ({"loss_schedules": {"alpha_ce": [1]}}, "bad loss schedule alpha_ce: [1]; write"),
        ({"loss_schedules": {"alpha_ce": "1:2"}}, "bad loss schedule alpha_ce: '1:2'; write"),
        ({"loss_schedules": {"alpha_ce": ["x", 1]}}, "bad loss schedule alpha_ce: ['x', 1], start and end must be"),
        ({"loss_schedules": {"alpha_ce": [1, 2, "wobbly"]}}, "kind must be one of ('constant', 'linear', 'cosine')"),
        ({"loss_schedules": {"alpha_ce": [-1, 2]}}, "values finite and >= 0"),
        ({"loss_schedules": {"alpha_ce": [float("nan"), 1]}}, "values finite and >= 0"),
        ({"loss_schedules": {"temperature": [0, 1]}}, "(temperature > 0)"),
    ],
)
def test_other_forms_are_refused_in_one_line_naming_the_setting(kwargs, message):
    with pytest.raises(UsageError) as info:
        make(**kwargs)
    (setting,) = kwargs
    assert str(info.value).startswith(setting) and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_an_fsdp_launch_that_loads_weights_on_one_process_only_is_refused(monkeypatch):
    """What `accelerate launch` sets for `fsdp_cpu_ram_efficient_loading: true` (TRL's example FSDP2 config)."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    with pytest.raises(UsageError, match=r"^fsdp_cpu_ram_efficient_loading: true has transformers load models on"):
        make(use_cpu=True)
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    assert make(use_cpu=True).use_cpu  # one process without a launcher: nothing to refuse


def test_an_fsdp_config_wrapping_blocks_the_student_lacks_is_refused_naming_its_own(tokenizer):
    """ds_configs/fsdp2.yaml wraps DistilBERT's TransformerBlock; a student of the teacher's class (BertModel, the
    embedding recipe's) has BertLayer blocks. Accelerate would fail at the first step with a bare ValueError."""
    student = BertModel(tiny_bert_config(len(tokenizer)))
    with pytest.raises(UsageError, match=r"^fsdp_transformer_layer_cls_to_wrap: TransformerBlock is not a layer .*"):
        check_fsdp_layer_classes(student, ["TransformerBlock"])
    with pytest.raises(UsageError, match=r"\(BertModel\); write BertLayer in the launch config\.$"):
        check_fsdp_layer_classes(student, ["BertLayer", "TransformerBlock"])
    check_fsdp_layer_classes(student, ["BertLayer"])
    check_fsdp_layer_classes(student, None)  # none named: Accelerate takes the model's _no_split_modules
