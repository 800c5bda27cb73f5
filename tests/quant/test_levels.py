import math

import pytest
import torch

from qbench.quant import LevelSet, as_level_set


@pytest.mark.parametrize("name,values,n,offset", [
    ("binary", (-1, 1), 1, 1.0),
    ("ternary", (-1, 0, 1), 2, 1.0),
    ("3bit_pm2", (-2, -1, 0, 1, 2), 4, 2.0),
    ("3bit_pm4", (-4, -2, -1, 0, 1, 2, 4), 6, 4.0),
    ("5bit", tuple(range(-15, 16)), 30, 15.0),
    ("act_binary", (0, 1), 1, 0.0),
    ("act_2bit", (0, 1, 2, 3), 3, 0.0),
])
def test_paper_sets(name, values, n, offset):
    levels = LevelSet.from_name(name)
    assert levels.values == tuple(float(v) for v in values)
    assert levels.n == n
    assert levels.offset == offset
    assert sum(levels.steps) == values[-1] - values[0]


def test_paper_example_3bit_pm4():
    # Sec. 3.1: {s_i} = {2, 1, 1, 1, 1, 2}, o = 4
    levels = LevelSet.bits3_pm4()
    assert levels.steps == (2, 1, 1, 1, 1, 2)
    assert levels.offset == 4


def test_outputs_equal_levels_for_paper_sets():
    for name in ("binary", "ternary", "3bit_pm2", "3bit_pm4", "5bit", "act_binary", "act_2bit"):
        levels = LevelSet.from_name(name)
        assert levels.outputs() == levels.values


def test_outputs_of_asymmetric_set_are_shifted():
    levels = LevelSet((-1, 0, 3))  # o = 2: outputs Y_k - Y_0 - o
    assert levels.outputs() == (-2.0, -1.0, 2.0)


@pytest.mark.parametrize("values,needle", [
    ((1,), "at least 2"),
    ((), "at least 2"),
    ((0, float("nan")), "non-finite"),
    ((0, float("inf")), "non-finite"),
    ((0, 1, 1), "duplicate"),
    ((1, 0), "not sorted"),
])
def test_bad_sets_raise(values, needle):
    with pytest.raises(ValueError, match=needle):
        LevelSet(values)


def test_linear_and_power_of_two():
    assert LevelSet.linear(2).values == (-1, 0, 1)
    assert LevelSet.linear(3).values == tuple(range(-3, 4))
    assert LevelSet.linear(2, signed=False).values == (0, 1, 2, 3)
    assert LevelSet.linear(8, signed=False).n == 255
    assert LevelSet.power_of_two(3).values == LevelSet.bits3_pm4().values
    assert LevelSet.from_name("act_linear8").values[-1] == 255
    assert LevelSet.from_name("pow2_3").values == LevelSet.bits3_pm4().values
    with pytest.raises(ValueError, match="bits"):
        LevelSet.linear(0)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="unknown level set 'w7'.*ternary"):
        LevelSet.from_name("w7")


def test_as_level_set_and_bits():
    assert as_level_set([0, 1, 2, 3]).offset == 0
    assert as_level_set([-1, 0, 1]).offset == 1
    assert LevelSet.bits5().bits == math.ceil(math.log2(31))
    assert LevelSet.binary().bits == 1
    assert LevelSet.ternary().steps_tensor().dtype == torch.float32
