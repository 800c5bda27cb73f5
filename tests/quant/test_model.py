"""quantize_model: placement, policies, switches, calibration."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import parametrize

from qbench.quant import (ActivationQuantizer, QuantPolicy, WeightQuantizer, activation_quantizers,
                          calibrate_activations, quant_parameters, quantize_model, set_enabled,
                          set_mode, set_temperature, weight_quantizers)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3))


def test_default_policy_skips_first_conv_and_last_fc_on_resnet():
    model = torchvision.models.resnet18(num_classes=10)
    report = quantize_model(model, QuantPolicy("ternary", "act_2bit"))
    assert "conv1" not in report.weight_layers and "fc" not in report.weight_layers
    assert report.skipped_layers == ["conv1", "fc"]
    assert "layer1.0.conv1" in report.weight_layers and "layer2.0.downsample.0" in report.weight_layers
    assert len(report.weight_layers) == 19 == len(report.activation_layers)
    assert set(weight_quantizers(model)) == set(report.weight_layers)
    assert set(activation_quantizers(model)) == set(report.activation_layers)


def test_weights_are_quantized_through_parametrize():
    model = small_cnn()
    quantize_model(model, QuantPolicy("ternary"))
    conv = model[4]
    assert parametrize.is_parametrized(conv, "weight")
    set_mode(model, "hard")
    wq = weight_quantizers(model)["4"]
    values = torch.unique(conv.weight.detach())
    assert set(values.tolist()) <= {-wq.alpha.item(), 0.0, wq.alpha.item()}
    set_mode(model, "off")
    assert torch.equal(conv.weight, conv.parametrizations.weight.original)


def test_unknown_or_wrong_layer_names_raise():
    model = small_cnn()
    with pytest.raises(ValueError, match="no module named 'conv9'"):
        quantize_model(model, QuantPolicy("ternary", include=["conv9"]))
    with pytest.raises(ValueError, match="exclude: no module named 'nope'"):
        quantize_model(model, QuantPolicy("ternary", exclude=["nope"]))
    with pytest.raises(ValueError, match="BatchNorm2d"):
        quantize_model(model, QuantPolicy("ternary", include=["1"]))


@pytest.mark.parametrize("kwargs,needle", [
    ({"weight_levels": "7bit"}, "weight_levels"),
    ({"act_levels": "ternary"}, "non-negative"),
    ({"init": "random"}, "init"),
    ({"sharing": "global"}, "sharing"),
    ({"include": "conv1"}, "list"),
    ({"act_alpha_init": "ones"}, "act_alpha_init"),
    ({"act_init": "random"}, "act_init"),
])
def test_policy_validation(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        QuantPolicy(**kwargs)


def test_explicit_include_and_exclude():
    model = small_cnn()
    report = quantize_model(model, QuantPolicy("binary", include=["0", "8"]))
    assert report.weight_layers == ["0", "8"]
    model = small_cnn()
    report = quantize_model(model, QuantPolicy("binary", exclude=[]))
    assert report.weight_layers == ["0", "4", "8", "10"]
    with pytest.raises(ValueError, match="already has quantizers"):
        quantize_model(model, QuantPolicy("binary"))


def test_shared_policy_uses_one_quantizer():
    model = small_cnn()
    quantize_model(model, QuantPolicy("ternary", "act_binary", sharing="shared", exclude=[]))
    wqs = set(map(id, weight_quantizers(model).values()))
    aqs = set(map(id, activation_quantizers(model).values()))
    assert len(wqs) == 1 and len(aqs) == 1
    assert len(quant_parameters(model)) == 4  # alpha, beta for weights and for activations
    # one shared beta initialised from the largest weight of all layers
    q = max(m.parametrizations.weight.original.abs().max().item()
            for m in model.modules() if parametrize.is_parametrized(m, "weight"))
    assert next(iter(weight_quantizers(model).values())).beta.item() == pytest.approx(5 / (4 * q))


def test_temperature_mode_and_enabled_are_model_wide():
    model = small_cnn()
    quantize_model(model, QuantPolicy("3bit_pm4", "act_2bit"))
    set_temperature(model, 123.0)
    quantizers = list(weight_quantizers(model).values()) + list(activation_quantizers(model).values())
    assert {q.state.temperature for q in quantizers} == {123.0}
    set_enabled(model, weights=True, activations=False)
    assert all(q.enabled for q in weight_quantizers(model).values())
    assert not any(q.enabled for q in activation_quantizers(model).values())
    with pytest.raises(ValueError, match="mode"):
        set_mode(model, "medium")
    with pytest.raises(ValueError, match="temperature"):
        set_temperature(model, -1)


def test_activation_calibration_and_quantized_inputs():
    model = small_cnn()
    quantize_model(model, QuantPolicy(None, "act_2bit"))
    data = [torch.rand(16, 1, 8, 8) for _ in range(4)]
    maxima = calibrate_activations(model, data, num_samples=40)
    assert set(maxima) == {"4", "8"}  # the first conv and the last linear stay FP
    aq = activation_quantizers(model)["4"]
    assert aq.initialized.item() and aq.beta.item() == pytest.approx(5 * 3 / (4 * maxima["4"]))
    # the paper's alpha = 1 / beta by default; least squares on request
    assert aq.alpha_init == "inverse_beta" and aq.alpha.item() == pytest.approx(1 / aq.beta.item())
    assert (aq.biases[1:] > aq.biases[:-1]).all()
    fitted = small_cnn()
    quantize_model(fitted, QuantPolicy(None, "act_2bit", act_alpha_init="least_squares"))
    calibrate_activations(fitted, data, num_samples=40)
    fq = activation_quantizers(fitted)["4"]
    assert fq.alpha.item() > 0 and fq.alpha.item() != pytest.approx(1 / fq.beta.item())
    # in hard mode the second conv sees only alpha * {0,1,2,3}
    set_mode(model, "hard")
    seen = {}

    def record_input(module, args, output):
        seen["x"] = args[0]

    model[4].register_forward_hook(record_input)
    model.eval()
    model(data[0])
    allowed = aq.alpha.detach() * torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert torch.isin(seen["x"], allowed).all()


def test_calibration_sees_the_full_precision_model_and_restores_state():
    model = small_cnn()
    reference = copy.deepcopy(model)
    quantize_model(model, QuantPolicy("binary", "act_binary"))
    model.train()
    set_mode(model, "soft")
    calibrate_activations(model, [torch.rand(8, 1, 8, 8)], num_samples=8)
    assert model.training
    assert next(iter(activation_quantizers(model).values())).state.mode == "soft"
    # an independent FP pass gives the same max input to layer "4"
    x = torch.rand(8, 1, 8, 8)
    assert reference(x).shape == model(x).shape


def test_soft_training_step_updates_alpha_beta_not_frozen_biases():
    model = small_cnn()
    quantize_model(model, QuantPolicy("3bit_pm4", "act_2bit"))
    calibrate_activations(model, [torch.rand(8, 1, 8, 8)], num_samples=8)
    set_temperature(model, 5.0)
    loss = model(torch.rand(8, 1, 8, 8)).square().mean()
    loss.backward()
    wq = weight_quantizers(model)["4"]
    assert wq.alpha.grad is not None and wq.beta.grad is not None
    assert not isinstance(wq.biases, nn.Parameter)
    assert model[4].parametrizations.weight.original.grad.abs().sum() > 0


def test_learnable_biases_get_gradients():
    model = small_cnn()
    quantize_model(model, QuantPolicy("3bit_pm4", learn_biases=True))
    set_temperature(model, 2.0)
    model(torch.rand(4, 1, 8, 8)).sum().backward()
    wq = weight_quantizers(model)["4"]
    assert isinstance(wq.biases, nn.Parameter) and wq.biases.grad.abs().sum() > 0


def test_state_dict_round_trip():
    model = small_cnn()
    quantize_model(model, QuantPolicy("3bit_pm4", "act_2bit"))
    calibrate_activations(model, [torch.rand(8, 1, 8, 8)], num_samples=8)
    fresh = small_cnn()
    quantize_model(fresh, QuantPolicy("3bit_pm4", "act_2bit"))
    fresh.load_state_dict(model.state_dict())
    for m in (model, fresh):
        set_mode(m, "hard")
        m.eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model(x), fresh(x))
    assert isinstance(activation_quantizers(fresh)["4"], ActivationQuantizer)
    assert isinstance(weight_quantizers(fresh)["4"], WeightQuantizer)


def test_calibration_with_custom_forward_counts_samples():
    model = small_cnn()
    quantize_model(model, QuantPolicy(None, "act_binary"))
    calls = []

    def forward(m, batch):
        calls.append(batch["n"])
        m(batch["images"])
        return batch["n"]

    batches = [{"images": torch.rand(5, 1, 8, 8), "n": 5} for _ in range(10)]
    calibrate_activations(model, batches, num_samples=12, forward=forward)
    assert calls == [5, 5, 5]  # stops once 12 samples were seen
    assert all(q.initialized for q in activation_quantizers(model).values())


def test_activation_init_can_differ_from_weight_init():
    model = small_cnn()
    quantize_model(model, QuantPolicy("3bit_pm4", "act_2bit", init="kmeans", act_init="linear"))
    calibrate_activations(model, [torch.rand(16, 1, 8, 8)], num_samples=16)
    aq = activation_quantizers(model)["4"]
    assert aq.init == "linear"
    steps = aq.biases[1:] - aq.biases[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, steps[0].item()))  # evenly spaced


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quantizers_follow_the_layers_device():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).cuda()
    quantize_model(model, QuantPolicy(weight_levels="ternary", act_levels="act_2bit", include=["0", "2"]))
    for m in model.modules():
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            assert t.is_cuda, type(m).__name__
