"""The Triton kernels equal Eq. 7 / Eq. 12 written literally, with all their gradients.

Without a GPU the kernels run under Triton's interpreter on CPU tensors. The interpreter is
chosen when a kernel is defined (``triton.jit`` reads ``TRITON_INTERPRET`` then, Triton's own
``tl`` helpers when Triton is imported), so it cannot be switched on inside this process once
Triton has been imported: all checks run once in a child process started with
``TRITON_INTERPRET=1``, in which CPU tensors are routed to the Triton kernels, and every test
reads its result. With CUDA the same checks also run here, compiled, on the GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable

import pytest
import torch

from qbench.quant import LevelSet, hard_quantize, hard_quantize_reference, soft_quantize, soft_quantize_reference
from qbench.quant import kernels

# imported under other names so that pytest does not collect them here a second time
from .test_fast_path import _check, _setup
from .test_fast_path import test_non_contiguous_and_shaped_input as _non_contiguous_checks
from .test_fast_path import test_saturated_and_special_inputs as _special_input_checks

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

SETS = ("binary", "ternary", "3bit_pm2", "3bit_pm4", "5bit", "act_binary", "act_2bit")
TEMPS = (1.0, 10.0, 1e3, 1e4)
_CUDA = torch.cuda.is_available() and torch.cuda.device_count() > 0
MODES = ["interpreter"] + (["cuda"] if _CUDA else [])


@contextlib.contextmanager
def _counting():
    """Count the calls that reach the Triton wrappers (proof that the checks used them)."""
    tk = kernels.triton_module()
    assert tk is not None, kernels.triton_error()
    counts = {"soft_forward": 0, "soft_backward": 0, "hard_forward": 0}
    saved = {name: getattr(tk, name) for name in counts}

    def wrap(name):
        def call(*args, **kwargs):
            counts[name] += 1
            return saved[name](*args, **kwargs)
        return call

    for name in counts:
        setattr(tk, name, wrap(name))
    try:
        yield counts
    finally:
        for name, fn in saved.items():
            setattr(tk, name, fn)


# --- the checks: each takes the device its tensors live on and raises AssertionError --------

def _soft_sets(name: str, learn_biases: bool, device: str) -> None:
    gen = torch.Generator().manual_seed(len(name) + 10 * learn_biases)
    with _counting() as n:
        for T in TEMPS:
            _check(name, T, device, learn_biases, gen)
    assert n["soft_forward"] == len(TEMPS) and n["soft_backward"] == len(TEMPS), n


def _hard_sets(name: str, dtype: torch.dtype, device: str) -> None:
    gen = torch.Generator().manual_seed(3)
    levels, x, b, alpha, beta, _ = _setup(name, 100.0, gen, device, dtype=dtype)
    # elements exactly on a bias: A(0) = 1 (Eq. 1)
    x = torch.cat([x.detach(), b.detach() / beta.detach()])
    with _counting() as n:
        y = hard_quantize(x, levels, b, alpha, beta)
    assert n["hard_forward"] == 1, n
    y_ref = hard_quantize_reference(x, levels, b.detach(), alpha.detach(), beta.detach())
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)


def _special(device: str) -> None:
    assert device == "cpu", "these reuse the CPU tests of test_fast_path"
    with _counting() as n:
        _special_input_checks()
        _non_contiguous_checks()
    assert n["soft_forward"] > 0 and n["soft_backward"] > 0, n


def _saturation_gradients(device: str) -> None:
    """Huge |T (beta x - b)| gives the reference's 0/1 sigmoids and zero derivatives, no NaN;
    a NaN input stays NaN in the output and in dL/dx."""
    levels = LevelSet.from_name("3bit_pm4")
    b = torch.tensor([-3.0, -1.5, -0.5, 0.5, 1.5, 3.0], device=device, requires_grad=True)
    x = torch.tensor([1e30, -1e30, 1e3, -1e3, 60.0, -60.0, 0.5, 0.0, 3.0 + 1e-6], device=device,
                     requires_grad=True)
    w = torch.linspace(-1.0, 2.0, x.numel(), device=device)
    for T in (1.0, 1e4, 1e9):
        alpha = torch.tensor(0.8, device=device, requires_grad=True)
        beta = torch.tensor(1.2, device=device, requires_grad=True)
        params = (x, b, alpha, beta)
        with _counting() as n:
            y = soft_quantize(x, levels, b, alpha, beta, T)
            g = torch.autograd.grad(y, params, grad_outputs=w)
        assert n["soft_forward"] == 1 and n["soft_backward"] == 1, n
        y_ref = soft_quantize_reference(x, levels, b, alpha, beta, T)
        g_ref = torch.autograd.grad(y_ref, params, grad_outputs=w)
        torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6 * 8)
        for gf, gr, what in zip(g, g_ref, ("x", "biases", "alpha", "beta")):
            assert torch.isfinite(gf).all(), f"{what} T={T}: {gf}"
            scale = max(gr.abs().max().item(), 1e-3)
            torch.testing.assert_close(gf, gr, rtol=0, atol=1e-6 * scale * x.numel(),
                                       msg=lambda m: f"grad {what} T={T}: {m}")
    xn = torch.tensor([float("nan"), 1.0], device=device, requires_grad=True)
    y = soft_quantize(xn, levels, b.detach(), 1.0, 1.0, 10.0)
    (gx,) = torch.autograd.grad(y.sum(), xn)
    assert torch.isnan(y[0]) and torch.isnan(gx[0]) and torch.isfinite(y[1]) and torch.isfinite(gx[1])


def _backward_partial_sums(device: str) -> None:
    """Several blocks per program, a ragged last block, and every subset of gradients."""
    tk = kernels.triton_module()
    gen = torch.Generator().manual_seed(7)
    levels, x, b, alpha, beta, w = _setup("5bit", 10.0, gen, device, numel=4000)
    args = (x.detach(), levels.steps_tensor(device=device), b.detach(), alpha.detach(), beta.detach(),
            10.0, levels.offset)
    want = kernels._soft_backward_torch(w, *args, True, True, True)
    saved = tk.MAX_PROGRAMS
    # 4215 elements in blocks of 1024 or 2048, the last one ragged, over 2 programs: 2-3 iterations
    tk.MAX_PROGRAMS = 2
    try:
        for flags in [(True, True, True, True), (False, False, False, True), (True, False, False, False),
                      (False, True, False, False), (False, False, True, False), (False, False, False, False)]:
            sub = tk.soft_backward(w, *args, *flags[:3], need_x=flags[3])
            for gs, gt, need, what in zip(sub, want, (flags[3],) + flags[:3], ("x", "alpha", "beta", "biases")):
                assert (gs is None) == (not need), (what, flags)
                if need:
                    scale = max(gt.abs().max().item(), 1.0) * 10
                    err = (gs.double() - gt.double()).abs().max().item()
                    assert err <= 1e-6 * scale, f"{what} {flags}: {err:.3g}"
    finally:
        tk.MAX_PROGRAMS = saved
    empty = torch.empty(0, 3, device=device)
    gx, ga, gb, gbias = tk.soft_backward(empty, empty, *args[1:], True, True, True)
    assert gx.shape == (0, 3) and ga.item() == 0 and gb.item() == 0 and (gbias == 0).all()
    assert tk.soft_forward(empty, *args[1:]).shape == (0, 3)
    assert tk.hard_forward(empty, levels.outputs_tensor(device=device), *args[2:5]).shape == (0, 3)


def _low_precision(dtype: torch.dtype, device: str) -> None:
    """float16/bfloat16 storage, float32 arithmetic: equal to the float32 reference on the same
    (rounded) inputs up to the rounding of the results."""
    eps = torch.finfo(dtype).eps
    for name, T in (("ternary", 10.0), ("3bit_pm4", 30.0), ("act_2bit", 3.0)):
        gen = torch.Generator().manual_seed(13)
        levels, x, b, alpha, beta, w = _setup(name, T, gen, device, learn_biases=True, numel=300, dtype=dtype)
        params = (x, b, alpha, beta)
        with _counting() as n:
            y = soft_quantize(x, levels, b, alpha, beta, T)
            g = torch.autograd.grad(y, params, grad_outputs=w)
        assert n["soft_forward"] == 1 and n["soft_backward"] == 1, n
        ref = [p.detach().float().requires_grad_() for p in params]
        y_ref = soft_quantize_reference(ref[0], levels, ref[1], ref[2], ref[3], T)
        g_ref = torch.autograd.grad(y_ref, ref, grad_outputs=w.float())
        assert y.dtype == dtype and all(gf.dtype == dtype for gf in g)
        for got, want, what in zip((y,) + g, (y_ref,) + g_ref, ("y", "x", "biases", "alpha", "beta")):
            scale = want.detach().abs().max().item() + 1e-6
            err = (got.float() - want.detach()).abs().max().item()
            assert err <= 4 * eps * scale, f"{what} {name} {dtype}: {err:.3g} > 4 eps * {scale:.3g}"


CHECKS: dict[str, Callable[[str], None]] = {}
for _name in SETS:
    for _learn in (False, True):
        CHECKS[f"soft-{_name}-{'learn' if _learn else 'fixed'}"] = (
            lambda device, n=_name, lb=_learn: _soft_sets(n, lb, device))
    for _dt in (torch.float32, torch.float16, torch.bfloat16):
        CHECKS[f"hard-{_name}-{str(_dt)[6:]}"] = lambda device, n=_name, d=_dt: _hard_sets(n, d, device)
CHECKS["special-inputs"] = _special
CHECKS["saturation-gradients"] = _saturation_gradients
CHECKS["backward-partial-sums"] = _backward_partial_sums
CHECKS["float16"] = lambda device: _low_precision(torch.float16, device)
CHECKS["bfloat16"] = lambda device: _low_precision(torch.bfloat16, device)
_CPU_ONLY = {"special-inputs"}


def _route_cpu_to_triton() -> None:
    """In the interpreter process: send CPU tensors of the Triton dtypes to the Triton kernels."""
    tk = kernels.triton_module()
    assert tk is not None, kernels.triton_error()

    def triton_for(x, biases, *params):
        ok = x.dtype in kernels._TRITON_DTYPES and 0 < biases.numel() <= kernels.TRITON_MAX_STEPS
        return tk if ok else None

    kernels._native_for = lambda *tensors: None
    kernels._triton_for = triton_for


def _interpreter_main() -> None:
    """Entry point of the child process: run every check, print {name: error or None} as JSON."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    _route_cpu_to_triton()
    results = {}
    for name, check in CHECKS.items():
        try:
            check("cpu")
            results[name] = None
        except Exception as exc:  # reported per check by the parent
            where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            results[name] = f"{type(exc).__name__}: {exc}\n{where}"
    print("RESULTS " + json.dumps(results))


