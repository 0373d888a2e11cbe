"""``spikenerf-export nir``: a trained spiking colour net as a NIR graph, and what the graph needs from outside.

The graph (``nir.write``, read back with ``nir.read``) is the colour net of
:class:`~spikenerf.nerf.field.SpikingNeRFField` or of its TensoRF subclass
:class:`~spikenerf.nerf.tensorf_model.SpikingNeRFTField`, one node per module:

    input [in_dim] -> fc1 (Linear, no bias) -> lif1 (LIF) -> fc2 (Affine) -> lif2 (LIF) -> fc3 (Affine) -> output [3]

The input of one time step is one sample's whole ``fc1`` input, built by the field's ``colour_net_inputs``
(one function per backbone; its blocks from ``colour_net_input_parts``): ``[features (C), PE(view direction)]`` on
the voxel grids, ``[features (27), view direction (3), PE(features) (108), PE(view direction) (12)]`` = 150 on
TensoRF's VM planes. The output is the read-out before the sigmoid. A ray's samples near -> far (far -> near with
``flip``) are the time steps of one sequence: the membranes are carried along the ray. Which samples become time
steps (masking, padding holes / condensing) and everything else outside the graph is the sidecar's
(:func:`sidecar`: the grids' or the VM planes' look-up, masks, sigmoid, compositing).

LIF map (:mod:`spikenerf.snn.nir`): the project's ``h_t = (1 - 1/tau_s) v_{t-1} + b x_t + v_reset / tau_s`` (``b =
1/tau_s`` with ``decay_input``, else 1; ``tau_s`` in steps) is NIR's forward-Euler step with the graph's ``dt`` for
``tau = tau_s dt``, ``r = b tau_s``, ``v_leak = v_reset``; ``v_threshold`` is the threshold, ``v_reset`` the hard
reset. The default ``dt`` is 1e-4 s: snnTorch's NIR importer assumes that step whatever the graph says, so the file
replays there unmodified (Norse takes ``dt`` as an argument).

Exported: ``spikingnerf``, ``spikingnerf-full``, ``spikingnerf-capture`` trained with ``--pipeline.model.reset hard``
(the paper's neuron), with ``lif`` or ``plif`` neurons and a fixed or learnable threshold (a trained ``tau`` or
threshold is a constant: its current value is written), and ``spiknerf`` / ``spiknerf-full`` trained with
``--pipeline.model.spike-code binary`` (either time mode; ``repeat`` feeds each sample ``T`` times and averages
the read-out, said in the metadata and the sidecar). Refused, with the feature and the flag that avoids it: the
soft reset (``spikingnerf``'s default), Spik-NeRF's ternary codes ({0,1,2}: its two thresholds share one reset, so
two binary NIR neurons with their own resets are not the same neuron; {-1,0,1} with an amplitude), the ANN twins
(nothing spiking) and the NeRF-MLP backbone (``spiknerf-mlp*``). SpikingNeRF-T (``spikingnerf-t``,
``spikingnerf-t-cpu``) exports as trained by default (hard reset to 0, condensing, no biases); its soft-reset
variant (``--pipeline.model.reset soft``) and its ANN twin (``spikingnerf-t-ann*``) are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import Tensor, nn

from spikenerf.snn.nir import NIRExportError, check_exportable, lif_map, need_nir, neuron_to_nir

from .field import SpikingNeRFField
from .spiknerf import SpikNeRFField
from .tensorf import MAT_MODE, VEC_MODE
from .tensorf_model import SpikingNeRFTField

try:  # optional at run time: only the export needs it
    import nir
except ImportError:  # pragma: no cover - depends on the environment
    nir = None

__all__ = ["DEFAULT_DT", "NIRExportError", "check_colour_net", "colour_net_graph", "sidecar",
           "export_nir", "read_graph", "sidecar_path", "time_layout_meta"]

DEFAULT_DT = 1e-4
"""Seconds per time step (one ray sample) written in the graph: snnTorch's importer assumes this step."""

HARD_RESET_FLAG = "--pipeline.model.reset hard"
BINARY_CODE_FLAG = "--pipeline.model.spike-code binary"


