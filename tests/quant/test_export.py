import io

import pytest
import torch
import torchvision

from qbench.quant import (QuantPolicy, calibrate_activations, dequantize, export_hard_model, get_method,
                          load_hard_model, model_size_bits, quantize_model, set_mode)


def _quantized_resnet(wl="3bit_pm4", al="act_2bit"):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(1, 64, 3, padding=1, bias=False)
    quantize_model(model, QuantPolicy(wl, al))
    if al:
        calibrate_activations(model, [torch.rand(8, 1, 16, 16)], num_samples=8)
    model.eval()
    set_mode(model, "hard")
    return model


def test_export_round_trip_is_bit_exact():
    model = _quantized_resnet()
    x = torch.rand(4, 1, 16, 16)
    expected = model(x)
    exported = export_hard_model(model)
    buffer = io.BytesIO()
    torch.save(exported, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    # every code is an index into the level set
    entry = loaded["weights"]["layer1.0.conv1"]
    assert entry["codes"].dtype == torch.uint8 and int(entry["codes"].max()) <= 6
    # the dequantized weights are exactly the hard-quantized weights
    assert torch.equal(dequantize(entry), model.layer1[0].conv1.weight)
    # a second model of the same architecture, loaded from the export, gives identical outputs
    other = _quantized_resnet()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)  # make sure nothing carries over by accident
    other.load_state_dict({k: v for k, v in model.state_dict().items()}, strict=True)
    load_hard_model(other, loaded)
    set_mode(other, "hard")
    assert torch.equal(other(x), expected)


def test_load_rejects_foreign_data():
    model = _quantized_resnet(al=None)
    with pytest.raises(ValueError, match="format"):
        load_hard_model(model, {"format": "other"})
    exported = export_hard_model(model)
    exported["weights"]["nonexistent"] = exported["weights"]["layer1.0.conv1"]
    with pytest.raises(ValueError, match="nonexistent"):
        load_hard_model(model, exported)


@pytest.mark.parametrize("levels,bits", [("binary", 1), ("ternary", 2), ("3bit_pm4", 3), ("5bit", 5)])
def test_model_size_bits(levels, bits):
    model = _quantized_resnet(levels, None)
    size = model_size_bits(model, get_method("qn")(QuantPolicy(levels, None)))
    conv_numel = sum(m.parametrizations.weight.original.numel()
                     for m in model.modules() if hasattr(m, "parametrizations"))
    total = sum(p.numel() for n, p in model.named_parameters()
                if not n.endswith(("alpha", "beta")))
    assert size["fp_bits"] == 32 * total
    assert size["quantized_weight_bits"] == conv_numel * bits + 19 * 32 * (2 + {
        "binary": 1, "ternary": 2, "3bit_pm4": 6, "5bit": 30}[levels])
    assert size["quantized_bits"] == size["fp_bits"] - 32 * conv_numel + size["quantized_weight_bits"]
    assert 1 < size["ratio"] < 32


def test_model_size_bits_of_a_full_precision_model_counts_every_parameter_at_32_bits():
    model = torchvision.models.resnet18(num_classes=10)
    numel = sum(p.numel() for p in model.parameters())
    assert model_size_bits(model) == {"fp_bits": 32 * numel, "quantized_bits": 32 * numel, "ratio": 1.0,
                                      "weight_bits": 0, "quantized_weight_bits": 0}
    # the paper's method on the same unquantized model gives the same storage
    assert get_method("qn")(QuantPolicy()).size_bits(model) == model_size_bits(model)
