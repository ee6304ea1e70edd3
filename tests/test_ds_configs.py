"""Every launch config loads and validates: DeepSpeed JSON through Trainer's "auto" filling and
DeepSpeed's own config class, Accelerate YAML through Accelerate's own loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from transformers import BertConfig, BertForMaskedLM
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

from hf_distil import DistillationArguments

CONFIGS = Path(__file__).resolve().parents[1] / "ds_configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.name)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_deepspeed_json_fills_auto_values_and_validates(path, precision):
    from deepspeed.runtime.config import DeepSpeedConfig

    args = DistillationArguments(
        output_dir="unused",
        report_to="none",
        per_device_train_batch_size=8,
        gradient_accumulation_steps=4,
        learning_rate=5e-4,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        max_grad_norm=5.0,
        use_cpu=True,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
    )
    hf_config = HfTrainerDeepSpeedConfig(json.loads(path.read_text()))
    hf_config.trainer_config_process(args)
    model = BertForMaskedLM(
        BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    )
    hf_config.trainer_config_finalize(args, model, num_training_steps=100)
    resolved = hf_config.config
    assert "auto" not in json.dumps(resolved)
    assert resolved["train_batch_size"] == 32 and resolved["gradient_accumulation_steps"] == 4
    assert resolved["optimizer"]["params"]["betas"] == [0.9, 0.98] and resolved["gradient_clipping"] == 5.0
    assert resolved["fp16"]["enabled"] is (precision == "fp16") and resolved["bf16"]["enabled"] is (
        precision == "bf16"
    )
    checked = DeepSpeedConfig(resolved)
    assert checked.zero_optimization_stage == resolved["zero_optimization"]["stage"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_yaml_loads(path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.distributed_type is not None
    if config.distributed_type == "DEEPSPEED":
        assert (CONFIGS.parent / config.deepspeed_config["deepspeed_config_file"]).exists()


def test_cpu_config_starts_two_processes():
    config = load_config_from_file(str(CONFIGS / "cpu_2proc.yaml"))
    assert config.num_processes == 2 and config.use_cpu and config.distributed_type == "MULTI_GPU"


def test_fsdp2_config_wraps_the_default_students_blocks_and_saves_a_whole_model(student):
    """The layer class it names exists in the recipe's default (DistilBERT) student, and the saved student is one
    full state dict (Trainer.save_model writes nothing under SHARDED_STATE_DICT)."""
    from accelerate.utils.dataclasses import get_module_class_from_name

    fsdp = load_config_from_file(str(CONFIGS / "fsdp2.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    layer = get_module_class_from_name(student, fsdp["fsdp_transformer_layer_cls_to_wrap"])
    assert layer is not None and sum(isinstance(m, layer) for m in student.modules()) == student.config.n_layers
