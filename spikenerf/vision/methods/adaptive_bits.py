"""Adaptive bit allocation (Yao et al., 2025, "Towards efficient and accurate spiking neural networks via
adaptive bit allocation"): per-layer learnable temporal length ``T_l``, spike bit width ``B_s`` and weight bit
width ``B_w``, trained by gradients and steered to target budgets by a loss term.

Pieces:

- **Spikes / time**: every spiking slot holds the core :class:`spikenerf.snn.neurons.RefinedNode`
  (multi-bit soft-reset neuron with learnable ``T_l``, ``B_s`` and step size; it resamples an input of another
  length to its own ``T_l`` and carries the ``T`` / ``B`` gradients, see its docstring). Residual sums of two
  branches with different lengths resample the shortcut to the branch's length (same mean-preserving map).
- **Weights** (:class:`QuantConv2d`, :class:`QuantLinear`): symmetric uniform quantizer
  ``W_q = d_w clip(round(W / d_w), -p, p)``, ``p = 2^{B_w - 1} - 1``, ``B_w = round(b_w)`` straight-through,
  learnable step ``d_w`` (LSQ init ``2 mean|W| / sqrt(p)``). ``p`` is a differentiable function of ``B_w``,
  so the clipped weights give ``B_w`` its gradient (``d W_q / d p = d_w sign(W)`` where clipped). The stem conv
  (real input) and the classifier stay full precision.
- **Step-size renewal**: a learnable bit width moves continuously but the quantizer only changes when
  ``round(b)`` does, and then the step learnt for the old width no longer matches it (``B`` up with the old
  ``d`` widens the range without refining it; ``B`` down with the old ``d`` clips everything above the
  shrunken range: the step-size mismatch). After every optimizer step :func:`renew_steps` renews the step of a
  layer whose rounded width changed: the step minimising the quantization MSE at the new width (weights: of
  the layer's ``W``; spikes: of the rate quantization of the last batch's mean input currents), searched from
  the old step, the range-keeping step (``d p_old / p_new``, ``d (2^B_old - 1) / (2^B_new - 1)``) and, for
  weights, the LSQ init, then refined on a multiplicative grid.
- **Costs** (:func:`bit_report`), per weight layer ``l`` fed by a layer with ``T_in`` steps and ``B_s,in``-bit
  spikes: **bit budget** ``T_in * B_w * B_s,in`` and **S-ACE** (spiking arithmetic computation effort)
  ``MACs_l * T_in * B_w * B_s,in * density_in`` (bit-operations of the non-zero inputs; a real-valued input
  counts ``B_s = 32`` and density 1). Totals are the sums over the quantized layers (the full-precision stem
  and classifier are listed per layer but left out of the totals and of the loss).
- **Budget loss**: ``lambda_b relu(mean_l BB_l / BB_target - 1) + lambda_s relu(S-ACE / S-ACE_target - 1)``,
  differentiable in ``T``, ``B_w``, ``B_s`` through the straight-through rounding (density detached).

The paper's exact parameterization was not available to us beyond its abstract; this is our implementation of
the components it names, with each formula above checked in ``tests/vision/test_efficiency_methods.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from spikenerf.snn.energy import bit_budget, s_ace
from spikenerf.snn.neurons import RefinedNode
from spikenerf.snn.neurons.refined import best_step, resample_time, round_ste

from ..blocks import spike_acts
from ..models.base import SeqClassifier
from ..models.resnet import BasicBlock
from .base import Method, MethodConfig

__all__ = ["WeightQuantizer", "QuantConv2d", "QuantLinear", "convert_adaptive", "renew_steps", "bit_report",
           "budget_loss", "BitRecorder", "InputSampler", "AdaptiveBitsConfig", "AdaptiveBitsMethod"]


class WeightQuantizer(nn.Module):
    """Signed uniform quantizer with learnable bit width ``b`` (``B = round(b)`` in ``bits_range``) and step."""

    def __init__(self, weight: Tensor, bits_init: float = 4.0, bits_range: tuple[int, int] = (2, 8)) -> None:
        super().__init__()
        self.bits_range = (int(bits_range[0]), int(bits_range[1]))
        b0 = int(round(bits_init))
        p = 2 ** (b0 - 1) - 1
        self.bits_param = nn.Parameter(torch.tensor(float(bits_init)))
        self.step = nn.Parameter(torch.tensor(float(2 * weight.detach().abs().mean() / p ** 0.5) + 1e-8))
        self.register_buffer("bits_int", torch.tensor(b0))

    def bits(self) -> Tensor:
        return round_ste(self.bits_param.clamp(*self.bits_range))

    def forward(self, w: Tensor) -> Tensor:
        p = 2.0 ** (self.bits() - 1.0) - 1.0
        d = self.step.abs() + 1e-8
        q = round_ste(w / d)
        q = torch.minimum(torch.maximum(q, -p), p)
        return q * d

    @torch.no_grad()
    def renew_step(self, weight: Tensor | None = None) -> bool:
        """Step-size renewal after ``round(b)`` changed: the step minimising ``||Q(W) - W||^2`` at the new width,
        searched from ``d`` (kept), ``d p_old / p_new`` (range kept) and the LSQ init ``2 mean|W| / sqrt(p_new)``.
        Without ``weight`` the range is kept."""
        new = int(torch.round(self.bits_param.clamp(*self.bits_range)))
        old = int(self.bits_int)
        if new == old:
            return False
        d = float(self.step.abs())
        p_old, p_new = 2 ** (old - 1) - 1, 2 ** (new - 1) - 1
        keep_range = d * p_old / p_new
        if weight is None:
            self.step.fill_(keep_range)
        else:
            w = weight.detach().flatten()

            def q(x: Tensor, step: float) -> Tensor:
                return step * torch.clamp(torch.round(x / step), -p_new, p_new)

            lsq = float(2 * w.abs().mean() / p_new ** 0.5)
            self.step.fill_(best_step(w, q, [d, keep_range, lsq]))
        self.bits_int.fill_(new)
        return True


class QuantConv2d(nn.Conv2d):
    def __init__(self, *args, bits_init: float = 4.0, bits_range=(2, 8), **kw) -> None:
        super().__init__(*args, **kw)
        self.wq = WeightQuantizer(self.weight, bits_init, bits_range)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.wq(self.weight), self.bias)


class QuantLinear(nn.Linear):
    def __init__(self, *args, bits_init: float = 4.0, bits_range=(2, 8), **kw) -> None:
        super().__init__(*args, **kw)
        self.wq = WeightQuantizer(self.weight, bits_init, bits_range)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.wq(self.weight), self.bias)


def _swap(parent: nn.Module, name: str, child: nn.Module, bits_init: float, bits_range) -> nn.Module:
    if isinstance(child, nn.Conv2d):
        new: nn.Module = QuantConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                     child.padding, child.dilation, child.groups, child.bias is not None,
                                     bits_init=bits_init, bits_range=bits_range)
    else:
        new = QuantLinear(child.in_features, child.out_features, child.bias is not None, bits_init=bits_init,
                          bits_range=bits_range)
    new.weight.data.copy_(child.weight.data)
    if child.bias is not None:
        new.bias.data.copy_(child.bias.data)
    new.wq = WeightQuantizer(new.weight, bits_init, bits_range)
    setattr(parent, name, new)
    return new


def _patch_residual(block: nn.Module) -> None:
    """ResNet BasicBlock: resample the shortcut to the branch's length before the sum."""
    block.time_align = resample_time


