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


@pytest.mark.parametrize("rule, message", [("odd", "unknown intermediate layer rule"), ("1:13", "fall outside"), ("1-2", "unknown"), ("a:b", "must look like")])
def test_bad_rules_fail_in_one_line(rule, message):
    with pytest.raises(ValueError, match=message):
        intermediate_pairs(6, 12, rule)
