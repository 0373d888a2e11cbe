"""HetSyn (Deng et al., NeurIPS 2025) on event data: a HetSynLIF classifier for N-MNIST (and SHD when on disk).

The neuron is the core's :class:`spikenerf.snn.neurons.HetSynLIF` (synapse-specific decays, reset current);
this module only builds a two-layer fully connected net around it, the data, the training loop and the
operation / memory counts::

    x [T, B, 2, 34, 34] event frames (binary: an event in the bin)  --max-pool-->  [T, B, 578] spikes
    HetSynLIF(578 -> hidden, spiking)  ->  HetSynLIF(hidden -> classes, leaky readout, no spikes)
    logits = mean_t readout membrane

``variant``: ``hetsyn`` (per-synapse learnable decays), ``neuron`` (per-neuron learnable decays),
``adaptive`` (one synaptic decay, a slower reset current: threshold adaptation) and ``lif`` (vanilla LIF:
``nn.Linear`` + the core :class:`~spikenerf.snn.DecayLIFNode` with soft reset, fixed decay).

Energy (per sample, the core's 45 nm figures, :mod:`spikenerf.snn.energy`): every input spike costs one
accumulate per synapse it reaches (``SOPs``, ``E_AC_PJ``). HetSyn also pays for its state: each step every
synaptic current decays (a multiply, ``E_MUL_PJ``): ``J x I`` of them per layer for per-synapse decays, ``J`` for
a per-neuron / vanilla membrane; those are reported separately (``state_mults``) and in ``energy_total``.

Run: ``spikenerf-vision train hetsyn-nmnist`` (an own-loop method: :meth:`HetSynMethod.fit`; the engine's
runner seeds, subsets the data, writes the checkpoint and prints the summary).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn
from torch.utils.data import DataLoader

from spikenerf.snn import DecayLIFNode
from spikenerf.snn.energy import E_AC_PJ, E_MUL_PJ
from spikenerf.snn.neurons.hetsyn import HetSynLIF

from .base import MethodConfig, OwnLoopMethod, OwnLoopResult

__all__ = ["HetSynConfig", "HetSynNet", "HetSynMethod", "evaluate"]


class HetSynNet(nn.Module):
    """``[T, B, ...]`` spikes -> logits ``[B, K]`` (mean over ``T`` of a leaky readout membrane)."""

    def __init__(self, n_in: int, n_classes: int, cfg: "HetSynConfig", pool: int = 1) -> None:
        super().__init__()
        self.pool = pool
        v = cfg.variant
        self.variant = v
        if v == "lif":
            self.fc = nn.Linear(n_in, cfg.hidden, bias=False)
            self.lif = DecayLIFNode(decay=math.exp(-1.0 / cfg.tau_mean), v_threshold=cfg.v_threshold, reset="soft",
                                    surrogate=cfg.surrogate)
            self.readout = HetSynLIF(cfg.hidden, n_classes, "layer", cfg.tau_mean, 0.0, None, learn_rho=False,
                                     spiking=False)
            return
        het = {"hetsyn": "synapse", "neuron": "neuron", "adaptive": "layer"}[v]
        tau_r = {"hetsyn": cfg.tau_reset, "neuron": None, "adaptive": cfg.tau_adapt}[v]
        std = 0.0 if v == "adaptive" else cfg.tau_std
        self.hidden = HetSynLIF(n_in, cfg.hidden, het, cfg.tau_mean, std, tau_r, learn_rho=v != "adaptive",
                                v_threshold=cfg.v_threshold, surrogate=cfg.surrogate)
        self.readout = HetSynLIF(cfg.hidden, n_classes, het, cfg.tau_mean, std, None, learn_rho=v != "adaptive",
                                 spiking=False)

    def encode(self, x_seq: Tensor) -> Tensor:
        x = (x_seq > 0).to(torch.float32)
        if x.dim() == 5 and self.pool > 1:
            T, B = x.shape[:2]
            x = F.max_pool2d(x.flatten(0, 1), self.pool).reshape(T, B, -1)
        return x.reshape(x.shape[0], x.shape[1], -1)

    def forward(self, x_seq: Tensor, return_spikes: bool = False):
        x = self.encode(x_seq)
        if self.variant == "lif":
            s = self.lif(self.fc(x))
        else:
            s = self.hidden(x)
        out = self.readout(s).mean(0)
        return (out, x, s) if return_spikes else out

    def layers(self) -> list[tuple[int, int, str]]:
        """(in, out, heterogeneity) of the two synaptic layers."""
        if self.variant == "lif":
            return [(self.fc.in_features, self.fc.out_features, "layer"), (self.readout.in_features,
                                                                            self.readout.out_features, "layer")]
        return [(m.in_features, m.out_features, m.heterogeneity) for m in (self.hidden, self.readout)]


def _seq(x: Tensor) -> Tensor:
    return x.transpose(0, 1).contiguous()  # [B, T, ...] -> [T, B, ...]


@torch.no_grad()
def evaluate(model: HetSynNet, loader, max_batches: int | None = None) -> dict[str, Any]:
    model.eval()
    correct = total = 0
    in_spikes = hid_spikes = 0.0
    T = None
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        logits, xin, s = model(_seq(x), return_spikes=True)
        T = xin.shape[0]
        correct += int((logits.argmax(1) == y).sum())
        total += y.numel()
        in_spikes += float(xin.sum())
        hid_spikes += float(s.sum())
    n = max(total, 1)
    (i0, o0, h0), (i1, o1, h1) = model.layers()
    sops = (in_spikes * o0 + hid_spikes * o1) / n
    state = 0.0
    for fi, fo, het in model.layers():
        state += (fi * fo if het == "synapse" else fo) * (T or 0)
    state += o0 * (T or 0)  # reset current (or membrane reset) of the hidden layer
    params = sum(p.numel() for p in model.parameters())
    state_floats = sum((fi * fo if het == "synapse" else fo) for fi, fo, het in model.layers()) + o0
    return {
        "accuracy": correct / n,
        "samples": total,
        "firing_rate": hid_spikes / max(n * (T or 1) * o0, 1),
        "sops": sops,
        "state_mults": state,
        "energy_sop_uJ": sops * E_AC_PJ * 1e-6,
        "energy_total_uJ": (sops * E_AC_PJ + state * E_MUL_PJ) * 1e-6,
        "params": params,
        "state_floats": state_floats,
    }


class HetSynMethod(OwnLoopMethod):
    """HetSynLIF classifier trained by BPTT in its own loop (Adam, cosine schedule, own lr for the decays)."""

    config: "HetSynConfig"
    data_kinds, data_hint = ("events",), "--dataset nmnist or shd"

    def fit(self) -> OwnLoopResult:
        c, run, info = self.config, self.ctx.cfg, self.ctx.info
        tr, te = self.ctx.datasets()
        if info.name == "nmnist":
            side = info.input_size // c.pool
            n_in, pool = info.in_channels * side * side, c.pool
        else:
            n_in, pool = info.input_size, 1
        g = torch.Generator().manual_seed(run.seed)
        tl = DataLoader(tr, batch_size=run.batch_size, shuffle=True, generator=g)
        el = DataLoader(te, batch_size=run.eval_batch_size, shuffle=False)
        model = HetSynNet(n_in, info.num_classes, c, pool)
        rho = [p for n, p in model.named_parameters() if n.endswith("rho") and p.requires_grad]
        rest = [p for n, p in model.named_parameters() if not n.endswith("rho")]
        opt = torch.optim.Adam([{"params": rest, "lr": run.lr}] + ([{"params": rho, "lr": c.rho_lr}] if rho else []))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(run.epochs, 1))
        t0 = time.time()
        ev: dict[str, Any] = {}
        for epoch in range(run.epochs):
            model.train()
            seen = correct = 0
            loss_sum = 0.0
            for i, (x, y) in enumerate(tl):
                if run.max_batches is not None and i >= run.max_batches:
                    break
                logits = model(_seq(x))
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seen += y.numel()
                correct += int((logits.argmax(1) == y).sum())
                loss_sum += float(loss.detach()) * y.numel()
            sched.step()
            ev = evaluate(model, el, run.max_batches)
            if run.progress:
                print(f"epoch {epoch + 1}/{run.epochs}: train loss {loss_sum / max(seen, 1):.4f} "
                      f"acc {correct / max(seen, 1):.4f} | test acc {ev['accuracy']:.4f} | "
                      f"firing {ev['firing_rate']:.3f} | {time.time() - t0:.1f}s", flush=True)
        summary = (f"{c.variant} on {info.name}: test accuracy {ev['accuracy']:.4f}, firing {ev['firing_rate']:.3f}, "
                   f"SOPs {ev['sops'] / 1e6:.3f} M, state mults {ev['state_mults'] / 1e6:.3f} M, "
                   f"energy {ev['energy_sop_uJ']:.3f} uJ (SOP) / {ev['energy_total_uJ']:.3f} uJ (with state), "
                   f"params {ev['params']}, state floats {ev['state_floats']}")
        return OwnLoopResult({"model": model.state_dict()}, ev, summary)


@dataclass
class HetSynConfig(MethodConfig):
    """HetSynLIF classifier on event data (HetSyn, Deng et al. 2025); data, T, lr, epochs from the run config."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: HetSynMethod)
    variant: Literal["hetsyn", "neuron", "adaptive", "lif"] = "hetsyn"
    """hetsyn: per-synapse decays; neuron: per-neuron decays; adaptive: threshold adaptation; lif: vanilla LIF."""
    pool: int = 2
    """Max-pool factor on the 34x34 N-MNIST frames (2 -> 578 inputs)."""
    hidden: int = 128
    tau_mean: float = 5.0
    """Initial synaptic time constant (steps); rho = exp(-1/tau)."""
    tau_std: float = 2.0
    """Spread of the initial per-synapse / per-neuron time constants (0 for lif)."""
    tau_reset: float = 5.0
    """Reset-current time constant (steps); 'adaptive' uses tau_adapt instead."""
    tau_adapt: float = 20.0
    v_threshold: float = 1.0
    surrogate: str = "rect"
    rho_lr: float = 1e-2
    """Learning rate of the decays rho (the network's weights use the run's --lr)."""
