"""The quantizer under torch.compile and autocast.

- The custom ops pass ``torch.library.opcheck`` (schema, fake implementation, autograd
  registration) on the CPU.
- ``torch._dynamo.explain`` of a quantized ResNet-18 forward + backward finds one graph and no
  break; compiled (AOTAutograd, eager kernels) and eager outputs and gradients agree within the
  fast path's 1e-6, and a new temperature reaches the compiled graph without a recompile.
- Inductor compiles a small quantized network (forward + backward) that agrees with eager.
- bfloat16 autocast: the quantizer computes in float32 and returns bfloat16, gradients reach
  the float32 parameters; channels_last stays channels_last.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from qbench.quant import (QuantPolicy, calibrate_activations, quantize_model, quant_parameters, set_temperature,
                          soft_quantize, soft_quantize_reference)
from qbench.quant import ops

RTOL = 1e-6


def _quantized_resnet18(batch: int = 4):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    quantize_model(model, QuantPolicy(weight_levels="3bit_pm4", act_levels="act_2bit"))
    x = torch.randn(batch, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    calibrate_activations(model, [x], num_samples=batch)
    set_temperature(model, 10.0)
    return model.train(), x


def _step(model, x):
    out = model(x)
    out.square().mean().backward()
    return out.detach()


def _assert_grads_close(eager: nn.Module, compiled: nn.Module, rtol: float) -> int:
    """Every gradient within rtol of its own largest magnitude; returns how many were compared."""
    count = 0
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        scale = p.grad.abs().max().item() + 1e-30
        err = (p.grad - q.grad).abs().max().item()
        assert err <= rtol * scale, f"grad {name}: {err:.3g} > {rtol:g} * {scale:.3g}"
        count += 1
    return count


def test_ops_pass_opcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, 4, generator=gen).to(memory_format=torch.channels_last).requires_grad_()
    b = torch.tensor([-1.0, -0.2, 0.3, 1.1])
    alpha = torch.tensor(0.7, requires_grad=True)
    beta = torch.tensor(1.3, requires_grad=True)
    T = torch.tensor(10.0)
    steps = [0.5, 0.5, 0.5, 0.5]
    torch.library.opcheck(ops.soft_quantize_op, (x, b, alpha, beta, T, steps, 1.0))
    torch.library.opcheck(ops.soft_quantize_op, (x, b.clone().requires_grad_(), alpha, beta, T, steps, 1.0))
    torch.library.opcheck(ops.hard_quantize_op, (x.detach(), b, alpha.detach(), beta.detach(),
                                                 [-1.0, -0.5, 0.0, 0.5, 1.0]))


def test_explain_finds_no_graph_break_in_forward_and_backward():
    import torch._dynamo

    model, x = _quantized_resnet18()

    def step(model, x):
        out = model(x)
        out.square().mean().backward()
        return out.detach()

    torch._dynamo.reset()
    # traces loss.backward() into the same graph, so breaks in the backward would show up too
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step)(model, x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    assert any(p.grad is not None for p in quant_parameters(model))


def test_compiled_equals_eager_and_follows_the_temperature():
    import torch._dynamo

    torch._dynamo.reset()
    eager, x = _quantized_resnet18()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for T in (10.0, 25.0):  # a new T: same graph, the value is read from the state tensor
            set_temperature(eager, T)
            set_temperature(twin, T)
            for m in (eager, twin):
                m.zero_grad(set_to_none=True)
            y_c = _step(compiled, x)
            y_e = _step(eager, x)
            scale = y_e.abs().max().item()
            assert (y_c - y_e).abs().max().item() <= RTOL * scale, T
            assert _assert_grads_close(eager, twin, RTOL) > 40


class _SmallQuantNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


def _small_quant_net():
    torch.manual_seed(0)
    model = _SmallQuantNet()
    quantize_model(model, QuantPolicy(weight_levels="ternary", act_levels="act_2bit"))
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    calibrate_activations(model, [x], num_samples=4)
    set_temperature(model, 5.0)
    return model.train(), x


def test_inductor_compiles_a_quantized_network():
    import torch._dynamo

    torch._dynamo.reset()
    eager, x = _small_quant_net()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend="inductor", fullgraph=True)
    y_c = _step(compiled, x)
    y_e = _step(eager, x)
    # inductor fuses the convolution epilogues and the mean: float32 rounding differs slightly
    assert (y_c - y_e).abs().max().item() <= 1e-5 * y_e.abs().max().item()
    assert _assert_grads_close(eager, twin, 1e-4) >= 10


_CUDA = torch.cuda.is_available()
HALF_CASES = [("cpu", torch.bfloat16)] + ([("cuda", torch.bfloat16), ("cuda", torch.float16)] if _CUDA else [])


@pytest.mark.parametrize("device, dtype", HALF_CASES)
def test_half_precision_computes_in_float32_and_keeps_channels_last(device, dtype):
    levels = "3bit_pm4"
    gen = torch.Generator().manual_seed(3)
    b = torch.tensor([-2.0, -1.1, -0.3, 0.35, 1.2, 2.1], device=device)
    x = (torch.randn(2, 6, 5, 5, generator=gen) * 2).to(device, memory_format=torch.channels_last)
    x16 = x.to(dtype).requires_grad_()
    alpha = torch.tensor(0.9, requires_grad=True, device=device)
    beta = torch.tensor(1.1, requires_grad=True, device=device)
    y = soft_quantize(x16, levels, b, alpha, beta, 30.0)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    # the reference on the same bfloat16 inputs, in float32: y differs only by its final rounding
    x32 = x16.detach().float().requires_grad_()
    a32, be32 = alpha.detach().clone().requires_grad_(), beta.detach().clone().requires_grad_()
    y_ref = soft_quantize_reference(x32, levels, b, a32, be32, 30.0)
    eps = torch.finfo(dtype).eps
    assert (y.float() - y_ref).abs().max().item() <= eps * y_ref.abs().max().item()
    w = torch.randn(x.shape, generator=gen).to(device)
    gx, ga, gb = torch.autograd.grad(y, (x16, alpha, beta), grad_outputs=w.to(dtype))
    gx_ref, ga_ref, gb_ref = torch.autograd.grad(y_ref, (x32, a32, be32), grad_outputs=w.to(dtype).float())
    assert gx.dtype == dtype and gx.is_contiguous(memory_format=torch.channels_last)
    assert ga.dtype == torch.float32 and gb.dtype == torch.float32
    assert (gx.float() - gx_ref).abs().max().item() <= eps * gx_ref.abs().max().item()
    for got, want in ((ga, ga_ref), (gb, gb_ref)):  # float32 sums of the same float32 terms
        assert abs(got.item() - want.item()) <= 1e-5 * (abs(want.item()) + 1e-3)


@pytest.mark.skipif(not _CUDA, reason="needs a CUDA device")
def test_cuda_graphs_capture_the_quantizer_and_follow_the_temperature():
    """mode="reduce-overhead": the forward and backward replay as CUDA graphs; a new T written
    into the state tensor between replays is what the next replay uses."""
    import torch._dynamo

    torch._dynamo.reset()
    eager, x = _small_quant_net()
    eager, x = eager.cuda(), x.cuda()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, mode="reduce-overhead", fullgraph=True)
    for T in (5.0, 5.0, 5.0, 40.0):  # the first calls record, the later ones replay
        set_temperature(eager, T)
        set_temperature(twin, T)
        for m in (eager, twin):
            m.zero_grad(set_to_none=True)
        y_c = _step(compiled, x).clone()
        y_e = _step(eager, x)
        assert (y_c - y_e).abs().max().item() <= 1e-5 * y_e.abs().max().item(), T
        _assert_grads_close(eager, twin, 1e-4)


def test_float32_channels_last_needs_no_copy():
    x = torch.randn(2, 4, 6, 6).to(memory_format=torch.channels_last)
    b = torch.tensor([-0.5, 0.5])
    y = soft_quantize(x, "ternary", b, 1.0, 1.0, 10.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, soft_quantize_reference(x, "ternary", b, 1.0, 1.0, 10.0), rtol=RTOL,
                               atol=RTOL * 2)


def test_quantized_training_step_under_bfloat16_autocast():
    model, x = _small_quant_net()
    model = model.to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    target = torch.tensor([0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, target)
    assert logits.dtype == torch.bfloat16
    loss.backward()
    for p in quant_parameters(model):
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all()
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.endswith("input_quantizer.alpha") for n in changed)
    assert any("parametrizations.weight.original" in n for n in changed)
    assert all(torch.isfinite(p).all() for p in model.parameters())
