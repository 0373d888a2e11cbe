"""The fused multi-step scan for CUDA tensors, written in Triton: one kernel launch per direction over all T.

The math is that of ``csrc/scan.c`` (the CPU kernel) and of the torch backend in :mod:`spikenerf.snn.scan`;
change all of them together. Layout: ``x``, ``s``, ``h`` are ``[T, N]`` contiguous (``N`` = all non-time
elements). Each program owns ``BLOCK`` contiguous lanes and runs them through all T with the state in fp32
registers, so every load and store is coalesced and nothing but the kernel's own loop is sequential.

- forward: reads ``x``, writes ``s`` and ``h`` in the input dtype. For fp16 / bf16 inputs that need a
  gradient it also writes ``h`` in fp32 for the backward, so the backward math is exactly the fp32
  recurrence (re-firing a rounded ``h`` could flip a spike at the threshold).
- backward: ``t = T-1 .. 0`` carrying the membrane gradient, re-deriving ``s_t`` and ``v_{t-1}`` from the
  stored ``h`` as the C kernel does (each ``h_t`` is loaded once). ``x`` is read only when ``b`` needs a
  gradient. The gradients of ``a, b, v_th, c`` are summed per lane in fp32, per program with ``tl.sum``,
  and over programs in float64 by torch (deterministic: no atomics).
- ``a, b, c, v_th`` are read from a 4-element device tensor, so a learnable or LTMD ``tanh(w)`` threshold
  costs no host-device sync; the spike code, reset, detach flag, surrogate id and level count are
  compile-time constants (one specialization each, like the C kernel's switch).

Everything here needs ``triton``; :func:`triton_available` says whether it imported. ``TRITON_INTERPRET=1``
(set before this module is imported) runs the kernels on CPU tensors through Triton's interpreter, which
is how the tests check them without a GPU (``tests/snn/test_triton_scan.py``).
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import Tensor

from .scan import CODE_IDS, ScanSpec

try:  # optional: ships with the CUDA wheels of torch on Linux; without it CUDA runs the torch loop
    import triton
    import triton.language as tl
except Exception as err:  # noqa: BLE001 - any import failure means "no Triton"
    triton = tl = None
    _IMPORT_ERROR: str | None = f"{type(err).__name__}: {err}"
else:
    _IMPORT_ERROR = None

__all__ = ["triton_available", "triton_interpreting", "triton_supports", "triton_scan_forward",
           "triton_scan_backward", "TRITON_DTYPES"]

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The interpreter decides at decoration time (when this module is imported), so read the flag once here.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    """True when ``triton`` imported (it may still lack a GPU; see :func:`triton_supports`)."""
    return triton is not None


def triton_interpreting() -> bool:
    """True when the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import time)."""
    return triton is not None and _INTERPRET


def triton_supports(x: Tensor) -> str | None:
    """``None`` when the Triton scan can run on ``x``, else the reason it cannot."""
    if triton is None:
        return f"triton is not importable ({_IMPORT_ERROR})"
    if x.dtype not in TRITON_DTYPES:
        return f"the Triton scan takes float32, bfloat16 or float16, got {x.dtype}"
    if x.device.type == "cuda":
        return None
    if x.device.type == "cpu" and _INTERPRET:
        return None
    return (f"the Triton scan runs on CUDA tensors (CPU tensors only with TRITON_INTERPRET=1 set before "
            f"spikenerf is imported), got a {x.device.type} tensor")


def _block(n: int, device: torch.device) -> tuple[int, int]:
    """Lanes per program and warps: enough programs to fill the GPU, at least 64 lanes each."""
    if device.type != "cuda":  # interpreter: one wide program is fastest
        return max(16, min(1024, triton.next_power_of_2(n))), 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    block = max(64, min(1024, triton.next_power_of_2(-(-n // (4 * sms)))))
    return block, max(1, min(4, block // 128))


if triton is not None:

    @triton.jit
    def _sg_grad(x, alpha, SG: tl.constexpr):
        """Surrogate derivative ``g(x)``; ids match ``surrogate.py``'s ``kernel_id`` and ``csrc/scan.c``."""
        if SG == 0:  # sigmoid
            s = 1.0 / (1.0 + tl.exp(-alpha * x))
            g = alpha * s * (1.0 - s)
        elif SG == 1:  # atan
            u = 1.5707963267948966 * alpha * x
            g = (alpha * 0.5) / (1.0 + u * u)
        elif SG == 2:  # rect
            g = tl.where(tl.abs(x) < alpha * 0.5, 1.0 / alpha, 0.0)
        elif SG == 3:  # triangle
            r = 1.0 - tl.abs(x) / alpha
            g = tl.where(r > 0.0, r / alpha, 0.0)
        elif SG == 4:  # tanh: 1 - tanh(y)^2 = 4 sigmoid(2y) (1 - sigmoid(2y))
            s = 1.0 / (1.0 + tl.exp(-2.0 * alpha * x))
            g = 2.0 * alpha * s * (1.0 - s)
        else:  # multi-Gaussian (height 0.15, scale 6)
            s1 = 6.0 * alpha
            n0 = tl.exp(-(x * x) / (2.0 * alpha * alpha)) * 0.3989422804014327 / alpha
            npos = tl.exp(-((x - alpha) * (x - alpha)) / (2.0 * s1 * s1)) * 0.3989422804014327 / s1
            nneg = tl.exp(-((x + alpha) * (x + alpha)) / (2.0 * s1 * s1)) * 0.3989422804014327 / s1
            g = 1.15 * n0 - 0.15 * npos - 0.15 * nneg
        return g

    @triton.jit
    def _step(u):
        return tl.where(u >= 0.0, 1.0, 0.0)

    @triton.jit
    def _fire(h, vth, margin, CODE: tl.constexpr, LEVELS: tl.constexpr):
        if CODE == 0:
            s = _step(h - vth)
        elif CODE == 1:
            s = _step(h - vth) - _step(-h - vth)
        elif CODE == 2:
            s = _step(h - vth) + _step((h - vth) - margin)
        else:
            s = _step(h - vth)
            for k in tl.static_range(2, LEVELS + 1):
                s += _step(h - k * vth)
        return s

    @triton.jit
    def _fired(h, s, vth, CODE: tl.constexpr):
        """The hard-reset indicator ``z``."""
        if CODE == 0:
            z = s
        elif CODE == 1:
            z = _step(h - vth) + _step(-h - vth)
        else:
            z = _step(h - vth)
        return z

    @triton.jit
    def _reset(h, s, vth, v_reset, CODE: tl.constexpr, RESET: tl.constexpr):
        if RESET == 0:
            z = _fired(h, s, vth, CODE)
            v = h * (1.0 - z) + v_reset * z
        else:
            v = h - vth * s
        return v

    @triton.jit
    def _fire_grads(h, vth, margin, alpha, CODE: tl.constexpr, LEVELS: tl.constexpr, SG: tl.constexpr):
        """``dF/dh, dF/dvth``."""
        if CODE == 0:
            g = _sg_grad(h - vth, alpha, SG)
            gh, gt = g, -g
        elif CODE == 1:
            gp = _sg_grad(h - vth, alpha, SG)
            gm = _sg_grad(-h - vth, alpha, SG)
            gh, gt = gp + gm, gm - gp
        elif CODE == 2:
            g = _sg_grad(h - vth, alpha, SG) + _sg_grad((h - vth) - margin, alpha, SG)
            gh, gt = g, -g
        else:
            gh = _sg_grad(h - vth, alpha, SG)
            gt = -gh
            for k in tl.static_range(2, LEVELS + 1):
                g = _sg_grad(h - k * vth, alpha, SG)
                gh += g
                gt -= k * g
        return gh, gt

    @triton.jit
    def _fired_grads(h, vth, alpha, CODE: tl.constexpr, SG: tl.constexpr):
        """``dZ/dh, dZ/dvth`` of the hard-reset indicator."""
        if CODE == 1:
            gp = _sg_grad(h - vth, alpha, SG)
            gm = _sg_grad(-h - vth, alpha, SG)
            gh, gt = gp - gm, -gp - gm
        else:
            g = _sg_grad(h - vth, alpha, SG)
            gh, gt = g, -g
        return gh, gt

    @triton.jit
    def _lanes_and_params(p_ptr, N, BLOCK: tl.constexpr):
        """This program's lane offsets and mask, and ``a, b, c, v_th`` from the parameter tensor."""
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        return pid, offs, offs < N, tl.load(p_ptr), tl.load(p_ptr + 1), tl.load(p_ptr + 2), tl.load(p_ptr + 3)

    @triton.jit(do_not_specialize=["T"])
    def _scan_fwd_kernel(x_ptr, v0_ptr, s_ptr, h_ptr, h32_ptr, p_ptr, T, N, v_reset, margin,
                         CODE: tl.constexpr, LEVELS: tl.constexpr, RESET: tl.constexpr, HAS_V0: tl.constexpr,
                         SAVE_H32: tl.constexpr, BLOCK: tl.constexpr):
        pid, offs, mask, a, b, c, vth = _lanes_and_params(p_ptr, N, BLOCK)
        if HAS_V0:
            v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            v = tl.zeros([BLOCK], dtype=tl.float32)
        # pointers advance by N per step: 64-bit pointer arithmetic, no int32 overflow of t * N
        xp, sp, hp, h32p = x_ptr + offs, s_ptr + offs, h_ptr + offs, h32_ptr + offs
        for _ in range(T):
            xt = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
            hh = a * v + b * xt + c
            s = _fire(hh, vth, margin, CODE, LEVELS)
            tl.store(hp, hh.to(h_ptr.dtype.element_ty), mask=mask)
            tl.store(sp, s.to(s_ptr.dtype.element_ty), mask=mask)
            if SAVE_H32:
                tl.store(h32p, hh, mask=mask)
            v = _reset(hh, s, vth, v_reset, CODE, RESET)
            xp += N
            sp += N
            hp += N
            h32p += N

    @triton.jit
    def _bwd_step(hh, vprev, xp, gsp, ghp, gxp, mask, gv, la, lb, lth, lc, a, b, vth, v_reset, margin, alpha,
                  CODE: tl.constexpr, LEVELS: tl.constexpr, RESET: tl.constexpr, DETACH: tl.constexpr,
                  SG: tl.constexpr, HAS_GH: tl.constexpr, NEED_X: tl.constexpr):
        """One step of the backward recurrence (as ``backward_block`` in ``csrc/scan.c``): loads this step's
        output gradients (and ``x``), stores ``gx``, returns the updated ``gv, la, lb, lth, lc``."""
        gst = tl.load(gsp, mask=mask, other=0.0).to(tl.float32)
        ght = tl.zeros_like(hh)
        xt = tl.zeros_like(hh)
        if HAS_GH:
            ght = tl.load(ghp, mask=mask, other=0.0).to(tl.float32)
        if NEED_X:
            xt = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
        s = _fire(hh, vth, margin, CODE, LEVELS)
        dfdh, dfdth = _fire_grads(hh, vth, margin, alpha, CODE, LEVELS, SG)
        if RESET == 0:
            z = _fired(hh, s, vth, CODE)
            dvdh = 1.0 - z
            dvdth = tl.zeros_like(hh)
            if not DETACH:
                dzdh, dzdth = _fired_grads(hh, vth, alpha, CODE, SG)
                dvdh += (v_reset - hh) * dzdh
                dvdth = (v_reset - hh) * dzdth
        else:
            dvdh = tl.full(hh.shape, 1.0, tl.float32)
            dvdth = -s
            if not DETACH:
                dvdh -= vth * dfdh
                dvdth -= vth * dfdth
        g = gst * dfdh + gv * dvdh + ght
        lth += gst * dfdth + gv * dvdth
        la += g * vprev
        lb += g * xt
        lc += g
        tl.store(gxp, (b * g).to(gxp.dtype.element_ty), mask=mask)
        return a * g, la, lb, lth, lc

    @triton.jit(do_not_specialize=["T", "last"])
    def _scan_bwd_kernel(x_ptr, h_ptr, gs_ptr, gh_ptr, v0_ptr, gx_ptr, gv0_ptr, part_ptr, p_ptr, T, N, last,
                         v_reset, margin, alpha,
                         CODE: tl.constexpr, LEVELS: tl.constexpr, RESET: tl.constexpr, DETACH: tl.constexpr,
                         SG: tl.constexpr, HAS_V0: tl.constexpr, HAS_GH: tl.constexpr, NEED_X: tl.constexpr,
                         NEED_GV0: tl.constexpr, NEED_PARAMS: tl.constexpr, BLOCK: tl.constexpr):
        pid, offs, mask, a, b, _, vth = _lanes_and_params(p_ptr, N, BLOCK)
        zero = tl.zeros([BLOCK], dtype=tl.float32)
        gv, la, lb, lth, lc = zero, zero, zero, zero, zero
        # pointers at step T-1, moving back by N per step; ``last`` = (T - 1) * N, computed in 64 bits on the host
        hp, xp, gsp, ghp, gxp = (h_ptr + last + offs, x_ptr + last + offs, gs_ptr + last + offs,
                                 gh_ptr + last + offs, gx_ptr + last + offs)
        hh = tl.load(hp, mask=mask, other=0.0)
        for _ in range(T - 1):  # t = T-1 .. 1: v_{t-1} from h_{t-1}
            hp -= N
            hprev = tl.load(hp, mask=mask, other=0.0)
            if NEED_PARAMS:  # v_{t-1} enters only the gradient of a
                vprev = _reset(hprev, _fire(hprev, vth, margin, CODE, LEVELS), vth, v_reset, CODE, RESET)
            else:
                vprev = zero
            gv, la, lb, lth, lc = _bwd_step(hh, vprev, xp, gsp, ghp, gxp, mask, gv, la, lb, lth, lc, a, b, vth,
                                            v_reset, margin, alpha, CODE, LEVELS, RESET, DETACH, SG, HAS_GH, NEED_X)
            hh = hprev
            xp -= N
            gsp -= N
            ghp -= N
            gxp -= N
        # t = 0: v_{-1} is v0
        vprev = zero
        if HAS_V0:
            vprev = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gv, la, lb, lth, lc = _bwd_step(hh, vprev, xp, gsp, ghp, gxp, mask, gv, la, lb, lth, lc, a, b, vth, v_reset,
                                        margin, alpha, CODE, LEVELS, RESET, DETACH, SG, HAS_GH, NEED_X)
        if NEED_GV0:
            tl.store(gv0_ptr + offs, gv.to(gv0_ptr.dtype.element_ty), mask=mask)
        if NEED_PARAMS:
            tl.store(part_ptr + pid * 4, tl.sum(tl.where(mask, la, 0.0), axis=0))
            tl.store(part_ptr + pid * 4 + 1, tl.sum(tl.where(mask, lb, 0.0), axis=0))
            tl.store(part_ptr + pid * 4 + 2, tl.sum(tl.where(mask, lth, 0.0), axis=0))
            tl.store(part_ptr + pid * 4 + 3, tl.sum(tl.where(mask, lc, 0.0), axis=0))