def convert_adaptive(model: nn.Module, t_init: float = 4.0, t_max: int = 8, spike_bits: float = 2.0,
                     spike_bits_range=(1, 4), weight_bits: float = 4.0, weight_bits_range=(2, 8),
                     step: float = 0.5, decay: float = 1.0, surrogate: str = "rect") -> nn.Module:
    """Turn a :class:`SeqClassifier` into its adaptive-bit version in place (neurons, weights, residual sums)."""
    for _, a in spike_acts(model):
        if not a.spiking:
            raise ValueError("adaptive bit allocation needs the spiking model")
        a.neuron = RefinedNode(decay=decay, step=step, t_init=t_init, t_range=(1, t_max), bits_init=spike_bits,
                               bits_range=spike_bits_range, surrogate=surrogate)
    skip = {id(m) for m in model.first_layers()}
    fc = getattr(model, "fc", None)
    if fc is not None:
        skip.add(id(fc))
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.Conv2d, nn.Linear) and id(child) not in skip:
                _swap(parent, name, child, weight_bits, weight_bits_range)
    for m in model.modules():
        if isinstance(m, BasicBlock):
            _patch_residual(m)
    return model


def renew_steps(model: nn.Module, samples: dict[int, Tensor] | None = None) -> int:
    """Step-size renewal of every weight quantizer and refined neuron whose rounded bit width changed.

    ``samples``: ``{id(neuron): mean input currents}`` of the last training batch (:class:`InputSampler`);
    a neuron without one keeps its range.
    """
    n = 0
    samples = samples or {}
    for m in model.modules():
        if isinstance(m, (QuantConv2d, QuantLinear)):
            n += int(m.wq.renew_step(m.weight))
        elif isinstance(m, RefinedNode):
            n += int(m.renew_step(samples.get(id(m))))
    return n


