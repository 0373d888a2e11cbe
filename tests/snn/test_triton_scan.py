"""The Triton scan (``spikenerf.snn.triton_scan``) against the per-step autograd reference, without a GPU.

``TRITON_INTERPRET=1`` runs Triton kernels on CPU tensors, but Triton reads it when a kernel is decorated,
i.e. when ``spikenerf.snn`` is first imported, which in a pytest session has long happened by the time this
module is collected. So the interpreted checks run in one subprocess: this file run as a script, with
``TRITON_INTERPRET=1``, executes every case and prints one JSON line of results; the parametrized test
below reports each case. On a machine with CUDA the same cases also run in-process on the GPU.

Cases (tiny T and lane counts, so the interpreter stays fast): every spike code x hard / soft reset x
detach flag x surrogate in float32, with ``v0``, a membrane gradient and learnable ``a, b, c, v_th``;
bfloat16 and float16 inputs (fp32 state); no ``v0`` / no membrane gradient / plain-float parameters;
LTMD's ``tanh(w)`` threshold on a PLIF neuron; and several programs with a ragged tail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

from spikenerf.snn import PLIFNode, ScanSpec, get_surrogate, multistep_scan
from spikenerf.snn.surrogate import _REGISTRY
from spikenerf.snn.triton_scan import triton_interpreting, triton_scan_backward, triton_scan_forward

HAS_TRITON = importlib.util.find_spec("triton") is not None
NO_TRITON = "triton is not importable here (it ships with torch's CUDA wheels on Linux x86_64)"
CODES = ["binary", "ternary", "ternary012", "multibit"]
RESETS = [("hard", False), ("hard", True), ("soft", False), ("soft", True)]
SURROGATES = sorted(_REGISTRY)
PARAMS = (0.7, 0.8, 0.05, 0.45)  # a, b, c, v_th
MARK = "TRITON-SCAN-RESULTS "
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _spec(code: str, reset: str, detach: bool, surrogate: str) -> ScanSpec:
    return ScanSpec(code=code, reset=reset, v_reset=-0.1 if reset == "hard" else 0.0, detach_reset=detach,
                    surrogate=get_surrogate(surrogate), margin=0.6, levels=3)


def _data(key: str, T: int, n: int, dtype: torch.dtype):
    """Inputs exactly representable in ``dtype`` (so the fp32 reference sees the same numbers)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    x = (torch.randn(T, 3, n, generator=g) * 1.5).to(dtype)
    v0 = torch.rand(3, n, generator=g) * 0.5
    gs = torch.randn(T, 3, n, generator=g).to(dtype)
    gh = (torch.randn(T, 3, n, generator=g) * 0.1).to(dtype)
    return x, v0, gs, gh


def _grads(backend, spec, x, v0, gs, gh, params, device, learnable=True):
    """Spikes, membrane and the gradients of (x, v0, a, b, c, vth); ``None`` entries are not differentiated.

    ``learnable``: the parameters are 0-d tensors that require a gradient, else plain floats."""
    leaves = [None if t is None else t.to(device).requires_grad_(True) for t in (x, v0)]
    ps = [torch.tensor(p, device=device, requires_grad=True) if learnable else p for p in params]
    s, h = multistep_scan(leaves[0], spec, a=ps[0], b=ps[1], c=ps[2], vth=ps[3], v0=leaves[1], backend=backend)
    loss = (s * gs.to(device)).sum() + (0.0 if gh is None else (h * gh.to(device)).sum())
    loss.backward()
    grads = [t.grad if isinstance(t, torch.Tensor) else None for t in (*leaves, *ps)]
    return s.detach(), h.detach(), grads


def _compare(out, ref, dtype: torch.dtype) -> None:
    tol = TOL[dtype]
    assert out[0].dtype == dtype and out[1].dtype == dtype, (out[0].dtype, out[1].dtype)
    torch.testing.assert_close(out[0].float().cpu(), ref[0], atol=0, rtol=0)  # spikes are exact
    torch.testing.assert_close(out[1].float().cpu(), ref[1], atol=tol, rtol=tol)
    for name, go, gr in zip(["x", "v0", "a", "b", "c", "vth"], out[2], ref[2]):
        assert (go is None) == (gr is None), name
        if go is not None:
            # parameter gradients are fp32 sums whatever the input dtype
            t = tol if name in ("x", "v0") else max(1e-5, tol / 10)
            torch.testing.assert_close(go.float().cpu(), gr, atol=t, rtol=t, msg=lambda m, k=name: f"grad {k}: {m}")


