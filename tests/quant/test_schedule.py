import pytest

from qbench.quant import TemperatureSchedule


def test_linear_is_k_times_epoch():
    s = TemperatureSchedule(slope=5)
    assert [s.value(e) for e in (1, 2, 10)] == [5, 10, 50]
    assert s.value(3, progress=0.5) == 15  # per-epoch: constant within an epoch


def test_iteration_constant_exponential_and_cap():
    s = TemperatureSchedule(slope=10, per="iteration")
    assert s.value(1, 0.5) == 15
    assert TemperatureSchedule("constant", slope=7).value(9) == 7
    assert TemperatureSchedule("exponential", slope=2, growth=3).value(3) == 18
    assert TemperatureSchedule(slope=10, cap=2000).value(500) == 2000
    assert TemperatureSchedule(slope=5, epoch_scale=20).value(3) == 300


@pytest.mark.parametrize("kwargs,needle", [
    ({"kind": "cosine"}, "kind"), ({"slope": 0}, "slope"), ({"cap": -1}, "cap"),
    ({"kind": "exponential", "growth": 1.0}, "growth"), ({"per": "step"}, "per"),
    ({"epoch_scale": 0}, "epoch_scale"),
])
def test_rejects_bad_values(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        TemperatureSchedule(**kwargs)


def test_epochs_are_one_based():
    with pytest.raises(ValueError, match="from 1"):
        TemperatureSchedule().value(0)
