"""Short fixed CPU benchmark of the issue-6 part-2 methods: HetSyn, S2-STDP + NCG, NeuroCLIP adapter.

    .venv/bin/python tools/bench_vision_temporal.py [--out outputs/bench_vision_temporal] [--quick]

Real shared data only (``../shared/data/nmnist-small``, scikit-learn's 8x8 digits). One fixed schedule:

- HetSyn vs vanilla LIF on N-MNIST (train1K / test100, T=10, 578-128-10, 5 epochs, Adam);
- S2-STDP (+NCG) on digits (1437 train / 360 test, T=16, 3 epochs of online STDP, no backprop);
- NeuroCLIP adapter on N-MNIST, 16-shot, on a frozen VGG-11 (width 0.125, ANN) encoder trained here on the
  N-MNIST train split with ``spikenerf-vision``'s engine (no pretrained CLIP weights are available offline).

Prints a markdown table and writes ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dataclasses  # noqa: E402

from spikenerf.snn.process import configure_process  # noqa: E402
from spikenerf.vision.config import PRESETS, VisionConfig  # noqa: E402
from spikenerf.vision.engine import train as vision_train  # noqa: E402
from spikenerf.vision.methods.hetsyn_method import HetSynConfig  # noqa: E402
from spikenerf.vision.methods.neuroclip import NeuroCLIPConfig  # noqa: E402
from spikenerf.vision.methods.stdp_ncg import STDPNCGConfig  # noqa: E402


def _preset(name: str, **kw) -> VisionConfig:
    return dataclasses.replace(PRESETS[name][1], progress=False, tensorboard=False, **kw)


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="outputs/bench_vision_temporal")
    ap.add_argument("--quick", action="store_true", help="tiny schedule (smoke test of the script)")
    ap.add_argument("--only", default="hetsyn,ncg,neuroclip")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    q = args.quick
    only = set(args.only.split(","))
    res_path = out / "results.json"
    # sections not re-run keep their rows from an earlier run; every finished row is saved at once
    rows: list[dict] = [r for r in (json.loads(res_path.read_text()) if res_path.is_file() else [])
                        if r.get("section") not in only]

    def add(section: str, row: dict) -> None:
        rows.append({"section": section, **row})
        res_path.write_text(json.dumps(rows, indent=1))

    if "hetsyn" in only:
        for variant in ("lif", "hetsyn", "neuron", "adaptive"):
            cfg = _preset("hetsyn-nmnist", method=HetSynConfig(variant=variant), epochs=1 if q else 5,
                          train_subset=64 if q else None, test_subset=32 if q else None,
                          output_dir=str(out / f"hetsyn-{variant}"))
            r = vision_train(cfg)
            add("hetsyn", {"task": "nmnist (1k/100, 5 ep)", "method": f"HetSyn variant={variant}", "T": cfg.timesteps,
                         "acc": r["accuracy"], "firing": r["firing_rate"], "energy_sop_uJ": r["energy_sop_uJ"],
                         "energy_total_uJ": r["energy_total_uJ"], "params": r["params"],
                         "state_floats": r["state_floats"], "train_s": r["train_s"]})

    if "ncg" in only:
        for ext, m, reg in (("pixels", 1, False), ("pixels", 5, False), ("pixels", 5, True), ("stdp", 5, True)):
            cfg = _preset("stdp-ncg-digits", method=STDPNCGConfig(extractor=ext, neurons_per_class=m, regulate=reg),
                          epochs=1 if q else 3, train_subset=200 if q else None, test_subset=100 if q else None,
                          output_dir=str(out / f"ncg-{ext}-m{m}-{int(reg)}"))
            r = vision_train(cfg)
            name = "S2-STDP" if m == 1 else f"S2-STDP+NCG M={m}" + ("" if reg else " (no regulation)")
            add("ncg", {"task": "digits (1437/360, 3 ep)", "method": f"{name}, {ext} features", "T": cfg.timesteps,
                         "acc": r["accuracy"], "firing": None, "energy_sop_uJ": r["energy_uJ"],
                         "energy_total_uJ": r["energy_uJ"], "params": r["weights"], "state_floats": None,
                         "train_s": r["train_s"]})

    if "neuroclip" in only:
        enc_dir = out / "encoder-vgg11-nmnist"
        t0 = time.time()
        vision_train(VisionConfig(model="vgg11", dataset="nmnist", spiking=False, width=0.125, timesteps=6,
                                  epochs=1 if q else 3, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                  train_subset=64 if q else None, test_subset=32 if q else None, progress=False,
                                  tensorboard=False, output_dir=str(enc_dir)))
        enc_s = time.time() - t0
        for adapter in ("none", "relu", "spiking"):
            nc = NeuroCLIPConfig(encoder="checkpoint", encoder_weights=str(enc_dir / "checkpoint.pt"),
                                 shots=4 if q else 16, adapter=adapter)
            cfg = _preset("neuroclip-nmnist", method=nc, timesteps=6, epochs=5 if q else 60,
                          test_subset=32 if q else None, output_dir=str(out / f"neuroclip-{adapter}"))
            r = vision_train(cfg)
            name = {"none": "frozen encoder + prototypes (no adapter)", "relu": "ReLU adapter (ANN twin)",
                    "spiking": "NeuroCLIP spiking adapter"}[adapter]
            add("neuroclip", {"task": "nmnist 16-shot (test100)", "method": name, "T": cfg.timesteps, "acc": r["accuracy"],
                         "firing": r["firing_rate"], "energy_sop_uJ": r["adapter_energy_uJ"],
                         "energy_total_uJ": r["adapter_energy_uJ"] + r["encoder_energy_uJ"],
                         "params": r.get("adapter_params", 0), "state_floats": None,
                         "train_s": r["train_s"] + (enc_s if adapter == "none" else 0.0)})

    order = {"hetsyn": 0, "ncg": 1, "neuroclip": 2}
    rows.sort(key=lambda r: order.get(r.get("section"), 3))
    print("\n| task | method | T | test acc % | firing rate | energy uJ (spikes / adapter) | energy uJ (total) | "
          "params | state floats / sample | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fr = "-" if r["firing"] is None else f"{r['firing']:.3f}"
        st = "-" if r["state_floats"] is None else str(r["state_floats"])
        print(f"| {r['task']} | {r['method']} | {r['T']} | {100 * r['acc']:.1f} | {fr} | {r['energy_sop_uJ']:.4f} | "
              f"{r['energy_total_uJ']:.4f} | {r['params']} | {st} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
