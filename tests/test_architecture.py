"""Floor rules of the house (docs: /ARCHITECTURE): every module imports, and the floors import downwards only.

- In a fresh interpreter every module of ``spikenerf`` imports (a module that needs a missing *optional*
  dependency, such as ``triton`` on a machine without CUDA, is skipped with the reason).
- ``spikenerf.snn`` (the core) imports nothing from ``spikenerf.nerf`` or ``spikenerf.vision``, and the two
  wings never import each other (read from the source with ``ast``, function-local imports included).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "spikenerf"
OPTIONAL = {"triton"}
"""Third-party packages some modules may need that an install need not have."""

_IMPORT_ALL = r"""
import importlib, json, pkgutil, sys, traceback
import spikenerf
res = {}
for m in pkgutil.walk_packages(spikenerf.__path__, "spikenerf.", onerror=lambda name: None):
    try:
        importlib.import_module(m.name)
        res[m.name] = ["ok", ""]
    except ModuleNotFoundError as e:
        res[m.name] = ["missing", str(e.name), traceback.format_exc(limit=-3)]
    except Exception:
        res[m.name] = ["error", traceback.format_exc(limit=-5)]
print("@@" + json.dumps(res))
"""


def _import_all() -> dict:
    r = subprocess.run([sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.rsplit("@@", 1)[1])


_RESULTS: dict = {}


def _results() -> dict:
    if not _RESULTS:
        _RESULTS.update(_import_all())
    return _RESULTS


def _modules() -> list[str]:
    names = []
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_source_file_is_walked():
    assert set(_modules()) <= set(_results()) | {"spikenerf"}, set(_modules()) - set(_results())


@pytest.mark.parametrize("name", _modules())
def test_module_imports_in_a_fresh_interpreter(name):
    if name == "spikenerf":
        return
    status = _results().get(name)
    assert status is not None, f"{name} was not reached by pkgutil.walk_packages (a parent failed to import?)"
    if status[0] == "missing" and status[1].split(".")[0] in OPTIONAL:
        pytest.skip(f"{name} needs the optional dependency {status[1]!r}, not installed here")
    assert status[0] == "ok", f"{name} does not import:\n" + "\n".join(status[1:])


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved, nested ones too)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import starts from (also for __init__.py)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from spikenerf import nerf`
    return out


FLOORS = {"snn": ("nerf", "vision"), "nerf": ("vision",), "vision": ("nerf",)}


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_floors_import_downwards_only(floor):
    banned = tuple(f"spikenerf.{b}" for b in FLOORS[floor])
    bad = []
    for path in sorted((PKG / floor).rglob("*.py")):
        for mod in sorted(_imports(path)):
            if mod in banned or mod.startswith(tuple(b + "." for b in banned)):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


SHARED_FILE_NAMES = {"__init__.py", "base.py"}
"""File names that may stand on several floors: package markers, and ``base.py`` (each sub-package's own base
classes: neurons, datasets, models, methods)."""


def test_no_file_name_stands_on_two_floors():
    """A module name says which floor it is on: ``layers`` / ``energy`` / ``reparam`` are the core's, the wings
    name theirs for what they hold (``vision/blocks.py``, ``vision/energy_report.py``, ...)."""
    where: dict[str, set[str]] = {}
    for floor in FLOORS:
        for path in (PKG / floor).rglob("*.py"):
            if path.name not in SHARED_FILE_NAMES:
                where.setdefault(path.name, set()).add(floor)
    twice = {name: sorted(floors) for name, floors in where.items() if len(floors) > 1}
    assert not twice, f"rename one of each (the wing's, for what it holds): {twice}"
