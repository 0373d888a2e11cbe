"""NeuroCLIP's inter-timestep spiking adapter (Guo, Chen & Ma, 2023) on any frozen local image encoder.

NeuroCLIP classifies event streams with a frozen 2D CLIP image encoder:

1. event-frame module: each of the ``T`` time bins becomes one gray image, background ``127``, pixels with
   an ON event ``255``, pixels with an OFF event ``0`` (OFF written last), scaled ``/255 - 1/2``;
2. frozen encoder: ``f_t = E(frame_t)`` (``D`` features per step);
3. inter-timestep adapter (the trained part), per step ``t`` with a LIF membrane carried across steps::

       g_t = LIF( BN_2( W_1 Dropout( BN_1(f_t) ) ) )          W_1: D -> D/r,  LIF u = 0.25 u + x, V_th 0.5, hard reset
       a_t = ReLU( W_2 Dropout(g_t) )                          W_2: D/r -> D
       out = alpha [a_1, ..., a_T] + (1 - alpha) [f_1, ..., f_T]      (concatenated over t: T*D)

4. logits ``= s * <out/|out|, P_k/|P_k|>`` against one ``T*D`` vector per class ``P_k`` (CLIP: the text
   feature of the class prompt repeated ``T`` times), ``s = 100``; loss: label-smoothed cross entropy
   (``eps = 0.2``) as in the released code.

Here the LIF is the core :class:`~spikenerf.snn.DecayLIFNode` (decay 0.25, threshold 0.5, hard reset,
rectangular surrogate of width 1 — the paper's neuron). No CLIP text encoder is available offline, so
``P_k`` is the class prototype of the frozen features (mean over the few-shot training samples of
``[f_1 .. f_T]``, fixed like CLIP's text features). The encoder can be a torchvision model whose weights are
on disk (``--encoder resnet18 --encoder-weights r18.pth``) or one of this project's vision checkpoints
(``--encoder checkpoint --encoder-weights outputs/vision/.../checkpoint.pt``: features are the input of its
last linear layer). Nothing is downloaded; without weights the command says so and exits with status 2.

Run: ``spikenerf-vision train neuroclip-nmnist --method.encoder-weights W`` (an own-loop method,
:meth:`NeuroCLIPMethod.fit`). Energies use the core's 45 nm figures (:class:`spikenerf.snn.energy.EnergyModel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from spikenerf.snn import DecayLIFNode
from spikenerf.snn.energy import EnergyModel

from ..data import DatasetNotFoundError
from .base import MethodConfig, OwnLoopMethod, OwnLoopResult

__all__ = ["EncoderNotFoundError", "event_frames", "InterTimestepAdapter", "FrozenEncoder", "load_encoder",
           "prototype_logits", "smooth_ce", "NeuroCLIPConfig", "NeuroCLIPMethod"]


class EncoderNotFoundError(DatasetNotFoundError):
    """No frozen image encoder on disk (the CLI prints this and exits with status 2; nothing is downloaded)."""


def event_frames(x: Tensor) -> Tensor:
    """``[B, T, 2, H, W]`` event counts -> ``[B, T, 1, H, W]`` gray frames in ``[-1/2, 1/2]`` (NeuroCLIP's event-frame module)."""
    img = torch.full_like(x[:, :, :1], 127.0)
    img = torch.where(x[:, :, 0:1] > 0, torch.full_like(img, 255.0), img)
    img = torch.where(x[:, :, 1:2] > 0, torch.zeros_like(img), img)
    return img / 255.0 - 0.5


class InterTimestepAdapter(nn.Module):
    """NeuroCLIP's adapter on ``[B, T, D]`` frozen features -> ``[B, T*D]`` (see the module docstring)."""

    def __init__(self, dim: int, timesteps: int, ratio: float = 0.5, reduction: int = 8, dropout: float = 0.0,
                 spiking: bool = True, decay: float = 0.25, v_threshold: float = 0.5) -> None:
        super().__init__()
        hid = max(1, dim // reduction)
        self.T, self.dim, self.ratio, self.spiking = timesteps, dim, float(ratio), spiking
        self.bn1 = nn.BatchNorm1d(dim)
        self.fc1 = nn.Linear(dim, hid)
        self.bn2 = nn.BatchNorm1d(hid)
        self.drop = nn.Dropout(dropout)
        self.lif = DecayLIFNode(decay=decay, v_threshold=v_threshold, reset="hard", surrogate="rect") if spiking else None
        self.fc2 = nn.Linear(hid, dim)
        self.last_spikes: Tensor | None = None

    def forward(self, feat: Tensor) -> Tensor:
        B, T, D = feat.shape
        # BN / linear per time step (each step is its own call, so BN statistics are per step in training)
        pre = torch.stack([self.bn2(self.fc1(self.drop(self.bn1(feat[:, t])))) for t in range(T)])  # [T, B, D/r]
        g = self.lif(pre) if self.spiking else F.relu(pre)  # the LIF membrane runs across the T steps
        self.last_spikes = g.detach()
        a = F.relu(self.fc2(self.drop(g)))  # [T, B, D]
        out = a.transpose(0, 1).reshape(B, T * D)
        return self.ratio * out + (1.0 - self.ratio) * feat.reshape(B, T * D)


def prototype_logits(feat: Tensor, protos: Tensor, scale: float = 100.0) -> Tensor:
    """``scale * cos(feat, protos)``: ``[B, T*D] x [K, T*D] -> [B, K]``."""
    return scale * F.normalize(feat, dim=-1) @ F.normalize(protos, dim=-1).t()


def smooth_ce(logits: Tensor, y: Tensor, eps: float = 0.2) -> Tensor:
    """Label-smoothed cross entropy with ``1 - eps`` on the label and ``eps / (K - 1)`` elsewhere."""
    K = logits.shape[1]
    one = F.one_hot(y, K).to(logits.dtype)
    target = one * (1 - eps) + (1 - one) * eps / (K - 1)
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


# ----------------------------------------------------------------------------- frozen encoders
class FrozenEncoder(nn.Module):
    """Wraps a frozen image model: gray frames ``[N, 1, H, W]`` -> features ``[N, D]``; counts its MACs."""

    def __init__(self, model: nn.Module, kind: str, in_channels: int, size: int, seq_steps: int = 0,
                 feature_layer: nn.Module | None = None, imagenet_norm: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.kind, self.in_channels, self.size, self.seq_steps = kind, in_channels, size, seq_steps
        self.imagenet_norm = imagenet_norm
        self._feat: Tensor | None = None
        self.macs_per_frame = 0.0
        if feature_layer is not None:
            feature_layer.register_forward_hook(lambda m, i, o: setattr(self, "_feat", i[0]))

    def _prep(self, frames: Tensor, onoff: Tensor | None) -> Tensor:
        if self.in_channels == 2 and onoff is not None:
            x = (onoff > 0).to(frames.dtype)
        else:
            x = frames.expand(-1, self.in_channels, -1, -1) if self.in_channels != 1 else frames
            if self.imagenet_norm:
                x = x + 0.5
                mean = torch.tensor([0.485, 0.456, 0.406][: self.in_channels]).view(1, -1, 1, 1)
                std = torch.tensor([0.229, 0.224, 0.225][: self.in_channels]).view(1, -1, 1, 1)
                x = (x - mean) / std
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def forward(self, frames: Tensor, onoff: Tensor | None = None) -> Tensor:
        x = self._prep(frames, onoff)
        if self.kind == "checkpoint":
            steps = max(1, self.seq_steps)
            self.model(x.unsqueeze(0).expand(steps, *x.shape).contiguous())
            f = self._feat
            f = f.reshape(steps, x.shape[0], -1).mean(0) if f.dim() == 3 else f.reshape(x.shape[0], -1)
            return f
        return self.model(x).flatten(1)

    @torch.no_grad()
    def count_macs(self, frames: Tensor, onoff: Tensor | None = None) -> float:
        total = [0.0]
        hooks = []
        for m in self.model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                def h(mod, i, o):
                    k = mod.in_features if isinstance(mod, nn.Linear) else (
                        mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])
                    total[0] += float(o.numel()) * k
                hooks.append(m.register_forward_hook(h))
        try:
            self(frames, onoff)
        finally:
            for hk in hooks:
                hk.remove()
        self.macs_per_frame = total[0] / frames.shape[0]
        return self.macs_per_frame


def load_encoder(name: str, weights: str | None, size: int = 224,
                 restore: Callable[[str], tuple[Any, nn.Module, Any, dict]] | None = None) -> FrozenEncoder:
    """``checkpoint`` (a spikenerf-vision checkpoint, built by ``restore``, e.g.
    :func:`spikenerf.vision.build.restore`) or a torchvision architecture name; weights must be on disk."""
    hint = ("NeuroCLIP needs a frozen image encoder on disk and never downloads one: pass "
            "--encoder-weights <torchvision .pth state dict> with --encoder <arch> (e.g. resnet18), or "
            "--encoder checkpoint --encoder-weights <spikenerf-vision checkpoint.pt> (e.g. from "
            "`spikenerf-vision train vgg11-nmnist --no-spiking`).")
    if not weights:
        raise EncoderNotFoundError(f"no encoder weights given. {hint}")
    if not Path(weights).is_file():
        raise EncoderNotFoundError(f"encoder weights {weights} not found. {hint}")
    if name == "checkpoint":
        if restore is None:
            raise EncoderNotFoundError(f"--encoder checkpoint needs a checkpoint reader. {hint}")
        try:
            cfg, model, info, _ = restore(weights)
        except ValueError as e:  # not a spikenerf-vision checkpoint
            raise EncoderNotFoundError(f"{e} {hint}") from None
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        steps = cfg.timesteps if model.spiking else 1
        return FrozenEncoder(model, "checkpoint", info.in_channels, info.input_size, steps, last)
    try:
        import torchvision.models as tvm
    except ImportError:  # pragma: no cover
        raise EncoderNotFoundError(f"torchvision is not installed. {hint}") from None
    if not hasattr(tvm, name):
        raise EncoderNotFoundError(f"unknown torchvision architecture {name!r}. {hint}")
    model = getattr(tvm, name)(weights=None)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(sd.get("state_dict", sd) if isinstance(sd, dict) else sd)
    for attr in ("fc", "classifier", "head", "heads"):
        if hasattr(model, attr):
            setattr(model, attr, nn.Identity())
            break
    return FrozenEncoder(model, "torchvision", 3, size, imagenet_norm=True)


# ----------------------------------------------------------------------------- the method
def _few_shot(ds, shots: int, num_classes: int, seed: int) -> list[int]:
    labels = [ds[i][1] for i in range(len(ds))] if not hasattr(ds, "samples") else [l for _, l in ds.samples]
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        idx = [i for i, l in enumerate(labels) if l == c]
        perm = torch.randperm(len(idx), generator=g).tolist()
        out += [idx[p] for p in perm[:shots]]
    return out


@torch.no_grad()
def encode_set(enc: FrozenEncoder, ds, idx: list[int]) -> tuple[Tensor, Tensor]:
    feats, ys = [], []
    for i in idx:
        x, y = ds[i]
        fr = event_frames(x.unsqueeze(0))[0]  # [T, 1, H, W]
        feats.append(enc(fr, x))
        ys.append(y)
    return torch.stack(feats), torch.tensor(ys)


class NeuroCLIPMethod(OwnLoopMethod):
    """Few-shot training of the inter-timestep adapter on frozen encoder features (own loop, AdamW + cosine)."""

    config: "NeuroCLIPConfig"
    data_kinds, data_hint = ("events",), "event streams: --dataset nmnist"

    def fit(self) -> OwnLoopResult:
        cfg, run, info = self.config, self.ctx.cfg, self.ctx.info
        enc = load_encoder(cfg.encoder, cfg.encoder_weights, cfg.encoder_size, restore=self.ctx.restore)
        tr, te = self.ctx.datasets()
        energy = EnergyModel()
        ftr, ytr = encode_set(enc, tr, _few_shot(tr, cfg.shots, info.num_classes, run.seed))
        fte, yte = encode_set(enc, te, list(range(len(te))))
        x0, _ = te[0]
        enc_macs = enc.count_macs(event_frames(x0.unsqueeze(0))[0], x0)
        B, T, D = ftr.shape
        protos = torch.stack([ftr[ytr == c].reshape(-1, T * D).mean(0) for c in range(info.num_classes)])
        res: dict[str, Any] = {"feature_dim": D, "shots": cfg.shots, "encoder_macs_per_sample": enc_macs * T}
        state: dict[str, Any] = {"prototypes": protos}
        if cfg.adapter == "none":
            logits = prototype_logits(fte.reshape(-1, T * D), protos)
            res.update(accuracy=float((logits.argmax(1) == yte).float().mean()), adapter_energy_uJ=0.0, firing_rate=0.0)
        else:
            ad = InterTimestepAdapter(D, T, cfg.ratio, cfg.reduction, cfg.dropout, spiking=cfg.adapter == "spiking")
            opt = torch.optim.AdamW(ad.parameters(), lr=run.lr, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, run.epochs)
            g = torch.Generator().manual_seed(run.seed)
            for _ in range(run.epochs):
                ad.train()
                for bi in torch.randperm(B, generator=g).split(run.batch_size):
                    if len(bi) < 2:
                        continue
                    loss = smooth_ce(prototype_logits(ad(ftr[bi]), protos), ytr[bi])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                sched.step()
            ad.eval()
            with torch.no_grad():
                logits = prototype_logits(ad(fte), protos)
                g_spk = ad.last_spikes
            rate = float((g_spk != 0).float().mean())
            hid = ad.fc1.out_features
            macs = T * D * hid + (0 if ad.spiking else T * hid * D)  # fc1 fed real features; fc2 spikes or ReLU
            sops = float((g_spk != 0).float().sum()) / len(yte) * D if ad.spiking else 0.0
            res.update(accuracy=float((logits.argmax(1) == yte).float().mean()), firing_rate=rate,
                       adapter_macs=macs, adapter_sops=sops, adapter_energy_uJ=energy.energy_uj(macs, sops),
                       adapter_params=sum(p.numel() for p in ad.parameters()))
            state["adapter"] = ad.state_dict()
        res["encoder_energy_uJ"] = energy.energy_uj(res["encoder_macs_per_sample"], 0.0)
        summary = (f"NeuroCLIP adapter={cfg.adapter} ({cfg.shots}-shot, encoder {cfg.encoder}, D={D}, T={T}): "
                   f"test accuracy {res['accuracy']:.4f} on {len(yte)} samples, adapter energy "
                   f"{res['adapter_energy_uJ']:.4f} uJ (firing {res['firing_rate']:.3f}), encoder "
                   f"{res['encoder_energy_uJ']:.3f} uJ")
        return OwnLoopResult(state, res, summary)


@dataclass
class NeuroCLIPConfig(MethodConfig):
    """NeuroCLIP inter-timestep adapter (Guo et al. 2023), few-shot, on a frozen local encoder (T, lr, epochs,
    batch size and data from the run config)."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: NeuroCLIPMethod)
    encoder: str = "checkpoint"
    """'checkpoint' (a spikenerf-vision checkpoint) or a torchvision architecture name (resnet18, ...)."""
    encoder_weights: str | None = None
    """Path of the encoder's weights on disk (required; nothing is downloaded)."""
    encoder_size: int = 224
    """Input side for torchvision encoders (frames are resized to it)."""
    shots: int = 16
    """Training samples per class (few-shot)."""
    adapter: str = "spiking"
    """spiking (NeuroCLIP, LIF), relu (ANN twin of the adapter) or none (prototype head on frozen features)."""
    ratio: float = 0.5
    """alpha: weight of the adapted features against the frozen ones."""
    reduction: int = 8
    dropout: float = 0.0
