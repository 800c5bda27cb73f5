"""The public quantizer API on inputs a user may pass: integer tensors, tensor temperatures,
non-finite weights at export."""

from __future__ import annotations

import math

import pytest
import torch

from qbench.quant.functional import NonFiniteError, hard_quantize, soft_quantize


def test_integer_input_is_promoted_not_truncated():
    out = hard_quantize(torch.tensor([-2, 0, 2]), "ternary", torch.tensor([-0.5, 0.5]), 0.7, 1)
    assert out.dtype == torch.get_default_dtype()
    assert torch.allclose(out, torch.tensor([-0.7, 0.0, 0.7]))
    assert torch.equal(hard_quantize(torch.tensor([-2, 0, 2]), "ternary", [-0.5, 0.5], 0.7, 1), out)  # list biases
    soft = soft_quantize(torch.tensor([-2, 0, 2]), "ternary", torch.tensor([-0.5, 0.5]), 0.7, 1, 50.0)
    assert torch.allclose(soft, torch.tensor([-0.7, 0.0, 0.7]), atol=1e-6)


@pytest.mark.parametrize("T", [math.inf, math.nan, 0.0, -5.0, 1e39])
def test_tensor_temperature_is_checked_like_a_float(T):
    x, b = torch.tensor([-2.0, 0.0, 2.0]), torch.tensor([-0.5, 0.5])
    with pytest.raises(ValueError, match="temperature"):
        soft_quantize(x, "ternary", b, 0.7, 1, T)
    with pytest.raises(ValueError, match="temperature"):
        soft_quantize(x, "ternary", b, 0.7, 1, torch.tensor(T))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_export_refuses_non_finite_weights(bad):
    from qbench.quant import QuantPolicy, quantize_model
    from qbench.quant.export import export_hard_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    quantize_model(model, QuantPolicy(weight_levels="ternary", exclude=()))
    export_hard_model(model)  # finite: fine
    conv = model[0].parametrizations.weight.original
    with torch.no_grad():
        conv[0, 0, 0, 0] = bad
    with pytest.raises(NonFiniteError, match="non-finite weight"):
        export_hard_model(model)
