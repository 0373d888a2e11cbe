"""Fused multi-step scan: forward and backward over all T without a per-step autograd graph.

Why a plain C file through ctypes rather than a torch C++ extension: it has no torch headers, so it
compiles in about a second with the system C compiler on first use (cached under
``$SPIKENERF_CACHE`` or ``~/.cache/spikenerf``), and there is no ABI coupling to the torch build.
Backends:

- ``c``: the C kernel (CPU, float32, OpenMP over lanes). Chosen by ``auto`` when it applies.
- ``triton``: the Triton kernels of :mod:`spikenerf.snn.triton_scan` (CUDA; float32, bfloat16, float16 with
  fp32 state; one launch per direction). Chosen by ``auto`` for CUDA tensors when ``triton`` imports.
  CPU tensors run it only under ``TRITON_INTERPRET=1`` (the tests).
- ``torch``: the same recurrence as a graph-free torch loop (any device and dtype; CUDA without triton,
  float64, surrogates outside ``surrogate.py``).
- ``reference``: the naive per-step autograd loop (ground truth; also the only path for
  per-channel thresholds and membrane transforms such as MPBN).

All backends return ``(spikes [T, ...], membrane h [T, ...])`` and agree to float tolerance.

Threads: every C kernel of the package runs on ``torch.get_num_threads()`` OpenMP threads (so
``torch.set_num_threads`` / ``OMP_NUM_THREADS`` set them), in torch's own libgomp (one OpenMP runtime per
process). Their wait policy (idle threads sleep rather than spin) is a process setting, made where a process
starts: :func:`spikenerf.snn.process.configure_process`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from .scan import CODE_IDS, ScanSpec, scan_reference, scan_torch_backward, scan_torch_forward
from .triton_scan import triton_scan_backward, triton_scan_forward, triton_supports

__all__ = ["multistep_scan", "ragged_scan", "segment_scan", "c_kernel_available", "load_c_kernel", "build_c_library", "CKernel",
           "c_kernels_disabled"]

_SRC = Path(__file__).with_name("csrc") / "scan.c"
# -fno-trapping-math: without it GCC will not if-convert a float compare (``h >= vth`` may raise FE_INVALID),
# so the fire / reset loops of the binary and {0,1,2} codes stay scalar (3-5x slower). No value changes:
# the kernels never read the FP exception flags, and -ffp-contract=off keeps every rounding the torch one.
_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared", "-fopenmp"]
# -march=native roughly doubles throughput (AVX2 lanes); the cache key includes the CPU model so a
# shared home directory never loads a binary built for another CPU. Retried without it on failure.
_NATIVE = ["-march=native"]


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    root = os.environ.get("SPIKENERF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spikenerf")
    return Path(root)


def build_c_library(src_path: Path, prefix: str) -> ctypes.CDLL:
    """Compile a plain C source (once, cached by source hash, flags and CPU) and load it.

    Shared by every C kernel of the package (this scan, ``spikenerf.nerf.grid``). Raises ``RuntimeError``
    when ``SPIKENERF_DISABLE_C=1``, when there is no compiler, or when compiling fails.
    """
    if c_kernels_disabled():
        raise RuntimeError("disabled by SPIKENERF_DISABLE_C=1")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc, or set CC)")
    src = Path(src_path).read_bytes()
    key = hashlib.sha256(src + " ".join(_FLAGS + _NATIVE).encode() + platform.machine().encode()
                         + _cpu_id().encode()).hexdigest()[:16]
    out = _cache_dir() / f"{prefix}_{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        # compile to a temp name then rename: atomic, so parallel workers never load half a file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        for extra in (_NATIVE, []):
            proc = subprocess.run([cc, *_FLAGS, *extra, str(src_path), "-o", tmp, "-lm"], capture_output=True,
                                  text=True)
            if proc.returncode == 0:
                break
        if proc.returncode != 0:
            os.unlink(tmp)
            raise RuntimeError(proc.stderr.strip()[-2000:])
        os.replace(tmp, out)
    try:
        return ctypes.CDLL(str(out))
    except OSError as err:
        raise RuntimeError(str(err)) from err


def c_kernels_disabled() -> bool:
    """``SPIKENERF_DISABLE_C=1``: every C kernel of the package stands aside for its torch fallback (the code
    a CUDA tensor takes). Read on each call, not once at import."""
    return os.environ.get("SPIKENERF_DISABLE_C", "") == "1"


class CKernel:
    """A C source compiled and loaded on first use; ``load()`` is ``None`` (after one warning) when it cannot be.

    Args:
        src: the ``.c`` file.
        prefix: name of the cached shared object.
        fallback: what runs instead (for the warning).
        declare: sets ``argtypes`` / ``restype`` of the loaded library's functions.
    """

    def __init__(self, src: Path, prefix: str, fallback: str, declare) -> None:
        self.src, self.prefix, self.fallback, self.declare = src, prefix, fallback, declare
        self.lib: ctypes.CDLL | None = None
        self.error: str | None = None

    def load(self) -> ctypes.CDLL | None:
        if c_kernels_disabled():  # read on every call, so a test can switch the C path off and on again
            return None
        if self.lib is not None or self.error is not None:
            return self.lib
        try:
            lib = build_c_library(self.src, self.prefix)
        except RuntimeError as err:
            self.error = str(err)
            if not self.error.startswith("disabled"):
                warnings.warn(f"spikenerf: C kernel {self.src.name} unavailable ({self.error}); using "
                              f"{self.fallback}", stacklevel=3)
            return None
        self.declare(lib)
        self.lib = lib
        return lib


def _declare_scan(lib: ctypes.CDLL) -> None:
    p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.snn_scan_forward.argtypes = [p, p, p, p, i64, i64, f32, f32, f32, f32, f32, f32, i32, i32, i32, i32]
    lib.snn_scan_forward.restype = i32
    lib.snn_scan_backward.argtypes = [p, p, p, p, p, p, p, p, i64, i64, f32, f32, f32, f32, f32, f32, i32, i32, i32,
                                      i32, i32, f32, i32]
    lib.snn_scan_backward.restype = i32
    lib.snn_scan_ragged_forward.argtypes = [p, p, p, p, i64, i64, i32, f32, f32, f32, f32, f32, f32, i32, i32, i32,
                                            i32]
    lib.snn_scan_ragged_forward.restype = i32
    lib.snn_scan_segments_forward.argtypes = [p, p, p, p, i64, i64, i32, f32, f32, f32, f32, f32, f32, i32, i32, i32,
                                              i32]
    lib.snn_scan_segments_forward.restype = i32
    lib.snn_scan_segments_backward.argtypes = [p, p, p, p, p, p, p, i64, i64, i32, f32, f32, f32, f32, f32, i32, i32,
                                               i32, i32, i32, f32, i32]
    lib.snn_scan_segments_backward.restype = i32


_SCAN = CKernel(_SRC, "scan", "the torch backend", _declare_scan)


def load_c_kernel() -> ctypes.CDLL | None:
    """Compile (once, cached by source hash) and load the C scan kernel; ``None`` if no compiler."""
    return _SCAN.load()


def c_kernel_available() -> bool:
    return load_c_kernel() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _c_forward(x: Tensor, v0: Tensor | None, a: float, b: float, c: float, vth: float, spec: ScanSpec):
    lib = load_c_kernel()
    assert lib is not None
    T = x.shape[0]
    N = x[0].numel()
    s, h = torch.empty_like(x), torch.empty_like(x)
    rc = lib.snn_scan_forward(
        _ptr(x), _ptr(v0), _ptr(s), _ptr(h), T, N, a, b, c, vth, spec.v_reset, spec.margin, spec.levels,
        CODE_IDS[spec.code], 0 if spec.reset == "hard" else 1, torch.get_num_threads(),
    )
    if rc != 0:
        raise RuntimeError(f"snn_scan_forward failed with code {rc}")
    return s, h


def _c_backward(x, h, gs, gh, v0, a, b, c, vth, spec: ScanSpec, need_v0: bool):
    lib = load_c_kernel()
    assert lib is not None
    T, N = x.shape[0], x[0].numel()
    gx = torch.empty_like(x)
    gv0 = torch.empty_like(x[0]) if need_v0 else None
    gparams = torch.zeros(4, dtype=torch.float64)
    rc = lib.snn_scan_backward(
        _ptr(x), _ptr(h), _ptr(gs), _ptr(gh), _ptr(v0), _ptr(gx), _ptr(gv0), _ptr(gparams), T, N, a, b, c, vth,
        spec.v_reset, spec.margin, spec.levels, CODE_IDS[spec.code], 0 if spec.reset == "hard" else 1,
        int(spec.detach_reset), spec.surrogate.kernel_id, spec.surrogate.alpha, torch.get_num_threads(),
    )
    if rc != 0:
        raise RuntimeError(f"snn_scan_backward failed with code {rc}")
    return gx, gv0, gparams[0], gparams[1], gparams[2], gparams[3]


def _fused_kernel_ok(spec: ScanSpec) -> bool:
    """The C and Triton kernels know the surrogates of ``surrogate.py`` by ``kernel_id`` (0..5)."""
    return 0 <= spec.surrogate.kernel_id <= 5


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, a, b, vth, c, spec: ScanSpec, backend: str):  # type: ignore[override]
        x = x.contiguous()
        v0c = None if v0 is None else v0.contiguous()
        ctx.spec, ctx.backend = spec, backend
        ctx.has_v0 = v0 is not None
        ctx.param_dtypes = tuple(p.dtype for p in (a, b, vth, c))
        ctx.out_dtype = x.dtype
        if backend == "triton":
            # a, b, c, vth stay on the device: no host-device sync, even for a learnable threshold
            params = torch.stack([p.detach().reshape(()).to(device=x.device, dtype=torch.float32)
                                  for p in (a, b, c, vth)])
            s, h, h_bwd = triton_scan_forward(x, v0c, params, spec, save_h32=any(ctx.needs_input_grad))
            # x is needed only for the gradient of b
            ctx.save_for_backward(x if ctx.needs_input_grad[3] else None, h_bwd, v0c, params)
            return s, h
        af, bf, tf, c = (float(p.detach()) for p in (a, b, vth, c))
        if backend == "c":
            s, h = _c_forward(x, v0c, af, bf, c, tf, spec)
        else:
            s, h = scan_torch_forward(x, v0c, af, bf, c, tf, spec)
        ctx.save_for_backward(x, h, v0c)
        ctx.params = (af, bf, c, tf)
        return s, h

    @staticmethod
    def backward(ctx, gs, gh):  # type: ignore[override]
        need_v0 = ctx.has_v0 and ctx.needs_input_grad[1]
        need_params = any(ctx.needs_input_grad[2:6])
        if ctx.backend == "triton":
            x, h, v0, params = ctx.saved_tensors
            gs = torch.zeros_like(h, dtype=ctx.out_dtype) if gs is None else gs.contiguous()
            gh = None if gh is None else gh.contiguous()
            gx, gv0, gp = triton_scan_backward(x, h, gs, gh, v0, params, ctx.spec, need_v0, need_params)
            ga, gb, gth, gc = (None, None, None, None) if gp is None else gp.unbind()
        else:
            x, h, v0 = ctx.saved_tensors
            af, bf, c, tf = ctx.params
            gs = torch.zeros_like(x) if gs is None else gs.contiguous()
            gh = None if gh is None else gh.contiguous()
            if ctx.backend == "c":
                gx, gv0, ga, gb, gth, gc = _c_backward(x, h, gs, gh, v0, af, bf, c, tf, ctx.spec, need_v0)
            else:
                gx, gv0, ga, gb, gth, gc = scan_torch_backward(x, h, gs, gh, v0, af, bf, c, tf, ctx.spec)
        dta, dtb, dtt, dtc = ctx.param_dtypes
        return (
            gx,
            gv0 if need_v0 else None,
            ga.to(dta) if ctx.needs_input_grad[2] else None,
            gb.to(dtb) if ctx.needs_input_grad[3] else None,
            gth.to(dtt) if ctx.needs_input_grad[4] else None,
            gc.to(dtc) if ctx.needs_input_grad[5] else None,
            None,
            None,
        )


def _as_tensor(v: Tensor | float, like: Tensor) -> Tensor:
    # torch.full, not torch.tensor: on CUDA a fill kernel, not a host-to-device copy (which would sync)
    return v if isinstance(v, Tensor) else torch.full((), float(v), dtype=like.dtype, device=like.device)


def _is_scalar(v: Tensor | float) -> bool:
    return not isinstance(v, Tensor) or v.numel() == 1


def _auto_backend(x: Tensor, spec: ScanSpec, scalar: bool) -> str:
    if not scalar:
        return "reference"
    if not _fused_kernel_ok(spec):
        return "torch"
    if x.device.type == "cuda" and triton_supports(x) is None:
        return "triton"
    if x.device.type == "cpu" and x.dtype == torch.float32 and c_kernel_available():
        return "c"
    return "torch"


def multistep_scan(
    x_seq: Tensor,
    spec: ScanSpec,
    a: Tensor | float = 1.0,
    b: Tensor | float = 1.0,
    c: Tensor | float = 0.0,
    vth: Tensor | float = 1.0,
    v0: Tensor | None = None,
    backend: str = "auto",
    membrane_transform=None,
) -> tuple[Tensor, Tensor]:
    """Run the neuron recurrence over ``x_seq`` ``[T, ...]``; returns ``(spikes, membrane h)``, both ``[T, ...]``.

    ``a``, ``b``, ``c``, ``vth`` may be learnable 0-d tensors (gradients are returned for them); ``v0`` is the
    initial membrane ``[...]`` (zeros if ``None``). ``backend``: ``auto`` | ``c`` | ``triton`` | ``torch`` |
    ``reference``. ``auto`` takes ``triton`` for CUDA tensors (float32, bfloat16, float16; when triton
    imports), ``c`` for float32 CPU tensors, else ``torch``; per-channel parameters and a
    ``membrane_transform`` run on ``reference`` (the fused kernels take scalar parameters).

    >>> import torch
    >>> from spikenerf.snn import ScanSpec, multistep_scan
    >>> s, h = multistep_scan(torch.randn(4, 2, 3), ScanSpec(), a=0.5, b=0.5, c=0.0, vth=1.0)
    >>> s.shape, h.shape
    (torch.Size([4, 2, 3]), torch.Size([4, 2, 3]))
    >>> bool(((s == 0) | (s == 1)).all()), h.dtype
    (True, torch.float32)
    """
    if x_seq.dim() < 1 or x_seq.shape[0] == 0:
        raise ValueError(f"x_seq must be [T, ...] with T >= 1, got shape {tuple(x_seq.shape)}")
    if v0 is not None and v0.shape != x_seq.shape[1:]:
        raise ValueError(f"v0 shape {tuple(v0.shape)} must equal one step {tuple(x_seq.shape[1:])}")
    scalar = all(_is_scalar(p) for p in (a, b, c, vth)) and membrane_transform is None
    if backend == "auto":
        backend = _auto_backend(x_seq, spec, scalar)
    if backend == "reference":
        return scan_reference(x_seq, v0, a, b, c, vth, spec, membrane_transform)
    if not scalar:
        raise ValueError("the fused backends need scalar a, b, c, vth and no membrane_transform; use backend='reference'")
    if backend in ("c", "triton") and not _fused_kernel_ok(spec):
        raise ValueError(f"backend {backend!r} knows the surrogates of spikenerf.snn.surrogate only "
                         f"(kernel_id 0..5); {spec.surrogate!r} has {spec.surrogate.kernel_id}: use backend='torch'")
    if backend == "c":
        if x_seq.device.type != "cpu" or x_seq.dtype != torch.float32:
            raise ValueError("backend 'c' needs a float32 CPU tensor")
        if not c_kernel_available():
            raise RuntimeError("backend 'c' requested but the C kernel could not be built")
    elif backend == "triton":
        why = triton_supports(x_seq)
        if why is not None:
            raise ValueError(f"backend 'triton': {why}")
    elif backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; choose auto, c, triton, torch or reference")
    at, bt, tt, ct = (_as_tensor(v, x_seq).reshape(()) for v in (a, b, vth, c))
    return _FusedScan.apply(x_seq, v0, at, bt, tt, ct, spec, backend)


def _rows_backend(name: str, xv: Tensor, starts: Tensor, spec: ScanSpec, params, backend: str,
                  surrogate: bool) -> str:
    """Checks shared by the row-by-row scans; returns the backend, ``c`` or ``torch``. ``surrogate``: the
    backward needs the surrogate in the C kernel (a ``kernel_id``)."""
    if xv.dim() != 2 or starts.dim() != 1 or starts.numel() < 1:
        raise ValueError(f"{name}: need xv [N, C] and starts [B + 1], got {tuple(xv.shape)}, {tuple(starts.shape)}")
    if not all(_is_scalar(p) for p in params):
        raise ValueError(f"{name} needs scalar a, b, c, vth")
    fits = xv.device.type == "cpu" and xv.dtype == torch.float32 and (not surrogate or _fused_kernel_ok(spec))
    if backend == "auto":
        return "c" if fits and c_kernel_available() else "torch"
    if backend == "c":
        if not fits:
            raise ValueError("backend 'c' needs a float32 CPU tensor (and for gradients a surrogate of "
                             f"spikenerf.snn.surrogate); got {xv.device.type} {xv.dtype}, {spec.surrogate!r}")
        if not c_kernel_available():
            raise RuntimeError("backend 'c' requested but the C kernel could not be built")
        return "c"
    if backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; choose auto, c or torch")
    return "torch"


def _dense_of_rows(xv: Tensor, starts: Tensor, steps: Tensor) -> tuple[Tensor, Tensor]:
    """The torch fallback of the row scans: rows ``[N, C]`` -> the dense ``[T, B, C]`` layout (zeros where no
    row is; differentiable w.r.t. ``xv``) and each row's sequence ``[N]``."""
    B = starts.numel() - 1
    seq = torch.repeat_interleave(torch.arange(B, device=xv.device), starts.diff())
    dense = xv.new_zeros(int(steps.max()) + 1, B, xv.shape[1]).index_put((steps, seq), xv)
    return dense, seq


