"""The few private Trainer hooks DistillationTrainer relies on: if transformers renames or reshapes one, this
file fails and names it, instead of a run silently losing the projection, the teacher's columns or the token.

Why each is overridden (see hf_distil/trainer.py):
- `_clip_grad_norm(model)`: clip the learned width projection together with the student (one norm).
- `_save(output_dir, state_dict)`: run settings and projection beside the student; no token in training_args.bin;
  file modes.
- `_set_signature_columns_if_needed()` / `_signature_columns`: keep the columns the teacher (token types) or
  the teacher cache need although the student's forward does not take them.
- `_push_from_checkpoint(checkpoint_folder)`: Trainer's checkpoint push uploads a pickle; ours does not.
- `save_model(..., _internal_call)`: Trainer's own guard against pushing again from inside a push.
- `loss_is_scaled_for_ga`: our terms are already normalised over the accumulated batch (transformers >= 5.19).
"""

from __future__ import annotations

import inspect

import pytest
from transformers import Trainer

from hf_distil import DistillationTrainer

HOOKS = {
    "_clip_grad_norm": ["self", "model"],
    "_save": ["self", "output_dir", "state_dict"],
    "_set_signature_columns_if_needed": ["self"],
    "_push_from_checkpoint": ["self", "checkpoint_folder"],
    "get_batch_samples": ["self", "epoch_iterator", "num_batches", "device"],
}
SOURCE = inspect.getsource(Trainer)


@pytest.mark.parametrize("name, params", HOOKS.items())
def test_trainer_still_has_and_calls_each_hook_we_override(name, params):
    assert list(inspect.signature(getattr(Trainer, name)).parameters) == params, f"Trainer.{name} changed shape"
    assert f"self.{name}(" in SOURCE, f"Trainer no longer calls self.{name}: our override would be dead"
    overridden = getattr(DistillationTrainer, name) is not getattr(Trainer, name)  # itself or its BatchTermsMixin
    assert overridden, f"DistillationTrainer no longer overrides {name}: drop it from HOOKS"


def test_the_attributes_and_arguments_we_use_still_exist():
    assert "self._signature_columns" in SOURCE
    assert "_internal_call" in inspect.signature(Trainer.save_model).parameters
    assert "self.loss_is_scaled_for_ga" in SOURCE and DistillationTrainer.loss_is_scaled_for_ga is True
    assert "compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)" in SOURCE  # counts pass unchanged


def test_no_other_private_trainer_method_is_overridden():
    ours = {
        name
        for cls in DistillationTrainer.__mro__[: DistillationTrainer.__mro__.index(Trainer)]
        for name in vars(cls)
        if name.startswith("_") and not name.startswith("__")
    }
    overridden = {name for name in ours if hasattr(Trainer, name)}
    assert overridden == set(HOOKS) - {"get_batch_samples"}, overridden
