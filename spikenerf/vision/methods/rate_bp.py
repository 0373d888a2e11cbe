"""Rate-based backpropagation (Yu et al., NeurIPS 2024, "Advancing training efficiency of deep SNNs through
rate-based backpropagation").

BPTT keeps every layer's state at every step for the backward pass, so training memory grows with ``T``.
Rate-BP splits one training step into

1. a **graph-free forward over T** (``torch.no_grad``), run **one time step at a time through the whole
   network** (the neurons carry their membrane between steps), while each neuron accumulates

   - its rate ``r = (1/T) sum_t s_t``, and
   - its rate sensitivity (eligibility) ``J = (1/T) sum_t g(h_t - V_th) e_t`` with the trace
     ``e_t = dh_t/dc = a * (dv_{t-1}/dh_{t-1}) * e_{t-1} + b``, ``e_0 = b`` (``h_t = a v_{t-1} + b x_t + c``,
     ``g`` the surrogate derivative; ``dv/dh`` is the reset's derivative as BPTT sees it: soft reset
     ``1 - V_th g`` (``1`` with ``detach_reset``), hard reset ``(1 - z) + (v_reset - h) g`` (``1 - z`` with
     ``detach_reset``). For the paper's LIF with a soft, detached reset
     (``u_t = lambda (u_{t-1} - V_th s_{t-1}) + W s^{l-1}_t``) this is
     ``J = (1/T) sum_t g(u_t - V_th) sum_{k<=t} lambda^{t-k}``: the derivative of the rate with respect to
     a constant input current ``c = W r^{l-1}``;

2. **one backward pass on rates**: the network is run once more on the rate-coded input ``mean_t x_t``
   (``[1, B, ...]``), every spiking layer returning its recorded rate ``r`` with the gradient
   ``dL/dc = dL/dr * J``. Conv / linear / pooling / residual sums are linear, so ``c^l = W r^{l-1}`` and
   ``dL/dW = (dL/dc^l) (r^{l-1})^T`` (the paper's rate gradient).

Memory: step 1 holds one step of state per layer, step 2 builds a graph of a ``T = 1`` network, so the
training memory does not grow with ``T`` (``tools/bench_vision_efficiency.py`` measures it against BPTT).

Limits (documented, checked): binary spikes, no membrane transform (MPBN / MPR) and no Real Spike
scale; neuron parameters (threshold, decay) get no gradient from the rate path. BatchNorm: the graph-free
pass normalizes each step's batch and updates the running statistics; it also accumulates, per BN layer, the
mean and variance of its input over all ``T`` steps and the batch (the spike pass's statistics). The rate pass
normalizes with those statistics, held constant (straight-through: the gradient flows through
``(x - mu) / sigma`` as through an affine map), not with the statistics of the rate batch.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from ..blocks import SpikeAct, spike_acts
from .base import Method, MethodConfig

__all__ = ["RateFn", "rate_bp_loss", "rate_sensitivity", "rate_bp_state", "saved_tensor_bytes", "RateBPConfig",
           "RateBPMethod"]


class RateFn(torch.autograd.Function):
    """Forward: the recorded rate ``r``; backward: ``grad_c = grad_r * J`` (``c`` only sets the graph)."""

    @staticmethod
    def forward(ctx, c: Tensor, r: Tensor, J: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(J)
        return r.clone()

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (J,) = ctx.saved_tensors
        return g * J, None, None


def _check(act: SpikeAct) -> None:
    n = act.neuron
    if n.spec.code != "binary":
        raise ValueError(f"rate-BP supports binary spikes, not {n.spec.code!r}")
    if n.membrane_transform is not None or act.real_spike is not None:
        raise ValueError("rate-BP does not support MPBN / MPR / Real Spike")


def rate_sensitivity(x_seq: Tensor, neuron: nn.Module) -> tuple[Tensor, Tensor]:
    """``(r, J)`` of ``neuron`` for the input currents ``x_seq`` ``[T, ...]`` (reference, one call, no graph).

    Same recurrence as the step-wise pass; used by tests and as documentation of the formula.
    """
    state = _NeuronState()
    with torch.no_grad():
        for t in range(x_seq.shape[0]):
            state.step(neuron, x_seq[t])
    return state.rate(), state.sensitivity()


class _NeuronState:
    """Membrane ``v``, eligibility ``e``, and the running sums of ``s`` and ``g e`` of one neuron layer."""

    def __init__(self) -> None:
        self.v: Tensor | None = None
        self.dvdh: Tensor | float = 0.0
        self.e: Tensor | float = 0.0
        self.sum_s: Tensor | float = 0.0
        self.sum_ge: Tensor | float = 0.0
        self.steps = 0

    def step(self, neuron: nn.Module, x: Tensor) -> Tensor:
        a, b, c = (float(p) if isinstance(p, Tensor) else p for p in neuron.charge_coefficients())
        vth = neuron.v_threshold.detach()
        spec = neuron.spec
        v = torch.zeros_like(x) if self.v is None else self.v
        h = a * v + b * x + c
        s = (h - vth >= 0).to(x.dtype)
        # eligibility: dh_t/dc through the (detached-reset) membrane path
        self.e = a * self.dvdh * self.e + b
        g = spec.surrogate.grad(h - vth)
        if spec.reset == "hard":
            self.v = h * (1.0 - s) + spec.v_reset * s
            self.dvdh = (1.0 - s) if spec.detach_reset else (1.0 - s) + (spec.v_reset - h) * g
        else:
            self.v = h - vth * s
            self.dvdh = 1.0 if spec.detach_reset else 1.0 - vth * g
        self.sum_s = self.sum_s + s
        self.sum_ge = self.sum_ge + g * self.e
        self.steps += 1
        scale = neuron.output_scale()
        return s if scale is None else s * scale.detach()

    def rate(self) -> Tensor:
        return self.sum_s / self.steps  # type: ignore[return-value]

    def sensitivity(self) -> Tensor:
        return self.sum_ge / self.steps  # type: ignore[return-value]


@contextmanager
def rate_bp_state(model: nn.Module) -> Iterator[dict[SpikeAct, _NeuronState]]:
    """Switch the spiking slots of ``model`` to step-wise stateful, graph-free forwards (pass 1)."""
    acts = [a for _, a in spike_acts(model) if a.spiking]
    states: dict[SpikeAct, _NeuronState] = {}
    for a in acts:
        _check(a)
        st = _NeuronState()
        states[a] = st

        def fwd(self, x: Tensor, st=st) -> Tensor:  # x: [1, B, ...]
            s = st.step(self.neuron, x[0])
            if self.record_stats:
                self.spike_count += float((s != 0).sum())
                self.element_count += float(s.numel())
            return s.unsqueeze(0)

        a.forward = types.MethodType(fwd, a)  # type: ignore[method-assign]
    try:
        yield states
    finally:
        for a in acts:
            del a.forward


class _BNStats:
    """Per-channel sum, sum of squares and count of a BatchNorm's input over the spike pass (all steps)."""

    def __init__(self) -> None:
        self.s: Tensor | float = 0.0
        self.sq: Tensor | float = 0.0
        self.n = 0

    def add(self, x: Tensor) -> None:
        dims = [d for d in range(x.dim()) if d != 1]
        xd = x.detach().double()
        self.s = self.s + xd.sum(dims)
        self.sq = self.sq + (xd * xd).sum(dims)
        self.n += x.numel() // x.shape[1]

    def mean_var(self) -> tuple[Tensor, Tensor]:
        mean = self.s / self.n
        return mean, (self.sq / self.n - mean * mean).clamp(min=0.0)  # biased, as BN normalizes