def _on(device: torch.device):
    """Launch on ``device`` (Triton launches on the current CUDA device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _levels(spec: ScanSpec) -> int:
    return spec.levels if spec.code == "multibit" else 1  # no re-compile for a level count that is not used


def triton_scan_forward(x: Tensor, v0: Tensor | None, params: Tensor, spec: ScanSpec, save_h32: bool,
                        block: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` ``[T, ...]`` contiguous, ``params`` = fp32 ``[a, b, c, v_th]`` on ``x``'s device.

    Returns ``(s, h, h_for_backward)``: ``s``, ``h`` in ``x``'s dtype; the last is ``h`` itself for float32
    input, an fp32 copy when ``save_h32`` and the input is narrower, else ``None``.
    """
    T, N = x.shape[0], x[0].numel()
    s, h = torch.empty_like(x), torch.empty_like(x)
    h32 = torch.empty(x.shape, dtype=torch.float32, device=x.device) if save_h32 and x.dtype != torch.float32 else None
    if N == 0:
        return s, h, h if h32 is None else h32
    blk, warps = _block(N, x.device) if block is None else (block, 1)
    with _on(x.device):
        _scan_fwd_kernel[(triton.cdiv(N, blk),)](
            x, x if v0 is None else v0, s, h, h if h32 is None else h32, params, T, N, spec.v_reset, spec.margin,
            CODE=CODE_IDS[spec.code], LEVELS=_levels(spec), RESET=0 if spec.reset == "hard" else 1,
            HAS_V0=v0 is not None, SAVE_H32=h32 is not None, BLOCK=blk, num_warps=warps,
        )
    if x.dtype == torch.float32:
        return s, h, h
    return s, h, h32


