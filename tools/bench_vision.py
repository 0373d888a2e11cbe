"""Short fixed CPU schedules for spikenerf.vision; prints a markdown table.

Rows: the offline digits demo, a CIFAR-10 (JPEG) subset with a small ResNet-20, the N-MNIST subset
with a small VGG-11, ModelNet10 chair/monitor points with a small Spiking PointNet (trained at T=1,
evaluated at T=1 and T=4). Rows whose data is absent are reported as skipped. Energy is per sample
(45 nm: 4.6 pJ/MAC, 0.9 pJ/AC); "ANN twin" is the same architecture with ReLU at one step for
static input. These are smoke-scale schedules (minutes on 2 CPU cores), not paper reproductions.

    .venv/bin/python tools/bench_vision.py [--only digits cifar10 nmnist modelnet] [--with-ann]
    .venv/bin/python tools/bench_vision.py --methods [--task cifar10|digits]

``--methods`` trains each Guo-group method of issue 5 on one task with the same schedule (plus the
plain SNN and the ANN twin), evaluates it, exports it (every inference fold applied) and checks that the
exported model predicts the same classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from spikenerf.snn.process import configure_process
from spikenerf.vision.config import PRESETS, VisionConfig
from spikenerf.vision.data import DatasetNotFoundError
from spikenerf.vision.engine import evaluate_checkpoint, export_checkpoint, train
from spikenerf.vision.blocks import NeuronConfig
from spikenerf.vision.methods.im_loss import IMLossConfig
from spikenerf.vision.methods.joint_asnn import JointConfig
from spikenerf.vision.methods.rmp import RMPConfig


def schedules() -> dict[str, VisionConfig]:
    common = dict(progress=False, tensorboard=False, seed=0)
    return {
        "digits": dataclasses.replace(PRESETS["digits-demo"][1], **common),
        "cifar10": VisionConfig(model="resnet20", dataset="cifar10-jpeg", width=0.5, timesteps=2, epochs=2,
                                train_subset=2000, test_subset=500, batch_size=64, optimizer="adam", lr=2e-3,
                                weight_decay=0.0, **common),
        "nmnist": VisionConfig(model="vgg11", dataset="nmnist", width=0.125, timesteps=6, epochs=3, batch_size=32,
                               optimizer="adam", lr=1e-3, weight_decay=0.0, **common),
        "modelnet": VisionConfig(model="spiking-pointnet", dataset="modelnet10-2class", width=0.25, timesteps=1,
                                 eval_timesteps=(1, 4), n_points=256, epochs=3, batch_size=32, optimizer="adam",
                                 lr=1e-3, weight_decay=1e-4, neuron=NeuronConfig(init_membrane=(0.0, 0.5)), **common),
    }


def methods(base: VisionConfig) -> dict[str, VisionConfig]:
    """Each issue-5 method as a change of the same base schedule (paper settings where they apply)."""
    n = base.neuron
    rep = dataclasses.replace
    return {
        "SNN (plain: LIF decay 0.5, hard reset)": base,
        "Ternary Spike (AAAI 2024)": rep(base, neuron=rep(n, spike_code="ternary", amplitude="learnable")),
        "MPBN (ICCV 2023)": rep(base, neuron=rep(n, mpbn=True)),
        "RMP-Loss (ICCV 2023)": rep(base, method=RMPConfig(weight=0.1)),
        "soft reset + MPR (ECCV 2022)": rep(base, neuron=rep(n, reset="soft", mpr=True)),
        "Real Spike (ECCV 2022)": rep(base, neuron=rep(n, real_spike=True)),
        "IM-Loss + ESG (NeurIPS 2022)": rep(base, method=IMLossConfig(weight=1.0, esg=True), neuron=rep(n, surrogate="tanh")),
        "joint ANN-SNN (PR 2023)": rep(base, method=JointConfig()),
        "ANN twin": rep(base, spiking=False),
    }


def run_methods(task: str) -> None:
    base = schedules()[task]
    rows = []
    for name, cfg in methods(base).items():
        with tempfile.TemporaryDirectory() as d:
            c = dataclasses.replace(cfg, output_dir=d)
            t0 = time.time()
            try:
                train(c)
            except DatasetNotFoundError as e:
                print(f"skip {task}: {e}")
                return
            secs = time.time() - t0
            ev = next(iter(evaluate_checkpoint(f"{d}/checkpoint.pt", progress=False)["per_T"].items()))[1]
            try:
                exp = export_checkpoint(f"{d}/checkpoint.pt", batches=2)
                same = f"yes ({exp['max_logit_diff']:.1e})"
            except RuntimeError as e:  # export changed predictions: report it, do not hide it
                same = f"NO: {e}"[:60]
        ops, twin = ev["ops"], ev["ann_twin_ops"]
        rows.append(f"| {name} | {ev['accuracy'] * 100:.1f} | {ev['mean_firing_rate']:.3f} | "
                    f"{ops.energy_pj * 1e-6:.3f} | {ops.energy_pj / max(twin.energy_pj, 1e-12):.3f} | {same} | {secs:.0f} |")
        print(rows[-1], flush=True)
    print(f"\ntask {task}: {base.model} w{base.width:g}, T={base.timesteps}, {base.epochs} epochs, "
          f"train_subset={base.train_subset}, test_subset={base.test_subset}")
    print("| method | test acc % | firing rate | energy uJ/sample | energy / ANN twin | export: same predictions (max logit diff) | train s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--with-ann", action="store_true", help="also train the ANN twin for its accuracy")
    ap.add_argument("--methods", action="store_true", help="one row per issue-5 method on --task")
    ap.add_argument("--task", default="cifar10", choices=["digits", "cifar10", "nmnist", "modelnet"])
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.methods:
        run_methods(args.task)
        return
    rows = []
    for name, cfg in schedules().items():
        if args.only and name not in args.only:
            continue
        variants = [("SNN", cfg)] + ([("ANN", dataclasses.replace(cfg, spiking=False))] if args.with_ann else [])
        for kind, c in variants:
            with tempfile.TemporaryDirectory() as d:
                c = dataclasses.replace(c, output_dir=d)
                t0 = time.time()
                try:
                    train(c)
                except DatasetNotFoundError as e:
                    rows.append(f"| {name} | {c.model} w{c.width:g} | {kind} | skipped: data absent | | | | | |")
                    print(f"skip {name}: {e}")
                    break
                secs = time.time() - t0
                res = evaluate_checkpoint(f"{d}/checkpoint.pt", progress=False)
            for T, ev in res["per_T"].items():
                ops, twin = ev["ops"], ev["ann_twin_ops"]
                rows.append(
                    f"| {name} | {c.model} w{c.width:g} | {kind} | {T} | {ev['accuracy'] * 100:.1f} | "
                    f"{ev['mean_firing_rate']:.3f} | {ops.energy_pj * 1e-6:.3f} | {twin.energy_pj * 1e-6:.3f} | "
                    f"{ops.energy_pj / max(twin.energy_pj, 1e-12):.3f} | {secs:.0f} |")
    print("\n| task | model | net | T | test acc % | firing rate | energy uJ | ANN twin energy uJ | ratio | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
