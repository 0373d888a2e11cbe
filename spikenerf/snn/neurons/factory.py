"""One factory for every neuron kind of the core, so the wings name a kind and never pick a class themselves."""

from __future__ import annotations

from typing import Any, Literal

from .base import BaseNode
from .if_ import IFNode
from .lif import DecayLIFNode, LIFNode
from .plif import PLIFNode

__all__ = ["NeuronKind", "NEURON_KINDS", "make_node"]

NeuronKind = Literal["if", "lif", "plif", "decaylif"]
NEURON_KINDS: tuple[str, ...] = ("if", "lif", "plif", "decaylif")


def make_node(kind: str, *, tau: float = 2.0, decay: float = 0.5, **kwargs: Any) -> BaseNode:
    """A neuron of ``kind``: ``if``, ``lif`` (fixed ``tau``), ``plif`` (``1/tau`` learned, starting at ``tau``)
    or ``decaylif`` (decay factor ``decay``); ``kwargs`` go to :class:`BaseNode` (threshold, reset, surrogate,
    spike code, ...) and to the class (``decay_input``)."""
    if kind == "lif":
        return LIFNode(tau=tau, **kwargs)
    if kind == "plif":
        return PLIFNode(init_tau=tau, **kwargs)
    if kind == "decaylif":
        return DecayLIFNode(decay=decay, **kwargs)
    if kind == "if":
        return IFNode(**kwargs)
    raise ValueError(f"unknown neuron kind {kind!r}; choose one of {', '.join(NEURON_KINDS)}")