def triton_scan_backward(x: Tensor | None, h32: Tensor, gs: Tensor, gh: Tensor | None, v0: Tensor | None,
                         params: Tensor, spec: ScanSpec, need_v0: bool, need_params: bool,
                         block: int | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Returns ``(gx, gv0, [ga, gb, gvth, gc] in float64 or None)``.

    ``x`` may be ``None`` when ``b`` needs no gradient (then ``gb`` is 0); ``h32`` is the fp32 membrane from
    :func:`triton_scan_forward`; ``gs``, ``gh`` are contiguous in the output dtype (``gh`` may be ``None``).
    """
    T, N = h32.shape[0], h32[0].numel()
    gx = torch.empty_like(gs)
    gv0 = torch.empty_like(v0) if need_v0 and v0 is not None else None
    if N == 0:
        return gx, gv0, h32.new_zeros(4, dtype=torch.float64) if need_params else None
    blk, warps = _block(N, h32.device) if block is None else (block, 1)
    nprog = triton.cdiv(N, blk)
    part = torch.empty((nprog, 4) if need_params else (1,), dtype=torch.float32, device=h32.device)
    with _on(h32.device):
        _scan_bwd_kernel[(nprog,)](
            h32 if x is None else x, h32, gs, gs if gh is None else gh, h32 if v0 is None else v0, gx,
            gx if gv0 is None else gv0, part, params, T, N, (T - 1) * N, spec.v_reset, spec.margin,
            spec.surrogate.alpha, CODE=CODE_IDS[spec.code], LEVELS=_levels(spec),
            RESET=0 if spec.reset == "hard" else 1, DETACH=bool(spec.detach_reset), SG=spec.surrogate.kernel_id,
            HAS_V0=v0 is not None, HAS_GH=gh is not None, NEED_X=x is not None, NEED_GV0=gv0 is not None,
            NEED_PARAMS=need_params, BLOCK=blk, num_warps=warps,
        )
    return gx, gv0, part.double().sum(0) if need_params else None
