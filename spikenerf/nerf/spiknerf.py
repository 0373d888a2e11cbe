"""Spik-NeRF (NeurIPS 2025, "Spiking Neural Networks for Neural Radiance Fields") on nerfstudio.

``ns-train spiknerf`` / ``spiknerf-ann`` (voxel-grid backbone, shared with ``spikingnerf``) and
``ns-train spiknerf-mlp`` / ``spiknerf-mlp-ann`` (the original NeRF MLP, :mod:`spikenerf.nerf.nerf_mlp`).

What Spik-NeRF adds to the spiking colour network of SpikingNeRF:

- **ternary spikes** ``{0, 1, 2}``: a LIF neuron (tau = 4, V_th = 0.5, hard reset to 0) emits 1 above the
  threshold and 2 above ``threshold + margin`` (the core's ``ternary012`` code). Also selectable: the signed
  ternary code ``{-1, 0, 1}`` with a trainable layer-wise amplitude, and binary spikes (``spike_code``).
- **re-parameterization at inference**: ``W s + b = W (s - 1) + (b + W 1)``: the neuron sends the shifted
  code ``s - 1`` in ``{-1, 0, 1}`` and the constant goes into the next layer's bias
  (:mod:`spikenerf.snn.deploy`); the signed ternary amplitude ``alpha`` is folded into the
  next layer's weights the same way. The rendered image is unchanged (tested).
- **time**: the paper's ``T`` time steps per sample (``time_mode="repeat"``: each sample's input is repeated
  T times through the LIF scan with samples as the batch, outputs averaged over T), or SpikingNeRF's
  ray-aligned time (``time_mode="ray"``: one sample per step).
- **ANN-teacher distillation** (:mod:`spikenerf.nerf.distill`): ``--pipeline.model.teacher-config``.

Everything else (grids, masking, time layouts, losses, metrics, energy) is SpikingNeRF's
(:class:`~spikenerf.nerf.model.SpikingNeRFModel`, :class:`~spikenerf.nerf.field.SpikingNeRFField`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Type

import torch
from torch import Tensor, nn

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes

from spikenerf.snn.deploy import count_events, fold_consumer
from spikenerf.snn.energy import energy_pj

from .distill import TeacherMixin, distill_losses
from .field import ColorStats, SpikingNeRFField
from .grid import Marched
from .model import SpikingNeRFModel, SpikingNeRFModelConfig
from .spiknerf_neuron import DeployedNeuron, SpikNeRFOptions, make_neuron, train_code_nonzero
from .time_layout import Neuron, time_steps_of

__all__ = ["SpikNeRFField", "SpikNeRFModelConfig", "SpikNeRFModel"]

SPIKNERF_NEURON = dict(neuron="lif", reset="hard", detach_reset=False, threshold="fixed")
"""The only neuron options the Spik-NeRF field takes (its re-parameterization assumes them)."""


# ----------------------------------------------------------------------------- voxel-grid field
class SpikNeRFField(SpikingNeRFField):
    """SpikingNeRF's grids + colour network with Spik-NeRF neurons, its time and re-parameterization.

    Extra args (the rest as :class:`SpikingNeRFField`): ``spike_code``, ``margin``, ``decay_input``,
    ``time_mode`` (``repeat`` | ``ray``), ``time_steps`` (T of ``repeat``), ``reparam`` (deploy the
    re-parameterized network in eval mode). The colour pass is the parent's (its layout follows
    ``time_mode``); this class changes only the neurons and the deploy hooks.
    """

    def __init__(self, aabb: Tensor, resolution: tuple[int, int, int], *, spike_code: str = "ternary012",
                 margin: float = 1.0, decay_input: bool = False, time_mode: str = "repeat", time_steps: int = 2,
                 reparam: bool = True, **kwargs: Any) -> None:
        others = {k: kwargs[k] for k in ("neuron", "reset", "detach_reset", "threshold") if k in kwargs}
        if others and others != {k: SPIKNERF_NEURON[k] for k in others}:
            # the re-parameterization is derived for this neuron; these options are SpikingNeRF's
            raise ValueError(f"Spik-NeRF's neurons are hard-reset LIF with a fixed threshold; {others} "
                             "apply to spikingnerf only")
        super().__init__(aabb, resolution, **kwargs)
        self.time_steps = time_steps_of(self.spiking, time_mode, time_steps)
        self.spike_code = spike_code
        self.time_mode = time_mode
        self.reparam = bool(reparam)
        self.last_ray_train_spikes: Tensor | None = None
        """Per ray ``[R]``: non-zero training-code outputs of the last spiking colour pass (None otherwise)."""
        if self.spiking:
            tau = kwargs.get("tau", 4.0)
            vth = kwargs.get("v_threshold", 0.5)
            sg = kwargs.get("surrogate", "atan")
            self.lif1 = make_neuron(spike_code, tau, vth, margin, decay_input, surrogate=sg)
            self.lif2 = make_neuron(spike_code, tau, vth, margin, decay_input, surrogate=sg)

    @property
    def deployed(self) -> bool:
        """Eval mode with re-parameterization on: neurons send the deployed code, next layers are folded."""
        return self.spiking and self.reparam and not self.training

    def neuron(self, node: nn.Module) -> Neuron:
        return DeployedNeuron(node) if self.deployed else node

    def consumer(self, layer: nn.Module, node: nn.Module) -> nn.Module:
        return fold_consumer(layer, node) if self.deployed else layer

    def events(self, s: Tensor) -> Tensor:
        return count_events(self.spike_code, s, None, self.deployed)

    def train_nonzero(self, s: Tensor) -> Tensor:
        return train_code_nonzero(self.spike_code, s, self.deployed)

    def color(self, xyz: Tensor, dirs: Tensor, mask: Tensor,
              time_index: Tensor | None = None) -> tuple[Tensor, ColorStats]:
        rgb, stats = super().color(xyz, dirs, mask, time_index)
        self.last_ray_train_spikes = stats.ray_train_spikes if self.spiking else None
        return rgb, stats


# ----------------------------------------------------------------------------- model
@dataclass
class SpikNeRFModelConfig(SpikNeRFOptions, SpikingNeRFModelConfig):
    """Spik-NeRF on SpikingNeRF's voxel-grid model (all of SpikingNeRF's options apply; Spik-NeRF's own are
    :class:`~.spiknerf_neuron.SpikNeRFOptions`)."""

    _target: Type = field(default_factory=lambda: SpikNeRFModel)
    reset: Literal["hard", "soft"] = "hard"
    """Spik-NeRF's neurons reset to 0 (its re-parameterization assumes it; SpikingNeRF's default is soft)."""


class SpikNeRFModel(TeacherMixin, SpikingNeRFModel):
    """Spik-NeRF with SpikingNeRF's grids, stages, masking, losses and metrics."""

    config: SpikNeRFModelConfig
    field_class = SpikNeRFField

    def field_kwargs(self) -> Dict[str, Any]:
        cfg = self.config
        return dict(super().field_kwargs(), spike_code=cfg.spike_code, margin=cfg.margin, decay_input=cfg.decay_input,
                    time_mode=cfg.time_mode, time_steps=cfg.time_steps, reparam=cfg.reparam_inference)

    def populate_modules(self) -> None:
        if self.config.margin <= 0:
            raise ValueError("margin must be > 0")
        super().populate_modules()
        self.register_buffer("num_train_views", torch.tensor(int(self.num_train_data)))
        object.__setattr__(self, "teacher", None)  # not a registered submodule: never trained or saved

    # -- distillation -----------------------------------------------------------------------------
    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        self.load_teacher_if_configured()
        return super().get_training_callbacks(training_callback_attributes)

    def get_loss_dict(self, outputs: Dict[str, Any], batch: Dict[str, Tensor], metrics_dict=None) -> Dict[str, Tensor]:
        loss = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.teacher is not None and "_xyz" in outputs and self.in_fine_stage:
            keep = outputs["_keep"]
            if bool(keep.any()):
                xyz = outputs["_xyz"][keep]
                dirs = outputs["_dirs"][keep.nonzero(as_tuple=True)[0]]
                sigma = self.sigma(xyz)
                delta = self.config.step_ratio * self.fine_voxel()
                loss.update(distill_losses(self.teacher, xyz, dirs, sigma, outputs["_sample_rgb"][keep],
                                           self.config.distill_density_weight, self.config.distill_color_weight,
                                           self.config.distill_density_space, delta))
        return loss

    def render_marched(self, origins: Tensor, dirs: Tensor, marched: Marched, step: float,
                       fine: bool) -> Dict[str, Tensor]:
        self.field.last_ray_train_spikes = None
        outputs = super().render_marched(origins, dirs, marched, step, fine)
        train_spikes = self.field.last_ray_train_spikes
        if train_spikes is not None and "ray_spikes" in outputs:  # fine stage, repeat time
            outputs["ray_train_spikes"] = train_spikes[:, None].to(outputs["ray_spikes"].dtype)
        return outputs

    # -- metrics: firing rates per neuron and time step, both MAC conventions ------------------------
    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
        """Adds ``train_spike_rate`` (non-zero training-code outputs per neuron and step, beside the deployed
        ``firing_rate``) and the energy with the repeated input counted at every step (``*_input_xT``: fc1
        is the only MAC layer of the colour net, so its MACs x T)."""
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        T = self.field.time_steps
        layers = len(self.field.lif_layers()) if self.field.spiking else 0
        if T > 1:
            for k in ["firing_rate"] + [f"firing_rate_lif{i + 1}" for i in range(layers)]:
                if k in metrics:
                    metrics[k] = metrics[k] / T
        metrics["time_steps"] = float(T)
        n_col = float(outputs["num_color_samples"].sum())
        if "ray_train_spikes" in outputs and n_col > 0:
            neurons = layers * n_col * self.field.hidden_dim * T
            metrics["train_spike_rate"] = float(outputs["ray_train_spikes"].sum()) / neurons
        if "macs_per_image" in metrics:
            macs_t = T * metrics["macs_per_image"] if self.field.spiking else metrics["macs_per_image"]
            e_t = energy_pj(macs_t, metrics["sops_per_image"])
            metrics.update({"macs_per_image_input_xT": macs_t, "energy_uj_per_image_input_xT": e_t * 1e-6,
                            "energy_reduction_vs_ann_input_xT": metrics["ann_energy_uj_per_image"] * 1e6 / e_t
                            if e_t > 0 else float("nan")})
        return metrics, images