def ragged_scan(
    xv: Tensor,
    starts: Tensor,
    steps: Tensor,
    spec: ScanSpec,
    a: Tensor | float = 1.0,
    b: Tensor | float = 1.0,
    c: Tensor | float = 0.0,
    vth: Tensor | float = 1.0,
    reverse: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Inference-time scan of ragged sequences stored row by row; returns the spikes ``[N, C]``.

    Row ``n`` of ``xv`` ``[N, C]`` is step ``steps[n]`` of its sequence; sequence ``q`` owns the rows
    ``starts[q] .. starts[q + 1] - 1`` (``starts`` ``[B + 1]``, int64), with ``steps`` increasing along them
    (decreasing with ``reverse=True``, which runs the rows last to first). Missing steps are zero inputs, so
    the result equals :func:`multistep_scan` on the dense ``[T, B, C]`` layout (zeros at the missing steps),
    read back at the rows, without building that layout or copying the rows in and out of it. Starts from
    rest (``v0 = 0``). Forward only: ``xv`` must not need a gradient (training runs :func:`segment_scan` on
    sequences without holes, :func:`multistep_scan` on a dense layout otherwise).
    ``backend``: ``auto`` (the C kernel for float32 CPU tensors, else ``torch``), ``c`` or ``torch`` (the
    dense layout through the graph-free torch loop).
    """
    if torch.is_grad_enabled() and xv.requires_grad:
        raise ValueError("ragged_scan is forward only; run multistep_scan on a dense layout to train")
    if steps.shape != (xv.shape[0],):
        raise ValueError(f"need steps [N] = [{xv.shape[0]}], got {tuple(steps.shape)}")
    backend = _rows_backend("ragged_scan", xv, starts, spec, (a, b, c, vth), backend, surrogate=False)
    af, bf, cf, tf = (float(p.detach()) if isinstance(p, Tensor) else float(p) for p in (a, b, c, vth))
    B = starts.numel() - 1
    if backend == "c":
        lib = load_c_kernel()
        assert lib is not None
        x = xv.contiguous()
        st = starts.to(torch.int64).contiguous()
        tt = steps.to(torch.int64).contiguous()
        s = torch.empty_like(x)
        if x.numel():
            rc = lib.snn_scan_ragged_forward(
                _ptr(x), _ptr(s), _ptr(st), _ptr(tt), B, x.shape[1], int(bool(reverse)), af, bf, cf, tf,
                spec.v_reset, spec.margin, spec.levels, CODE_IDS[spec.code], 0 if spec.reset == "hard" else 1,
                torch.get_num_threads(),
            )
            if rc != 0:
                raise RuntimeError(f"snn_scan_ragged_forward failed with code {rc}")
        return s
    if xv.shape[0] == 0:
        return xv.new_zeros(xv.shape)
    dense, seq = _dense_of_rows(xv, starts, steps)
    s, _ = scan_torch_forward(dense, None, af, bf, cf, tf, spec)
    return s[steps, seq]


class _SegmentScan(torch.autograd.Function):
    """The C kernels on segments (:func:`segment_scan`); values and gradients as the dense scan's."""

    @staticmethod
    def forward(ctx, xv, starts, a, b, vth, c, spec: ScanSpec, reverse: bool):  # type: ignore[override]
        lib = load_c_kernel()
        assert lib is not None
        x = xv.contiguous()
        st = starts.to(torch.int64).contiguous()
        af, bf, tf, cf = (float(p.detach()) for p in (a, b, vth, c))
        s, h = torch.empty_like(x), torch.empty_like(x)
        B, C = st.numel() - 1, x.shape[1]
        if x.numel():
            rc = lib.snn_scan_segments_forward(
                _ptr(x), _ptr(s), _ptr(h), _ptr(st), B, C, int(reverse), af, bf, cf, tf, spec.v_reset, spec.margin,
                spec.levels, CODE_IDS[spec.code], 0 if spec.reset == "hard" else 1, torch.get_num_threads())
            if rc != 0:
                raise RuntimeError(f"snn_scan_segments_forward failed with code {rc}")
        ctx.save_for_backward(x, h, st)
        ctx.spec, ctx.reverse, ctx.params = spec, bool(reverse), (af, bf, cf, tf)
        ctx.param_dtypes = tuple(p.dtype for p in (a, b, vth, c))
        return s

    @staticmethod
    def backward(ctx, gs):  # type: ignore[override]
        x, h, st = ctx.saved_tensors
        af, bf, cf, tf = ctx.params
        spec = ctx.spec
        lib = load_c_kernel()
        gs = gs.contiguous()
        gx = torch.empty_like(x)
        B, C = st.numel() - 1, x.shape[1]
        gparams = torch.zeros(4, dtype=torch.float64)
        work = torch.empty(4 * B * ((C + 1023) // 1024), dtype=torch.float64)  # BLK = 1024 lanes per item
        if x.numel():
            rc = lib.snn_scan_segments_backward(  # type: ignore[union-attr]
                _ptr(x), _ptr(h), _ptr(gs), _ptr(gx), _ptr(gparams), _ptr(work), _ptr(st), B, C, int(ctx.reverse),
                af, bf, tf, spec.v_reset, spec.margin, spec.levels, CODE_IDS[spec.code],
                0 if spec.reset == "hard" else 1, int(spec.detach_reset), spec.surrogate.kernel_id,
                spec.surrogate.alpha, torch.get_num_threads())
            if rc != 0:
                raise RuntimeError(f"snn_scan_segments_backward failed with code {rc}")
        else:
            gx.zero_()
        dta, dtb, dtt, dtc = ctx.param_dtypes
        g = ctx.needs_input_grad
        return (gx, None, gparams[0].to(dta) if g[2] else None, gparams[1].to(dtb) if g[3] else None,
                gparams[2].to(dtt) if g[4] else None, gparams[3].to(dtc) if g[5] else None, None, None)


def segment_scan(
    xv: Tensor,
    starts: Tensor,
    spec: ScanSpec,
    a: Tensor | float = 1.0,
    b: Tensor | float = 1.0,
    c: Tensor | float = 0.0,
    vth: Tensor | float = 1.0,
    reverse: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Scan of sequences without holes stored row by row, with gradients; returns the spikes ``[N, C]``.

    Sequence ``q`` is the rows ``starts[q] .. starts[q + 1] - 1`` of ``xv`` ``[N, C]``, one time step per row
    in order (``reverse=True``: the last row is step 0). Equals :func:`multistep_scan` on the dense
    ``[T, B, C]`` layout (zero-padded after each sequence's end) read back at the rows, in values and in the
    gradients of ``xv``, ``a``, ``b``, ``c``, ``vth``, without building that layout. Starts from rest. ``backend``:
    ``auto`` (the C kernels for float32 CPU tensors with a surrogate of ``surrogate.py``, else ``torch``), ``c``, or
    ``torch`` (the dense layout through :func:`multistep_scan`).
    """
    if _rows_backend("segment_scan", xv, starts, spec, (a, b, c, vth), backend, surrogate=True) == "c":
        at, bt, tt, ct = (_as_tensor(v, xv).reshape(()) for v in (a, b, vth, c))
        return _SegmentScan.apply(xv, starts, at, bt, tt, ct, spec, bool(reverse))
    lens = starts.diff()
    if xv.shape[0] == 0:
        return xv * 0
    t = torch.arange(xv.shape[0], device=xv.device) - starts[:-1].repeat_interleave(lens)  # row within its sequence
    if reverse:
        t = lens.repeat_interleave(lens) - 1 - t
    dense, seq = _dense_of_rows(xv, starts, t)
    s, _ = multistep_scan(dense, spec, a=a, b=b, c=c, vth=vth, backend="torch")
    return s[t, seq]
