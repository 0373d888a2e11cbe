"""The fused scan (C kernel and graph-free torch loop) against the naive per-step autograd reference.

The Triton kernels have their own file, ``test_triton_scan.py`` (they run in Triton's interpreter there).
"""

from __future__ import annotations

import ast
import itertools
import zlib
from pathlib import Path

import pytest
import torch

from spikenerf.snn import ScanSpec, Surrogate, c_kernel_available, get_surrogate, multistep_scan, ragged_scan, segment_scan
from spikenerf.snn import scan as scan_module
from spikenerf.snn.surrogate import _REGISTRY

CODES = ["binary", "ternary", "ternary012", "multibit"]
SURROGATES = sorted(_REGISTRY)
BACKENDS = ["torch"] + (["c"] if c_kernel_available() else [])


def _run(backend, spec, x, v0, a, b, c, vth, gs, gh):
    x = x.clone().requires_grad_(True)
    v0 = v0.clone().requires_grad_(True)
    a, b, c, vth = (torch.tensor(p, requires_grad=True) for p in (a, b, c, vth))
    s, h = multistep_scan(x, spec, a=a, b=b, c=c, vth=vth, v0=v0, backend=backend)
    ((s * gs).sum() + (h * gh).sum()).backward()
    return s.detach(), h.detach(), [t.grad for t in (x, v0, a, b, c, vth)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("reset,detach", [("hard", False), ("hard", True), ("soft", False), ("soft", True)])
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_fused_matches_reference(backend, code, reset, detach, surrogate):
    # crc32, not hash(): str hashes change per process (PYTHONHASHSEED), which made the data differ per run
    g = torch.Generator().manual_seed(zlib.crc32(f"{code}-{reset}-{detach}-{surrogate}".encode()))
    T, shape = 7, (3, 37)  # 111 lanes: not a multiple of the kernel's block, exercises the tail
    x = torch.randn(T, *shape, generator=g) * 1.5
    v0 = torch.rand(*shape, generator=g) * 0.5
    gs, gh = torch.randn(T, *shape, generator=g), torch.randn(T, *shape, generator=g) * 0.1
    spec = ScanSpec(code=code, reset=reset, v_reset=-0.1 if reset == "hard" else 0.0, detach_reset=detach,
                    surrogate=get_surrogate(surrogate), margin=0.6, levels=3)
    params = (0.7, 0.8, 0.05, 0.45)
    ref = _run("reference", spec, x, v0, *params, gs, gh)
    out = _run(backend, spec, x, v0, *params, gs, gh)
    torch.testing.assert_close(out[0], ref[0], atol=0, rtol=0)  # spikes are exact
    torch.testing.assert_close(out[1], ref[1], atol=1e-5, rtol=1e-5)
    for name, go, gr in zip(["x", "v0", "a", "b", "c", "vth"], out[2], ref[2]):
        torch.testing.assert_close(go, gr, atol=1e-5, rtol=1e-5, msg=lambda m: f"grad {name}: {m}")


def test_reference_equals_hand_written_lif():
    """The reference loop itself, against the LIF equations written out by hand (binary, hard reset)."""
    torch.manual_seed(0)
    x = torch.randn(20, 5) * 2
    tau, vth = 2.0, 1.0
    spec = ScanSpec(code="binary", reset="hard", v_reset=0.0)
    s, h = multistep_scan(x, spec, a=1 - 1 / tau, b=1 / tau, c=0.0, vth=vth, backend="reference")
    v = torch.zeros(5)
    for t in range(20):
        hh = v + (x[t] - v) / tau
        ss = (hh >= vth).float()
        torch.testing.assert_close(h[t], hh)
        torch.testing.assert_close(s[t], ss)
        v = hh * (1 - ss)


def test_codes_take_their_values():
    x = torch.linspace(-4, 4, 801).reshape(1, -1)
    for code, expect in [("binary", {0, 1}), ("ternary", {-1, 0, 1}), ("ternary012", {0, 1, 2}),
                         ("multibit", {0, 1, 2, 3})]:
        s, _ = multistep_scan(x, ScanSpec(code=code, levels=3, margin=1.0), vth=0.5)
        assert set(s.unique().tolist()) == expect, code
    s, _ = multistep_scan(torch.tensor([[0.49, 0.5, 1.49, 1.5]]), ScanSpec(code="ternary012", margin=1.0), vth=0.5)
    assert s.tolist() == [[0.0, 1.0, 1.0, 2.0]]


def test_per_channel_threshold_falls_back_to_reference():
    x = torch.randn(4, 2, 3)
    vth = torch.tensor([0.1, 0.5, 2.0])
    s, _ = multistep_scan(x, ScanSpec(), vth=vth)
    s_ref, _ = multistep_scan(x, ScanSpec(), vth=vth, backend="reference")
    assert torch.equal(s, s_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_like_finite_difference_on_params(backend):
    """The parameter grads of the fused op agree with the reference at a second random point, large T."""
    torch.manual_seed(3)
    spec = ScanSpec(code="binary", reset="soft", surrogate=get_surrogate("sigmoid"))
    x = torch.randn(64, 300)
    gs = torch.randn(64, 300)
    ref = _run("reference", spec, x, torch.zeros(300), 0.9, 1.0, 0.0, 0.8, gs, torch.zeros_like(gs))
    out = _run(backend, spec, x, torch.zeros(300), 0.9, 1.0, 0.0, 0.8, gs, torch.zeros_like(gs))
    for go, gr in zip(out[2], ref[2]):
        torch.testing.assert_close(go, gr, atol=2e-4, rtol=1e-4)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="T >= 1"):
        multistep_scan(torch.zeros(0, 3), ScanSpec())
    with pytest.raises(ValueError, match="v0 shape"):
        multistep_scan(torch.zeros(2, 3), ScanSpec(), v0=torch.zeros(4))
    with pytest.raises(ValueError, match="unknown spike code"):
        ScanSpec(code="quaternary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown backend"):
        multistep_scan(torch.zeros(2, 3), ScanSpec(), backend="cuda-magic")


def test_custom_surrogate_runs_on_the_torch_loop():
    """A surrogate the kernels do not know (no ``kernel_id``): ``auto`` takes the torch loop, ``c`` refuses."""

    class Quadratic(Surrogate):
        def grad(self, x):
            return torch.clamp(1.0 - x * x, min=0.0)

    spec = ScanSpec(code="binary", reset="soft", surrogate=Quadratic())
    x = torch.randn(5, 13, generator=torch.Generator().manual_seed(5)) * 1.5
    gs = torch.randn(5, 13, generator=torch.Generator().manual_seed(6))
    ref = _run("reference", spec, x, torch.zeros(13), 0.9, 1.0, 0.1, 0.6, gs, torch.zeros_like(gs))
    out = _run("auto", spec, x, torch.zeros(13), 0.9, 1.0, 0.1, 0.6, gs, torch.zeros_like(gs))
    for go, gr in zip(out[2], ref[2]):
        torch.testing.assert_close(go, gr, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="kernel_id"):
        multistep_scan(x, spec, backend="c")


def test_scan_module_imports_no_backend():
    """``scan.py`` (spec, reference, torch loop) is imported by the backends, never the other way round."""
    tree = ast.parse(Path(scan_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and ("fused" in m or "triton" in m)}, imported


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA path: needs a GPU")
def test_cuda_matches_cpu():
    spec = ScanSpec(code="ternary", reset="soft")
    x = torch.randn(9, 4, 50)
    s_cpu, h_cpu = multistep_scan(x, spec, a=0.5, vth=0.7)
    s_gpu, h_gpu = multistep_scan(x.cuda(), spec, a=0.5, vth=0.7)
    assert torch.equal(s_gpu.cpu(), s_cpu)
    torch.testing.assert_close(h_gpu.cpu(), h_cpu)


del itertools


def _ragged_case(seed: int, B: int = 9, C: int = 6, T: int = 11):
    """Ragged sequences with holes (and some empty ones), rows of a sequence consecutive, time ascending."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(0, 7, (B,), generator=g)
    times = [torch.sort(torch.randperm(T, generator=g)[: int(n)]).values for n in lens]
    starts = torch.zeros(B + 1, dtype=torch.long)
    starts[1:] = torch.cumsum(lens, 0)
    seq = torch.repeat_interleave(torch.arange(B), lens)
    xv = 1.5 * torch.randn(int(lens.sum()), C, generator=g)
    return xv, starts, times, seq


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("c", [0.0, 0.3])  # c != 0: a hole charges and can fire, so holes must be stepped
@pytest.mark.parametrize("reverse", [False, True])
def test_ragged_scan_equals_the_dense_layout(backend, code, reset, c, reverse):
    """Rows in place == the reference loop on the dense [T, B, C] layout with zeros at the missing steps."""
    T = 11
    xv, starts, times, seq = _ragged_case(zlib.crc32(f"{code}{reset}{c}{reverse}".encode()), T=T)
    steps = torch.cat([(T - 1 - t) if reverse else t for t in times]).long()  # reverse: descending per row
    spec = ScanSpec(code=code, reset=reset, v_reset=0.1 if reset == "hard" else 0.0, levels=3, margin=0.5)
    dense = torch.zeros(T, starts.numel() - 1, xv.shape[1])
    dense[steps, seq] = xv
    ref = multistep_scan(dense, spec, a=0.7, b=0.9, c=c, vth=0.8, backend="reference")[0][steps, seq]
    out = ragged_scan(xv, starts, steps, spec, a=0.7, b=0.9, c=c, vth=0.8, reverse=reverse, backend=backend)
    assert torch.equal(out, ref)
    assert bool(ref.abs().sum() > 0)


def test_ragged_scan_refuses_gradients_and_bad_shapes():
    xv, starts, times, _ = _ragged_case(3)
    steps = torch.cat(times).long()
    with pytest.raises(ValueError, match="forward only"):
        ragged_scan(xv.requires_grad_(True), starts, steps, ScanSpec())
    with pytest.raises(ValueError, match=r"steps \[N\]"):
        ragged_scan(xv.detach(), starts, steps[:-1], ScanSpec())
    with pytest.raises(ValueError, match="scalar"):
        ragged_scan(xv.detach(), starts, steps, ScanSpec(), vth=torch.ones(xv.shape[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("reset,detach", [("hard", False), ("hard", True), ("soft", False), ("soft", True)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid"])
def test_segment_scan_equals_the_dense_layout_with_gradients(backend, code, reset, detach, reverse, surrogate):
    """Sequences without holes, rows in place, trained: values and the gradients of x, a, b, c, v_th equal the
    reference loop on the dense [T, B, C] layout (zero-padded after each sequence)."""
    g = torch.Generator().manual_seed(zlib.crc32(f"seg{code}{reset}{detach}{reverse}{surrogate}".encode()))
    B, C = 9, 5
    lens = torch.randint(0, 6, (B,), generator=g)
    lens[2] = 0
    starts = torch.zeros(B + 1, dtype=torch.long)
    starts[1:] = torch.cumsum(lens, 0)
    seq = torch.repeat_interleave(torch.arange(B), lens)
    t = torch.arange(int(lens.sum())) - starts[:-1].repeat_interleave(lens)
    if reverse:
        t = lens.repeat_interleave(lens) - 1 - t
    spec = ScanSpec(code=code, reset=reset, detach_reset=detach, v_reset=0.1 if reset == "hard" else 0.0, levels=3,
                    margin=0.5, surrogate=get_surrogate(surrogate))
    x = 1.5 * torch.randn(int(lens.sum()), C, generator=g)
    gout = torch.randn(x.shape, generator=g)

    def run(seg: bool):
        xv = x.clone().requires_grad_(True)
        p = [torch.tensor(v, requires_grad=True) for v in (0.7, 0.9, 0.2, 0.8)]
        if seg:
            s = segment_scan(xv, starts, spec, a=p[0], b=p[1], c=p[2], vth=p[3], reverse=reverse, backend=backend)
        else:
            dense = torch.zeros(int(lens.max()), B, C).index_put((t, seq), xv)
            s = multistep_scan(dense, spec, a=p[0], b=p[1], c=p[2], vth=p[3], backend="reference")[0][t, seq]
        return s.detach(), torch.autograd.grad((s * gout).sum(), [xv, *p])

    s1, g1 = run(True)
    s0, g0 = run(False)
    assert torch.equal(s1, s0) and bool(s0.abs().sum() > 0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
