"""Triton kernels for the soft quantizer (Eq. 7), its backward (Eqs. 8-11) and Eq. 12 on GPUs.

One pass over memory per direction, like the CPU kernel: forward reads x and writes y; backward
reads x and dL/dy, writes dL/dx and computes the alpha/beta/bias reductions in the same pass.
Everything is computed in float32 whatever the storage dtype (float32, float16, bfloat16).

Reductions are deterministic without atomics: every program accumulates its elements in fixed
order and writes one row of float32 partial sums; the rows are summed afterwards in float64.
The number of programs depends only on the element count, so the result of a given input does
not depend on the GPU. alpha, beta and the biases stay on the device (their pointers are
passed), so no launch waits for the GPU. The number of steps n is a compile-time constant:
one compilation per level-set size.

Imported only when a CUDA tensor reaches ``kernels``, so CPU-only use never imports Triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._layout import constant, dense, dense_as

# Measured on an H200 (64M elements): 8 warps hide the sigmoid latency once n is large, and a
# larger backward block halves the per-block reductions of the bias gradients.
BLOCK = 1024
NUM_WARPS = 8
BWD_BLOCK = 1024
BWD_BLOCK_BIASES = 2048
BWD_NUM_WARPS = 8
# Upper bound on the programs of the backward pass (each loops over its share of the blocks):
# enough to fill the largest GPUs, and it bounds the partial-sum buffer to a few hundred KiB.
MAX_PROGRAMS = 4096
# Fusing beta * x - b into one FMA changes z = T (beta x - b) by up to T ulp(beta x) next to a
# bias; the reference rounds beta * x first, and so does this code (as -ffp-contract=off does
# for the CPU kernel).
_LAUNCH = {"enable_fp_fusion": False}

LOG2E = 1.4426950408889634


@triton.jit
def _sigmoid(z):
    """sigmoid(z) from e = exp(-|z|) in [0, 1]: never overflows, so huge |z| gives exactly 0 or
    1 (and a zero derivative, as the reference has), while NaN stays NaN."""
    e = tl.exp2(tl.abs(z) * -1.4426950408889634)
    r = 1.0 / (1.0 + e)
    return tl.where(z >= 0, r, e * r)


@triton.jit
def _round_to(v, DTYPE: tl.constexpr):
    """float32 ``v`` rounded to the nearest ``DTYPE`` value (ties to even), kept in float32.

    bfloat16 is rounded by integer arithmetic on the bits: Triton's interpreter truncates in
    ``.to(tl.bfloat16)``, and the exact comparisons of Eq. 12 must not depend on where it runs.
    """
    if DTYPE == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
        return tl.where(v != v, v, bits.to(tl.float32, bitcast=True))
    elif DTYPE == tl.float16:
        return v.to(tl.float16).to(tl.float32)
    else:
        return v


@triton.jit
def _soft_forward_kernel(x_ptr, y_ptr, s_ptr, b_ptr, alpha_ptr, beta_ptr, N, T_ptr, OFFSET,
                         N_STEPS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    beta = tl.load(beta_ptr).to(tl.float32)
    T = tl.load(T_ptr).to(tl.float32)
    u = x * beta
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    # summed in the order of Eq. 7 written literally
    for i in tl.static_range(N_STEPS):
        b = tl.load(b_ptr + i).to(tl.float32)
        s = tl.load(s_ptr + i).to(tl.float32)
        acc += s * _sigmoid(T * (u - b))
    y = alpha * (acc - OFFSET)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _soft_backward_kernel(g_ptr, x_ptr, gx_ptr, part_ptr, s_ptr, b_ptr, alpha_ptr, beta_ptr, N, T_ptr,
                          OFFSET, N_STEPS: tl.constexpr, N_POW2: tl.constexpr,
                          NEED_X: tl.constexpr, NEED_ALPHA: tl.constexpr, NEED_BETA: tl.constexpr,
                          NEED_BIASES: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    beta = tl.load(beta_ptr).to(tl.float32)
    T = tl.load(T_ptr).to(tl.float32)
    coef = alpha * beta * T
    lanes = tl.arange(0, BLOCK)
    step_ids = tl.arange(0, N_POW2)
    # per-lane accumulators: one tree sum at the end instead of one per block
    acc_alpha = tl.zeros([BLOCK], dtype=tl.float32)
    acc_beta = tl.zeros([BLOCK], dtype=tl.float32)
    acc_bias = tl.zeros([N_POW2], dtype=tl.float32)
    # block-cyclic: at every iteration the programs read neighbouring blocks
    # (a while loop: the interpreter of older Triton versions cannot range over a runtime bound)
    blk = pid.to(tl.int64)
    while blk * BLOCK < N:
        offs = blk * BLOCK + lanes
        mask = offs < N
        # masked lanes read x = g = 0 and so add exact zeros to every sum
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        u = x * beta
        dsum = tl.zeros([BLOCK], dtype=tl.float32)
        ssum = tl.zeros([BLOCK], dtype=tl.float32)
        for i in tl.static_range(N_STEPS):
            b = tl.load(b_ptr + i).to(tl.float32)
            s = tl.load(s_ptr + i).to(tl.float32)
            sig = _sigmoid(T * (u - b))
            # sig (1 - sig) as the reference computes it: 0 where sig is exactly 0 or 1
            d = sig * (1.0 - sig) * s
            dsum += d
            if NEED_ALPHA:
                ssum += s * sig
            if NEED_BIASES:
                acc_bias += tl.where(step_ids == i, tl.sum(g * d, axis=0), 0.0)
        gd = g * dsum
        if NEED_X:
            tl.store(gx_ptr + offs, (gd * coef).to(gx_ptr.dtype.element_ty), mask=mask)
        if NEED_ALPHA:
            acc_alpha += g * (ssum - OFFSET)
        if NEED_BETA:
            acc_beta += gd * x
        blk += nprog
    row = part_ptr + pid.to(tl.int64) * (N_STEPS + 2)
    tl.store(row, tl.sum(acc_alpha, axis=0))
    tl.store(row + 1, tl.sum(acc_beta, axis=0))
    tl.store(row + 2 + step_ids, acc_bias, mask=step_ids < N_STEPS)


@triton.jit
def _hard_forward_kernel(x_ptr, y_ptr, out_ptr, b_ptr, alpha_ptr, beta_ptr, N,
                         N_STEPS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    beta = tl.load(beta_ptr).to(tl.float32)
    # The float32 product of two float16/bfloat16 values is exact, so rounding it to the input
    # dtype gives the very beta * x the torch path compares (a no-op for float32).
    u = _round_to(x.to(tl.float32) * beta, x_ptr.dtype.element_ty)
    k = tl.zeros([BLOCK], dtype=tl.int32)
    for j in tl.static_range(N_STEPS):
        b = tl.load(b_ptr + j).to(tl.float32)
        k += (u >= b).to(tl.int32)  # A(0) = 1 (Eq. 1): bucketize(right=True)
    level = tl.load(out_ptr + k, mask=mask, other=0.0).to(tl.float32)
    y = _round_to(level * alpha, y_ptr.dtype.element_ty)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def _device_guard(t: torch.Tensor):
    # Triton launches on the current CUDA device; switch only when the tensor lives elsewhere
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return _NoGuard()


class _NoGuard:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _temperature(T, x: torch.Tensor) -> torch.Tensor:
    """T as a one-element float32 tensor on x's device: the kernels read it through a pointer,
    so a compiled graph or a CUDA graph sees the current value of a tensor updated in place."""
    if isinstance(T, torch.Tensor):
        return T.detach()
    return constant((float(T),), x.device, torch.float32)


def _elementwise(kernel, x: torch.Tensor, table: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor, *scalars: float, n_steps: int) -> torch.Tensor:
    """Launch an elementwise kernel ``kernel(x, y, table, biases, alpha, beta, N, *scalars)``
    over one program per BLOCK elements; returns y, shaped and typed like x."""
    xc = dense(x)
    y = torch.empty_like(xc)
    n_el = xc.numel()
    if n_el == 0:
        return y
    with _device_guard(xc):
        kernel[(triton.cdiv(n_el, BLOCK),)](
            xc, y, table.detach().contiguous(), biases.detach().contiguous(), alpha.detach(),
            beta.detach(), n_el, *scalars, N_STEPS=n_steps, BLOCK=BLOCK, num_warps=NUM_WARPS, **_LAUNCH)
    return y


def soft_forward(x: torch.Tensor, steps: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor, T: float, offset: float) -> torch.Tensor:
    """Eq. 7 in one pass; same contract as ``kernels.soft_forward``.

    Args:
        x: input, float32/float16/bfloat16, any shape and layout.
        steps, biases: step heights and sorted biases, shape (n,), on x's device.
        alpha, beta: one-element tensors on x's device (read by the kernel).
        T, offset: temperature and offset.
    """
    return _elementwise(_soft_forward_kernel, x, steps, biases, alpha, beta, _temperature(T, x),
                        float(offset), n_steps=biases.numel())


def soft_backward(grad_y: torch.Tensor, x: torch.Tensor, steps: torch.Tensor, biases: torch.Tensor,
                  alpha: torch.Tensor, beta: torch.Tensor, T: float, offset: float,
                  need_alpha: bool, need_beta: bool, need_biases: bool, need_x: bool = True):
    """Eqs. 8-11 in one pass; same contract and return value as ``kernels.soft_backward``.

    Args:
        grad_y: dL/dy, shape of ``x``.
        x, steps, biases, alpha, beta, T, offset: as for ``soft_forward``.
        need_alpha, need_beta, need_biases, need_x: which gradients to compute.
    """
    xc = dense(x)
    gc = grad_y if grad_y.dtype == xc.dtype else grad_y.to(xc.dtype)
    gc = dense_as(gc, xc)
    n = biases.numel()
    n_el = xc.numel()
    T_t = _temperature(T, xc)
    gx = torch.empty_like(xc) if need_x else None
    block = BWD_BLOCK_BIASES if need_biases else BWD_BLOCK
    blocks = triton.cdiv(n_el, block)
    nprog = max(1, min(blocks, MAX_PROGRAMS))
    # every program writes its whole row, so the buffer needs no clearing (unless none runs)
    alloc = torch.empty if n_el > 0 else torch.zeros
    partial = alloc((nprog, n + 2), dtype=torch.float32, device=xc.device)
    if n_el > 0:
        with _device_guard(xc):
            _soft_backward_kernel[(nprog,)](
                gc, xc, gx if gx is not None else xc, partial, steps.detach().contiguous(),
                biases.detach().contiguous(), alpha.detach(), beta.detach(), n_el, T_t,
                float(offset), N_STEPS=n,
                N_POW2=triton.next_power_of_2(n), NEED_X=bool(need_x), NEED_ALPHA=bool(need_alpha),
                NEED_BETA=bool(need_beta), NEED_BIASES=bool(need_biases), BLOCK=block,
                num_warps=BWD_NUM_WARPS, **_LAUNCH)
    red = partial.sum(dim=0, dtype=torch.float64)
    # alpha T factored out of the sums, applied once in float64 (as the CPU kernel does)
    a_t = alpha.detach().reshape(()).to(torch.float64) * T_t.reshape(()).to(torch.float64)
    dt = alpha.dtype  # the parameters' dtype (float32 also for half-precision inputs)
    grad_alpha = red[0].to(dt) if need_alpha else None
    grad_beta = (red[1] * a_t).to(dt) if need_beta else None
    grad_b = (red[2:] * -a_t).to(biases.dtype) if need_biases else None
    return gx, grad_alpha, grad_beta, grad_b


def hard_forward(x: torch.Tensor, outputs: torch.Tensor, biases: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor) -> torch.Tensor:
    """Eq. 12 as ``alpha * outputs[k]``, k = #{b_j <= beta x}, in one pass without an index tensor.

    Args:
        x: input, float32/float16/bfloat16, any shape and layout.
        outputs: the n + 1 level outputs; biases: the n sorted biases (on x's device).
        alpha, beta: one-element tensors on x's device.
    """
    return _elementwise(_hard_forward_kernel, x, outputs, biases, alpha, beta, n_steps=biases.numel())