@pytest.fixture(scope="module")
def interpreted() -> dict[str, str | None]:
    tests_dir = Path(__file__).resolve().parents[1]
    root = tests_dir.parent
    env = dict(os.environ, TRITON_INTERPRET="1", QBENCH_QUANT_KERNEL="auto",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    # the package name pytest gives this file (tests/quant has an __init__.py, tests/ has not)
    code = (f"import sys; sys.path.insert(0, {str(tests_dir)!r}); "
            f"import {__package__ or 'quant'}.{Path(__file__).stem} as m; m._interpreter_main()")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                          timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    if proc.returncode != 0 or line is None:
        pytest.fail(f"interpreter process failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-5000:]}")
    return json.loads(line[len("RESULTS "):])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("check", list(CHECKS))
def test_triton_kernel(check, mode, request):
    if mode == "interpreter":
        error = request.getfixturevalue("interpreted")[check]
        assert error is None, error
    else:
        if check in _CPU_ONLY:
            pytest.skip("CPU-only check (its GPU counterpart is in test_fast_path)")
        assert kernels.backend_name("cuda") == "triton", kernels.triton_error()
        CHECKS[check]("cuda")


def _run_child(code: str, **env: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_backend_names_and_lazy_triton_import():
    """CPU use never imports Triton; QBENCH_QUANT_KERNEL=torch forces the torch path everywhere."""
    code = ("import sys, torch\n"
            "from qbench.quant import kernels, soft_quantize, hard_quantize\n"
            "x = torch.randn(50, requires_grad=True)\n"
            "soft_quantize(x, 'ternary', torch.tensor([-0.5, 0.5]), 1.0, 1.0, 10.0).sum().backward()\n"
            "hard_quantize(x, 'ternary', torch.tensor([-0.5, 0.5]), 1.0, 1.0)\n"
            "cpu = kernels.backend_name('cpu'), kernels.backend_name('cpu', torch.float16)\n"
            "imported = 'triton' in sys.modules\n"
            "print(cpu[0], cpu[1], imported, kernels.backend_name('cuda'), "
            "kernels.backend_name('cuda', torch.bfloat16), kernels.backend_name('cuda', n_steps=255))\n")
    native = "native" if kernels.native_library() is not None else "torch"
    # float16 on the CPU: the native kernel computes it in float32
    assert _run_child(code, QBENCH_QUANT_KERNEL="auto").split() == [native, native, "False", "triton",
                                                                   "triton", "torch"]
    assert _run_child(code, QBENCH_QUANT_KERNEL="torch").split() == ["torch", "torch", "False", "torch",
                                                                    "torch", "torch"]
    assert kernels.backend_name("cpu", torch.float64) == native
    assert kernels.backend_name("meta") == "torch"