def time_layout_meta(field: SpikingNeRFField) -> Dict[str, Any]:
    """How samples become time steps: ``ray`` (one sample per step, near -> far unless ``flip``; ``pack_mode``
    ``padding`` keeps masked samples as zero-input holes, ``condensing`` packs the kept ones from step 0) or
    ``repeat`` (Spik-NeRF: each sample its own sequence of ``T`` equal inputs, the read-out averaged over ``T``)."""
    if isinstance(field, SpikNeRFField) and field.time_mode == "repeat":
        return {"mode": "repeat", "time_steps": int(field.time_steps)}
    return {"mode": "ray", "pack_mode": field.pack_mode, "flip": bool(field.flip)}


def check_colour_net(field: nn.Module) -> None:
    """Refuse, in one line naming the feature and what avoids it, a colour net NIR cannot express."""
    if not isinstance(field, SpikingNeRFField):
        raise NIRExportError(f"NIR export covers the voxel-grid and TensoRF presets' colour net; "
                             f"{type(field).__name__} (the NeRF-MLP backbone of spiknerf-mlp*) is not exported: "
                             "export spikingnerf, spikingnerf-t or spiknerf")
    if not field.spiking:
        raise NIRExportError("NIR export: the ANN twin's colour net has no spiking neurons (ReLU); export the "
                             "spiking preset (spikingnerf-t; spikingnerf, spikingnerf-full, ... trained with "
                             f"{HARD_RESET_FLAG})")
    layout = time_layout_meta(field)
    if layout["mode"] == "ray" and layout["pack_mode"] == "padding" and field.fc2.bias is not None:
        raise NIRExportError("NIR export: the padding layout's holes give lif2 no input, but fc2's bias would flow "
                             "into it at every NIR time step: train with --pipeline.model.pack-mode condensing (the "
                             "default) or --pipeline.model.color-bias False")
    for name in ("lif1", "lif2"):
        node = getattr(field, name)
        code = node.spec.code
        if code == "ternary012":
            raise NIRExportError(f"NIR export: {name} emits Spik-NeRF's ternary {{0,1,2}} spikes; NIR neurons are "
                                 "binary (and two binary neurons cannot share one reset): train with "
                                 f"{BINARY_CODE_FLAG}")
        if code != "binary":
            raise NIRExportError(f"NIR export: {name} emits {code} spikes; NIR neurons emit binary spikes: train "
                                 f"with {BINARY_CODE_FLAG}")
        check_exportable(node, name, f"train with {HARD_RESET_FLAG} (the paper's neuron)")


def _array(w: Tensor) -> np.ndarray:
    return w.detach().cpu().numpy().copy()


@torch.no_grad()
def colour_net_graph(field: SpikingNeRFField, dt: float = DEFAULT_DT, method: str = "") -> Any:
    """The NIR graph of ``field``'s colour net (see the module docstring), weights as the model's (float32),
    neuron parameters from :func:`~spikenerf.snn.nir.lif_map` (float64)."""
    need_nir()
    check_colour_net(field)
    H = field.hidden_dim
    nodes: Dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([field.in_dim])}),
                             "fc1": nir.Linear(weight=_array(field.fc1.weight))}
    maps = {}
    for i, (lin, lif) in enumerate(((field.fc2, "lif1"), (field.fc3, "lif2")), start=2):
        node = getattr(field, lif)
        nodes[lif] = neuron_to_nir(node, lif, (H,), dt=dt)
        maps[lif] = lif_map(node, dt)
        w = _array(lin.weight)
        nodes[f"fc{i}"] = (nir.Affine(weight=w, bias=_array(lin.bias)) if lin.bias is not None
                           else nir.Linear(weight=w))
    nodes["output"] = nir.Output(output_type={"output": np.array([3])})
    order = ["input", "fc1", "lif1", "fc2", "lif2", "fc3", "output"]
    layout = time_layout_meta(field)
    meta = {
        "source": "spikenerf.nerf colour net", "method": method, "dt": float(dt),
        "discretisation": "forward Euler with dt: v_t = (1 - dt/tau) v_{t-1} + (dt r/tau) I_t + (dt/tau) v_leak; "
                          "spike where v_t > v_threshold, then v_t = v_reset (hard reset)",
        "lif_map": "project h_t = a v_{t-1} + b x_t + c -> tau = dt/(1-a), r = b/(1-a), v_leak = c/(1-a)",
        "time": ("one ray sample per time step, near -> far" + (" (flipped: far -> near)" if field.flip else "")
                 if layout["mode"] == "ray" else f"each sample alone, its input repeated {layout['time_steps']} "
                 "steps; colour = sigmoid(mean over steps of the output)"),
        "time_mode": layout["mode"], "readout": "rgb = sigmoid(output) per sample",
        "input": "[" + ", ".join(f"{p['name']} ({p['size']})" for p in field.colour_net_input_parts()) + "]",
    }
    for lif, p in maps.items():
        meta[f"{lif}_project_abc"] = np.array([p["a"], p["b"], p["c"]])
    if layout["mode"] == "ray":
        meta.update(pack_mode=layout["pack_mode"], flip=int(layout["flip"]))
    else:
        meta["time_steps"] = int(layout["time_steps"])
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), metadata=meta)


