"""The quantizers inside a layer: as a weight parametrization and on a layer's input, a few
Adam steps lower the loss and every learned parameter receives a gradient."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from qbench.quant.baselines import (ABCActivationQuantizer, ABCWeightQuantizer, BWNQuantizer, DoReFaActivationQuantizer, DoReFaWeightQuantizer, HWGQuantizer,
                                    LQNetQuantizer, LSQQuantizer, PACTQuantizer, TTQQuantizer, TWNQuantizer)

WEIGHTS = {
    "bwn": lambda c: BWNQuantizer(), "twn": lambda c: TWNQuantizer(), "ttq": lambda c: TTQQuantizer(),
    "dorefa": lambda c: DoReFaWeightQuantizer(2), "lsq": lambda c: LSQQuantizer(3, signed=True),
    "lqnet": lambda c: LQNetQuantizer(2, signed=True, channels=c), "abcnet": lambda c: ABCWeightQuantizer(3),
}
ACTIVATIONS = {
    "dorefa": lambda: DoReFaActivationQuantizer(2), "hwgq": lambda: HWGQuantizer(2), "pact": lambda: PACTQuantizer(2),
    "lsq": lambda: LSQQuantizer(2, signed=False), "lqnet": lambda: LQNetQuantizer(2, signed=False),
    "abcnet": lambda: ABCActivationQuantizer(3),
}


@pytest.mark.parametrize("weight_name", list(WEIGHTS))
@pytest.mark.parametrize("act_name", list(ACTIVATIONS))
def test_a_quantized_conv_trains(weight_name, act_name):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    weight_q, act_q = WEIGHTS[weight_name](4), ACTIVATIONS[act_name]()
    x = torch.randn(8, 3, 6, 6)
    target = torch.randn(8, 4, 6, 6) * 0.1
    weight_q.initialize(conv.weight.detach())
    act_q.initialize(torch.relu(x))
    parametrize.register_parametrization(conv, "weight", weight_q)
    params = list(conv.parameters()) + list(act_q.parameters())
    optim = torch.optim.Adam(params, lr=0.01)  # scale-free: TTQ scale gradients are sums

    def loss():
        return ((conv(act_q(torch.relu(x))) - target) ** 2).mean()

    first = float(loss().detach())
    for _ in range(15):
        optim.zero_grad()
        value = loss()
        value.backward()
        for name, p in list(weight_q.named_parameters()) + list(act_q.named_parameters()):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        assert conv.parametrizations.weight.original.grad.abs().sum() > 0
        optim.step()
    assert float(loss().detach()) < first
