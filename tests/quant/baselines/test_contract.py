"""What every baseline quantizer promises: exact export, its bits, one-line bit-width errors."""

import pytest
import torch

from qbench.quant.baselines import (ABCActivationQuantizer, ABCWeightQuantizer,
                                    BWNQuantizer, DoReFaActivationQuantizer, DoReFaWeightQuantizer,
                                    HWGQuantizer, INQQuantizer, LQNetQuantizer, LSQQuantizer, PACTQuantizer, TTQQuantizer,
                                    TWNQuantizer, dequantize)

WEIGHT_SHAPE = (6, 3, 3, 3)
ACTIVATION_SHAPE = (4, 5, 6, 6)


def _weight_quantizers():
    return {
        "bwn": BWNQuantizer(), "twn": TWNQuantizer(), "ttq": TTQQuantizer(),
        "dorefa_w1": DoReFaWeightQuantizer(1), "dorefa_w2": DoReFaWeightQuantizer(2),
        "dorefa_w4": DoReFaWeightQuantizer(4), "lsq_w2": LSQQuantizer(2, signed=True),
        "lsq_w4": LSQQuantizer(4, signed=True), "lqnet_w1": LQNetQuantizer(1, signed=True, channels=6),
        "lqnet_w3": LQNetQuantizer(3, signed=True, channels=6), "abc_w1": ABCWeightQuantizer(1),
        "abc_w3": ABCWeightQuantizer(3),
    }


def _activation_quantizers():
    return {
        "dorefa_a1": DoReFaActivationQuantizer(1), "dorefa_a4": DoReFaActivationQuantizer(4),
        "hwgq_a1": HWGQuantizer(1), "hwgq_a2": HWGQuantizer(2), "hwgq_a2_lloyd": HWGQuantizer(2, uniform=False),
        "pact_a2": PACTQuantizer(2), "pact_a4": PACTQuantizer(4), "lsq_a2": LSQQuantizer(2, signed=False),
        "lqnet_a2": LQNetQuantizer(2, signed=False), "abc_a1": ABCActivationQuantizer(1),
        "abc_a3": ABCActivationQuantizer(3),
    }


EXPECTED_BITS = {"bwn": 1, "twn": 2, "ttq": 2, "dorefa_w1": 1, "dorefa_w2": 2, "dorefa_w4": 4, "lsq_w2": 2,
                 "lsq_w4": 4, "lqnet_w1": 1, "lqnet_w3": 3, "dorefa_a1": 1, "dorefa_a4": 4, "hwgq_a1": 1,
                 "hwgq_a2": 2, "hwgq_a2_lloyd": 2, "pact_a2": 2, "pact_a4": 4, "lsq_a2": 2, "lqnet_a2": 2,
                 "abc_w1": 1, "abc_w3": 3, "abc_a1": 1, "abc_a3": 3}


def _cases():
    for name in _weight_quantizers():
        yield name, "weight"
    for name in _activation_quantizers():
        yield name, "activation"


def _make(name, kind):
    return (_weight_quantizers() if kind == "weight" else _activation_quantizers())[name]


