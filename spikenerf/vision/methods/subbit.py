"""Sub-bit SNNs (S2NN, Wei et al., NeurIPS 2025): weights below one bit through per-layer kernel codebooks.

Pipeline (``spikenerf-vision train subbit-resnet20-cifar10``; stage 1 then stage 2):

1. **Binary SNN** (``--subbit-stage binary``): every 3x3 conv after the stem uses ``W_b = alpha_o sign(W)``
   (``alpha_o = mean |W_o|`` per output channel; straight-through gradient ``1[|W| <= 1]``).
2. **Codebook** (:func:`kernel_codebook`): the sign patterns of a trained binary layer's ``k x k`` kernels
   are clustered into ``K`` codewords ``c in {-1, +1}^{k^2}`` (k-means under the Hamming distance: start
   from the ``K`` most frequent patterns, assign each kernel to the codeword with the largest inner product,
   codeword = sign of its members' mean). A kernel is then stored as a ``log2 K``-bit index:
   **bits per weight = log2(K) / k^2** (``K = 16``, 3x3: 0.44 bit).
3. **S2NN** (``--subbit-stage subbit --subbit-teacher <binary checkpoint>``): ``W_q = alpha_o c_{i*}`` with
   ``i* = argmax_i <w_sel, c_i>``; straight-through to the latent weights.

   - **OS-Quant** (outlier-aware sub-bit quantization): a few large weights dominate the inner product and
     bias the codeword choice towards their signs. Outliers are identified per layer as
     ``|w - mu| > kappa sigma`` and scaled adaptively onto the boundary,
     ``w_sel = mu + sign(w - mu) kappa sigma`` (i.e. multiplied by ``kappa sigma / |w - mu|``), before
     the selection; ``alpha`` and the latent weights keep the raw values.
   - **MPFD** (membrane-potential-based feature distillation): the teacher (the binary SNN of stage 1) runs
     on the same batch and ``L = CE + beta * mean_l mean (u^l_student - u^l_teacher)^2`` over the
     pre-reset membranes of every spiking layer.

The stem conv (real-valued input) and the classifier stay full precision, 1x1 convs (ResNet downsample)
stay binary (a 1-element kernel has no pattern to share); :func:`model_size` counts all of it.

Our reading of the abstract-level description: the exact outlier rule (``kappa``) and distillation
normalisation of the paper were not available to us; the formulas above are what is implemented and tested.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from ..blocks import SpikeAct
from ..losses import record_membranes
from .base import Method, MethodConfig

__all__ = ["SubBitConv2d", "sign_ste", "os_quant_select", "kernel_codebook", "convert_convs", "mpfd_loss",
           "model_size", "subbit_layers", "SubBitConfig", "SubBitMethod"]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype)


def sign_ste(w: Tensor) -> Tensor:
    """``sign(w)`` in {-1, +1} (``sign(0) = +1``), straight-through gradient clipped to ``|w| <= 1``."""
    return _SignSTE.apply(w)


def os_quant_weights(flat: Tensor, kappa: float) -> Tensor:
    """Outlier-aware scaling: ``|w - mu| > kappa sigma`` -> ``mu + sign(w - mu) kappa sigma`` (layer stats)."""
    mu, sigma = flat.mean(), flat.std()
    bound = kappa * sigma
    d = flat - mu
    return torch.where(d.abs() > bound, mu + torch.sign(d) * bound, flat)


def os_quant_select(kernels: Tensor, codebook: Tensor, kappa: float | None) -> Tensor:
    """Codeword index per kernel ``[N, k^2]``: ``argmax_i <w_sel, c_i>`` (``kappa=None``: no OS-Quant)."""
    sel = kernels if kappa is None else os_quant_weights(kernels, kappa)
    return (sel @ codebook.t()).argmax(1)


def kernel_codebook(patterns: Tensor, K: int, iters: int = 10) -> Tensor:
    """Cluster ``{-1,+1}`` kernels ``[N, k^2]`` into ``K`` codewords (Hamming k-means, frequency init)."""
    patterns = torch.where(patterns >= 0, 1.0, -1.0)
    counts = Counter(tuple(int(v) for v in row) for row in patterns.tolist())
    init = [list(p) for p, _ in counts.most_common(K)]
    while len(init) < K:  # fewer distinct patterns than K: pad with random codewords
        init.append([1 if torch.rand(()) < 0.5 else -1 for _ in range(patterns.shape[1])])
    cb = torch.tensor(init, dtype=patterns.dtype)
    for _ in range(iters):
        idx = (patterns @ cb.t()).argmax(1)
        new = cb.clone()
        for i in range(K):
            m = patterns[idx == i]
            if len(m):
                new[i] = torch.where(m.mean(0) >= 0, 1.0, -1.0)
        if torch.equal(new, cb):
            break
        cb = new
    return cb


class SubBitConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is full precision (``fp``), binary, or codebook sub-bit (``subbit``)."""

    def __init__(self, *args, mode: str = "fp", codebook_size: int = 16, os_kappa: float | None = 2.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.mode = mode
        self.os_kappa = os_kappa
        k2 = self.kernel_size[0] * self.kernel_size[1]
        self.register_buffer("codebook", torch.zeros(codebook_size, k2))

    @property
    def uses_codebook(self) -> bool:
        return self.mode == "subbit" and self.kernel_size[0] * self.kernel_size[1] > 1

    def quantized_weight(self) -> Tensor:
        w = self.weight
        if self.mode == "fp":
            return w
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        if not self.uses_codebook:
            return alpha * sign_ste(w)
        flat = w.reshape(-1, self.codebook.shape[1])
        idx = os_quant_select(flat.detach(), self.codebook, self.os_kappa)
        wq = self.codebook[idx].reshape_as(w)
        return alpha * (wq + (w - w.detach()))  # straight-through to the latent weights

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def fit_codebook(self) -> None:
        """Codebook from this layer's current binary kernels (stage 2 initialisation)."""
        flat = self.weight.detach().reshape(-1, self.codebook.shape[1])
        self.codebook.copy_(kernel_codebook(torch.where(flat >= 0, 1.0, -1.0), self.codebook.shape[0]))

    def bits_per_weight(self) -> float:
        if self.mode == "fp":
            return 32.0
        if not self.uses_codebook:
            return 1.0
        return math.log2(self.codebook.shape[0]) / self.codebook.shape[1]


def convert_convs(model: nn.Module, mode: str, codebook_size: int = 16, os_kappa: float | None = 2.0,
                  skip: list[nn.Module] | None = None) -> list[SubBitConv2d]:
    """Replace every ``nn.Conv2d`` of ``model`` except ``skip`` (the stem) by a :class:`SubBitConv2d`."""
    skip_ids = {id(m) for m in (skip or [])}
    out: list[SubBitConv2d] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and id(child) not in skip_ids:
                new = SubBitConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                   child.padding, child.dilation, child.groups, child.bias is not None,
                                   mode=mode, codebook_size=codebook_size, os_kappa=os_kappa)
                new.weight.data.copy_(child.weight.data)
                if child.bias is not None:
                    new.bias.data.copy_(child.bias.data)
                setattr(parent, name, new)
                out.append(new)
    return out


