"""The GPU benchmark: Linear + LIF (Open Neuromorphic shape) per backend and peer, then 2 minutes of NeRF training.

Part 1, batch 16, T = 500, n = 512 / 4096 / 16384, forward and backward timed separately (CUDA-synchronized
wall clock, medians over interleaved rounds) with the peak memory of each candidate
(``torch.cuda.max_memory_allocated`` above what the input and the Linear layer hold):

- ``Linear alone``: the floor no neuron can beat;
- ``spikenerf (triton)``: the fused Triton scan (``spikenerf/snn/triton_scan.py``), one launch per direction;
- ``spikenerf (torch loop)``: the graph-free torch loop (a few small kernels per step);
- the peers when they import (not project dependencies): SpikingJelly (torch, and CuPy / Triton backends
  when present), Norse, snnTorch. Put them on PYTHONPATH as in ``tools/bench_neuron.py``.

Part 2: ``ns-train spikingnerf-full blender-data --data ../shared/data/nerf-synthetic-lego-400`` for
``--nerf-seconds`` (120) in a subprocess; iterations per second from the step counter it logs (skipped
when the data folder is absent).

    .venv/bin/python tools/bench_gpu.py                        # about 5-7 minutes on one recent GPU
    PYTHONPATH=.bench-peers .venv/bin/python tools/bench_gpu.py --sizes 512 4096 --skip-nerf

Exits with status 2 and a message when CUDA is not available.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from bench_nerf import ENV_METHODS  # noqa: E402
from bench_neuron import TAU, VTH, peer_layers  # noqa: E402

from spikenerf.snn.process import configure_process  # noqa: E402
from spikenerf.snn import LIFNode  # noqa: E402
from spikenerf.snn.triton_scan import triton_supports  # noqa: E402

warnings.filterwarnings("ignore")
OURS = "spikenerf (triton)"
STEP_LINE = re.compile(r"^\s*(\d+) \(\s*[\d.]+%\)")


def spikingjelly_fused(n: int) -> dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]:
    """SpikingJelly's multi-step LIF on its fused GPU backends (``cupy``, ``triton``) that this install has."""
    try:
        from spikingjelly.activation_based import functional, neuron
    except Exception:  # noqa: BLE001 - a missing peer is a missing row
        return {}
    out: dict[str, Callable] = {}
    probe = neuron.LIFNode(tau=TAU, v_threshold=VTH, step_mode="m")
    for backend in ("cupy", "triton"):
        if backend not in getattr(probe, "supported_backends", ()):
            continue
        if backend == "cupy":
            try:
                import cupy  # noqa: F401
            except Exception:  # noqa: BLE001
                continue

        def make(backend=backend):
            node = neuron.LIFNode(tau=TAU, v_threshold=VTH, step_mode="m", backend=backend)

            def run(x):
                functional.reset_net(node)
                return node(x)

            return run

        out[f"SpikingJelly ({backend})"] = make
    return out


def ours(backend: str):
    def make():
        return LIFNode(tau=TAU, v_threshold=VTH, backend=backend).cuda()

    return make


def time_once(linear: torch.nn.Linear, make, x: torch.Tensor) -> tuple[float, float, float, torch.Tensor]:
    """Forward s, backward s, peak MiB above the resident input and weights, and the spikes."""
    layer = make() if make is not None else None
    linear.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    y = linear(x)
    if layer is not None:
        y = layer(y)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    y.sum().backward()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return t1 - t0, t2 - t1, peak, y.detach()


def bench_size(n: int, args, deadline: float) -> tuple[dict[str, tuple[float, float, float]], list[str]]:
    torch.manual_seed(0)
    linear = torch.nn.Linear(n, n).cuda()
    x = torch.randn(args.steps, args.batch, n, device="cuda")
    candidates: dict[str, Callable | None] = {"Linear alone": None, OURS: ours("triton"),
                                              "spikenerf (torch loop)": ours("torch")}
    # bench_neuron's "SpikingJelly" row is its default (torch) backend
    candidates.update({("SpikingJelly (torch)" if k == "SpikingJelly" else k): v for k, v in peer_layers(n).items()})
    candidates.update(spikingjelly_fused(n))
    notes, times = [], {k: [] for k in candidates}
    spikes: dict[str, torch.Tensor] = {}
    for rnd in range(args.reps + 1):  # round 0 warms up (Triton compiles, CuPy loads its kernels)
        for name, make in list(candidates.items()):
            if time.time() > deadline and rnd > 1 and name not in ("Linear alone", OURS):
                continue
            try:
                f, b, peak, s = time_once(linear, make, x)
            except Exception as err:  # noqa: BLE001 - a peer that fails on this GPU is a note, not a crash
                notes.append(f"n={n}: {name} failed: {type(err).__name__}: {str(err)[:200]}")
                del candidates[name]
                times.pop(name, None)
                continue
            if rnd == 0 and make is not None:
                spikes[name] = (s != 0).cpu()
            if rnd > 0:
                times[name].append((f, b, peak))
    ref = spikes.get("spikenerf (torch loop)")
    for name, s in spikes.items():
        if ref is not None and name != "spikenerf (torch loop)" and s.shape == ref.shape:
            notes.append(f"n={n}: {name}: {100 * (s == ref).float().mean().item():.3f}% of spikes equal the torch loop's")
    del linear, x
    torch.cuda.empty_cache()
    res = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v), max(t[2] for t in v))
           for k, v in times.items() if v}
    return res, notes


