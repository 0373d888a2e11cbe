"""Per-pixel energy map of one test view: pJ per pixel of the spiking NeRF and of its ANN twin on the same
samples, side by side with one colour bar (``docs/energy.md``).

    PYTHONPATH=. .venv/bin/python tools/energy_map.py --load-config outputs/.../config.yml \
        --view 0 --output docs/img/energy_map.png            # add --colour-net-only for the colour net alone

It loads the run with nerfstudio's ``eval_setup``, renders the view with :class:`CountProbe` attached (it adds
the per-ray counts the whole-renderer energy needs and the model does not return yet: the samples that got an
alpha, and each ray's padded time steps), and prices each ray with :mod:`spikenerf.nerf.renderer_energy`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

from spikenerf.nerf.renderer_energy import RendererShape, energy_map_pj, padded_steps, renderer_energy_metrics


class CountProbe:
    """Adds ``num_density_samples`` and ``ray_padded_steps`` (``[R, 1]``) to the model's outputs while active.

    A context manager that wraps the instance's ``render_marched`` and ``field.color`` (read-only: the
    rendering is unchanged). ``color`` may be given to replace the field's colour network (the chip model).
    """

    def __init__(self, model, color=None) -> None:
        self.model, self.color = model, color
        self._steps: Tensor | None = None

    def __enter__(self) -> "CountProbe":
        model, field = self.model, self.model.field
        inner_color = self.color or field.color
        inner_render = model.render_marched

        def color(xyz, dirs, mask, time_index=None):
            self._steps = padded_steps(mask, time_index)
            return inner_color(xyz, dirs, mask, time_index)

        def render_marched(origins, dirs, marched, step, fine):
            self._steps = None
            out = inner_render(origins, dirs, marched, step, fine)
            ref = out["rgb"]
            out["num_density_samples"] = marched.valid.sum(1, keepdim=True).to(ref.dtype)
            steps = self._steps if self._steps is not None else ref.new_zeros(ref.shape[0])
            out["ray_padded_steps"] = steps[:, None].to(ref.dtype)
            return out

        field.color, model.render_marched = color, render_marched  # instance attributes shadow the methods
        return self

    def __exit__(self, *exc) -> None:
        del self.model.field.color
        del self.model.render_marched


def load(config: Path):
    from nerfstudio.utils.eval_utils import eval_setup  # noqa: PLC0415 (heavy; keeps --help fast)

    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    return pipeline


def render_view(pipeline, view: int, color=None) -> tuple[dict, dict]:
    """Outputs of test view ``view`` with the probe's counts, and its batch."""
    model, ds = pipeline.model, pipeline.datamanager.eval_dataset
    cam = ds.cameras[view : view + 1].to(model.device)
    with torch.no_grad(), CountProbe(model, color):
        out = model.get_outputs_for_camera(cam)
    return out, ds[view]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load-config", type=Path, required=True)
    ap.add_argument("--view", type=int, default=0, help="test view index")
    ap.add_argument("--output", type=Path, default=Path("energy_map.png"))
    ap.add_argument("--colour-net-only", action="store_true", help="map the colour net's energy alone")
    args = ap.parse_args(argv)

    import matplotlib  # noqa: PLC0415 (plotting only here)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    pipeline = load(args.load_config)
    out, batch = render_view(pipeline, args.view)
    model = pipeline.model
    if not model.field.spiking:
        raise SystemExit(f"{args.load_config} is an ANN run: the map compares a spiking run with its twin")
    shape = RendererShape.of_field(model.field)
    snn, ann = energy_map_pj(out["num_density_samples"], out["num_color_samples"], out["ray_sops"], shape,
                             whole_renderer=not args.colour_net_only)
    metrics = renderer_energy_metrics(out["num_density_samples"], out["num_color_samples"], out["ray_sops"], shape)
    what = "colour net" if args.colour_net_only else "whole renderer"
    vmax = float(max(snn.max(), ann.max()))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1, 1]})
    axes[0].imshow(out["rgb"].clamp(0, 1).cpu().numpy())
    axes[0].set_title(f"test view {args.view} (SNN render)")
    for ax, img, name in ((axes[1], snn, "SNN"), (axes[2], ann, "ANN twin")):
        im = ax.imshow(img.cpu().numpy(), cmap="inferno", vmin=0.0, vmax=vmax)
        ax.set_title(f"{name}: {float(img.sum()) * 1e-6:.2f} uJ / image")
    for ax in axes:
        ax.axis("off")
    fig.colorbar(im, ax=axes[1:], shrink=0.85, label=f"pJ per pixel ({what})")
    fig.suptitle(f"{what}: SNN {100 * (1 - float(snn.sum()) / float(ann.sum())):.1f} % below the twin "
                 f"(colour net {100 * metrics['colour_net_reduction']:.1f} %, renderer "
                 f"{100 * metrics['renderer_reduction']:.1f} %)", fontsize=10)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110, bbox_inches="tight")
    print(json.dumps({"output": str(args.output), **metrics}, indent=1))


if __name__ == "__main__":
    main()