class InputSampler:
    """Forward hooks (a context manager) that keep each :class:`RefinedNode`'s mean input currents of the
    batch, ``{id(neuron): sample}``, for the step renewal; the neurons themselves keep nothing."""

    def __init__(self, model: nn.Module) -> None:
        self.nodes = [m for m in model.modules() if isinstance(m, RefinedNode)]
        self.samples: dict[int, Tensor] = {}
        self._hooks: list = []

    def _hook(self, mod: RefinedNode, inp, out) -> None:
        self.samples[id(mod)] = mod.input_sample(inp[0])

    def __enter__(self) -> "InputSampler":
        self._hooks = [m.register_forward_hook(self._hook) for m in self.nodes]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


class BitRecorder:
    """Forward hooks that record, per weight layer, the input's ``T``, ``B_s`` (straight-through tensors when
    produced by a :class:`RefinedNode`), ``B_w``, dense MACs per step and input density.

    Which neuron produced a layer's input is looked up by the tensor's identity in ``produced`` (filled by the
    neuron hooks during the forward); a layer fed by something else (a pool, a residual sum) takes the last
    neuron's bit width and its own input length."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.rows: list[dict] = []
        self.hooks = []
        first = {id(m) for m in model.first_layers()}
        self._last: tuple[Tensor, Tensor] | None = None
        self.produced: dict[int, tuple[Tensor, Tensor, Tensor]] = {}  # id(output) -> (output, T_ste, B_ste)
        wrapped = {}
        for name, m in model.named_modules():
            inner = getattr(m, "conv", None) if isinstance(getattr(m, "conv", None), nn.Conv2d) else getattr(m, "fc", None)
            if isinstance(inner, (nn.Conv2d, nn.Linear)) and not isinstance(m, SeqClassifier):
                wrapped[id(inner)] = (name, m, inner)  # ConvBN / LinearBN style: sees [T, B, ...]
        for name, m in model.named_modules():
            if isinstance(m, RefinedNode):
                self.hooks.append(m.register_forward_hook(self._neuron_hook))
            elif id(m) in wrapped:
                continue
            elif any(w[1] is m for w in wrapped.values()):
                inner = next(w[2] for w in wrapped.values() if w[1] is m)
                self.hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, name=name, inner=inner: self._layer(name, inner, inp[0], id(inner) in first)))
            elif isinstance(m, nn.Linear):  # a bare classifier on [T, B, F]
                self.hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, name=name: self._layer(name, mod, inp[0], id(mod) in first)))

    def _neuron_hook(self, mod: RefinedNode, inp, out):
        s = out[0] if isinstance(out, tuple) else out
        t_ste, b_ste = mod.temporal_length(), mod.spike_bits()
        self._last = (t_ste, b_ste)
        self.produced[id(s)] = (s, t_ste, b_ste)  # the tensor is held so its id stays unique in this forward

    def _layer(self, name: str, mod: nn.Module, x: Tensor, real_input: bool) -> None:
        T = x.shape[0]
        t_ste = b_ste = None
        if id(x) in self.produced and self.produced[id(x)][0] is x:
            _, t_ste, b_ste = self.produced[id(x)]
        if not real_input and t_ste is None and self._last is not None:
            t_ste, b_ste = self._last
            if int(t_ste.detach()) != T:  # pooled / summed tensors keep their own length
                t_ste = torch.tensor(float(T))
        if real_input or b_ste is None:
            b_ste = torch.tensor(32.0 if real_input else 1.0)
        if t_ste is None:
            t_ste = torch.tensor(float(T))
        bw = mod.wq.bits() if hasattr(mod, "wq") else torch.tensor(32.0)
        per_step = x[0]
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            oh = (per_step.shape[-2] + 2 * mod.padding[0] - mod.kernel_size[0]) // mod.stride[0] + 1
            ow = (per_step.shape[-1] + 2 * mod.padding[1] - mod.kernel_size[1]) // mod.stride[1] + 1
            macs = float(k * mod.out_channels * oh * ow)
        else:
            macs = float(mod.in_features * mod.out_features * (per_step.numel() // per_step.shape[0] // mod.in_features))
        density = 1.0 if real_input else float((x.detach() != 0).float().mean())
        self.rows.append({"name": name, "T": t_ste, "B_s": b_ste, "B_w": bw, "macs": macs, "density": density,
                          "real_input": real_input, "quantized": hasattr(mod, "wq")})

    def close(self) -> None:
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> "BitRecorder":
        self.rows, self.produced = [], {}
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self.produced = {}


def _costs(rows: list[dict]) -> tuple[list[Tensor], list[Tensor]]:
    """Bit budget and S-ACE of the quantized layers (the full-precision stem / classifier are reported apart)."""
    rows = [r for r in rows if r["quantized"]]
    bb = [bit_budget(r["T"], r["B_w"], r["B_s"]) for r in rows]
    sace = [s_ace(r["macs"], r["T"], r["B_w"], r["B_s"], r["density"]) for r in rows]
    return bb, sace


def budget_loss(rows: list[dict], bb_target: float = 0.0, sace_target_m: float = 0.0, lam_bb: float = 1.0,
                lam_sace: float = 1.0) -> Tensor:
    """``lam_b relu(mean_l BB_l / BB_t - 1) + lam_s relu(S-ACE / S-ACE_t - 1)`` (targets <= 0: term off).

    ``sace_target_m`` is in millions of bit-operations per sample.
    """
    bb, sace = _costs(rows)
    loss = torch.zeros(())
    if bb_target > 0 and bb:
        loss = loss + lam_bb * torch.relu(torch.stack(bb).mean() / bb_target - 1.0)
    if sace_target_m > 0 and sace:
        loss = loss + lam_sace * torch.relu(torch.stack(sace).sum() / (sace_target_m * 1e6) - 1.0)
    return loss


@torch.no_grad()
def bit_report(model: nn.Module, x_seq: Tensor) -> dict:
    """Per-layer and total bit budget / S-ACE of ``model`` on one batch ``x_seq`` (eval mode, per sample)."""
    was = model.training
    model.eval()
    with BitRecorder(model) as rec:
        model(x_seq)
    model.train(was)
    bb, sace = _costs(rec.rows)
    layers = [{"name": r["name"], "T": int(r["T"]), "B_w": int(r["B_w"]), "B_s": int(r["B_s"]),
               "bit_budget": float(bit_budget(r["T"], r["B_w"], r["B_s"])), "macs": r["macs"],
               "s_ace": float(s_ace(r["macs"], r["T"], r["B_w"], r["B_s"], r["density"])), "density": r["density"],
               "quantized": r["quantized"]} for r in rec.rows]
    neurons = [(n, a.neuron) for n, a in spike_acts(model) if isinstance(a.neuron, RefinedNode)]
    return {"layers": layers, "bit_budget_total": float(sum(bb)),
            "bit_budget_mean": float(sum(bb) / max(len(bb), 1)), "s_ace_total": float(sum(sace)),
            "T": {n: int(m.temporal_length()) for n, m in neurons},
            "B_s": {n: int(m.spike_bits()) for n, m in neurons}}


# ----------------------------------------------------------------------------- the method
class AdaptiveBitsMethod(Method):
    config: "AdaptiveBitsConfig"

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.samples: dict[int, Tensor] = {}
        self.last: dict[str, float] = {}

    def build(self) -> nn.Module:
        c = self.config
        return convert_adaptive(self.base_model(), t_init=float(self.ctx.cfg.timesteps), t_max=c.t_max,
                                spike_bits=c.spike_bits, spike_bits_range=(1, c.spike_bits_max),
                                weight_bits=c.weight_bits, weight_bits_range=(2, c.weight_bits_max), step=c.step,
                                decay=c.decay, surrogate=self.ctx.cfg.neuron.surrogate)

    def param_groups(self, model: nn.Module):
        """The T / bit-width parameters get their own group at ``bits_lr`` without weight decay."""
        bits = [p for n, p in model.named_parameters() if n.endswith(("t_param", "bits_param"))]
        ids = {id(p) for p in bits}
        return [{"params": [p for p in model.parameters() if id(p) not in ids]},
                {"params": bits, "lr": self.config.bits_lr, "weight_decay": 0.0}]

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        c = self.config
        with BitRecorder(model) as rec, InputSampler(model) as sampler:
            logits = model(x_seq)
        self.samples = sampler.samples
        loss = F.cross_entropy(logits, y)
        if c.budget_target > 0 or c.sace_target_m > 0:
            b = budget_loss(rec.rows, c.budget_target, c.sace_target_m, c.budget_weight, c.budget_weight)
            self.last["budget_loss"] = float(b.detach())
            loss = loss + b
        return logits, loss

    def after_step(self, model: nn.Module) -> None:
        renew_steps(model, self.samples)

    def report(self, model: nn.Module, x_seq: Tensor) -> dict[str, Any]:
        return bit_report(model, x_seq)

    def format_report(self, rep: dict[str, Any]) -> str:
        lines = [f"bit budget (sum T*B_w*B_s over quantized layers) {rep['bit_budget_total']:.0f}, "
                 f"mean {rep['bit_budget_mean']:.1f}; S-ACE {rep['s_ace_total'] / 1e6:.3f} M bit-ops/sample"]
        lines += [f"  {l['name']}: T={l['T']} B_w={l['B_w']} B_s={l['B_s']} budget={l['bit_budget']:.0f} "
                  f"S-ACE={l['s_ace'] / 1e6:.4f}M" for l in rep["layers"]]
        return "\n".join(lines)

    export_refusal = ("adaptive-bits checkpoints keep quantized weights and are not re-parameterized (folding BN "
                      "into a quantized conv would change the model)")


@dataclass
class AdaptiveBitsConfig(MethodConfig):
    """Adaptive bit allocation (Yao et al. 2025): learnable per-layer T, spike / weight bits, budget loss."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: AdaptiveBitsMethod)
    t_max: int = 8
    """Largest per-layer temporal length T_l (T_l is learnt in [1, t_max], initialised at --timesteps)."""
    spike_bits: float = 2.0
    spike_bits_max: int = 4
    weight_bits: float = 4.0
    weight_bits_max: int = 8
    step: float = 0.5
    """Initial spike step size (the multi-bit threshold)."""
    decay: float = 1.0
    """Membrane decay of the refined neuron (1 = IF, soft reset)."""
    budget_target: float = 0.0
    """Target mean per-layer bit budget T*B_w*B_s over the quantized layers (0 = no budget term)."""
    sace_target_m: float = 0.0
    """Target total S-ACE in millions of bit-operations per sample (0 = no S-ACE term)."""
    budget_weight: float = 1.0
    bits_lr: float = 0.05
    """Learning rate of the T_l / B_s / B_w parameters (their own group, no weight decay): with the network's small
    Adam learning rate they would hardly move in a short run."""
