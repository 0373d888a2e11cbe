"""NIR export (``spikenerf-vision export --format nir``) of a folded spiking VGG, and the reader that runs it back.

NIR (the Neuromorphic Intermediate Representation, ``pip install nir``) describes neurons in continuous time. The
vision neurons are discrete, ``h_t = a v_{t-1} + b x_t + c`` with a hard reset to 0; with the time step ``dt = 1``
(stored in the graph's metadata) the Euler step of NIR's LIF ``tau dv/dt = (v_leak - v) + R I`` is the same map
when ``tau = 1 / (1 - a)``, ``R = b tau``, ``v_leak = c tau``; ``a = 1`` is NIR's IF with ``r = b``. NIR fires on
``v > v_threshold``, the scan on ``v >= V_th`` (a measure-zero difference).

Exported: the chain ``Conv2d -> (LIF | IF) -> [AvgPool2d] -> ... -> AvgPool2d (global) -> Flatten -> Affine`` of a
:class:`~spikenerf.vision.models.vgg.SpikingVGG` after the inference folds (BN in the conv bias, amplitudes in the
weights). Refused, with the feature named: soft reset, ternary / multi-bit spike codes, a membrane transform left
after the folds (MPBN / MPR), spike scales left after the folds, residual networks and other architectures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from spikenerf.snn import DecayLIFNode
from spikenerf.snn.nir import NIRExportError, need_nir, neuron_to_nir

from .blocks import ConvBN, SpikeAct
from .models.vgg import SpikingVGG

try:  # an optional dependency: only `export --format nir` needs it
    import nir
except ImportError:  # pragma: no cover - depends on the environment
    nir = None

__all__ = ["NIRExportError", "to_nir", "from_nir", "NIRNetwork", "write_nir", "read_nir"]


def _neuron_node(act: SpikeAct, name: str, shape: tuple[int, int, int]):
    """One neuron layer over a ``[C, H, W]`` map (NIR neuron parameters have the shape of the map); the neuron
    -> node map and its refusals are the core's (:func:`spikenerf.snn.nir.neuron_to_nir`), with ``dt = 1``."""
    n = act.neuron
    if not act.spiking:
        raise NIRExportError("NIR export: the ANN twin has no spiking neurons; export a spiking network")
    if n.spec.reset == "hard" and n.spec.v_reset != 0.0:
        raise NIRExportError(f"NIR export: {name} resets to {n.spec.v_reset:g}; only a hard reset to 0 is exported")
    if act.real_spike is not None:
        raise NIRExportError(f"NIR export: {name} keeps a spike scale after the folds (it feeds a non-linear "
                             "consumer); NIR spikes are unscaled")
    vth = n.v_threshold.detach().double().cpu().numpy()
    vth = np.broadcast_to(vth.reshape(-1, 1, 1) if vth.size > 1 else vth, shape)
    return neuron_to_nir(n, name, shape, dt=1.0, v_threshold=vth, dtype=np.float32)