def _box(t: Tensor) -> list:
    return [[float(v) for v in row] for row in t.detach().cpu()]


def _input_block(f: SpikingNeRFField) -> Dict[str, Any]:
    """The field's input blocks (``colour_net_input_parts``) with their column slices."""
    parts, start = [], 0
    for p in f.colour_net_input_parts():
        parts.append({"name": p["name"], "slice": [start, start + p["size"]],
                      **{k: v for k, v in p.items() if k not in ("name", "size")}})
        start += p["size"]
    return {"size": f.in_dim, "parts": parts}


def _grid_outside(model: Any) -> Dict[str, Any]:
    """The voxel-grid model's side of the sidecar: grids, scene, sample spacing and masks, compositing."""
    f, cfg = model.field, model.config
    step = cfg.step_ratio * model.fine_voxel()
    return {
        "checkpoint_tensors": "pipeline's _model.field.density_grid.grid / feature_grid.grid ([X, Y, Z, C], the "
                              "ns-train checkpoint); the occupancy cache is _model.occupancy",
        "feature_grid": {"channels": f.in_dim - f.dir_dim, "resolution": list(f.feature_grid.resolution),
                         "aabb": _box(f.feature_grid.aabb),
                         "interpolation": "trilinear over vertices spanning aabb (grid_sample, align_corners=True), "
                                          "zero outside"},
        "density_grid": {"resolution": list(f.density_grid.resolution), "aabb": _box(f.density_grid.aabb),
                         "interpolation": "as the feature grid",
                         "alpha": "1 - exp(-softplus(raw + shift) * step / voxel_base)", "shift": float(f.shift),
                         "step": step, "voxel_base": model.fine_voxel_base},
        "scene": {"kind": "unbounded" if model.unbounded else "bounded", "inner_aabb": _box(model.aabb),
                  "lookup_point": "origin + t d" + (f", contracted with bg_len {cfg.bg_len} (spikenerf.nerf."
                                                     "contraction.contract)" if model.unbounded else ""),
                  "near_plane": cfg.near_plane},
        "samples": {"spacing": f"every {step:g} along the ray inside the fine box, only in the occupancy cache",
                    "masks": f"kept = in cache & alpha > {cfg.alpha_threshold:g} & compositing weight > "
                             f"{cfg.weight_threshold:g} (weights from the alpha-kept samples)"},
        "compositing": {"weights": "w_i = alpha_i prod_{j<i} (1 - alpha_j + 1e-10) over the alpha-kept samples, "
                                   "zero for samples the weight mask drops",
                        "rgb": "sum_i w_i colour_i + T_last * background", "background": cfg.background_color},
    }


