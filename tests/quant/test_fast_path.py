"""The fast quantizer path equals Eq. 7 written literally, and keeps at most x for backward."""

import shutil

import pytest
import torch

from qbench.quant import (LevelSet, hard_quantize, hard_quantize_reference, soft_quantize,
                          soft_quantize_reference)
from qbench.quant import kernels
from qbench.quant.memory import saved_storages

SETS = ("binary", "ternary", "3bit_pm2", "3bit_pm4", "5bit", "act_binary", "act_2bit", "act_linear8")
TEMPS = (1.0, 3.0, 10.0, 100.0, 1e3, 1e4)
RTOL = 1e-6

_CUDA = torch.cuda.is_available() and torch.cuda.device_count() > 0
DEVICES = ["cpu"] + (["cuda"] if _CUDA else [])


def _setup(name, T, gen, device="cpu", learn_biases=False, numel=600, dtype=torch.float32):
    """Parameters as after Sec. 4.1 init, and inputs that cover the whole range: spread over
    the levels, within a few 1/T of every bias (where the steep sigmoids live), and deep in
    the saturated region."""
    levels = LevelSet.from_name(name)
    lo, hi = levels.values[0], levels.values[-1]
    n = levels.n
    gap = (hi - lo) / (n + 1)
    b = torch.linspace(lo, hi, n + 2, dtype=torch.float64)[1:-1]
    b = b + (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5) * 0.4 * gap
    beta = 0.5 + float(torch.rand((), generator=gen)) * levels.p
    u = lo + (hi - lo) * torch.rand(numel, generator=gen, dtype=torch.float64)
    near = (b[:, None] + torch.tensor([-5.0, -1.0, -0.2, 0.0, 0.3, 2.0, 6.0], dtype=torch.float64) / T)
    far = torch.tensor([lo - 1e3, hi + 1e3, lo - 50.0, hi + 50.0, 0.0], dtype=torch.float64)
    x = torch.cat([u, near.reshape(-1), far]) / beta
    x = x[torch.randperm(x.numel(), generator=gen)]

    def leaf(v, grad=True):
        return v.to(device=device, dtype=dtype).detach().requires_grad_(grad)

    return (levels, leaf(x), leaf(b, learn_biases), leaf(torch.tensor(0.3 + float(torch.rand((), generator=gen)))),
            leaf(torch.tensor(beta)), torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device, dtype))


def _assert_close(fast, ref, scale, what):
    """|fast - ref| <= RTOL * scale elementwise, scale being the magnitude the value is made of."""
    err = (fast.double() - ref.double()).abs().max().item()
    assert err <= RTOL * scale, f"{what}: max error {err:.3g} > {RTOL:g} * {scale:.3g}"


