"""``spikenerf-export``: take a trained run out of PyTorch.

``spikenerf-export nir --load-config CONFIG --output-path FILE.nir`` writes the spiking colour net of a voxel-grid
run (``spikingnerf*``, ``spiknerf*``) or of SpikingNeRF-T (``spikingnerf-t*``) as a NIR graph and ``FILE.json``
beside it (:mod:`~spikenerf.nerf.colour_nir`); ``--replay norse,snntorch --views N`` then reads the file back into
each framework and renders N test views through it with the project's grids (or VM planes) and compositing
(:mod:`~spikenerf.nerf.nir_replay`), one line per framework::

    replay norse: max |rgb diff| 0, PSNR 25.51 dB (project 25.51 dB)

The difference is against the project's own colour net run in the same dtype (``--dtype``, float64 by default);
the project's float32 render (what ``ns-eval`` reports) is printed above. A refused model exits with status 2 and
one line naming the feature and the flag that avoids it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from nerfstudio.utils.eval_utils import eval_setup

from spikenerf.snn.nir import NIRExportError

from .colour_nir import DEFAULT_DT, export_nir, read_graph
from .nir_replay import FRAMEWORKS, load_replay, project_colours, replay_colours
from .startup import start_process

__all__ = ["main", "replay_report"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikenerf-export", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="format", required=True)
    n = sub.add_parser("nir", help="the spiking colour net as a NIR graph (+ a JSON sidecar)")
    n.add_argument("--load-config", type=Path, required=True, help="config.yml of a trained run (ns-train)")
    n.add_argument("--output-path", type=Path, required=True, help="the .nir file to write (sidecar: .json)")
    n.add_argument("--dt", type=float, default=DEFAULT_DT, help="seconds per time step (one ray sample)")
    n.add_argument("--replay", default="", help=f"comma-separated frameworks to replay in ({', '.join(FRAMEWORKS)})")
    n.add_argument("--views", type=int, default=2, help="test views rendered per framework")
    n.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the replayed colour nets and of the project's reference colour net")
    return p


def _psnr(model: Any, outputs: Dict[str, torch.Tensor], batch: Dict[str, Any]) -> float:
    metrics, _ = model.get_image_metrics_and_images(outputs, batch)
    return float(metrics["psnr"])


@torch.no_grad()
def replay_report(pipeline: Any, graph: Any, frameworks: Sequence[str], views: int,
                  dtype: torch.dtype = torch.float64) -> List[str]:
    """Render ``views`` test views (evenly spread) with the project's float32 model, its colour net in ``dtype``
    and each framework's replay of ``graph``; one report line each (max |rgb diff| over the views' pixels against
    the project's ``dtype`` render, PSNR averaged over the views)."""
    model = pipeline.model
    ds = pipeline.datamanager.eval_dataset
    nets = {fw: load_replay(fw, graph, dtype) for fw in frameworks}
    idx = torch.linspace(0, len(ds) - 1, min(views, len(ds))).round().long().tolist()
    model.compute_normals = False  # not part of the colour; saves the density probes
    psnr32, psnr_ref, diff32 = [], [], 0.0
    psnr = {fw: [] for fw in nets}
    diff = {fw: 0.0 for fw in nets}
    for i in idx:
        cam, batch = ds.cameras[i:i + 1].to(model.device), ds[i]
        out32 = model.get_outputs_for_camera(cam)
        psnr32.append(_psnr(model, out32, batch))
        with project_colours(model, dtype):
            ref = model.get_outputs_for_camera(cam)
        psnr_ref.append(_psnr(model, ref, batch))
        diff32 = max(diff32, float((ref["rgb"] - out32["rgb"]).abs().max()))
        for fw, net in nets.items():
            with replay_colours(model, net, dtype):
                out = model.get_outputs_for_camera(cam)
            psnr[fw].append(_psnr(model, out, batch))
            diff[fw] = max(diff[fw], float((out["rgb"] - ref["rgb"]).abs().max()))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    name = str(dtype).replace("torch.", "")
    lines = [f"project: {len(idx)} test views {idx}, PSNR {mean(psnr32):.2f} dB (float32); its colour net in {name}: "
             f"PSNR {mean(psnr_ref):.2f} dB, max |rgb diff| {diff32:.3g} against float32"]
    lines += [f"replay {fw}: max |rgb diff| {diff[fw]:.3g}, PSNR {mean(psnr[fw]):.2f} dB "
              f"(project {mean(psnr_ref):.2f} dB)" for fw in nets]
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    start_process()  # the wing's process settings, made where a process starts (startup.py)
    frameworks = [f.strip() for f in args.replay.split(",") if f.strip()]
    try:
        config, pipeline, _, step = eval_setup(args.load_config, test_mode="test")
        graph, side = export_nir(pipeline.model, args.output_path, args.dt, config.method_name)
        print(f"wrote {args.output_path} ({config.method_name}, step {step}: "
              f"{' -> '.join(k for k in graph.nodes)}), dt {args.dt:g} s; sidecar {side}")
        if frameworks:
            dtype = torch.float64 if args.dtype == "float64" else torch.float32
            for line in replay_report(pipeline, read_graph(args.output_path), frameworks, args.views, dtype):
                print(line, flush=True)
    except NIRExportError as e:
        print(f"spikenerf-export: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
