"""Inference re-parameterizations for the vision models (``spikenerf-vision export``).

- :func:`fold_bn`: ``BN(conv(x)) = conv'(x)`` with ``W' = W gamma/sigma`` (per output channel) and
  ``b' = beta - mu gamma/sigma``.
- :func:`fold_amplitudes`: a spike tensor ``a * s`` (Ternary Spike's layer-wise learnable amplitude,
  Real Spike's per-channel ``a_c``) that only feeds linear layers is replaced by ``s`` with the next
  layers' weights scaled along their input channels: ``W'[:, c] = a_c W[:, c]``. Exact because conv /
  linear / average pooling are linear and zero padding is unchanged. Slots listed by the model's
  ``fold_pairs``; and, in a (non-SEW) ResNet, a slot that feeds the next block's conv *and* its identity
  shortcut: the block computes ``act2(cb2(.) + a s)``; dividing that sum by ``a`` per channel (``cb2``'s weights
  and bias, ``act2``'s threshold) gives ``act2'(cb2'(.) + s)`` with the same spikes (the membrane recurrence,
  the hard reset to 0, the soft reset and the ternary thresholds ``+-V_th`` all scale with it), so the spikes
  sent along the shortcut are the raw code and no spike-fed layer multiplies.
- :func:`fold_mpbn`: MPBN fires on ``BN(h) = k h + b``; for ``k > 0`` that is ``h >= (V_th - b) / k``,
  a per-channel threshold, so the BN is removed (binary code, hard reset: with a soft reset the
  subtracted amount would change).
- :func:`drop_mpr`: MPR's ``phi`` is monotone with ``phi(0.5) = 0.5``, so with ``V_th = 0.5`` (binary
  code) ``phi(u) >= V_th`` iff ``u >= V_th``: the rectifier only shaped gradients and is removed.

The equations live in the core (:mod:`spikenerf.snn.reparam`, :mod:`spikenerf.snn.mpbn`,
:mod:`spikenerf.snn.mpr`); this module only walks the vision model structure, applies them in place (module
objects keep their identity, so ``fold_pairs`` / ``first_layers`` still point at the live layers) and reports
what it could not fold.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikenerf.snn.affine import fold_input_affine_layer
from spikenerf.snn.deploy import deploy_affine
from spikenerf.snn.mpbn import MPBN, bn_affine
from spikenerf.snn.mpbn import fold_mpbn as _core_fold_mpbn
from spikenerf.snn.mpr import MPR, ShiftedNode, remove_mpr
from spikenerf.snn.neurons.base import BaseNode
from spikenerf.snn.real_spike import fold_real_spike
from spikenerf.snn.reparam import fold_bn as _core_fold_bn

from .blocks import ConvBN, ConvMaxBN, LinearBN, SpikeAct, spike_acts
from .models.resnet import SpikingResNet

__all__ = ["fold_bn", "fold_amplitudes", "fold_mpbn", "drop_mpr", "reparameterize"]


@torch.no_grad()
def _copy_into(lin: nn.Module, new: nn.Module) -> None:
    """Give ``lin`` the weights (and bias) of the folded copy ``new``, keeping the module object."""
    lin.weight.copy_(new.weight)
    if new.bias is not None:
        if lin.bias is None:
            lin.bias = nn.Parameter(new.bias.detach().clone())
        else:
            lin.bias.copy_(new.bias)


@torch.no_grad()
def _fold_bn_into(lin: nn.Module, bn: nn.Module) -> nn.Module:
    _copy_into(lin, _core_fold_bn(lin, bn))
    return nn.Identity()


class ShiftedNeuron(ShiftedNode):
    """:class:`spikenerf.snn.mpr.ShiftedNode` (the neuron left by removing a soft-reset MPR) answering the neuron
    queries of the later folds and of the slot (code, threshold, output scale, amplitude mode) from its node."""

    @property
    def amplitude_mode(self):
        return self.node.amplitude_mode

    @amplitude_mode.setter
    def amplitude_mode(self, value) -> None:
        self.node.amplitude_mode = value

    @property
    def membrane_transform(self):
        return None

    @property
    def v_threshold(self) -> Tensor:
        return self.node.v_threshold

    @property
    def threshold_mode(self) -> str:
        return self.node.threshold_mode

    def output_scale(self):
        return self.node.output_scale()

    def charge_coefficients(self):
        return self.node.charge_coefficients()


@torch.no_grad()
def fold_bn(model: nn.Module) -> int:
    """Fold every ``ConvBN`` / ``LinearBN`` batch norm into its conv / fc. Returns how many were folded."""
    n = 0
    for m in model.modules():
        if isinstance(m, ConvBN) and isinstance(m.bn, nn.modules.batchnorm._BatchNorm):
            m.bn = _fold_bn_into(m.conv, m.bn)
            n += 1
        elif isinstance(m, LinearBN) and isinstance(m.bn, nn.modules.batchnorm._BatchNorm):
            m.bn = _fold_bn_into(m.fc, m.bn)
            n += 1
        elif isinstance(m, ConvMaxBN) and isinstance(m.bn, nn.modules.batchnorm._BatchNorm):
            # max over points commutes with k x + b only for k > 0
            if bool((bn_affine(m.bn)[0] > 0).all()):
                m.bn = _fold_bn_into(m.conv, m.bn)
                n += 1
    return n


def _slot_scale(act: SpikeAct) -> Tensor | None:
    """Per-channel factor ``[C]`` between what the slot emits and the spike code its neuron fires, or ``None``.

    The neuron's part is the core's rule (:func:`spikenerf.snn.deploy.deploy_affine`: a Ternary Spike amplitude,
    a multi-bit step); a Real Spike scale multiplies it. The slots keep emitting the training code after the
    fold, so a code's deploy offset (``ternary012``) is not folded here: only the scale moves.
    """
    if not act.spiking:
        return None
    k, _ = deploy_affine(act.neuron)
    if act.real_spike is None and not isinstance(k, Tensor):
        return None
    scale = torch.ones(act.channels) * (k.detach().reshape(-1) if isinstance(k, Tensor) else float(k))
    if act.real_spike is not None:
        rs = act.real_spike.scale.detach()
        if act.real_spike.mode == "element":  # [C, H, W] (or [F]): one amplitude per position
            return scale.view(-1, *([1] * (rs.dim() - 1))) * rs
        scale = scale * rs
    return scale


@torch.no_grad()
def _input_shapes(model: nn.Module, example: Tensor | None) -> dict[int, tuple[int, ...]]:
    """``{id(conv / linear): one step's input shape}`` from one forward on ``example`` ``[T, B, ...]``."""
    if example is None:
        return {}
    shapes: dict[int, tuple[int, ...]] = {}

    def keep(mod: nn.Module, args: tuple) -> None:  # a pre-hook returning a value would replace the inputs
        shapes.setdefault(id(mod), tuple(args[0].shape[1:]))

    hooks = [m.register_forward_pre_hook(keep) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model(example.to(next(model.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
    return shapes


@torch.no_grad()
def fold_amplitudes(model: nn.Module, shapes: dict[int, tuple[int, ...]] | None = None) -> tuple[int, list[str]]:
    """Fold spike amplitudes / Real Spike scales into the consumers listed by ``model.fold_pairs()``.

    Returns ``(folded_count, names_of_slots_that_still_scale)``.
    """
    folded = 0
    pairs = model.fold_pairs() if hasattr(model, "fold_pairs") else []
    done = set()
    for act, consumers in pairs:
        scale = _slot_scale(act)
        if scale is None:
            continue
        if scale.dim() > 1:  # element-wise Real Spike: the consumer convs become unshared convs
            if not _fold_elementwise(model, consumers, scale, shapes or {}):
                continue
        else:
            for lin in consumers:
                _copy_into(lin, fold_input_affine_layer(lin, scale=scale))
        act.neuron.amplitude_mode = None
        act.real_spike = None
        done.add(id(act))
        folded += 1
    folded += _fold_through_shortcuts(model, done)
    left = [name for name, a in spike_acts(model) if id(a) not in done and _slot_scale(a) is not None]
    return folded, left


@torch.no_grad()
def _fold_elementwise(model: nn.Module, consumers: list[nn.Module], scale: Tensor,
                      shapes: dict[int, tuple[int, ...]]) -> bool:
    """Replace each consumer conv by the unshared conv of :func:`spikenerf.snn.real_spike.fold_real_spike` (exact),
    when every consumer is a ``Conv2d`` fed directly with the slot's ``[C, H, W]`` map (input shapes from a dry
    forward: a pool in between changes them); False (scale kept, reported) otherwise."""
    if scale.dim() != 3 or not all(type(c) is nn.Conv2d for c in consumers):
        return False
    if not all(shapes.get(id(c)) == tuple(scale.shape) for c in consumers):
        return False
    parents = {id(m): (parent, name) for parent in model.modules() for name, m in parent.named_children()}
    if not all(id(c) in parents for c in consumers):
        return False
    for c in consumers:
        parent, name = parents[id(c)]
        setattr(parent, name, fold_real_spike(c, scale.to(c.weight.dtype)))
    return True


def _rescalable(act: SpikeAct) -> bool:
    """Whether dividing this slot's input current by ``a > 0`` per channel can be undone by ``V_th / a``."""
    n = act.neuron
    return (act.spiking and isinstance(n, BaseNode) and n.spec.code in ("binary", "ternary") and n.threshold_mode == "fixed"
            and n.membrane_transform is None and getattr(n, "init_membrane", None) is None
            and (n.spec.reset == "soft" or n.spec.v_reset == 0.0) and n.amplitude_mode != "threshold")


@torch.no_grad()
def _fold_through_shortcuts(model: nn.Module, done: set[int]) -> int:
    """Fold the scale of slots feeding an identity shortcut of a standard ResNet block (module docstring)."""
    if not isinstance(model, SpikingResNet):
        return 0
    blocks = list(model.blocks)
    if not blocks or blocks[0].sew or not isinstance(model.stem_pool, nn.Identity):
        return 0
    feeds = [(model.stem_act, blocks[0])] + [(blocks[i].act2, blocks[i + 1]) for i in range(len(blocks) - 1)]
    folded = 0
    for act, nxt in feeds:
        scale = _slot_scale(act)
        if scale is None or scale.dim() > 1 or id(act) in done or nxt.down is not None or not bool((scale > 0).all()):
            continue
        if not _rescalable(nxt.act2) or isinstance(nxt.cb2.bn, nn.modules.batchnorm._BatchNorm):
            continue
        conv1, conv2, n2 = nxt.cb1.conv, nxt.cb2.conv, nxt.act2.neuron
        _copy_into(conv1, fold_input_affine_layer(conv1, scale=scale))
        conv2.weight.div_(scale.view(-1, 1, 1, 1))
        if conv2.bias is not None:
            conv2.bias.div_(scale)
        vth = n2.v_threshold.detach()
        theta = (vth.reshape(-1, 1, 1) if vth.numel() > 1 else vth) / scale.view(-1, 1, 1)
        n2._buffers["v_threshold_value"] = theta.to(conv2.weight.dtype)
        act.neuron.amplitude_mode = None
        act.real_spike = None
        done.add(id(act))
        folded += 1
    return folded


def _split_transform(t: nn.Module | None) -> list[nn.Module]:
    if t is None:
        return []
    return list(t) if isinstance(t, nn.Sequential) else [t]


def _set_transform(neuron: nn.Module, parts: list[nn.Module]) -> None:
    neuron.membrane_transform = None if not parts else (parts[0] if len(parts) == 1 else nn.Sequential(*parts))


def _mpr_moves_threshold(mpr: MPR, vth: float) -> bool:
    """Whether firing on ``mpr(u) >= vth`` differs from ``u >= vth`` (``phi^{-1}(vth) != vth``)."""
    try:
        return abs(mpr.firing_threshold(vth) - vth) > 1e-9
    except ValueError:
        return True


@torch.no_grad()
def fold_mpbn(model: nn.Module) -> tuple[int, list[str]]:
    """Turn MPBN into per-channel thresholds where exact. Returns ``(folded, reasons_for_skipped)``.

    Uses :func:`spikenerf.snn.mpbn.fold_mpbn` (binary code, hard reset; ``gamma < 0`` channels would need the
    preceding layer, which is not tracked here, so they are reported and kept). An MPR after the MPBN goes
    with it when it cannot move the threshold (``phi^{-1}(V_th) == V_th``, e.g. ``V_th = 0.5``).
    """
    folded, skipped = 0, []
    for name, act in spike_acts(model):
        if not act.spiking:
            continue
        n = act.neuron
        parts = _split_transform(n.membrane_transform)
        if not parts or not isinstance(parts[0], MPBN):
            continue
        rest = parts[1:]
        if rest:
            vth = n.v_threshold.detach()
            if not (len(rest) == 1 and isinstance(rest[0], MPR) and vth.numel() == 1
                    and not _mpr_moves_threshold(rest[0], float(vth))):
                skipped.append(f"{name}: MPBN kept (a following transform other than MPR at V_th=0.5)")
                continue
        k, _ = parts[0].affine_coefficients()
        if bool((k < 0).any()):
            skipped.append(f"{name}: MPBN kept (gamma < 0 channels; fold with the preceding layer instead)")
            continue
        saved = n.membrane_transform
        n.membrane_transform = parts[0]
        try:
            _core_fold_mpbn(n)  # MPR (if any) is dropped with it: phi(BN h) >= V_th iff BN h >= V_th here
        except ValueError as err:
            n.membrane_transform = saved
            skipped.append(f"{name}: MPBN kept ({err})")
            continue
        folded += 1
    return folded, skipped


@torch.no_grad()
def drop_mpr(model: nn.Module) -> tuple[int, list[str]]:
    """Remove MPR where it cannot change spikes (binary code, ``phi^{-1}(V_th) == V_th``, e.g. ``V_th = 0.5``).

    A lone MPR with a hard reset and another threshold is removed by moving the threshold to
    ``phi^{-1}(V_th)`` (:func:`spikenerf.snn.mpr.remove_mpr`).
    """
    dropped, skipped = 0, []
    for name, act in spike_acts(model):
        if not act.spiking:
            continue
        n = act.neuron
        parts = _split_transform(n.membrane_transform)
        mprs = [p for p in parts if isinstance(p, MPR)]
        if not mprs:
            continue
        vth = n.v_threshold.detach()
        if n.spec.code != "binary" or vth.numel() != 1:
            skipped.append(f"{name}: MPR kept (needs binary code and a scalar V_th)")
            continue
        if not any(_mpr_moves_threshold(p, float(vth)) for p in mprs):
            # phi(y) >= V_th iff y >= V_th whatever y is (another transform's output included)
            _set_transform(n, [p for p in parts if not isinstance(p, MPR)])
            dropped += 1
        elif len(parts) == 1 and getattr(n, "amplitude_mode", None) != "threshold":
            # hard reset: the threshold moves to phi^-1(V_th); soft reset: the membrane is shifted (the paper's
            # scale-2 MPR at V_th = 1 fires on u >= 1/2 and subtracts 1)
            node = remove_mpr(n)
            if isinstance(node, ShiftedNode):
                act.neuron = ShiftedNeuron(node.node, node.delta)
            dropped += 1
        else:
            skipped.append(f"{name}: MPR kept (needs V_th = 0.5, or a lone MPR)")
    return dropped, skipped


def reparameterize(model: nn.Module, example: Tensor | None = None) -> dict:
    """Apply every inference fold in place (model must be in eval mode). Returns a report dict.

    ``example`` ``[T, B, ...]``: a model input, needed only to fold element-wise Real Spike amplitudes (the
    consumers' input sizes come from one forward on it).
    """
    model.eval()
    shapes = _input_shapes(model, example) if any(
        a.real_spike is not None and a.real_spike.mode == "element" for _, a in spike_acts(model)) else {}
    report: dict = {}
    report["mpr_dropped"], skipped_mpr = drop_mpr(model)
    report["mpbn_folded"], skipped_mpbn = fold_mpbn(model)
    report["bn_folded"] = fold_bn(model)
    report["amplitudes_folded"], left = fold_amplitudes(model, shapes)
    report["not_folded"] = skipped_mpr + skipped_mpbn + [f"{n}: spike scale kept (consumer is not purely linear)" for n in left]
    return report