def _data(kind, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    if kind == "weight":
        w = torch.randn(WEIGHT_SHAPE, generator=gen, dtype=dtype) * 0.1
        w[0, 0, 0, :] = 0.0  # zeros take a definite code
        return w
    x = torch.randn(ACTIVATION_SHAPE, generator=gen, dtype=dtype) * 1.5
    x[0, 0, 0, :3] = torch.tensor([0.0, -2.0, 50.0], dtype=dtype)  # zero, negative, far beyond the clip
    return x


@pytest.mark.parametrize("name,kind", list(_cases()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_export_dequantizes_to_the_eval_forward_exactly(name, kind, dtype):
    q = _make(name, kind).to(dtype)
    x = _data(kind, dtype, seed=len(name))
    q.initialize(x)
    q.eval()
    with torch.no_grad():
        y = q(x)
    codes, levels = q.export(x)
    assert not codes.dtype.is_floating_point and codes.shape == x.shape
    assert levels.dtype == dtype
    assert levels.shape[-1] <= 2 ** q.bits
    assert int(codes.max()) < levels.shape[-1] and int(codes.min()) >= 0
    assert torch.equal(dequantize(codes, levels), y)
    assert torch.equal(q.dequantize(codes, levels), y)
    assert y.unique().numel() <= levels.numel()


@pytest.mark.parametrize("name,kind", list(_cases()))
def test_bits_and_kind(name, kind):
    q = _make(name, kind)
    assert q.bits == EXPECTED_BITS[name]
    assert q.kind == kind


@pytest.mark.parametrize("name,kind", list(_cases()))
def test_forward_keeps_shape_dtype_and_gives_a_gradient_to_the_input(name, kind):
    q = _make(name, kind).double()
    x = _data(kind, torch.float64, seed=3).requires_grad_()
    # initialised without the far outlier (50): ABC-Net's gradient window is one unit wide
    # around each threshold, and thresholds spread up to max x would leave the data outside
    q.initialize(x.detach().clamp(max=5.0))
    y = q(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all() and (g != 0).any()


@pytest.mark.parametrize("make", [
    lambda b: DoReFaWeightQuantizer(b), lambda b: DoReFaActivationQuantizer(b), lambda b: HWGQuantizer(b),
    lambda b: PACTQuantizer(b), lambda b: LSQQuantizer(b, signed=True), lambda b: LSQQuantizer(b, signed=False),
    lambda b: LQNetQuantizer(b, signed=True), lambda b: LQNetQuantizer(b, signed=False),
    lambda b: HWGQuantizer(b, uniform=False), lambda b: ABCWeightQuantizer(b), lambda b: ABCActivationQuantizer(b),
])
@pytest.mark.parametrize("bits", [0, -1, 9, 2.0, True, "2", None])
def test_invalid_bit_widths_are_a_one_line_error_naming_bits(make, bits):
    with pytest.raises(ValueError) as info:
        make(bits)
    message = str(info.value)
    assert message.startswith("bits must be an integer in ") and "\n" not in message
    assert repr(bits) in message


@pytest.mark.parametrize("make,bits", [
    (lambda b: LSQQuantizer(b, signed=True), 1),  # a signed 1-bit LSQ would have Q_P = 0
    (lambda b: HWGQuantizer(b, uniform=False), 5),  # Lloyd-Max levels up to 4 bits
    (lambda b: LQNetQuantizer(b, signed=False), 5),  # 2^K codes enumerated: K <= 4
    (lambda b: INQQuantizer(b), 1),  # one of the b bits flags zero
])
def test_bit_widths_outside_a_method_range(make, bits):
    with pytest.raises(ValueError, match=r"^bits must be an integer in .*, got 5$|^bits must be an integer in .*, got 1$"):
        make(bits)


@pytest.mark.parametrize("make,message", [
    (lambda: TTQQuantizer(threshold=0.0), "threshold must be a number in (0, 1), got 0.0"),
    (lambda: PACTQuantizer(2, alpha=-1.0), "alpha must be a positive number, got -1.0"),
    (lambda: LSQQuantizer(2, signed="yes"), "signed must be a bool, got 'yes'"),
    (lambda: HWGQuantizer(2, uniform=1), "uniform must be a bool, got 1"),
    (lambda: LQNetQuantizer(2, signed=True, channels=0), "channels must be a positive integer (1 for activations), got 0"),
    (lambda: LQNetQuantizer(2, signed=False, channels=3), "channels must be a positive integer (1 for activations), got 3"),
    (lambda: LQNetQuantizer(2, signed=True, momentum=1.0), "momentum must be a number in [0, 1), got 1.0"),
])
def test_other_invalid_arguments_name_themselves(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_learned_parameters_are_parameters():
    assert {n for n, _ in TTQQuantizer().named_parameters()} == {"w_p", "w_n"}
    assert {n for n, _ in LSQQuantizer(2, signed=True).named_parameters()} == {"step"}
    assert {n for n, _ in PACTQuantizer(2).named_parameters()} == {"alpha"}
    assert {n for n, _ in ABCActivationQuantizer(2).named_parameters()} == {"beta", "v"}
    for q in (BWNQuantizer(), TWNQuantizer(), DoReFaWeightQuantizer(2), HWGQuantizer(2), LQNetQuantizer(2, True),
              ABCWeightQuantizer(3), INQQuantizer(3)):
        assert list(q.parameters()) == []


def test_dequantize_rejects_levels_of_another_channel_count():
    with pytest.raises(ValueError, match="one row per output channel"):
        dequantize(torch.zeros(3, 4, dtype=torch.uint8), torch.zeros(2, 2))


def test_every_baseline_quantizer_is_built_by_a_registered_method():
    """No quantizer without a method: one that no registered method builds is dead code."""
    from torch import nn

    import qbench.quant.baselines as baselines
    from qbench.quant import available_methods, get_method

    defined = {cls for cls in vars(baselines).values()
               if isinstance(cls, type) and issubclass(cls, baselines.BaselineQuantizer)
               and cls is not baselines.BaselineQuantizer}
    built = set()
    for name in available_methods():
        spec = getattr(get_method(name), "spec", None)
        if spec is None:
            continue
        layer = nn.Conv2d(3, 6, 3)
        for build, (low, high) in ((spec.weight, spec.weight_bits), (spec.activation, spec.activation_bits)):
            if build is not None:
                for bits in {low, min(high, 3)}:
                    built.update(type(m) for m in build(bits, layer, dict(spec.options)).modules())
    assert defined and defined <= built, sorted(c.__name__ for c in defined - built)
