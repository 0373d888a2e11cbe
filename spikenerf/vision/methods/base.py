"""The one contract between the vision engine and a training method.

A method is a config dataclass (its knobs, every field a CLI flag under ``--method.``) whose ``_target`` is a
:class:`Method` (nerfstudio's pattern: ``config.setup(ctx)`` builds the object). The engine calls the hooks below
and knows no method by name; a method module imports this file and the building blocks (models, layers,
losses, data), never the engine, the config or the CLI. Adding a method: one module with its config and its
``Method``, and one line in :mod:`spikenerf.vision.methods.registry`.

Hooks of a backprop-trained method (defaults: plain cross-entropy training of the configured model)::

    build()                         -> nn.Module      the network as trained and saved (eval/resume rebuild it)
    eval_model(model)               -> SeqClassifier  what is evaluated / exported (joint: the SNN branch)
    param_groups(model)                               optimizer parameter groups
    start(model, total_steps)                         once before training (teachers, codebooks, schedules)
    loss(model, x_seq, y, step, total_steps) -> (logits, loss)
    after_step(model)                                 after every optimizer step
    state_dict() / load_state_dict(d)                 method state kept in checkpoints (e.g. a schedule)
    report(model, x_seq) -> dict;  format_report(d) -> str   end-of-training summary
    export(model) -> dict                             inference folds (or a ValueError saying why not)

A method that is not trained by backprop (STDP) sets ``own_loop = True`` and implements ``fit()``; the engine's
shared runner does the seeding, data subsets, the atomic checkpoint and the summary line around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data import DatasetInfo
from ..blocks import materialize_element_scales
from ..models import SeqClassifier, build_model
from ..inference_folds import reparameterize

__all__ = ["MethodContext", "MethodConfig", "Method", "OwnLoopMethod", "PlainConfig", "OwnLoopResult"]


@dataclass
class MethodContext:
    """What a method may use from the run, handed over by the engine (so methods never import it).

    ``cfg`` is the run's :class:`~spikenerf.vision.config.VisionConfig` (read-only here), ``restore`` turns a
    checkpoint path into ``(config, model, info, state)`` (teachers, frozen encoders), ``datasets`` gives the
    run's ``(train, test)`` sets with the configured subsets (own-loop methods).
    """

    cfg: Any
    info: DatasetInfo
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    restore: Callable[[str], tuple[Any, nn.Module, DatasetInfo, dict]] | None = None
    datasets: Callable[[], tuple[Dataset, Dataset]] | None = None

    def need_restore(self) -> Callable[[str], tuple[Any, nn.Module, DatasetInfo, dict]]:
        if self.restore is None:
            raise RuntimeError("this method loads another checkpoint: build it through spikenerf.vision.build")
        return self.restore


@dataclass
class OwnLoopResult:
    """What an own-loop method's ``fit`` returns: tensors to save, the numbers, and one summary sentence."""

    state: dict
    metrics: dict
    summary: str


class Method:
    """Plain supervised training: cross entropy on the mean-over-T logits of the configured model."""

    own_loop = False
    export_refusal: str | None = None
    """Why :meth:`export` cannot fold this method's networks (``None``: it can)."""

    def __init__(self, config: "MethodConfig", ctx: MethodContext) -> None:
        self.config = config
        self.ctx = ctx

    # -- the network ------------------------------------------------------------------------------
    def base_model(self, spiking: bool | None = None) -> SeqClassifier:
        """The configured architecture for the run's data (``spiking=None``: the config's choice)."""
        c, i = self.ctx.cfg, self.ctx.info
        model = build_model(c.model, i.num_classes, i.in_channels, c.spiking if spiking is None else spiking,
                            c.neuron, c.width, i.input_size)
        materialize_element_scales(model, self.example_input())
        return model

    def example_input(self) -> Tensor:
        """One zero sample ``[1, 1, ...]`` of the run's data (dry forwards)."""
        i = self.ctx.info
        shape = (i.in_channels, i.input_size) if i.kind == "points" else (i.in_channels, i.input_size, i.input_size)
        if i.name == "shd":
            shape = (i.input_size,)
        return torch.zeros(1, 1, *shape)

    def build(self) -> nn.Module:
        return self.base_model()

    def eval_model(self, model: nn.Module) -> SeqClassifier:
        return model  # type: ignore[return-value]

    @property
    def spiking(self) -> bool:
        """Whether the evaluated network spikes (decides T for static inputs: a ReLU net runs one step)."""
        return bool(self.ctx.cfg.spiking)

    # -- training ---------------------------------------------------------------------------------
    def param_groups(self, model: nn.Module):
        return model.parameters()

    def start(self, model: nn.Module, total_steps: int) -> None:
        pass

    def loss(self, model: nn.Module, x_seq: Tensor, y: Tensor, step: int, total_steps: int) -> tuple[Tensor, Tensor]:
        logits = model(x_seq)
        return logits, F.cross_entropy(logits, y)

    def after_step(self, model: nn.Module) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # -- results ----------------------------------------------------------------------------------
    def report(self, model: nn.Module, x_seq: Tensor) -> dict[str, Any]:
        return {}

    def format_report(self, rep: dict[str, Any]) -> str:
        return ""

    def export(self, model: nn.Module) -> dict:
        """Apply the inference re-parameterizations in place; returns the fold report."""
        if self.export_refusal is not None:
            raise ValueError(f"export: {self.export_refusal}; use `spikenerf-vision eval` on the checkpoint itself")
        dtype = next(model.parameters()).dtype
        return reparameterize(model, self.example_input().expand(2, 2, *self.example_input().shape[2:]).to(dtype))


class OwnLoopMethod(Method):
    """A method with its own training loop (``fit``); the engine's runner seeds, checks the data kind, saves the
    checkpoint atomically and prints the summary line."""

    own_loop = True
    data_kinds: tuple[str, ...] = ()
    """Dataset kinds ``fit`` accepts (``static``, ``events``, ``points``); empty: any."""
    data_hint = ""

    def check_data(self) -> None:
        info = self.ctx.info
        if self.data_kinds and info.kind not in self.data_kinds:
            raise ValueError(f"{type(self).__name__} takes {' or '.join(self.data_kinds)} data ({self.data_hint}), "
                             f"not the {info.kind} set {info.name!r}")

    def fit(self) -> OwnLoopResult:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class MethodConfig:
    """Base of every method's config; ``setup(ctx)`` builds its :class:`Method`."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: Method)

    def setup(self, ctx: MethodContext) -> Method:
        return self._target(self, ctx)


@dataclass
class PlainConfig(MethodConfig):
    """Plain training: cross entropy on the mean-over-T logits (no extra loss, no model change)."""

    _target: tyro.conf.Suppress[type] = field(default_factory=lambda: Method)