def subbit_layers(model: nn.Module) -> list[SubBitConv2d]:
    return [m for m in model.modules() if isinstance(m, SubBitConv2d)]


def mpfd_loss(student_acts: list[SpikeAct], teacher_acts: list[SpikeAct]) -> Tensor:
    """``mean_l mean (u_s^l - u_t^l)^2`` over recorded pre-reset membranes (teacher detached)."""
    terms = [F.mse_loss(s.last_membrane, t.last_membrane.detach())
             for s, t in zip(student_acts, teacher_acts) if s.last_membrane is not None and t.last_membrane is not None]
    if not terms:
        raise RuntimeError("mpfd_loss: no membranes recorded (wrap both forwards in record_membranes)")
    return torch.stack(terms).mean()


def model_size(model: nn.Module) -> dict[str, float]:
    """Storage: quantized conv weights at their bits (indices + codebooks + fp32 scales), the rest fp32.

    BatchNorm is counted as 2 fp32 numbers per channel (it folds into a per-channel scale and bias or threshold).
    """
    q_bits, q_weights, other_bits = 0.0, 0, 0.0
    counted: set[int] = set()
    for m in model.modules():
        if isinstance(m, SubBitConv2d) and m.mode != "fp":
            n = m.weight.numel()
            q_weights += n
            q_bits += n * m.bits_per_weight() + 32 * m.out_channels  # scales
            if m.uses_codebook:
                q_bits += m.codebook.numel()  # 1 bit per codeword entry
            counted.add(id(m.weight))
            if m.bias is not None:
                other_bits += 32 * m.bias.numel()
                counted.add(id(m.bias))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            other_bits += 64 * m.num_features
            counted.update({id(m.weight), id(m.bias)})
    for p in model.parameters():
        if id(p) not in counted:
            other_bits += 32 * p.numel()
    total = q_bits + other_bits
    return {"quantized_weights": q_weights,
            "bits_per_weight_quantized": q_bits / max(q_weights, 1),
            "bits_per_weight_index": (sum(m.weight.numel() * m.bits_per_weight() for m in subbit_layers(model)
                                          if m.mode != "fp") / max(q_weights, 1)),
            "model_size_kb": total / 8 / 1024,
            "quantized_kb": q_bits / 8 / 1024}