def logged_steps(cmd: list[str], env: dict, seconds: float) -> tuple[list[tuple[float, int]], list[str]]:
    """Run ``cmd`` for at most ``seconds``; ``(arrival time, step)`` of each nerfstudio step line, and the output tail."""
    seen: list[tuple[float, int]] = []
    tail: list[str] = []
    # own session, so that stopping it also stops its data-loader workers
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = STEP_LINE.match(line)
            if m:
                seen.append((time.perf_counter(), int(m.group(1))))
            tail[:] = (tail + [line.rstrip()])[-20:]

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    th.join(timeout=5)
    return seen, tail


def nerf_its(args) -> tuple[float | None, str]:
    """Iterations per second of ``ns-train spikingnerf-full`` over ``args.nerf_seconds`` (first third excluded)."""
    data = Path(args.data)
    if not data.is_dir():
        return None, f"NeRF: skipped, no data folder {data}"
    out_dir = Path(tempfile.mkdtemp(prefix="bench_gpu_nerf_"))
    cmd = [str(Path(sys.executable).with_name("ns-train")), "spikingnerf-full", "--output-dir", str(out_dir),
           "--vis", "tensorboard", "--logging.local-writer.max-log-size", "0", "--logging.steps-per-log", "10",
           "--steps-per-eval-image", "1000000", "--steps-per-eval-batch", "1000000",
           "--steps-per-eval-all-images", "1000000", "--steps-per-save", "1000000",
           "blender-data", "--data", str(data)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", ENV_METHODS)
    print("+", " ".join(cmd), flush=True)
    seen, tail = logged_steps(cmd, env, args.nerf_seconds)
    if len(seen) < 2:
        return None, "NeRF: no step lines parsed; last output:\n" + "\n".join(tail)
    t_end = seen[-1][0]
    start = next((p for p in seen if p[0] >= seen[0][0] + (t_end - seen[0][0]) / 3), seen[0])
    if start == seen[-1]:
        start = seen[0]
    its = (seen[-1][1] - start[1]) / (seen[-1][0] - start[0])
    return its, (f"NeRF: spikingnerf-full on {data.name}: {its:.1f} it/s (steps {start[1]} -> {seen[-1][1]}, "
                 f"after {start[0] - seen[0][0]:.0f} s of warm-up, run stopped at {args.nerf_seconds:.0f} s)")


def main() -> int:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 16384])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="after this many seconds of part 1, the remaining rounds run only the floor and ours")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nerf-synthetic-lego-400"))
    ap.add_argument("--nerf-seconds", type=float, default=120.0)
    ap.add_argument("--skip-nerf", action="store_true")
    args = ap.parse_args()

    if not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available on this machine; this benchmark needs a GPU "
              "(tools/bench_neuron.py is the CPU benchmark)", file=sys.stderr)
        return 2
    why = triton_supports(torch.zeros(1, device="cuda"))
    if why is not None:
        print(f"bench_gpu: the Triton scan cannot run: {why}", file=sys.stderr)
        return 2
    print(f"# bench_gpu: Linear+LIF, B={args.batch}, T={args.steps}, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}", flush=True)
    t_start = time.time()
    rows, notes = [], []
    for n in args.sizes:
        res, nn = bench_size(n, args, t_start + args.budget_s)
        notes += nn
        for name, (f, b, peak) in res.items():
            print(f"n={n:6d} {name:28s} fwd {f * 1e3:9.2f} ms bwd {b * 1e3:9.2f} ms peak {peak:9.1f} MiB", flush=True)
        rows.append((n, res))

    print("\n| n | implementation | forward ms | backward ms | total ms | peak MiB | x Linear floor | "
          "x spikenerf (triton) |")
    print("|---|---|---|---|---|---|---|---|")
    for n, res in rows:
        floor = sum(res["Linear alone"][:2])
        ref = sum(res[OURS][:2]) if OURS in res else float("nan")
        for name, (f, b, peak) in res.items():
            tot = f + b
            print(f"| {n} | {name} | {f * 1e3:.2f} | {b * 1e3:.2f} | {tot * 1e3:.2f} | {peak:.0f} | "
                  f"{tot / floor:.2f} | {tot / ref:.2f} |")
    for note in notes:
        print(note)
    if not args.skip_nerf:
        _, msg = nerf_its(args)
        print(msg)
    print(f"# total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
