"""Issue 6 (part 1) efficiency methods on real data, one short fixed CPU schedule; prints one markdown table.

    OMP_NUM_THREADS=2 .venv/bin/python tools/bench_vision_efficiency.py [--only digits cifar10 nmnist] [--quick]

Rows (every run is ``spikenerf.vision.engine.train`` on a preset-equivalent config, i.e. what
``spikenerf-vision train <preset> --<flags>`` does):

- digits (scikit-learn 8x8, 1437 train / 360 test, VGG-11 w0.125): plain SNN (BPTT), adaptive bit allocation
  (without and with a budget target), the sub-bit SNN pipeline (binary SNN -> S2NN K=16 with OS-Quant + MPFD,
  and without them), rate-based BP (and BPTT with the same soft-reset neuron), LTMD.
- a CIFAR-10 JPEG subset (ResNet-20 w0.25): plain SNN, adaptive bits with a budget target, LTMD, and a small
  Spikformer with adaptive bits (the CPU time of 32x32 inputs keeps this list short).
- N-MNIST subset: rate-BP vs BPTT accuracy at T=8 and training memory for T = 2, 4, 8 (autograd's saved
  activation bytes, exact, and the peak-RSS growth of one training step in a fresh process).

Columns: weight bits (bits per weight of the hidden conv / linear layers: 32 full precision, B_w learnt, 1
binary, log2(K)/9 + scales + codebooks for S2NN), model size, mean per-layer bit budget ``T*B_w*B_s`` and total
S-ACE ``sum_l MACs_l T_l B_w B_s density`` over the hidden layers (stem conv and classifier excluded: they
stay full precision in every row), energy (45 nm, 4.6 pJ/MAC first layer, 0.9 pJ/SOP) and train time.
Smoke-scale schedules on 2 shared CPU cores, not paper reproductions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from spikenerf.snn.process import configure_process
from spikenerf.vision.config import VisionConfig
from spikenerf.vision.data import DatasetNotFoundError, get_dataset, to_sequence
from spikenerf.vision.energy_report import count_ops
from spikenerf.vision.build import restore as _restore
from spikenerf.vision.engine import train
from spikenerf.vision.blocks import NeuronConfig
from spikenerf.vision.methods.adaptive_bits import BitRecorder
from spikenerf.vision.methods.adaptive_bits import AdaptiveBitsConfig
from spikenerf.vision.methods.ltmd import LTMDConfig
from spikenerf.vision.methods.rate_bp import RateBPConfig
from spikenerf.vision.methods.subbit import SubBitConfig, SubBitConv2d, model_size

rep = dataclasses.replace

# papers' headline numbers on the datasets used here (None: the paper reports no number on this dataset, or
# we could not retrieve it; the schedules here are far shorter anyway)
PAPER: dict[str, str] = {}


def base_configs(quick: bool) -> dict[str, VisionConfig]:
    common = dict(progress=False, tensorboard=False, seed=0, optimizer="adam", weight_decay=0.0, augment=False)
    ep = 1 if quick else None
    return {
        "digits": VisionConfig(model="vgg11", dataset="digits", width=0.125, timesteps=4, epochs=ep or 3,
                               train_subset=128 if quick else None, batch_size=64, lr=3e-3, eval_batch_size=360,
                               **common),
        "cifar10": VisionConfig(model="resnet20", dataset="cifar10-jpeg", width=0.25, timesteps=2, epochs=1,
                                train_subset=128 if quick else 320, test_subset=64 if quick else 200, batch_size=32,
                                lr=2e-3, **common),
        "nmnist": VisionConfig(model="vgg11", dataset="nmnist", width=0.125, timesteps=8, epochs=ep or 2,
                               batch_size=32, lr=1e-3, train_subset=128 if quick else 640, **common),
    }


def method_rows(task: str, base: VisionConfig) -> list[tuple[str, VisionConfig]]:
    soft = rep(base.neuron, reset="soft", surrogate="sigmoid")
    ltmd_neuron = rep(base.neuron, decay=0.25, threshold_mode="tanh", v_threshold=0.46211715726000974,
                      surrogate="rect", surrogate_alpha=1.0)
    rows = [
        ("SNN (BPTT, binary spikes, fp32 weights)", base),
        ("adaptive bits (learnt T/B_w/B_s, no target)", rep(base, method=AdaptiveBitsConfig(bits_lr=0.1))),
        ("adaptive bits (budget target 8)", rep(base, method=AdaptiveBitsConfig(budget_target=8.0, bits_lr=0.1))),
        ("S2NN stage 1: binary-weight SNN", rep(base, method=SubBitConfig(stage="binary"))),
        ("S2NN K=16 (no OS-Quant, no MPFD)", rep(base, method=SubBitConfig(os_kappa=0.0, mpfd=0.0))),
        ("S2NN K=16 + OS-Quant + MPFD", rep(base, method=SubBitConfig())),
        ("rate-based BP (soft reset)", rep(base, neuron=soft, method=RateBPConfig())),
        ("BPTT, same soft-reset neuron", rep(base, neuron=soft)),
        ("LTMD (tanh(w) thresholds + moderate dropout)", rep(base, neuron=ltmd_neuron, method=LTMDConfig())),
    ]
    if task == "cifar10":  # a shorter list: the CPU time of 32x32 inputs
        keep = ("SNN (BPTT", "adaptive bits (budget", "LTMD")
        rows = [r for r in rows if r[0].startswith(keep)]
        sf = rep(base, model="spikformer", width=0.125, lr=1e-3)
        rows += [("Spikformer-2 dim 32 + adaptive bits (target 8)",
                  rep(sf, method=AdaptiveBitsConfig(budget_target=8.0, bits_lr=0.1)))]
    return rows


@torch.no_grad()
def costs(model, x_seq: torch.Tensor) -> dict[str, float]:
    """Hidden-layer weight bits, bit budget and S-ACE with one accounting for every row."""
    model.eval()
    first = {id(m) for m in model.first_layers()}
    fc = getattr(model, "fc", None)
    with BitRecorder(model) as rec:
        model(x_seq)
    rows = [r for r in rec.rows if not r["real_input"] and r["name"] != "fc"]
    mods = dict(model.named_modules())
    bb, sace, wbits, nweights = [], [], 0.0, 0
    for r in rows:
        m = mods[r["name"]]
        inner = getattr(m, "conv", None) if isinstance(getattr(m, "conv", None), torch.nn.Conv2d) else getattr(m, "fc", m)
        if isinstance(inner, SubBitConv2d):
            bw = inner.bits_per_weight()
        else:
            bw = float(r["B_w"])
        if id(inner) in first or inner is fc:
            continue
        T, bs = float(r["T"]), float(r["B_s"])
        bb.append(T * bw * bs)
        sace.append(r["macs"] * T * bw * bs * r["density"])
        wbits += bw * inner.weight.numel()
        nweights += inner.weight.numel()
    return {"bit_budget": sum(bb) / max(len(bb), 1), "s_ace_m": sum(sace) / 1e6,
            "weight_bits": wbits / max(nweights, 1)}


def size_kb(model) -> float:
    """Model size: S2NN layers via ``model_size``; adaptive-bit layers at their learnt ``B_w`` (+ an fp32 step);
    everything else fp32 (BN: 2 numbers per channel)."""
    from spikenerf.vision.methods.adaptive_bits import QuantConv2d, QuantLinear

    quant = [m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    if not quant:
        return model_size(model)["model_size_kb"]
    bits, counted = 0.0, set()
    for m in quant:
        bits += m.weight.numel() * int(m.wq.bits()) + 32
        counted.update({id(m.weight), id(m.wq.step), id(m.wq.bits_param)})
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            bits += 64 * m.num_features
            counted.update({id(m.weight), id(m.bias)})
    for n, p in model.named_parameters():
        if id(p) not in counted and not n.endswith(("t_param", "bits_param")):
            bits += 32 * p.numel()
    return bits / 8 / 1024


def run_row(name: str, cfg: VisionConfig, out_root: Path, teacher: str | None) -> dict:
    if isinstance(cfg.method, SubBitConfig) and cfg.method.stage == "subbit":
        cfg = rep(cfg, method=rep(cfg.method, teacher=teacher))
    cfg = rep(cfg, output_dir=str(out_root / name.replace(" ", "_").replace("/", "-")))
    t0 = time.time()
    res = train(cfg)
    dt = time.time() - t0
    _, model, info, _ = _restore(res["checkpoint"])
    ds, _ = get_dataset(cfg.dataset, False, cfg.data_root, T=cfg.timesteps, augment=False, subset=64, seed=0)
    x = torch.stack([ds[i][0] for i in range(min(64, len(ds)))])
    x_seq = to_sequence(x, info.kind, cfg.timesteps)
    c = costs(model, x_seq)
    ops = count_ops(model, [x_seq], spiking=True, first_layers=model.first_layers())
    size = {"model_size_kb": size_kb(model)}
    rep_ = res.get("method_report", {})
    extra = ""
    if "T" in rep_ and rep_["T"]:
        Ts, Bs = list(rep_["T"].values()), list(rep_["B_s"].values())
        bws = [l["B_w"] for l in rep_["layers"] if l["quantized"]]
        extra = (f"T {min(Ts)}-{max(Ts)} (mean {sum(Ts) / len(Ts):.1f}), B_s {min(Bs)}-{max(Bs)}, "
                 f"B_w {min(bws)}-{max(bws)}")
    if "thresholds" in rep_:
        th = list(rep_["thresholds"].values())
        extra = f"V_th {min(th):.2f}-{max(th):.2f}"
    return {"name": name, "acc": res["accuracy"] * 100, "firing": res["mean_firing_rate"], "wbits": c["weight_bits"],
            "size_kb": size["model_size_kb"], "bb": c["bit_budget"], "sace": c["s_ace_m"],
            "energy": ops.energy_pj * 1e-6, "train_s": dt, "extra": extra, "checkpoint": res["checkpoint"]}


# ----------------------------------------------------------------------------- N-MNIST memory probe
def _probe(method: str, T: int, batch: int) -> None:
    """One training step in this (fresh) process; prints JSON with saved bytes and RSS growth."""
    from spikenerf.vision.methods.rate_bp import rate_bp_loss, saved_tensor_bytes
    from spikenerf.vision.models import build_model

    torch.manual_seed(0)
    ds, info = get_dataset("nmnist", True, None, T=T, subset=batch)
    x = torch.stack([ds[i][0] for i in range(batch)])
    y = torch.tensor([ds[i][1] for i in range(batch)])
    m = build_model("vgg11", 10, 2, True, NeuronConfig(reset="soft", surrogate="sigmoid"), width=0.125, input_size=34)
    x_seq = to_sequence(x, info.kind, T)
    m(x_seq[:1])  # warm-up allocations (kernels, first-call buffers) before measuring
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    with saved_tensor_bytes(m) as saved:
        if method == "rate-bp":
            _, loss = rate_bp_loss(m, x_seq, y)
        else:
            loss = torch.nn.functional.cross_entropy(m(x_seq), y)
    loss.backward()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"saved_mb": saved[0] / 2 ** 20, "rss_growth_mb": (rss1 - rss0) / 1024,
                      "step_s": time.time() - t0}))


def memory_table(batch: int = 32) -> list[dict]:
    rows = []
    for T in (2, 4, 8):
        for method in ("bptt", "rate-bp"):
            r = subprocess.run([sys.executable, __file__, "--probe", method, str(T), str(batch)], capture_output=True,
                               text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            d = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append({"T": T, "method": method, **d})
    return rows


# ----------------------------------------------------------------------------- main
def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=["digits", "cifar10", "nmnist"])
    ap.add_argument("--quick", action="store_true", help="tiny smoke schedule")
    ap.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="also append every row as JSON to this file")
    ap.add_argument("--skip", nargs="*", default=[], help="skip the rows whose name starts with one of these")
    args = ap.parse_args()
    if args.probe:
        _probe(args.probe[0], int(args.probe[1]), int(args.probe[2]))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    bases = base_configs(args.quick)
    out_root = Path(tempfile.mkdtemp(prefix="bench_eff_"))
    table: list[dict] = []
    mem: list[dict] = []

    def dump(obj: dict) -> None:
        print(json.dumps(obj), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(obj) + "\n")

    if "nmnist" in args.only:
        try:
            get_dataset("nmnist", False, None, T=2, subset=1)
            mem = memory_table()
            for r in mem:
                dump({"memory": r})
            soft = NeuronConfig(reset="soft", surrogate="sigmoid")
            for name, cfg in (("BPTT T=8 (soft reset)", rep(bases["nmnist"], neuron=soft)),
                              ("rate-based BP T=8", rep(bases["nmnist"], neuron=soft,
                                                        method=RateBPConfig()))):
                row = run_row(name, cfg, out_root / "nmnist", None)
                row["task"] = "nmnist"
                table.append(row)
                dump({k: v for k, v in row.items() if k != "checkpoint"})
        except DatasetNotFoundError as e:
            print(f"skip nmnist: {e}")
    for task in [t for t in ("digits", "cifar10") if t in args.only]:
        teacher = None
        for name, cfg in method_rows(task, bases[task]):
            if any(name.startswith(p) for p in args.skip):
                continue
            try:
                row = run_row(name, cfg, out_root / task, teacher)
            except DatasetNotFoundError as e:
                print(f"skip {task}: {e}", flush=True)
                break
            except Exception as e:  # noqa: BLE001 - keep the other rows
                print(f"FAILED {task} / {name}: {type(e).__name__}: {e}", flush=True)
                continue
            if name.startswith("S2NN stage 1"):
                teacher = row["checkpoint"]
            row["task"] = task
            table.append(row)
            dump({k: v for k, v in row.items() if k != "checkpoint"})

    d, c, n = bases["digits"], bases["cifar10"], bases["nmnist"]
    sched = {"digits": f"digits 1437 train / 360 test, VGG-11 w0.125, T=4, {d.epochs} ep",
             "cifar10": f"CIFAR-10 {c.train_subset} train / {c.test_subset} test, ResNet-20 w0.25 (Spikformer dim 32), "
                        f"T={c.timesteps}, {c.epochs} ep",
             "nmnist": f"N-MNIST {n.train_subset} train / 100 test, VGG-11 w0.125, T=8, {n.epochs} ep"}
    print()
    print("| task | method | test acc % | weight bits | model KB | bit budget T*B_w*B_s | S-ACE M | energy uJ "
          "| firing | train s | learnt |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {sched[r['task']]} | {r['name']} | {r['acc']:.1f} | {r['wbits']:.2f} | {r['size_kb']:.1f} | "
              f"{r['bb']:.1f} | {r['sace']:.2f} | {r['energy']:.3f} | {r['firing']:.3f} | {r['train_s']:.0f} | "
              f"{r['extra']} |")
    if mem:
        print()
        print("| N-MNIST VGG-11 w0.125, batch 32 | T | saved activations MB | peak RSS growth MB | step s |")
        print("|---|---|---|---|---|")
        for r in mem:
            print(f"| {r['method']} | {r['T']} | {r['saved_mb']:.2f} | {r['rss_growth_mb']:.1f} | {r['step_s']:.2f} |")


if __name__ == "__main__":
    main()
