"""Every vision training method by name: one line each (the name is the ``method:<name>`` subcommand).

Adding a method: write its module (a config dataclass whose ``_target`` is a :class:`~.base.Method`), then add
one line below. Nothing else in the package names a method.
"""

from __future__ import annotations

from typing import Annotated, Union

import tyro

from .adaptive_bits import AdaptiveBitsConfig
from .base import MethodConfig, PlainConfig
from .hetsyn_method import HetSynConfig
from .im_loss import IMLossConfig
from .joint_asnn import JointConfig
from .ltmd import LTMDConfig
from .neuroclip import NeuroCLIPConfig
from .rate_bp import RateBPConfig
from .rmp import RMPConfig
from .stdp_ncg import STDPNCGConfig
from .subbit import SubBitConfig

__all__ = ["METHODS", "MethodUnion", "method_name", "method_from_dict", "method_to_dict"]

METHODS: dict[str, type[MethodConfig]] = {
    "plain": PlainConfig,
    "rmp": RMPConfig,
    "im-loss": IMLossConfig,
    "joint": JointConfig,
    "adaptive-bits": AdaptiveBitsConfig,
    "subbit": SubBitConfig,
    "rate-bp": RateBPConfig,
    "ltmd": LTMDConfig,
    "hetsyn": HetSynConfig,
    "stdp-ncg": STDPNCGConfig,
    "neuroclip": NeuroCLIPConfig,
}

MethodUnion = Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, cls in METHODS.items())]  # noqa: UP007
"""The ``VisionConfig.method`` field type: one ``method:<name>`` subcommand per registered method."""


def method_name(cfg: MethodConfig) -> str:
    for name, cls in METHODS.items():
        if type(cfg) is cls:
            return name
    raise ValueError(f"{type(cfg).__name__} is not in spikenerf.vision.methods.registry.METHODS")


def method_to_dict(cfg: MethodConfig) -> dict:
    """``{"name": ..., <field>: <value>}``: plain values only (no ``_target``)."""
    out = {"name": method_name(cfg)}
    out.update({k: v for k, v in vars(cfg).items() if not k.startswith("_")})
    return out


def method_from_dict(d: dict) -> MethodConfig:
    d = dict(d)
    name = d.pop("name", "plain")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")
    cls = METHODS[name]
    known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"method {name!r} has no field(s) {', '.join(unknown)}; its fields: {', '.join(sorted(known))}")
    return cls(**d)