def check_grid(device: str, code: str, reset: str, detach: bool, surrogate: str, dtype: torch.dtype) -> None:
    spec = _spec(code, reset, detach, surrogate)
    x, v0, gs, gh = _data(f"{code}-{reset}-{detach}-{surrogate}-{dtype}", 4, 7, dtype)
    ref = _grads("reference", spec, x.float(), v0, gs.float(), gh.float(), PARAMS, "cpu")
    _compare(_grads("triton", spec, x, v0, gs, gh, PARAMS, device), ref, dtype)


def check_plain(device: str) -> None:
    """No ``v0``, no membrane gradient, plain-float parameters: only the gradient of x is computed."""
    spec = _spec("ternary", "soft", False, "atan")
    x, _, gs, _ = _data("plain", 5, 9, torch.float32)
    ref = _grads("reference", spec, x, None, gs, None, (0.6, 1.0, 0.0, 0.5), "cpu", learnable=False)
    _compare(_grads("triton", spec, x, None, gs, None, (0.6, 1.0, 0.0, 0.5), device, learnable=False), ref,
             torch.float32)


def check_ltmd(device: str) -> None:
    """LTMD ``tanh(w)`` threshold on a PLIF neuron (learnable decay): gradients of w, the threshold and x."""
    x, v0, gs, _ = _data("ltmd", 6, 5, torch.float32)
    grads = {}
    for backend in ("triton", "reference"):
        dev = device if backend == "triton" else "cpu"
        node = PLIFNode(init_tau=2.5, threshold_mode="tanh", v_threshold=0.4, v_reset=0.1, backend=backend).to(dev)
        xi = x.to(dev).requires_grad_(True)
        s = node(xi, v0=v0.to(dev))
        (s * gs.to(dev)).sum().backward()
        grads[backend] = [s.detach().cpu(), xi.grad.cpu(), node.w.grad.cpu(), node.threshold_w.grad.cpu()]
    torch.testing.assert_close(grads["triton"][0], grads["reference"][0], atol=0, rtol=0)
    for go, gr in zip(grads["triton"][1:], grads["reference"][1:]):
        torch.testing.assert_close(go, gr, atol=1e-5, rtol=1e-5)


def check_blocks(device: str) -> None:
    """Several programs of 16 lanes and a ragged tail (37 lanes), kernels called directly."""
    spec = _spec("ternary012", "hard", False, "multigaussian")
    x, v0, gs, gh = _data("blocks", 4, 37, torch.float32)
    x, v0, gs, gh = (t[..., 0, :].contiguous() for t in (x, v0, gs, gh))  # [T, 37] and [37]
    ref = _grads("reference", spec, x, v0, gs, gh, PARAMS, "cpu")
    params = torch.tensor([PARAMS[0], PARAMS[1], PARAMS[2], PARAMS[3]], device=device)
    xd, v0d = x.to(device), v0.to(device)
    s, h, h32 = triton_scan_forward(xd, v0d, params, spec, save_h32=True, block=16)
    gx, gv0, gp = triton_scan_backward(xd, h32, gs.to(device), gh.to(device), v0d, params, spec, True, True, block=16)
    ga, gb, gth, gc = gp.float().unbind()
    _compare((s, h, [gx, gv0, ga, gb, gc, gth]), ref, torch.float32)


def check_empty(device: str) -> None:
    """No lanes at all (``[T, 0]``): empty outputs and zero parameter gradients, no launch."""
    spec = _spec("binary", "hard", False, "atan")
    x, v0, gs, gh = (t[..., :0] for t in _data("empty", 3, 1, torch.float32))
    _compare(_grads("triton", spec, x, v0, gs, gh, PARAMS, device),
             _grads("reference", spec, x, v0, gs, gh, PARAMS, "cpu"), torch.float32)


CHECKS = {
    **{f"{code}-{reset}-{'detach' if det else 'keep'}-{sg}-float32":
       (check_grid, (code, reset, det, sg, torch.float32))
       for code in CODES for reset, det in RESETS for sg in SURROGATES},
    **{f"{code}-{reset}-keep-atan-bfloat16": (check_grid, (code, reset, False, "atan", torch.bfloat16))
       for code in CODES for reset in ("hard", "soft")},
    "binary-soft-detach-sigmoid-float16": (check_grid, ("binary", "soft", True, "sigmoid", torch.float16)),
    "plain": (check_plain, ()),
    "ltmd-plif": (check_ltmd, ()),
    "blocks-tail": (check_blocks, ()),
    "empty": (check_empty, ()),
}


def run_all(device: str) -> dict[str, str]:
    """Every case on ``device``: ``{name: "ok" or the error}``."""
    results = {}
    for name, (fn, args) in CHECKS.items():
        try:
            fn(device, *args)
            results[name] = "ok"
        except Exception as err:  # noqa: BLE001 - reported per case by the parent test
            results[name] = f"{type(err).__name__}: {err}"[:3000]
    return results