# ----------------------------------------------------------------------------- the method
class SubBitMethod(Method):
    config: "SubBitConfig"

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.teacher: nn.Module | None = None

    def build(self) -> nn.Module:
        c = self.config
        model = self.base_model()
        convert_convs(model, "binary" if c.stage == "binary" else "subbit", c.codebook,
                      c.os_kappa if c.os_kappa > 0 else None, skip=model.first_layers())
        return model

    def start(self, model: nn.Module, total_steps: int) -> None:
        """Stage 2: latent weights (and BN, neurons) from the stage-1 binary SNN, codebooks clustered from them."""
        c = self.config
        if c.stage != "subbit":
            return
        if c.teacher:
            _, teacher, _, state = self.ctx.need_restore()(c.teacher)
            teacher.to(self.ctx.device).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            self.teacher = teacher
            own = model.state_dict()  # the codebook buffers stay ours
            own.update({k: v for k, v in state["model"].items() if k in own and not k.endswith("codebook")})
            try:
                model.load_state_dict(own)
            except RuntimeError as e:
                detail = str(e).split("\n")[1].strip()[:200] if "\n" in str(e) else str(e)[:200]
                raise ValueError(f"--method.teacher {c.teacher}: its weights do not fit this network ({detail}); "
                                 "the teacher must be the stage-1 binary run of the same model and width.") from None
        for m in subbit_layers(model):
            if m.uses_codebook:
                m.fit_codebook()

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        if self.teacher is None or self.config.mpfd <= 0:
            return super().loss(model, x_seq, y, step, total_steps)
        with record_membranes(self.teacher) as t_acts, torch.no_grad():
            self.teacher(x_seq)
        with record_membranes(model) as s_acts:
            logits = model(x_seq)
        loss = F.cross_entropy(logits, y) + self.config.mpfd * mpfd_loss(s_acts, t_acts)
        for a in list(s_acts) + list(t_acts):
            a.last_membrane = None
        return logits, loss

    def report(self, model: nn.Module, x_seq: Tensor) -> dict[str, Any]:
        return model_size(model)

    def format_report(self, rep: dict[str, Any]) -> str:
        return (f"bits/weight (quantized convs, with scales+codebooks) {rep['bits_per_weight_quantized']:.3f}, "
                f"index bits/weight {rep['bits_per_weight_index']:.3f}, model size {rep['model_size_kb']:.1f} KB")

    export_refusal = ("subbit checkpoints keep quantized weights and are not re-parameterized (folding BN into a "
                      "quantized conv would change the model)")


@dataclass
class SubBitConfig(MethodConfig):
    """Sub-bit SNN (S2NN, Wei et al. 2025): binary stage, then codebook sub-bit weights + OS-Quant + MPFD."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: SubBitMethod)
    stage: Literal["binary", "subbit"] = "subbit"
    teacher: str | None = None
    """Binary-SNN checkpoint: codebooks are clustered from its kernels, latent weights start from it, and it is
    the MPFD teacher."""
    codebook: int = 16
    """Codewords per layer K (bits per weight = log2(K)/9 for 3x3 kernels)."""
    os_kappa: float = 2.0
    """OS-Quant outlier bound (|w - mu| > kappa*sigma); <= 0 disables OS-Quant."""
    mpfd: float = 1.0
    """Weight beta of the membrane-potential feature distillation (0 = off)."""
