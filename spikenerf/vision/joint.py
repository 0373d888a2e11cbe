"""Joint ANN-SNN training with shared weight factors (Guo et al., Pattern Recognition 2023, "Joint A-SNN").

Implemented:
- every conv weight of the SNN and of its ANN twin is factorized per kernel position, as the paper defines
  the sharing: for each tap ``p = (i, j)`` of a ``k x k`` kernel, ``W_b[:, :, i, j] = U_p diag(s_{b,p}) V_p^T``
  (``b`` in {ann, snn}) with ``U_p`` ``[out, r]`` and ``V_p`` ``[in, r]`` shared by both branches and the
  singular values ``s_{b,p}`` ``[r]`` (and biases, BN) per branch. Initialized from the SVD of each tap of the
  layer's initial weight, so at step 0 both branches equal the original layers. The fully connected layers
  are not shared: each branch keeps its own (same initial weights).
- multi-branch self-distillation (:meth:`JointANNSNN.branch_logits`): besides the two whole networks, branch
  ``k`` runs the SNN's first ``k`` stages, averages their output over ``T`` (the spike rate) and finishes with
  the ANN's remaining stages and classifier. The loss (:mod:`spikenerf.vision.methods.joint_asnn`) is
  ``CE(snn) + CE(ann) + w [KD(snn <- ann) + sum_k KD(branch_k <- ann)]`` with Hinton KD, the ANN's logits the
  detached teacher: each branch pulls the SNN's stage-``k`` rates towards what the ANN's later stages read.
  The paper's text available offline is its abstract ("the knowledge inside ANN is distilled to SNN by using
  multiple branches from the networks"); the branch construction here follows that description, and
  ``--method.no-branches`` gives the logits-only form. The hybrid passes leave the ANN's BatchNorm running
  statistics untouched (they normalize with the batch's own, as in training).
- :meth:`JointANNSNN.materialize` returns a plain model of one branch (``W = U diag(s_b) V^T`` baked
  into ordinary conv / fc layers), which ``eval`` / ``export`` use.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import NeuronConfig
from .models import SeqClassifier, build_model

__all__ = ["SharedFactors", "FactorizedLayer", "JointANNSNN"]


class SharedFactors(nn.Module):
    """Per kernel position ``p``: ``U_p`` ``[out, r]``, ``V_p`` ``[in, r]`` shared by the two branches and one
    singular-value vector ``s_{b,p}`` ``[r]`` per branch (stacked over the ``P = k_h k_w`` positions)."""

    def __init__(self, weight: Tensor, rank: int | None = None) -> None:
        super().__init__()
        self.shape = tuple(weight.shape)
        o, i = weight.shape[:2]
        taps = weight.detach().reshape(o, i, -1).permute(2, 0, 1)  # [P, out, in]
        u, s, vh = torch.linalg.svd(taps, full_matrices=False)  # [P, out, m], [P, m], [P, m, in]
        r = s.shape[1] if rank is None else max(1, min(rank, s.shape[1]))
        self.U = nn.Parameter(u[..., :r].contiguous())
        self.V = nn.Parameter(vh[:, :r].transpose(1, 2).contiguous())
        self.s_ann = nn.Parameter(s[:, :r].clone())
        self.s_snn = nn.Parameter(s[:, :r].clone())

    def weight(self, branch: str) -> Tensor:
        s = self.s_snn if branch == "snn" else self.s_ann
        w = torch.einsum("por,pr,pir->oip", self.U, s, self.V)  # [out, in, P]
        return w.reshape(self.shape)


class FactorizedLayer(nn.Module):
    """Conv / linear layer whose weight comes from :class:`SharedFactors` for one branch."""

    def __init__(self, layer: nn.Module, factors: SharedFactors, branch: str) -> None:
        super().__init__()
        self.factors = factors  # the same module object sits in both branches
        self.branch = branch
        self.kind = type(layer).__name__
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone())
        self.conv_kwargs = {}
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            self.conv_kwargs = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                                    groups=layer.groups)

    @property
    def weight(self) -> Tensor:
        return self.factors.weight(self.branch)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if self.kind == "Linear":
            return F.linear(x, w, self.bias)
        fn = F.conv2d if self.kind == "Conv2d" else F.conv1d
        return fn(x, w, self.bias, **self.conv_kwargs)

    def to_plain(self) -> nn.Module:
        w = self.weight.detach()
        if self.kind == "Linear":
            m: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=self.bias is not None)
        else:
            cls = nn.Conv2d if self.kind == "Conv2d" else nn.Conv1d
            m = cls(w.shape[1] * self.conv_kwargs["groups"], w.shape[0], w.shape[2:], bias=self.bias is not None,
                    **self.conv_kwargs)
        with torch.no_grad():
            m.weight.copy_(w)
            if self.bias is not None:
                m.bias.copy_(self.bias.detach())
        return m


@contextlib.contextmanager
def _running_stats_frozen(root: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalize with the batch as usual but do not move their running statistics."""
    bns = [m for m in root.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) running + 0 batch
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


