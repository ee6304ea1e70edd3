import math

import pytest
from conftest import make_args

from hf_distil.losses.schedules import Schedule, check_schedules


def test_schedule_shapes():
    assert Schedule(4, 1, "constant").at(0.7) == 4
    assert Schedule(4, 1, "linear").at(0.25) == pytest.approx(3.25)
    assert Schedule(4, 1, "cosine").at(0.5) == pytest.approx(2.5)
    assert Schedule(4, 1, "cosine").at(0.25) == pytest.approx(4 - 3 * (1 - math.cos(math.pi / 4)) / 2)
    assert Schedule(0, 2).at(1.5) == 2  # clamped at the end


@pytest.mark.parametrize(
    "schedules",
    [
        {"temperature": [0, 1]},
        {"alpha_nope": [1, 2]},
        {"alpha_ce": [1]},
        {"alpha_ce": [1, 2, "wobbly"]},
        {"alpha_ce": [-1, 2]},
        {"alpha_ce": Schedule(1, 2, "wobbly")},
    ],
)
def test_bad_schedules_fail_at_construction(tmp_path, schedules):
    with pytest.raises(ValueError, match="bad loss schedule"):
        make_args(tmp_path, loss_schedules=schedules)


@pytest.mark.slow
def test_schedules_move_the_values_and_are_logged(tmp_path, teacher, student, tokenizer, dataset, tiny_trainer):
    assert check_schedules({"temperature": [4, 1, "cosine"], "alpha_mlm": [0, 2]}) == {
        "temperature": Schedule(4, 1, "cosine"),
        "alpha_mlm": Schedule(0, 2, "linear"),
    }
    trainer = tiny_trainer(max_steps=4, loss_schedules={"temperature": [4, 1], "alpha_mlm": [0, 2]})
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["schedule_temperature"] for h in logs] == pytest.approx([4.0, 3.25, 2.5, 1.75])
    assert [h["schedule_alpha_mlm"] for h in logs] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert "loss_mlm" not in logs[0]  # a term whose weight is 0 is not computed
    for h in logs:  # the logged total uses the scheduled weights of its step
        assert h["loss"] == pytest.approx(
            5 * h["loss_ce"] + h["schedule_alpha_mlm"] * h.get("loss_mlm", 0.0) + h["loss_cos"], rel=1e-4
        )


def test_schedules_leave_the_arguments_as_the_user_set_them(
    tmp_path, teacher, student, tokenizer, dataset, tiny_trainer
):
    schedules = {"temperature": [4, 1], "alpha_mlm": [0, 2]}
    trainer = tiny_trainer(max_steps=3, loss_schedules=schedules)
    trainer.train()
    assert (trainer.args.temperature, trainer.args.alpha_mlm) == (
        2.0,
        2.0,
    )  # what training_args.json and the card record
    assert trainer.temperature == pytest.approx(2.0) and trainer.weights["mlm"] == pytest.approx(4 / 3)  # step 3 of 3