@pytest.fixture(scope="module")
def interpreted() -> dict[str, str]:
    if not HAS_TRITON:
        pytest.skip(NO_TRITON)
    if triton_interpreting():  # this process already interprets: no subprocess needed
        return run_all("cpu")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve())], env=env, cwd=root, capture_output=True,
                          text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"interpreter subprocess failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


@pytest.mark.parametrize("case", list(CHECKS))
def test_triton_interpreted_matches_reference(interpreted, case):
    assert interpreted[case] == "ok", interpreted[case]


@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs a CUDA GPU and triton")
def test_triton_on_cuda_matches_reference():
    from spikenerf.snn.fused import _auto_backend

    assert _auto_backend(torch.zeros(2, 3, device="cuda"), ScanSpec(), True) == "triton"
    bad = {k: v for k, v in run_all("cuda").items() if v != "ok"}
    assert not bad, bad


def _signature(kernel, pointers: dict[str, str], scalars: dict[str, str]) -> dict[str, str]:
    return {name: pointers.get(name) or scalars.get(name) or "constexpr" for name in kernel.arg_names}


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
def test_kernels_compile_for_a_gpu_target():
    """What the interpreter cannot show: the kernels go through Triton's GPU compiler (to sm_90 PTX and
    cubin; no GPU needed) for every code and reset, every surrogate, float32 / bfloat16 / float16."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from spikenerf.snn import triton_scan as ts

    if triton_interpreting():
        pytest.skip("this process interprets: the kernels are not compiled")
    target = GPUTarget("cuda", 90, 32)
    scalars = {"T": "i32", "N": "i32", "last": "i64", "v_reset": "fp32", "margin": "fp32", "alpha": "fp32"}

    def build(kernel, dt: str, wide: tuple[str, ...], **const) -> None:
        ptrs = {name: f"*{dt}" if name.split("_")[0] in wide else "*fp32" for name in kernel.arg_names
                if name.endswith("_ptr")}
        sig = _signature(kernel, ptrs, scalars)
        const = {"LEVELS": 3 if const["CODE"] == 3 else 1, "BLOCK": 128, **const}
        triton.compile(ASTSource(kernel, sig, const), target=target, options={"num_warps": 1})

    fwd_io, bwd_io = ("x", "s", "h"), ("x", "gs", "gh", "gx")
    for code, reset in [(c, r) for c in range(4) for r in range(2)]:
        dt = ("fp32", "bf16", "fp16")[(code + reset) % 3]
        build(ts._scan_fwd_kernel, dt, fwd_io, CODE=code, RESET=reset, HAS_V0=True, SAVE_H32=dt != "fp32")
        build(ts._scan_bwd_kernel, dt, bwd_io, CODE=code, RESET=reset, DETACH=bool(code % 2), SG=(code + 2 * reset) % 6,
              HAS_V0=True, HAS_GH=True, NEED_X=True, NEED_GV0=True, NEED_PARAMS=True)
    # (code + 2 reset) % 6 reached every surrogate; now the minimal flags: no v0, membrane or parameter gradient
    build(ts._scan_fwd_kernel, "bf16", fwd_io, CODE=0, RESET=0, HAS_V0=False, SAVE_H32=False)
    build(ts._scan_bwd_kernel, "fp32", bwd_io, CODE=0, RESET=0, DETACH=False, SG=1, HAS_V0=False, HAS_GH=False,
          NEED_X=False, NEED_GV0=False, NEED_PARAMS=False)


def test_triton_backend_on_cpu_needs_the_interpreter():
    """Without TRITON_INTERPRET a CPU tensor is refused with the reason; ``auto`` never picks Triton on CPU."""
    from spikenerf.snn.fused import _auto_backend

    assert _auto_backend(torch.zeros(2, 3), ScanSpec(), True) in ("c", "torch")
    if triton_interpreting():
        pytest.skip("this process runs the interpreter, which accepts CPU tensors")
    with pytest.raises(ValueError, match="TRITON_INTERPRET" if HAS_TRITON else "not importable"):
        multistep_scan(torch.zeros(2, 3), ScanSpec(), backend="triton")
    with pytest.raises(ValueError, match="float32, bfloat16 or float16" if HAS_TRITON else "not importable"):
        multistep_scan(torch.zeros(2, 3, dtype=torch.float64), ScanSpec(), backend="triton")


if __name__ == "__main__":  # the interpreter worker (see the module docstring)
    print(MARK + json.dumps(run_all("cuda" if torch.cuda.is_available() and not triton_interpreting() else "cpu")))
