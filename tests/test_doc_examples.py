"""The runnable examples in the package's docstrings (``>>>``) are true: each module's doctests run here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import spikenerf

ROOT = Path(spikenerf.__file__).resolve().parent


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(ROOT)], prefix="spikenerf."):
        rel = info.name.split(".")[1:]
        path = ROOT.joinpath(*rel)
        src = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
        if src.is_file() and ">>> " in src.read_text():
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_core_has_examples() -> None:
    assert "spikenerf.snn.neurons.base" in MODULES and "spikenerf.snn.deploy" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
