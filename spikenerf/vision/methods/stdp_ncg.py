"""Neuronal Competition Groups + supervised STDP (Goupy, Tirilly & Bilasco, NeurIPS 2024), no backprop.

Pipeline (``spikenerf-vision train stdp-ncg-digits``):

1. Latency (time-to-first-spike) coding: a value ``x in [0, 1]`` spikes once at ``t = round((1 - x)(T - 1))``;
   ``x <= x_min`` never spikes.
2. Features: ``pixels`` (fixed ON/OFF extractor: ``[x, 1 - x]``) or ``stdp`` (Hebbian: a bank of IF filters on
   ON/OFF patches, trained by unsupervised STDP with winner-takes-all, Kheradpisheh et al. 2018:
   ``dw = a+ w (1 - w)`` if ``t_pre <= t_post`` else ``-a- w (1 - w)``; the pooled first-spike times are
   the features).
3. Classifier: ``C`` classes x ``M`` IF neurons (the core :class:`~spikenerf.snn.IFNode`), one spike each;
   the prediction is the class of the first neuron to fire (ties: highest potential).

Training of the classifier, per sample of class ``y`` (S2-STDP with NCGs):

- two-compartment thresholds: the neurons of the NCG of ``y`` fire with their *training* threshold
  ``theta_hat``, all others with their fixed *test* threshold ``theta`` (the one used at inference);
- intra-class WTA: in each NCG only the first neuron to fire (ties: highest potential) is kept;
- targets (S2-STDP): with ``t_base`` the mean firing time of the winners that fired (``T_lim - g/C`` if
  none), clipped to ``<= T_lim - g/C``: ``T_target = t_base - g (C-1)/C`` for the winner of NCG ``y`` and
  ``T_other = t_base + g/C`` for the other winners; error ``e_j = (t_j - T_j) / T_lim`` (``T_lim = T``:
  a neuron that does not fire has ``t_j = T_lim``);
- weights of winner ``j`` (multiplicative STDP, ``A- < 0``)::

      dw_ji = e_j A+ exp(-beta (w_ji - w_min)/(w_max - w_min))     if t_i <= t_j
      dw_ji = e_j A- exp(-beta (w_max - w_ji)/(w_max - w_min))     otherwise

  so ``e_j > 0`` (too late) is STDP and ``e_j < 0`` (too early) anti-STDP; ``w`` is clipped to
  ``[w_min, w_max]``;
- competition regulation (only in the NCG of ``y``): the winner's training threshold rises by
  ``eta_th`` and each of the ``M - 1`` others falls by ``eta_th / (M - 1)`` (sum preserved), which
  evens out how often each neuron of a group wins and is updated.

Energy: inference counts one accumulate per input spike per classifier neuron (SOPs, the core's ``E_AC_PJ``) plus
the extractor's SOPs; memory is the number of weights.

Run: ``spikenerf-vision train stdp-ncg-digits`` (an own-loop method, :meth:`STDPNCGMethod.fit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import tyro
from torch import Tensor

from spikenerf.snn import IFNode
from spikenerf.snn.energy import E_AC_PJ

from .base import MethodConfig, OwnLoopMethod, OwnLoopResult

__all__ = ["STDPNCGConfig", "STDPNCGMethod", "latency_encode", "times_to_spikes", "first_spike", "STDPExtractor",
           "NCGClassifier", "s2stdp_targets", "stdp_delta"]

NO_SPIKE = float("inf")


# ----------------------------------------------------------------------------- coding
def latency_encode(x: Tensor, T: int, x_min: float = 0.0) -> Tensor:
    """Values in [0, 1] -> single-spike times ``round((1 - x)(T - 1))``; ``inf`` (no spike) where ``x <= x_min``."""
    t = torch.round((1.0 - x.clamp(0, 1)) * (T - 1))
    return torch.where(x > x_min, t, torch.full_like(t, NO_SPIKE))


def times_to_spikes(t_in: Tensor, T: int) -> Tensor:
    """Spike times ``[N, F]`` -> one-hot spike trains ``[T, N, F]``."""
    steps = torch.arange(T, dtype=t_in.dtype).view(T, *([1] * t_in.dim()))
    return (t_in.unsqueeze(0) == steps).to(torch.float32)


_IF_NODE = IFNode(v_threshold=1.0, reset="hard")


def first_spike(t_in: Tensor, weight: Tensor, theta: Tensor, T: int) -> tuple[Tensor, Tensor]:
    """First-spike time and potential of IF neurons (core :class:`IFNode`) fed with single input spikes.

    ``t_in`` ``[N, F]``, ``weight`` ``[J, F]``, ``theta`` ``[J]`` or ``[N, J]``. The IF membrane is
    ``V_j(t) = sum_{i: t_i <= t} w_ji``; the neuron fires at the first ``t`` with ``V_j(t) >= theta_j``
    (``t_j = T`` if never). Returns ``(t_out [N, J], V [N, J])`` with ``V`` the potential at ``t_j`` (or at
    the last step if silent), used to break ties. Thresholds enter as input scaling (``x / theta``,
    ``v_th = 1``) so the core scan runs with a scalar threshold.
    """
    x = times_to_spikes(t_in, T) @ weight.t()  # [T, N, J]
    theta = theta.expand(x.shape[1:]) if theta.dim() == 1 else theta
    node = _IF_NODE
    with torch.no_grad():
        s, h = node(x / theta, return_membrane=True)
    fired = s > 0
    any_f = fired.any(0)
    idx = torch.where(any_f, fired.float().argmax(0), torch.full_like(any_f, T - 1, dtype=torch.long))
    V = h.gather(0, idx.unsqueeze(0)).squeeze(0) * theta
    t_out = torch.where(any_f, idx.to(torch.float32), torch.full_like(V, float(T)))
    return t_out, V


def _order(t: Tensor, V: Tensor) -> Tensor:
    """Sort key: earliest first, then highest potential (smaller key = better)."""
    return t * 1e6 - V


# ----------------------------------------------------------------------------- S2-STDP pieces
def s2stdp_targets(t_win: Tensor, y: int, g: float, T_lim: float) -> Tensor:
    """Desired times of the ``C`` group winners (``t_win`` ``[C]``) for a sample of class ``y``."""
    C = t_win.numel()
    gap_other, gap_target = g / C, g * (C - 1) / C
    fired = t_win < T_lim
    t_base = t_win[fired].mean() if bool(fired.any()) else torch.tensor(T_lim - gap_other)
    t_base = torch.clamp(t_base, max=T_lim - gap_other)
    tgt = torch.full_like(t_win, float(t_base + gap_other))
    tgt[y] = t_base - gap_target
    return tgt


def stdp_delta(w: Tensor, t_in: Tensor, t_post: float | Tensor, error: float | Tensor, a_plus: float,
               a_minus: float, w_min: float = 0.0, w_max: float = 1.0, beta: float = 1.0) -> Tensor:
    """Multiplicative S2-STDP update of one neuron's weights ``w [F]`` (``a_minus < 0``); broadcasts over
    neurons (``w [J, F]`` with ``t_post``, ``error`` ``[J, 1]``)."""
    span = w_max - w_min
    causal = t_in <= t_post
    pot = a_plus * torch.exp(-beta * (w - w_min) / span)
    dep = a_minus * torch.exp(-beta * (w_max - w) / span)
    return error * torch.where(causal, pot, dep)


# ----------------------------------------------------------------------------- feature extractor
class STDPExtractor:
    """IF filters on ``k x k`` ON/OFF patches trained by unsupervised STDP + WTA; features = pooled first spikes."""

    def __init__(self, n_filters: int = 16, k: int = 4, T: int = 16, a_plus: float = 0.05, a_minus: float = 0.04,
                 threshold: float = 6.0, eta_th: float = 0.05, pool: int = 2, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.k, self.T, self.pool = k, T, pool
        self.w = (0.8 + 0.05 * torch.randn(n_filters, 2 * k * k, generator=g)).clamp(0, 1)
        self.theta = torch.full((n_filters,), float(threshold))
        self.a_plus, self.a_minus, self.eta_th = a_plus, a_minus, eta_th
        self.g = g

    def _patches(self, img: Tensor) -> tuple[Tensor, int]:
        onoff = torch.cat([img, 1.0 - img], 1)  # [B, 2, H, W]
        p = torch.nn.functional.unfold(onoff, self.k)  # [B, 2kk, P]
        side = img.shape[-1] - self.k + 1
        return p.transpose(1, 2), side

    def fit(self, images: Tensor, epochs: int = 1) -> None:
        patches, _ = self._patches(images)
        B, P, F = patches.shape
        K = self.w.shape[0]
        for _ in range(epochs):
            for b in torch.randperm(B, generator=self.g).tolist():
                p = patches[b, int(torch.randint(P, (1,), generator=self.g))]
                t_in = latency_encode(p.unsqueeze(0), self.T, 0.05)
                if not torch.isfinite(t_in).any():
                    continue
                t, V = first_spike(t_in, self.w, self.theta, self.T)
                win = int(_order(t[0], V[0]).argmin())
                if t[0, win] >= self.T:
                    self.theta *= 0.98  # nobody fired: lower all thresholds a little
                    continue
                causal = t_in[0] <= t[0, win]
                ww = self.w[win]
                self.w[win] = (ww + torch.where(causal, self.a_plus, -self.a_minus) * ww * (1 - ww)).clamp(0, 1)
                self.theta[win] += self.eta_th
                self.theta[torch.arange(K) != win] -= self.eta_th / (K - 1)

    def __call__(self, images: Tensor) -> Tensor:
        """Images ``[B, 1, H, W]`` in [0, 1] -> feature spike times ``[B, K * (side/pool)^2]`` (``inf`` = none)."""
        patches, side = self._patches(images)
        B, P, F = patches.shape
        t, _ = first_spike(latency_encode(patches.reshape(B * P, F), self.T, 0.05), self.w, self.theta, self.T)
        t = t.reshape(B, side, side, -1).permute(0, 3, 1, 2)  # [B, K, side, side]
        t = -torch.nn.functional.max_pool2d(-t, self.pool, ceil_mode=True)  # earliest spike in each window
        t = torch.where(t >= self.T, torch.full_like(t, NO_SPIKE), t)
        return t.flatten(1)


# ----------------------------------------------------------------------------- classifier
class NCGClassifier:
    """``C`` Neuronal Competition Groups of ``M`` IF neurons, first-spike decision, trained by S2-STDP."""

    def __init__(self, n_in: int, n_classes: int, m: int = 5, T: int = 16, threshold: float = 10.0,
                 a_plus: float = 0.02, a_minus: float = -0.02, g: float = 4.0, beta: float = 1.0,
                 eta_th: float = 0.1, regulate: bool = True, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.C, self.M, self.T = n_classes, m, T
        self.w = (0.5 + 0.05 * torch.randn(n_classes * m, n_in, generator=gen)).clamp(0, 1)
        self.theta = torch.full((n_classes * m,), float(threshold))  # test thresholds (fixed)
        self.theta_train = self.theta.clone()  # training thresholds (competition regulation)
        self.a_plus, self.a_minus, self.g, self.beta, self.eta_th = a_plus, a_minus, g, beta, eta_th
        self.regulate = regulate
        self.wins = torch.zeros(n_classes * m)

    def group(self, c: int) -> slice:
        return slice(c * self.M, (c + 1) * self.M)

    def predict(self, t_in: Tensor) -> Tensor:
        t, V = first_spike(t_in, self.w, self.theta, self.T)
        best = _order(t, V).argmin(1)
        return best // self.M

    def step(self, t_in: Tensor, y: int) -> dict[str, Tensor]:
        """One supervised S2-STDP + NCG update on one sample (``t_in`` ``[F]``); returns what it computed."""
        theta = self.theta.clone()
        theta[self.group(y)] = self.theta_train[self.group(y)]
        t, V = first_spike(t_in.unsqueeze(0), self.w, theta, self.T)
        t, V = t[0], V[0]
        key = _order(t, V).view(self.C, self.M)
        winners = key.argmin(1) + torch.arange(self.C) * self.M  # [C] global indices
        tgt = s2stdp_targets(t[winners], y, self.g, float(self.T))
        err = (t[winners] - tgt) / float(self.T)
        # the C winners are distinct rows: one batched stdp_delta (rows with e = 0 get dw = 0)
        dw = stdp_delta(self.w[winners], t_in.unsqueeze(0), t[winners].unsqueeze(1), err.unsqueeze(1),
                        self.a_plus, self.a_minus, beta=self.beta)
        self.w[winners] = (self.w[winners] + dw).clamp(0, 1)
        wy = int(winners[y])
        self.wins[wy] += 1
        if self.regulate and self.M > 1:
            grp = self.group(y)
            others = torch.ones(self.M, dtype=torch.bool)
            others[wy - y * self.M] = False
            th = self.theta_train[grp]
            th[~others] += self.eta_th
            th[others] -= self.eta_th / (self.M - 1)
            self.theta_train[grp] = th
        return {"t": t, "V": V, "winners": winners, "targets": tgt, "errors": err}


# ----------------------------------------------------------------------------- the method
def _images(ds) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.tensor(ys)


class STDPNCGMethod(OwnLoopMethod):
    """Feature extractor + NCG classifier trained sample by sample with (S2-)STDP; no backprop anywhere."""

    config: "STDPNCGConfig"
    data_kinds, data_hint = ("static",), "gray images in [0, 1]: --dataset digits"

    def fit(self) -> OwnLoopResult:
        cfg, run, info = self.config, self.ctx.cfg, self.ctx.info
        if info.in_channels != 1:
            raise ValueError(f"STDP-NCG takes gray images (--dataset digits), not the {info.in_channels}-channel "
                             f"set {info.name!r}")
        tr, te = self.ctx.datasets()
        xtr, ytr = _images(tr)
        xte, yte = _images(te)
        t0 = time.time()
        T = run.timesteps
        ext_sops = 0.0
        if cfg.extractor == "stdp":
            ext = STDPExtractor(cfg.extractor_filters, T=T, seed=run.seed)
            ext.fit(xtr, cfg.extractor_epochs)
            ftr, fte = ext(xtr), ext(xte)
            # extractor inference cost: every input spike of every patch reaches K filters
            pt, _ = ext._patches(xte)
            ext_sops = float(torch.isfinite(latency_encode(pt, T, 0.05)).sum()) / len(xte) * ext.w.shape[0]
        else:
            flat = lambda x: torch.cat([x.flatten(1), 1 - x.flatten(1)], 1)  # noqa: E731
            ftr, fte = latency_encode(flat(xtr), T, 0.05), latency_encode(flat(xte), T, 0.05)
        n_in = ftr.shape[1]
        if cfg.threshold is None:
            threshold = 0.5 * 0.5 * float(torch.isfinite(ftr).sum(1).float().mean())  # w ~ 0.5 at init
        else:
            threshold = cfg.threshold
        eta = threshold / 50 if cfg.eta_th is None else cfg.eta_th
        clf = NCGClassifier(n_in, info.num_classes, cfg.neurons_per_class, T, threshold, cfg.a_plus, cfg.a_minus,
                            cfg.gap, cfg.beta, eta, cfg.regulate, run.seed)
        g = torch.Generator().manual_seed(run.seed)
        acc = 0.0
        for epoch in range(run.epochs):
            for i in torch.randperm(len(ytr), generator=g).tolist():
                clf.step(ftr[i], int(ytr[i]))
            acc = float((clf.predict(fte) == yte).float().mean())
            if run.progress:
                tr_acc = float((clf.predict(ftr) == ytr).float().mean())
                print(f"epoch {epoch + 1}/{run.epochs}: train acc {tr_acc:.4f} | test acc {acc:.4f} | "
                      f"{time.time() - t0:.1f}s", flush=True)
        in_spikes = float(torch.isfinite(fte).sum()) / len(fte)
        sops = in_spikes * clf.w.shape[0] + ext_sops
        res = {
            "accuracy": acc,
            "samples": len(yte),
            "features": n_in,
            "input_spikes": in_spikes,
            "sops": sops,
            "energy_uJ": sops * E_AC_PJ * 1e-6,
            "weights": int(clf.w.numel()) + (0 if cfg.extractor == "pixels" else int(cfg.extractor_filters * 32)),
            "wins_per_neuron": clf.wins.view(clf.C, clf.M).tolist(),
        }
        summary = (f"S2-STDP+NCG ({cfg.extractor} features, M={cfg.neurons_per_class}) on {info.name}: test accuracy "
                   f"{acc:.4f}, {in_spikes:.1f} input spikes, SOPs {sops / 1e3:.1f} K, energy {res['energy_uJ']:.5f} "
                   f"uJ, {res['weights']} weights")
        return OwnLoopResult({"w": clf.w, "theta": clf.theta, "theta_train": clf.theta_train}, res, summary)


@dataclass
class STDPNCGConfig(MethodConfig):
    """Supervised-STDP NCG classifier (Goupy et al. 2024); no backprop anywhere. T, epochs, data from the run."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: STDPNCGMethod)
    extractor: Literal["pixels", "stdp"] = "stdp"
    """pixels: fixed ON/OFF latency code; stdp: Hebbian filters trained by unsupervised STDP."""
    neurons_per_class: int = 5
    """M; 1 gives the plain S2-STDP layer (no intra-class competition)."""
    regulate: bool = True
    """Competition regulation (adaptive training thresholds) inside the NCG of the sample's class."""
    threshold: float | None = None
    """Test threshold (None: 0.5 x the mean initial input sum over training samples)."""
    a_plus: float = 0.02
    a_minus: float = -0.02
    gap: float = 4.0
    """g of S2-STDP (in time steps)."""
    beta: float = 1.0
    eta_th: float | None = None
    """Competition-regulation step (None: threshold / 50)."""
    extractor_filters: int = 16
    extractor_epochs: int = 1
