"""No tensor of a training step, a render or an export is made on the default device instead of the model's.

On a CUDA run a factory call without ``device=`` (``torch.zeros(n)``, ``torch.tensor([...])``, ``torch.arange``)
makes a CPU tensor: at best a copy and a host sync per step, at worst a "tensors on different devices" error on
the first GPU. Without a GPU the wrong device cannot show, so the test catches the call itself: it runs each
method's tiny training steps, a render (with the normals ``ns-export`` reads) and the RGBA export image under a
``TorchFunctionMode`` that records every factory call without ``device`` whose caller is a file of this package
(nerfstudio's and torch's own calls are theirs to place). ``*_like`` and ``Tensor.new_*`` inherit the device
and are not factories here; nor is ``torch.as_tensor`` / ``torch.tensor`` of a tensor.

It runs the CUDA path (the C kernels off, the colour layers in time blocks: see tests/nerf/test_cuda_path.py);
the C path's host-side tensors (pointers for ctypes) are CPU by design.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest
import torch
from torch.overrides import TorchFunctionMode

from spikenerf.nerf import selfcheck
from spikenerf.nerf.selfcheck import CHECKED_METHODS, is_grid_method, train_and_render

PACKAGE = Path(selfcheck.__file__).resolve().parents[1]  # .../spikenerf
FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.linspace, torch.logspace,
             torch.tensor, torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm, torch.eye,
             torch.empty_strided, torch.scalar_tensor}


class DevicelessFactories(TorchFunctionMode):
    """Records ``file:line (function) torch.name`` of each factory call without ``device`` made from ``root``."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = str(root)
        self.calls: List[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None and not (
                func in (torch.tensor, torch.as_tensor) and args and isinstance(args[0], torch.Tensor)):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(self.root):
                self.calls.append(f"{Path(caller.f_code.co_filename).relative_to(Path(self.root).parent)}:"
                                  f"{caller.f_lineno} ({caller.f_code.co_name}) torch.{func.__name__}")
        return func(*args, **kwargs)


def test_the_mode_catches_a_deviceless_factory():
    mode = DevicelessFactories(Path(__file__).parent)  # this file counts as "the package" here
    with mode:
        torch.zeros(2, device="cpu")
        torch.zeros_like(torch.ones(1, device="cpu"))
        torch.tensor(torch.ones(1, device="cpu"))
        torch.arange(3)
    assert len(mode.calls) == 1 and "torch.arange" in mode.calls[0]


# every checked method on its bounded scene (ANN twins of the grids sampled: the same code as theirs bar the
# colour net), the contraction and NDC once
CASES = [(m, "bounded") for m in CHECKED_METHODS if not (is_grid_method(m) and m.endswith("-ann"))] + [
    ("spikingnerf", "unbounded"), ("spikingnerf", "ndc")]


@pytest.mark.parametrize("method,scene", CASES)
def test_no_tensor_on_the_default_device(monkeypatch, method, scene):
    monkeypatch.setenv("SPIKENERF_DISABLE_C", "1")
    mode = DevicelessFactories(PACKAGE)
    run = train_and_render(method, scene=scene, watch=lambda: mode, time_blocks=True)
    assert "rgba" in run.images and "normals" in run.images  # the export outputs were made under the mode
    found = sorted(set(mode.calls))
    assert not found, "factory calls without device= (CPU tensors on a CUDA run):\n" + "\n".join(found)
