"""One Linear + one LIF layer, forward and backward timed separately (Open Neuromorphic benchmark shape).

Batch 16, T = 500, n neurons. Columns: the Linear layer alone (the floor no neuron can beat), spikenerf's
fused scan, spikenerf's graph-free torch loop, the naive per-step autograd loop, and the peers
(snnTorch, SpikingJelly's torch path, Norse) when importable. The peers are not project dependencies:
install them into a side folder and put it on PYTHONPATH:

    .venv/bin/pip install --no-deps --target .bench-peers snntorch spikingjelly norse nir nirtorch loguru
    PYTHONPATH=.bench-peers .venv/bin/python tools/bench_neuron.py --sizes 512 4096

All numbers come from one run, so the ratios compare like with like on the same machine state.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spikenerf.snn.process import configure_process  # noqa: E402
from spikenerf.snn import LIFNode, c_kernel_available  # noqa: E402

warnings.filterwarnings("ignore")
TAU, VTH = 2.0, 1.0


def peer_layers(n: int) -> dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]:
    """Factories of ``x_seq [T, B, n] -> spikes`` for each importable peer (LIF, tau 2, threshold 1)."""
    peers: dict[str, Callable] = {}
    try:
        import snntorch

        def make_snntorch():
            lif = snntorch.Leaky(beta=1 - 1 / TAU, threshold=VTH, reset_mechanism="zero")

            def run(x):
                mem = lif.init_leaky()
                out = []
                for t in range(x.shape[0]):
                    spk, mem = lif(x[t], mem)
                    out.append(spk)
                return torch.stack(out)

            return run

        peers["snnTorch"] = make_snntorch
    except Exception:  # noqa: BLE001 - a missing peer is a missing column
        pass
    try:
        from spikingjelly.activation_based import neuron

        def make_sj():
            node = neuron.LIFNode(tau=TAU, v_threshold=VTH, step_mode="m")

            def run(x):
                from spikingjelly.activation_based import functional

                functional.reset_net(node)
                return node(x)

            return run

        peers["SpikingJelly"] = make_sj
    except Exception:  # noqa: BLE001
        pass
    try:
        import norse.torch as nt

        def make_norse():
            # Norse's multi-step LIF (current-based: tau_syn_inv = 1 makes the synapse pass x through)
            p = nt.LIFParameters(tau_mem_inv=torch.tensor(1.0 / TAU), tau_syn_inv=torch.tensor(1.0),
                                 v_th=torch.tensor(VTH))
            layer = nt.LIF(p, dt=1.0)

            def run(x):
                out, _ = layer(x)
                return out

            return run

        peers["Norse"] = make_norse
    except Exception:  # noqa: BLE001
        pass
    return peers


def ours(backend: str):
    def make():
        node = LIFNode(tau=TAU, v_threshold=VTH, backend=backend)
        return node

    return make


def time_once(linear: torch.nn.Linear, make, x: torch.Tensor) -> tuple[float, float]:
    layer = make() if make is not None else None
    linear.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    y = linear(x)
    if layer is not None:
        y = layer(y)
    t1 = time.perf_counter()
    y.sum().backward()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def time_interleaved(linear, candidates: dict, x: torch.Tensor, reps: int) -> dict[str, tuple[float, float]]:
    """Round-robin over the candidates, ``reps`` rounds after a warm-up round; medians per candidate.

    Interleaving matters on a shared machine: load that comes and goes hits every column alike.
    """
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in candidates}
    for rnd in range(reps + 1):
        for name, make in candidates.items():
            f, b = time_once(linear, make, x)
            if rnd > 0:
                times[name].append((f, b))
    return {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 4096])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-slow-above", type=int, default=4096,
                    help="above this n, run only the Linear floor and spikenerf (peers take minutes)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    dev = torch.device(args.device)
    print(f"# bench_neuron: Linear+LIF, B={args.batch}, T={args.steps}, device={dev}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, C kernel {'on' if c_kernel_available() else 'off'}, "
          f"{platform.processor() or platform.machine()}")
    rows = []
    for n in args.sizes:
        torch.manual_seed(0)
        linear = torch.nn.Linear(n, n).to(dev)
        x = torch.randn(args.steps, args.batch, n, device=dev)
        candidates: dict[str, Callable | None] = {"Linear alone": None, "spikenerf (fused)": ours("auto")}
        if n <= args.skip_slow_above:
            candidates["spikenerf (torch loop)"] = ours("torch")
            candidates["naive loop"] = ours("reference")
            candidates.update(peer_layers(n))
        results = time_interleaved(linear, candidates, x, args.reps)
        for name, (f, b) in results.items():
            print(f"n={n:6d} {name:24s} fwd {f:8.3f}s bwd {b:8.3f}s total {f + b:8.3f}s", flush=True)
        rows.append((n, results))

    print("\n| n | implementation | forward s | backward s | total s | x Linear floor | speed-up vs it |")
    print("|---|---|---|---|---|---|---|")
    for n, results in rows:
        floor = sum(results["Linear alone"])
        ours_total = sum(results["spikenerf (fused)"])
        for name, (f, b) in results.items():
            tot = f + b
            print(f"| {n} | {name} | {f:.3f} | {b:.3f} | {tot:.3f} | {tot / floor:.2f} | "
                  f"{tot / ours_total:.1f}x |")
        peers = {k: sum(v) for k, v in results.items() if k in ("snnTorch", "SpikingJelly", "Norse")}
        if peers:
            best = min(peers, key=peers.get)
            print(f"\nn={n}: spikenerf is {peers[best] / ours_total:.1f}x faster than the fastest peer ({best}); "
                  f"{ours_total / floor:.2f}x the Linear floor\n")


if __name__ == "__main__":
    main()