def _check(name, T, device, learn_biases, gen):
    levels, x, b, alpha, beta, w = _setup(name, T, gen, device, learn_biases)
    params = (x, alpha, beta) + ((b,) if learn_biases else ())
    y = soft_quantize(x, levels, b, alpha, beta, T)
    y_ref = soft_quantize_reference(x, levels, b, alpha, beta, T)
    g = torch.autograd.grad(y, params, grad_outputs=w)
    g_ref = torch.autograd.grad(y_ref, params, grad_outputs=w)
    a, be = alpha.item(), beta.item()
    # the scale of each result: output range, largest |dy/dx|, and the sum of magnitudes of
    # the per-element terms of each reduction (the reference sums them in float32)
    gx_abs = g_ref[0].detach().abs()
    scales = {
        "y": a * sum(levels.steps) + y_ref.detach().abs().max().item(),
        "x": gx_abs.max().item() + 1e-30,
        "alpha": (w * y_ref.detach() / a).abs().sum().item() + 1e-30,
        "beta": (gx_abs * x.detach().abs()).sum().item() / be + 1e-30,
        "biases": gx_abs.sum().item() / be + 1e-30,
    }
    _assert_close(y, y_ref, scales["y"], f"y {name} T={T}")
    for gf, gr, what in zip(g, g_ref, ("x", "alpha", "beta", "biases")):
        assert torch.isfinite(gf).all(), what
        assert gf.shape == gr.shape and gf.dtype == gr.dtype
        _assert_close(gf, gr, scales[what], f"grad {what} {name} T={T} learn_biases={learn_biases}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("learn_biases", [False, True])
@pytest.mark.parametrize("name", SETS)
def test_fast_equals_reference_float32(name, learn_biases, device):
    gen = torch.Generator().manual_seed(len(name) + 10 * learn_biases)
    for T in TEMPS:
        _check(name, T, device, learn_biases, gen)


def test_native_kernel_is_used_when_a_compiler_exists():
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler: the torch path is the fast path")
    assert kernels.native_library() is not None, kernels.native_error()


@pytest.mark.parametrize("name", ["ternary", "3bit_pm4", "5bit", "act_2bit"])
@pytest.mark.parametrize("T", [1.0, 10.0, 1e3])
def test_native_equals_torch_path(name, T):
    """The compiled kernel and the portable torch loop (GPU / fallback) agree."""
    if kernels.native_library() is None:
        pytest.skip(f"native kernel unavailable: {kernels.native_error()}")
    gen = torch.Generator().manual_seed(5)
    levels, x, b, alpha, beta, w = _setup(name, T, gen, numel=5000)
    s = levels.steps_tensor(dtype=x.dtype)
    y = kernels.soft_forward(x.detach(), s, b.detach(), alpha.detach(), beta.detach(), T, levels.offset)
    y_t = kernels._soft_forward_torch(x.detach(), s, b.detach(), alpha.detach(), beta.detach(), T,
                                      levels.offset)
    _assert_close(y, y_t, alpha.item() * sum(levels.steps), "forward")
    got = kernels.soft_backward(w, x.detach(), s, b.detach(), alpha.detach(), beta.detach(), T,
                                levels.offset, True, True, True)
    want = kernels._soft_backward_torch(w, x.detach(), s, b.detach(), alpha.detach(), beta.detach(), T,
                                        levels.offset, True, True, True)
    for gf, gt, what in zip(got, want, ("x", "alpha", "beta", "biases")):
        scale = gt.abs().max().item() if what == "x" else max(gt.abs().max().item(), 1.0) * 10
        _assert_close(gf, gt, scale, what)


@pytest.mark.parametrize("name", ["binary", "3bit_pm4", "5bit", "act_2bit"])
def test_float64_gradcheck_on_fast_path(name):
    levels = LevelSet.from_name(name)
    gen = torch.Generator().manual_seed(11)
    for T in (1.0, 30.0):
        _, x, b, alpha, beta, _ = _setup(name, T, gen, learn_biases=True, numel=8, dtype=torch.float64)
        x = x[:24].detach().requires_grad_()
        assert torch.autograd.gradcheck(lambda *a: soft_quantize(a[0], levels, a[1], a[2], a[3], T),
                                        (x, b, alpha, beta), eps=1e-4 / (T * beta.item()),
                                        atol=1e-5, rtol=1e-3)


def test_saturated_and_special_inputs():
    levels = LevelSet.from_name("3bit_pm4")
    b = torch.tensor([-3.0, -1.5, -0.5, 0.5, 1.5, 3.0])
    x = torch.tensor([float("inf"), -float("inf"), 1e30, -1e30, 1e3, -1e3, 0.5, 0.0])
    for T in (1.0, 100.0, 1e4):
        y = soft_quantize(x, levels, b, 1.0, 1.0, T)
        y_ref = soft_quantize_reference(x, levels, b, 1.0, 1.0, T)
        torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=RTOL * 8)
    y = soft_quantize(torch.tensor([float("nan"), 1.0]), levels, b, 1.0, 1.0, 10.0)
    assert torch.isnan(y[0]) and not torch.isnan(y[1])


def test_non_contiguous_and_shaped_input():
    levels = LevelSet.from_name("ternary")
    b = torch.tensor([-0.5, 0.5])
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)).t().requires_grad_()
    y = soft_quantize(x, levels, b, 1.0, 1.0, 20.0)
    y_ref = soft_quantize_reference(x, levels, b, 1.0, 1.0, 20.0)
    assert y.shape == x.shape
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=RTOL * 2)
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx_ref,) = torch.autograd.grad(y_ref.sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=RTOL, atol=RTOL * gx_ref.abs().max().item())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SETS)
def test_hard_equals_reference(name, dtype, device):
    gen = torch.Generator().manual_seed(3)
    levels, x, b, alpha, beta, _ = _setup(name, 100.0, gen, device, dtype=dtype)
    # elements exactly on a bias: A(0) = 1 (Eq. 1)
    x = torch.cat([x.detach(), b.detach() / beta.detach()])
    y = hard_quantize(x, levels, b, alpha, beta)
    y_ref = hard_quantize_reference(x, levels, b.detach(), alpha.detach(), beta.detach())
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["binary", "3bit_pm4", "5bit"])
@pytest.mark.parametrize("learn_biases", [False, True])
def test_saved_memory_is_at_most_one_input(name, learn_biases):
    levels = LevelSet.from_name(name)
    x = torch.randn(1 << 16, requires_grad=True)
    b = torch.linspace(-1, 1, levels.n).requires_grad_(learn_biases)
    alpha = torch.tensor(0.5, requires_grad=True)
    beta = torch.tensor(1.5, requires_grad=True)
    y, seen = saved_storages(lambda: soft_quantize(x, levels, b, alpha, beta, 10.0))
    in_bytes = x.numel() * x.element_size()
    big = [v for v in seen.values() if v >= in_bytes // 2]
    assert sum(seen.values()) <= in_bytes + 1024, seen
    assert big == [in_bytes], "the one input-sized tensor kept must be x itself"
    y.sum().backward()
    assert x.grad is not None and alpha.grad is not None and beta.grad is not None
    assert (b.grad is not None) == learn_biases
