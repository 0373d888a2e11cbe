"""What ``spikenerf-vision eval`` writes besides its text: strict JSON (``--json``) and a figure (``--plot``).

JSON (``allow_nan=False``; a number that cannot be computed is ``null``)::

    {"checkpoint", "model", "dataset", "spiking", "classes",
     "per_T": {"<T>": {"accuracy", "loss", "samples", "per_class_accuracy": [..|null],
                       "confusion_matrix": [[true x predicted counts]], "firing_rates": {layer: rate},
                       "mean_firing_rate", "energy": {"macs", "sops", "energy_uJ"} | null,
                       "ann_twin_energy": {...} | null, "energy_ratio": float | null}}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["eval_to_json", "write_json", "plot_eval"]


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _ops(rep) -> dict[str, float | None] | None:
    return None if rep is None else {k: _num(v) for k, v in rep.as_dict().items()}


def eval_to_json(results: dict[str, Any]) -> dict[str, Any]:
    """The evaluation results as plain JSON values (see the module docstring)."""
    out: dict[str, Any] = {k: results[k] for k in ("checkpoint", "model", "dataset", "spiking", "classes")}
    out["per_T"] = {}
    for T, ev in results["per_T"].items():
        cm = ev["confusion"]
        rows = cm.sum(1)
        per_class = [(_num(cm[i, i] / rows[i]) if int(rows[i]) else None) for i in range(cm.shape[0])]
        ops, twin = ev.get("ops"), ev.get("ann_twin_ops")
        ratio = None
        if ops is not None and twin is not None and twin.energy_pj > 0:
            ratio = _num(ops.energy_pj / twin.energy_pj)
        out["per_T"][str(T)] = {
            "accuracy": _num(ev["accuracy"]), "loss": _num(ev["loss"]), "samples": int(ev["samples"]),
            "per_class_accuracy": per_class, "confusion_matrix": cm.tolist(),
            "firing_rates": {n: _num(r) for n, r in ev["firing_rates"].items()} if results["spiking"] else None,
            "mean_firing_rate": _num(ev["mean_firing_rate"]) if results["spiking"] else None,
            "energy": _ops(ops), "ann_twin_energy": _ops(twin), "energy_ratio": ratio,
        }
    return out


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(eval_to_json(results), indent=1, allow_nan=False))
    return path


def plot_eval(results: dict[str, Any], path: str | Path) -> Path:
    """Per-layer firing rates (bars) and the confusion matrix of the first evaluated ``T``, side by side."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    T, ev = next(iter(results["per_T"].items()))
    rates = ev["firing_rates"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1.4, 1]})
    a.bar(range(len(rates)), list(rates.values()), color="tab:blue")
    a.set_xticks(range(len(rates)), list(rates.keys()), rotation=70, fontsize=7)
    a.set_ylabel("firing rate (non-zero outputs)")
    a.set_title(f"{results['model']} T={T}: mean firing rate {ev['mean_firing_rate']:.3f}")
    cm = ev["confusion"].numpy()
    im = b.imshow(cm, cmap="Blues")
    labels = results.get("classes") or [str(i) for i in range(cm.shape[0])]
    if len(labels) <= 20:
        b.set_xticks(range(len(labels)), labels, rotation=70, fontsize=7)
        b.set_yticks(range(len(labels)), labels, fontsize=7)
    b.set_xlabel("predicted")
    b.set_ylabel("true")
    b.set_title(f"confusion, accuracy {ev['accuracy'] * 100:.1f}% on {ev['samples']}")
    fig.colorbar(im, ax=b, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
