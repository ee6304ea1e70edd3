import pytest

from hf_distil.layer_map import intermediate_pairs


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("uniform", [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]),  # TinyBERT g(m) = m·N/M
        ("skip", [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]),  # PKD-Skip
        ("last", [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]),  # PKD-Last
        ("1:3,2:6", [(1, 3), (2, 6)]),
    ],
)
def test_rules_for_6_from_12(rule, expected):
    assert intermediate_pairs(6, 12, rule) == expected


@pytest.mark.parametrize(
    "rule, message",
    [
        ("odd", "unknown intermediate layer rule"),
        ("1:13", "fall outside"),
        ("1-2", "unknown"),
        ("a:b", "must look like"),
    ],
)
def test_bad_rules_fail_in_one_line(rule, message):
    with pytest.raises(ValueError, match=message):
        intermediate_pairs(6, 12, rule)


@pytest.mark.parametrize("old, new", [("uniform", "tinybert"), ("skip", "pkd_skip"), ("last", "pkd_last")])
def test_renamed_rules_keep_their_maps(old, new):
    assert intermediate_pairs(6, 12, old) == intermediate_pairs(6, 12, new)


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
    from conftest import make_args

    from hf_distil import DistillationTrainer, init_student_from_teacher

    student = init_student_from_teacher(teacher, layers=[1, 3])
    args = make_args(tmp_path, alpha_hidden_mse=1.0, intermediate_layers="init")
    assert DistillationTrainer(model=student, teacher_model=teacher, args=args).layer_pairs == [(0, 0), (1, 2), (2, 4)]
