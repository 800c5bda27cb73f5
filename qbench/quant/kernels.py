"""Elementwise kernels behind the soft and hard quantizers.

Kept apart from ``functional`` so the autograd wiring and the arithmetic can be tuned
independently. All functions take the step heights ``steps`` (n,), sorted ``biases`` (n,),
scalar tensors ``alpha`` and ``beta``, ``T`` (a float or a one-element tensor) and the offset ``o``.

Three implementations with the same results:
- native (CPU, float32/float64): ``_cpu_kernel.cpp``, one fused pass per direction that
  evaluates only the sigmoids that are not saturated (see the comment at the top of that
  file for the window and its error bound). Compiled once with the system C++ compiler
  (about a second) and cached under ``$QBENCH_KERNEL_CACHE`` or ``~/.cache/qbench/kernels``.
- triton (CUDA, float32/float16/bfloat16, n <= 64 steps): ``_triton_kernel.py``, one pass
  per direction computing in float32, reductions as per-program partial sums added in float64
  (deterministic, no host synchronisation). Triton is imported on the first CUDA tensor only.
- torch (any device and dtype): a loop over the n steps, recomputing in backward. Used for
  other dtypes and devices, for more than 64 steps, when neither a compiler nor Triton is
  available, or everywhere with ``QBENCH_QUANT_KERNEL=torch``.

``backend_name`` says which one serves a given device and dtype.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

from ._layout import constant, dense, dense_as  # noqa: F401  (the kernels' public helpers)

_SOURCE = Path(__file__).with_name("_cpu_kernel.cpp")
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-std=c++17", "-shared", "-fPIC"]
# sigmoid(-z) <= exp(-z): skipping the steps further than Z_CUT / T from beta * x changes the
# float32 output by at most sum(s) * exp(-Z_CUT) = 4e-8 * sum(s) (and sigmoid(z > 17) is
# exactly 1.0 in float32, which the kernel reproduces), the derivative by 4e-8 * max(s).
Z_CUT_F32 = 17.0

_lib = None
_lib_error: str | None = None
_lock = threading.Lock()

_triton: ModuleType | None = None
_triton_error: str | None = None
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# One compilation per step count, fully unrolled: beyond this (act_linear8 has 255 steps) the
# unrolled loop stops paying and the torch path is used.
TRITON_MAX_STEPS = 64


def _cache_dir() -> Path:
    root = os.environ.get("QBENCH_KERNEL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qbench" / "kernels"


def _cpu_signature() -> str:
    # -march=native binaries are only valid on the CPU they were built for
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _build(cxx: str) -> Path:
    source = _SOURCE.read_bytes()
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    key = hashlib.sha256(source + " ".join(_FLAGS).encode() + version.encode()
                         + _cpu_signature().encode()).hexdigest()[:16]
    out = _cache_dir() / f"qbench_quant_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # compile to a private name, then rename: concurrent processes never see a partial file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cxx, *_FLAGS, str(_SOURCE), "-o", tmp], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip()[-2000:])
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _declare(lib) -> None:
    p, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for dt in ("f32", "f64"):
        getattr(lib, f"qb_soft_forward_{dt}").argtypes = [p, p, i64, p, p, i64, f64, f64, f64, f64, f64, i32]
        getattr(lib, f"qb_soft_backward_{dt}").argtypes = [p, p, p, i64, p, p, i64, f64, f64, f64, f64, f64,
                                                          i32, i32, i32, p, i32]
        getattr(lib, f"qb_hard_forward_{dt}").argtypes = [p, p, i64, p, i64, p, f64, f64, i32]
        for name in ("soft_forward", "soft_backward", "hard_forward"):
            getattr(lib, f"qb_{name}_{dt}").restype = None


def native_library():
    """The compiled CPU kernels (a ctypes library), or None when they cannot be built.

    Built on first use; the reason for a failure is in ``native_error()``.
    """
    global _lib, _lib_error
    if _lib is not None or _lib_error is not None:
        return _lib
    with _lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        if _torch_forced():
            _lib_error = "disabled by QBENCH_QUANT_KERNEL=torch"
            return None
        cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        try:
            if cxx is None:
                raise RuntimeError("no C++ compiler found (set CXX)")
            lib = ctypes.CDLL(str(_build(cxx)))
            _declare(lib)
            _lib = lib
        except Exception as exc:  # any failure means: use the torch path
            _lib_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"qbench.quant: native CPU kernel unavailable, using the torch path ({_lib_error})",
                          RuntimeWarning, stacklevel=2)
    return _lib


def native_error() -> str | None:
    """Why the native kernels are not used (None when they are, or were not tried yet)."""
    return _lib_error


def _torch_forced() -> bool:
    return os.environ.get("QBENCH_QUANT_KERNEL", "auto") == "torch"


def triton_module() -> ModuleType | None:
    """The Triton GPU kernels (``_triton_kernel``), or None when Triton cannot be imported.

    Imported on first use, which happens only for CUDA tensors; the reason for a failure is in
    ``triton_error()``.
    """
    global _triton, _triton_error
    if _triton is not None or _triton_error is not None:
        return _triton
    with _lock:
        if _triton is not None or _triton_error is not None:
            return _triton
        if _torch_forced():
            _triton_error = "disabled by QBENCH_QUANT_KERNEL=torch"
            return None
        try:
            from . import _triton_kernel
            _triton = _triton_kernel
        except Exception as exc:  # no or broken triton: use the torch path
            _triton_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"qbench.quant: Triton kernels unavailable, using the torch path on GPUs "
                          f"({_triton_error})", RuntimeWarning, stacklevel=2)
    return _triton


def triton_error() -> str | None:
    """Why the Triton kernels are not used (None when they are, or were not tried yet)."""
    return _triton_error


def _triton_for(x: torch.Tensor, biases: torch.Tensor, *params: torch.Tensor) -> ModuleType | None:
    # cheap attribute checks first: this runs on every GPU quantizer call
    if not x.is_cuda or x.dtype not in _TRITON_DTYPES or not 0 < biases.numel() <= TRITON_MAX_STEPS:
        return None
    dev = x.device
    if not all(t.device == dev for t in (biases, *params)):
        return None
    return _triton if _triton is not None else triton_module()


def backend_name(device: torch.device | str, dtype: torch.dtype = torch.float32,
                 n_steps: int | None = None) -> str:
    """Which implementation ``soft_forward`` uses for tensors of this device and dtype.

    Args:
        device: the tensors' device.
        dtype: the tensors' dtype.
        n_steps: the level set's number of steps; None for one of at most 64 steps.

    Returns:
        ``"native"`` (the CPU C++ kernel), ``"triton"`` (the GPU kernels) or ``"torch"``.
    """
    device = torch.device(device)
    if device.type == "cpu" and dtype in _NATIVE_DTYPES + _UPCAST_DTYPES and native_library() is not None:
        return "native"
    if (device.type == "cuda" and dtype in _TRITON_DTYPES
            and (n_steps is None or 0 < n_steps <= TRITON_MAX_STEPS) and triton_module() is not None):
        return "triton"
    return "torch"


def _native_for(*tensors: torch.Tensor):
    # cheap attribute checks only: this runs twice per quantizer call
    dt = tensors[0].dtype
    if dt not in _NATIVE_DTYPES or not all(t.is_cpu and t.dtype == dt for t in tensors):
        return None
    return _lib if _lib is not None else native_library()


_NATIVE_DTYPES = (torch.float32, torch.float64)
# stored in half precision (autocast), computed in float32 by the native and torch paths: in
# bfloat16 T (beta x - b) keeps 8 bits, too few for a steep sigmoid
_UPCAST_DTYPES = (torch.float16, torch.bfloat16)


def _suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def _zcut(dtype: torch.dtype) -> float:
    # float64 evaluates every step: it is the precision path (gradcheck), kept exact
    return Z_CUT_F32 if dtype == torch.float32 else float("inf")


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _if_tensor(v) -> tuple:
    return (v,) if isinstance(v, torch.Tensor) else ()


def _num(v) -> float:
    return v.item() if isinstance(v, torch.Tensor) else float(v)


# --- soft quantizer ---------------------------------------------------------------------

def soft_forward(x: torch.Tensor, steps: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor, T, offset: float) -> torch.Tensor:
    """Eq. 7: ``alpha * (sum_i s_i * sigmoid(T * (beta * x - b_i)) - o)``.

    ``T`` is a float or a one-element tensor (on x's device, read by the GPU kernels in place:
    a temperature that changes keeps the same tensor, so compiled graphs stay valid). The
    result has x's shape, dtype and layout (see ``dense``). float16/bfloat16 inputs are computed
    in float32 (Triton does that in registers; the other paths convert x).
    """
    lib = _native_for(x, steps, biases)
    if lib is None:
        tk = _triton_for(x, biases, steps, alpha, beta, *_if_tensor(T))
        if tk is not None:
            return tk.soft_forward(x, steps, biases, alpha, beta, T, offset)
        if x.dtype in _UPCAST_DTYPES:
            return soft_forward(x.float(), steps, biases, alpha, beta, T, offset).to(x.dtype)
        return _soft_forward_torch(x, steps, biases, alpha, beta, T, offset)
    xc = dense(x)
    b = biases.detach().contiguous()
    s = steps.detach().contiguous()
    y = torch.empty_like(xc)
    getattr(lib, f"qb_soft_forward_{_suffix(x.dtype)}")(
        _ptr(xc), _ptr(y), xc.numel(), _ptr(b), _ptr(s), b.numel(), _num(alpha), _num(beta),
        _num(T), float(offset), _zcut(x.dtype), torch.get_num_threads())
    return y


def soft_backward(grad_y: torch.Tensor, x: torch.Tensor, steps: torch.Tensor, biases: torch.Tensor,
                  alpha: torch.Tensor, beta: torch.Tensor, T: float, offset: float,
                  need_alpha: bool, need_beta: bool, need_biases: bool, need_x: bool = True):
    """Gradients of Eq. 7 (Eqs. 8-11), recomputed from ``x``.

    Args:
        grad_y: dL/dy, shape of ``x``.
        x, steps, biases, alpha, beta, T, offset: as for ``soft_forward``.
        need_alpha, need_beta, need_biases, need_x: which gradients to compute.

    Returns ``(grad_x, grad_alpha, grad_beta, grad_biases)``; unrequested ones are ``None``.
    With ``sig_i = sigmoid(T(beta x - b_i))`` and ``d_i = s_i sig_i (1 - sig_i)``:
    ``dy/dx = alpha T beta sum_i d_i``, ``dy/dalpha = sum_i s_i sig_i - o``,
    ``dy/dbeta = alpha T x sum_i d_i``, ``dy/db_i = -alpha T d_i``.
    """
    lib = _native_for(x, grad_y, steps, biases)
    if lib is None:
        tk = _triton_for(x, biases, grad_y, steps, alpha, beta, *_if_tensor(T))
        if tk is not None:
            return tk.soft_backward(grad_y, x, steps, biases, alpha, beta, T, offset, need_alpha,
                                    need_beta, need_biases, need_x)
        if x.dtype in _UPCAST_DTYPES:
            gx, ga, gb, gbias = soft_backward(grad_y.float(), x.float(), steps, biases, alpha, beta, T,
                                              offset, need_alpha, need_beta, need_biases, need_x)
            return (None if gx is None else gx.to(x.dtype)), ga, gb, gbias
        gx, ga, gb, gbias = _soft_backward_torch(grad_y, x, steps, biases, alpha, beta, T, offset,
                                                 need_alpha, need_beta, need_biases)
        return (gx if need_x else None), ga, gb, gbias
    xc = dense(x)
    gc = dense_as(grad_y, xc)
    b = biases.detach().contiguous()
    s = steps.detach().contiguous()
    n = b.numel()
    gx = torch.empty_like(xc) if need_x else None
    red = (ctypes.c_double * (2 + n))()
    a, be, T = _num(alpha), _num(beta), _num(T)
    getattr(lib, f"qb_soft_backward_{_suffix(x.dtype)}")(
        _ptr(gc), _ptr(xc), _ptr(gx) if gx is not None else None, xc.numel(), _ptr(b), _ptr(s), n,
        a, be, T, float(offset), _zcut(x.dtype), int(need_alpha), int(need_beta), int(need_biases),
        ctypes.addressof(red), torch.get_num_threads())
    dt = alpha.dtype  # the parameters' dtype (float32 also for half-precision inputs)
    grad_alpha = torch.tensor(red[0], dtype=dt) if need_alpha else None
    grad_beta = torch.tensor(red[1] * (a * T), dtype=dt) if need_beta else None
    grad_b = torch.tensor([v * (-a * T) for v in red[2:]], dtype=biases.dtype) if need_biases else None
    return gx, grad_alpha, grad_beta, grad_b


def _soft_forward_torch(x, steps, biases, alpha, beta, T, offset):
    u = x * beta
    acc = torch.zeros_like(u)
    for s, b in zip(steps.unbind(), biases.unbind()):
        acc.add_(torch.sigmoid((u - b) * T) * s)
    return (acc - offset) * alpha


def _soft_backward_torch(grad_y, x, steps, biases, alpha, beta, T, offset, need_alpha, need_beta,
                         need_biases):
    u = x * beta
    dsum = torch.zeros_like(u)
    ssum = torch.zeros_like(u) if need_alpha else None
    grad_b = torch.zeros_like(biases) if need_biases else None
    for i, (s, b) in enumerate(zip(steps.unbind(), biases.unbind())):
        sig = torch.sigmoid((u - b) * T)
        d = sig * (1 - sig) * s
        dsum.add_(d)
        if ssum is not None:
            ssum.add_(sig * s)
        if grad_b is not None:
            grad_b[i] = -(grad_y * d).sum() * alpha * T
    g = grad_y * dsum
    grad_x = g * (alpha * beta * T)
    grad_alpha = (grad_y * (ssum - offset)).sum() if need_alpha else None
    grad_beta = (g * x).sum() * alpha * T if need_beta else None
    return grad_x, grad_alpha, grad_beta, grad_b


# --- hard quantizer ---------------------------------------------------------------------

def hard_forward(x: torch.Tensor, outputs: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor) -> torch.Tensor:
    """Eq. 12 as a lookup: ``alpha * outputs[k]``, k = number of biases <= beta * x.

    ``A(z) = 1`` for ``z >= 0`` (paper Eq. 1), hence ``right=True``.
    """
    lib = _native_for(x, outputs, biases)
    if lib is None:
        tk = _triton_for(x, biases, outputs, alpha, beta)
        if tk is not None:
            return tk.hard_forward(x, outputs, biases, alpha, beta)
        k = torch.bucketize(x * beta, biases, right=True)
        return outputs[k] * alpha
    xc = dense(x)
    b = biases.detach().contiguous()
    o = outputs.detach().contiguous()
    y = torch.empty_like(xc)
    getattr(lib, f"qb_hard_forward_{_suffix(x.dtype)}")(
        _ptr(xc), _ptr(y), xc.numel(), _ptr(b), b.numel(), _ptr(o), _num(alpha), _num(beta),
        torch.get_num_threads())
    return y


def hard_codes(x: torch.Tensor, biases: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Integer code k in [0, n] of every element (index into the level set)."""
    return torch.bucketize(x * beta, biases, right=True)