def _tensorf_outside(model: Any) -> Dict[str, Any]:
    """SpikingNeRF-T's side of the sidecar: the VM planes' look-ups, the alpha mask, the sampling and the weight
    mask, NDC, compositing (:func:`~.tensorf_render.render_tensorf`)."""
    b, sc = model.backbone, model.schedule
    mask = b.alpha_mask
    scene: Dict[str, Any] = {"kind": "ndc" if model.ndc else "bounded"}
    if model.ndc_params is not None:
        near, focal, hw = model.ndc_params
        scene.update(ndc_near=near, ndc_focal=focal, ndc_hw=list(hw),
                     rays="world rays -> NDC (spikenerf.nerf.ndc.ndc_rays_for_marching: unit NDC directions), "
                          "marched from t = 0 through the aabb in NDC units; the colour net reads the world "
                          "direction; a ray not facing the scene renders the background")
    else:
        scene["near_plane"] = model.config.near_plane
    return {
        "checkpoint_tensors": "pipeline's _model.field.backbone.density / app .planes.{0,1,2} ([1, C_i, R_b, R_a]) "
                              "and .lines.{0,1,2} ([1, C_i, R_w, 1]), .basis_mat.weight, .alpha_mask.volume / "
                              ".alpha_mask.aabb (the ns-train checkpoint)",
        "vm_planes": {"aabb": _box(b.aabb), "resolution": list(b.resolution),
                      "normalise": "x_n = (x - aabb[0]) * 2 / (aabb[1] - aabb[0]) - 1",
                      "plane_axes": [list(m) for m in MAT_MODE], "line_axes": list(VEC_MODE),
                      "product": "component c of pair i: plane_i[c](x_n[a_i], x_n[b_i]) * line_i[c](x_n[w_i]), "
                                 "bilinear / linear (grid_sample, align_corners=True), zero outside",
                      "density_components": list(b.density.components), "app_components": list(b.app.components)},
        "density": {"raw": "sum of all density products",
                    **({"sigma": "softplus(raw + shift)", "shift": b.density_shift} if b.activation == "softplus"
                       else {"sigma": "relu(raw)"})},
        "features": {"size": b.basis_mat.out_features,
                     "rule": "basis_mat.weight [features, sum(app_components)] @ the appearance products (no bias)"},
        "alpha_mask": {"resolution": list(mask.volume.shape), "aabb": _box(mask.aabb),
                       "rule": "a sample is kept where the trilinear look-up of the bool volume is > 0 (every sample "
                               "while the volume is empty); a dropped sample has sigma 0"},
        "scene": scene,
        "samples": {"spacing": f"{min(sc.max_samples, b.n_samples)} samples {b.step_size:g} apart from where the ray "
                               "enters the aabb (not before the near plane); outside the aabb sigma 0",
                    "alpha": "1 - exp(-sigma * dist * distance_scale), dist to the next sample (the last one's 0)",
                    "distance_scale": sc.distance_scale,
                    "masks": f"the colour net sees the samples inside the aabb and the alpha mask with compositing "
                             f"weight > {sc.weight_threshold:g}"},
        "compositing": {"weights": "w_i = alpha_i prod_{j<i} (1 - alpha_j + 1e-10) over all samples",
                        "rgb": "sum_i w_i colour_i over the samples the colour net saw + (1 - sum_i w_i) * "
                               "background: a sample the weight mask drops keeps its weight and adds no colour",
                        "background": model.background_color},
    }


def sidecar(model: Any, graph_name: str) -> Dict[str, Any]:
    """What the graph needs from outside, as a JSON-able dict: the input blocks (look-up, direction and
    encodings), the backbone's side (grids or VM planes, masks, scene, compositing) and the time layout and
    sigmoid. ``model`` is a :class:`~spikenerf.nerf.model.SpikingNeRFModel` (or Spik-NeRF's) or a
    :class:`~spikenerf.nerf.tensorf_model.SpikingNeRFTModel`."""
    f = model.field
    layout = time_layout_meta(f)
    outside = _tensorf_outside(model) if isinstance(f, SpikingNeRFTField) else _grid_outside(model)
    return {
        "graph": graph_name, "input": _input_block(f), **outside,
        "time": dict(layout, rule=(
            "each ray is one sequence of its kept samples near -> far (far -> near when flip); padding: step = "
            "sample index on the ray's lattice, dropped samples are zero-input steps (membranes keep leaking); "
            "condensing: kept samples at steps 0, 1, 2, ... with no holes; membranes start at 0 per ray"
            if layout["mode"] == "ray" else
            "each kept sample is its own sequence of time_steps equal inputs; read-out averaged over the steps")),
        "readout": "sample colour = sigmoid(graph output)",
    }


def read_graph(path: str | Path) -> Any:
    """``nir.read`` of a graph file."""
    need_nir()
    return nir.read(str(path))


def sidecar_path(path: str | Path) -> Path:
    """The sidecar beside a graph file: ``FILE.nir`` -> ``FILE.json``."""
    return Path(path).with_suffix(".json")


def export_nir(model: Any, path: str | Path, dt: float = DEFAULT_DT, method: str = "") -> tuple[Any, Path]:
    """Write ``model``'s colour net to ``path`` (``nir.write``) and the sidecar beside it; returns the graph and
    the sidecar's path."""
    graph = colour_net_graph(model.field, dt, method)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    side = sidecar_path(path)
    side.write_text(json.dumps(sidecar(model, path.name), indent=2) + "\n")
    return graph, side