class JointANNSNN(nn.Module):
    """SNN and ANN twin of one architecture with shared factors; ``forward`` returns ``(snn_logits, ann_logits)``."""

    def __init__(self, model: str, num_classes: int, in_channels: int, neuron: NeuronConfig | None = None,
                 width: float = 1.0, input_size: int = 32, rank_ratio: float = 1.0) -> None:
        super().__init__()
        self.snn: SeqClassifier = build_model(model, num_classes, in_channels, True, neuron, width, input_size)
        self.ann: SeqClassifier = build_model(model, num_classes, in_channels, False, neuron, width, input_size)
        self.ann.load_state_dict(self.snn.state_dict(), strict=False)  # same initial weights in both
        # convs are shared (per kernel position); the fully connected layers stay separate per branch
        layers = [(n, m) for n, m in self.snn.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
        for name, layer in layers:
            r = max(1, int(round(min(layer.weight.shape[0], layer.weight.shape[1]) * rank_ratio)))
            f = SharedFactors(layer.weight, r)
            _replace(self.snn, name, FactorizedLayer(layer, f, "snn"))
            _replace(self.ann, name, FactorizedLayer(self.ann.get_submodule(name), f, "ann"))

    def forward(self, x_seq: Tensor, x_ann: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x_seq`` ``[T, B, ...]`` for the SNN; ``x_ann`` (default ``x_seq``) for the ANN branch, e.g. one
        step of a static image, since a ReLU net is stateless."""
        return self.snn(x_seq), self.ann(x_seq if x_ann is None else x_ann)

    def branch_logits(self, x_seq: Tensor, x_ann: Tensor | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``(snn_logits, ann_logits, hybrids)``: ``hybrids[k-1]`` is branch ``k`` (the SNN's stages ``1..k``,
        their output's mean over ``T``, then the ANN's stages ``k+1..K``), one per inner stage boundary."""
        s_st, a_st = self.snn.stages(), self.ann.stages()
        if s_st is None or a_st is None:
            raise ValueError(f"multi-branch distillation needs a model split into stages; "
                             f"{type(self.snn).__name__} defines none (use --method.no-branches)")
        h, hybrids = x_seq, []
        for k, f in enumerate(s_st):
            h = f(h)
            if k < len(s_st) - 1:
                z = h.mean(0, keepdim=True)  # the SNN's stage-k rate, one ANN step
                with _running_stats_frozen(self.ann):
                    for g in a_st[k + 1:]:
                        z = g(z)
                hybrids.append(z.mean(0))
        return h.mean(0), self.ann(x_seq if x_ann is None else x_ann), hybrids

    def materialize(self, branch: str = "snn") -> SeqClassifier:
        """Plain model of one branch (factorized weights baked into ordinary layers)."""
        m = copy.deepcopy(self.snn if branch == "snn" else self.ann)
        for name, layer in list(m.named_modules()):
            if isinstance(layer, FactorizedLayer):
                _replace(m, name, layer.to_plain())
        return m