@contextmanager
def _record_bn_stats(model: nn.Module) -> Iterator[dict[nn.Module, _BNStats]]:
    """Pass 1: accumulate every BatchNorm's input statistics over the ``T`` step-wise forwards."""
    stats: dict[nn.Module, _BNStats] = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            st = stats[m] = _BNStats()
            hooks.append(m.register_forward_pre_hook(lambda mod, args, st=st: st.add(args[0])))
    try:
        yield stats
    finally:
        for h in hooks:
            h.remove()


def _bn_with(bn: nn.Module, mean: Tensor, var: Tensor):
    """``bn``'s forward with fixed (spike-pass) statistics: ``gamma (x - mu) / sqrt(var + eps) + beta``."""

    def fwd(self, x: Tensor) -> Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        m, v = mean.to(x.dtype).view(shape), var.to(x.dtype).view(shape)
        y = (x - m) / torch.sqrt(v + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    return types.MethodType(fwd, bn)


@contextmanager
def _rate_pass(model: nn.Module, states: dict[SpikeAct, _NeuronState], bn_stats: dict[nn.Module, _BNStats]):
    """Pass 2: each spiking slot returns ``RateFn(c, r, J)``; in training, each BatchNorm normalizes with the
    spike pass's statistics (running statistics untouched)."""
    bns = list(bn_stats) if model.training else []
    for m in bns:
        m.forward = _bn_with(m, *bn_stats[m].mean_var())  # type: ignore[method-assign]
    for a, st in states.items():
        r = st.rate().unsqueeze(0)
        scale = a.neuron.output_scale()
        J = st.sensitivity().unsqueeze(0)
        if scale is not None:
            r, J = r * scale.detach(), J * scale.detach()

        def fwd(self, c: Tensor, r=r, J=J) -> Tensor:
            return RateFn.apply(c, r, J)

        a.forward = types.MethodType(fwd, a)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in bns:
            del m.forward
        for a in states:
            del a.forward


def rate_bp_forward(model: nn.Module, x_seq: Tensor) -> Tensor:
    """Rate-BP forward of a :class:`~spikenerf.vision.models.SeqClassifier`: logits ``[B, K]`` whose graph
    is the one-step rate network (memory independent of ``T``). The value equals the spiking forward's
    logits (mean over T of the classifier output) whenever the head after the last neuron is linear."""
    T = x_seq.shape[0]
    with rate_bp_state(model) as states, _record_bn_stats(model) as bn_stats:
        with torch.no_grad():
            for t in range(T):
                model.forward_seq(x_seq[t:t + 1])
    # the graph: the network on the rate-coded input, neurons replaced by their recorded rates
    x_rate = x_seq.mean(0, keepdim=True)
    with _rate_pass(model, states, bn_stats):
        return model.forward_seq(x_rate).mean(0)


def rate_bp_loss(model: nn.Module, x_seq: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(logits, CE loss)`` with the rate-BP graph; ``loss.backward()`` gives the rate gradients."""
    logits = rate_bp_forward(model, x_seq)
    return logits, F.cross_entropy(logits, y)


@contextmanager
def saved_tensor_bytes(exclude: nn.Module | None = None) -> Iterator[list[int]]:
    """Count the bytes autograd saves for the backward pass inside the block (``out[0]``), each storage once;
    the parameters of ``exclude`` (the model's weights, there anyway) are not counted."""
    total = [0]
    seen: set[int] = set()
    if exclude is not None:
        seen.update(p.untyped_storage().data_ptr() for p in exclude.parameters())

    def pack(t: Tensor):
        key = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


class RateBPMethod(Method):
    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        return rate_bp_loss(model, x_seq, y)


@dataclass
class RateBPConfig(MethodConfig):
    """Rate-based backpropagation (Yu et al. 2024): graph-free forward over T, one backward on rates."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: RateBPMethod)
