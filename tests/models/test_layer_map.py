import re

import pytest

from hf_distil import init_student_from_teacher
from hf_distil.models.layer_map import intermediate_pairs


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("tinybert", [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]),  # TinyBERT g(m) = m·N/M
        ("pkd_skip", [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]),  # PKD-Skip
        ("pkd_last", [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]),  # PKD-Last
        ([(1, 3), (2, 6)], [(1, 3), (2, 6)]),
        ([[1, 3], [2, 6]], [(1, 3), (2, 6)]),
    ],
)
def test_rules_for_6_from_12(rule, expected):
    assert intermediate_pairs(6, 12, rule) == expected


@pytest.mark.parametrize(
    "rule, message",
    [
        ("odd", "intermediate_layers 'odd' is not a layer rule"),
        ("uniform", "intermediate_layers 'uniform' is not a layer rule"),  # a student_layers rule
        ([(1, 13)], "fall outside"),
        ("1:2", "is not a layer rule; pass (student, teacher) pairs"),
        ([("a", "b")], "pass (student, teacher) pairs"),
    ],
)
def test_bad_rules_fail_in_one_line(rule, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        intermediate_pairs(6, 12, rule)


def test_init_pairs_each_student_layer_with_the_teacher_layer_it_was_copied_from():
    # DistilBERT's 0,2,4,7,9,11: student layer 1 is teacher layer 0 (hidden state 1), ..., layer 6 is 11 (state 12)
    assert intermediate_pairs(6, 12, "init", [0, 2, 4, 7, 9, 11]) == [
        (0, 0),
        (1, 1),
        (2, 3),
        (3, 5),
        (4, 8),
        (5, 10),
        (6, 12),
    ]
    with pytest.raises(ValueError, match="needs a student made by init_student_from_teacher"):
        intermediate_pairs(6, 12, "init")


def test_init_rule_reads_the_students_provenance_through_the_trainer(tmp_path, teacher):
    from conftest import make_trainer

    from hf_distil import init_student_from_teacher

    student = init_student_from_teacher(teacher, layers=[1, 3])
    assert make_trainer(tmp_path, student, teacher, alpha_hidden_mse=1.0, intermediate_layers="init").layer_pairs == [
        (0, 0),
        (1, 2),
        (2, 4),
    ]


def test_the_layer_plan_asks_for_eager_attention_only_to_compare_probabilities(teacher):
    from hf_distil.models.layer_map import plan_layers

    student = init_student_from_teacher(teacher, layers=[1, 3])
    off = dict(hidden_mse=0.0, attention_mse=0.0, pkd=0.0)
    assert plan_layers(student, teacher, "tinybert", off, "probabilities") == ([], False)
    assert plan_layers(student, None, "tinybert", {**off, "pkd": 1.0}, "probabilities") == ([], False)
    hidden = plan_layers(student, teacher, "pkd_skip", {**off, "hidden_mse": 1.0}, "probabilities")
    assert hidden == ([(1, 2)], False)
    maps = plan_layers(student, teacher, [[1, 2], [2, 4]], {**off, "attention_mse": 1.0}, "probabilities")
    assert maps == ([(1, 2), (2, 4)], True)
    assert plan_layers(student, teacher, "tinybert", {**off, "attention_mse": 1.0}, "scores").eager_attention is False