@torch.no_grad()
def to_nir(model: nn.Module, input_shape: tuple[int, int, int]):
    """The NIR graph of a folded :class:`SpikingVGG` for inputs ``[C, H, W]`` (one time step)."""
    need_nir()
    if not isinstance(model, SpikingVGG):
        raise NIRExportError(f"NIR export covers the spiking VGG chain; {type(model).__name__} (residual / attention / "
                             "point networks) is not exported to NIR")
    nodes: dict = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    order = ["input"]
    c, h, w = input_shape
    for i, m in enumerate(model.features):
        if isinstance(m, ConvBN):
            if not isinstance(m.bn, nn.Identity):
                raise NIRExportError("NIR export needs the BN folded into the conv (run the export folds first)")
            conv = m.conv
            name = f"conv{i}"
            nodes[name] = nir.Conv2d(input_shape=(h, w), weight=conv.weight.double().cpu().numpy().astype(np.float32),
                                     stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                                     groups=conv.groups,
                                     bias=(conv.bias if conv.bias is not None else torch.zeros(conv.out_channels))
                                     .double().cpu().numpy().astype(np.float32))
            c = conv.out_channels
            h = (h + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
            w = (w + 2 * conv.padding[1] - conv.dilation[1] * (conv.kernel_size[1] - 1) - 1) // conv.stride[1] + 1
        elif isinstance(m, SpikeAct):
            name = f"neuron{i}"
            nodes[name] = _neuron_node(m, name, (c, h, w))
        else:  # SeqToANN(AvgPool2d(2))
            pool = getattr(m, "module", None) or next(iter(m.children()))
            k = int(pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0])
            name = f"pool{i}"
            nodes[name] = nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]))
            h, w = h // k, w // k
        order.append(name)
    nodes["gap"] = nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))
    nodes["flatten"] = nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1)
    fc = model.fc
    nodes["fc"] = nir.Affine(weight=fc.weight.double().cpu().numpy().astype(np.float32),
                             bias=fc.bias.double().cpu().numpy().astype(np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([fc.out_features])})
    order += ["gap", "flatten", "fc", "output"]
    edges = list(zip(order[:-1], order[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0, "source": "spikenerf.vision"},
                        type_check=False)


class NIRNetwork(nn.Module):
    """A NIR chain as a multi-step network: ``[T, B, C, H, W] -> logits [B, K]`` (mean over ``T``)."""

    def __init__(self, layers: list[tuple[str, nn.Module, float | Tensor | None]]) -> None:
        super().__init__()
        self.names = [n for n, _, _ in layers]
        self.layers = nn.ModuleList([m for _, m, _ in layers])
        self.input_scales = [s for _, _, s in layers]  # R / tau of a neuron (its input gain), else None

    def forward(self, x_seq: Tensor) -> Tensor:
        x = x_seq
        for m, scale in zip(self.layers, self.input_scales):
            if isinstance(m, DecayLIFNode):
                x = m(x * scale if scale is not None else x)
            else:
                t, b = x.shape[:2]
                y = m(x.flatten(0, 1))
                x = y.reshape(t, b, *y.shape[1:])
        return x.mean(0)


def _t(a) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def from_nir(graph) -> NIRNetwork:
    """Rebuild a chain graph written by :func:`to_nir` (or an equivalent one) as a :class:`NIRNetwork`."""
    dt = float(graph.metadata.get("dt", 1.0)) if graph.metadata else 1.0
    nxt = {a: b for a, b in graph.edges}
    name = next(k for k, v in graph.nodes.items() if isinstance(v, nir.Input))
    layers: list[tuple[str, nn.Module, float | Tensor | None]] = []
    while name in nxt:
        name = nxt[name]
        node = graph.nodes[name]
        if isinstance(node, nir.Conv2d):
            w = _t(node.weight)
            conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=tuple(node.stride),
                             padding=tuple(np.atleast_1d(node.padding).tolist()) if not isinstance(node.padding, str)
                             else node.padding, dilation=tuple(node.dilation), groups=int(node.groups))
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(_t(node.bias))
            layers.append((name, conv, None))
        elif isinstance(node, (nir.LIF, nir.IF)):
            vth = _t(node.v_threshold)
            if isinstance(node, nir.LIF):
                tau = _t(node.tau)
                decay, gain = 1.0 - dt / tau, dt * _t(node.r) / tau
                if bool((_t(node.v_leak) != 0).any()):
                    raise NIRExportError(f"{name}: a non-zero v_leak is not read back")
            else:
                decay, gain = torch.ones_like(vth), dt * _t(node.r)
            d = decay.flatten()
            if not bool((d == d[0]).all()):
                raise NIRExportError(f"{name}: per-neuron time constants are not read back")
            neuron = DecayLIFNode(decay=float(d[0]), v_threshold=1.0, reset="hard", backend="reference")
            neuron.register_buffer("v_threshold_value", vth)  # [C, H, W]: broadcasts over [T, B, C, H, W]
            g = gain.flatten()
            layers.append((name, neuron, None if bool((g == 1).all()) else gain))
        elif isinstance(node, nir.AvgPool2d):
            k = tuple(int(v) for v in np.atleast_1d(node.kernel_size))
            layers.append((name, nn.AvgPool2d(k, tuple(int(v) for v in np.atleast_1d(node.stride))), None))
        elif isinstance(node, nir.Flatten):
            layers.append((name, nn.Flatten(), None))
        elif isinstance(node, nir.Affine):
            w = _t(node.weight)
            fc = nn.Linear(w.shape[1], w.shape[0])
            fc.weight.data.copy_(w)
            fc.bias.data.copy_(_t(node.bias))
            layers.append((name, fc, None))
        elif isinstance(node, nir.Output):
            break
        else:
            raise NIRExportError(f"{name}: NIR node {type(node).__name__} is not read back")
    return NIRNetwork(layers)


def write_nir(graph, path: str | Path) -> Path:
    need_nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


def read_nir(path: str | Path):
    need_nir()
    return nir.read(str(path))
