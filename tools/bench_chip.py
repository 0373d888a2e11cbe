"""The colour net on a Loihi-class chip: PSNR in fixed point against float, and the per-image cost of padding
(TP), condensing (TCP) and the ANN twin on the same rendered views (issue 32; ``docs/energy.md``).

    PYTHONPATH=. .venv/bin/python tools/bench_chip.py --load-config outputs/.../config.yml --views 2

The run must use the paper's neuron (``--pipeline.model.reset hard``, a fixed ``lif``): that is the chip's.
For each of ``--views`` test views it renders

- ``float``: the model as trained (its layout, e.g. padding);
- ``chip off-chip fc1`` / ``chip on-chip fc1``: the colour net in Loihi fixed point
  (:class:`~spikenerf.snn.chip.ChipColourNet`), fc1 on the host or on the chip with 8-bit inputs;
- ``float condensing``: the same samples in the condensing layout (TCP's spikes);

then prices one image (the views' mean) with :func:`~spikenerf.snn.chip.chip_cost` and the whole renderer with
:mod:`spikenerf.nerf.renderer_energy`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from energy_map import load, render_view

from spikenerf.nerf.field import ColorStats, positional_encoding
from spikenerf.nerf.packing import pack_index, scatter_valid
from spikenerf.nerf.renderer_energy import RendererShape, renderer_energy_metrics
from spikenerf.snn.chip import ChipColourNet, ChipCounts, chip_cost
from spikenerf.snn.energy import E_MAC_PJ


def chip_net(field, first_layer: str, vth_bits: int) -> ChipColourNet:
    """The field's colour net in Loihi fixed point (8-bit inputs cover the grid's largest feature and PE's 1)."""
    if field.lif1.spec.reset != "hard" or not hasattr(field.lif1, "tau") or isinstance(field.lif1.tau, torch.Tensor):
        raise SystemExit("the chip runs a fixed-tau LIF with a hard reset: train with --pipeline.model.reset hard "
                         "and --pipeline.model.neuron lif")
    b2 = None if field.fc2.bias is None else field.fc2.bias.detach()
    b3 = None if field.fc3.bias is None else field.fc3.bias.detach()
    input_max = max(float(field.feature_grid.grid.detach().abs().max()), 1.0)
    return ChipColourNet.from_float(field.fc1.weight.detach(), field.fc2.weight.detach(), b2,
                                    field.fc3.weight.detach(), b3, float(field.lif1.tau),
                                    float(field.lif1.v_threshold), "hard", first_layer, input_max, vth_bits)


def chip_color(field, net: ChipColourNet, chunk_rays: int = 256):
    """A drop-in for ``field.color`` that runs the colour net on the chip model, ``chunk_rays`` rays at a time
    (each chunk packed in the field's layout; a padding chunk starts at its first valid step, exact because
    a LIF with no input stays at rest)."""
    H = field.hidden_dim

    def color(xyz, dirs, mask, time_index=None):
        R, S = mask.shape
        r_of, s_of = mask.nonzero(as_tuple=True)
        n = int(r_of.numel())
        rgb = xyz.new_zeros(R, S, 3)
        sp1, sp2 = torch.zeros(R, dtype=torch.float64), torch.zeros(R, dtype=torch.float64)
        ti = torch.arange(S, device=mask.device).expand(R, S) if time_index is None else time_index
        if n:
            x = torch.cat([field.feature_grid(xyz[r_of, s_of]), positional_encoding(dirs, field.dir_freqs)[r_of]], -1)
            start = 0
            for rows in mask.any(1).nonzero(as_tuple=True)[0].split(chunk_rays):
                sub = mask[rows]
                k = int(sub.sum())
                sub_time = ti[rows] - ti[rows][sub].min() if field.pack_mode == "padding" else None
                info = pack_index(sub, field.pack_mode, field.flip, sub_time)
                logits, s1, s2 = net.run(scatter_valid(x[start:start + k].double(), info), info.packed_mask)
                r, s = r_of[start:start + k], s_of[start:start + k]
                rgb[r, s] = torch.sigmoid(logits[info.t_idx, info.b_idx]).to(rgb.dtype)
                sp1.index_add_(0, r, s1[info.t_idx, info.b_idx].sum(-1).double())
                sp2.index_add_(0, r, s2[info.t_idx, info.b_idx].sum(-1).double())
                start += k
        f32 = torch.float32
        stats = ColorStats(n, [sp1.sum(), sp2.sum()], [float(n * H)] * 2, float(n * field.in_dim * H),
                           sp1.sum() * H + sp2.sum() * 3, float(n * field.ann_macs_per_sample()), 1.0,
                           (sp1 + sp2).to(f32), (mask.sum(1) * 2 * H).to(f32), (sp1 * H + sp2 * 3).to(f32),
                           [sp1.to(f32), sp2.to(f32)])
        return rgb, stats

    return color


def measure(pipeline, views: list[int], color=None) -> dict[str, float]:
    """Mean per-image PSNR and counts over ``views``."""
    model = pipeline.model
    acc: dict[str, float] = {}
    for v in views:
        out, batch = render_view(pipeline, v, color)
        m, _ = model.get_image_metrics_and_images(out, batch)
        row = {"psnr": m["psnr"], "steps_tp": float(out["ray_padded_steps"].sum()),
               "valid": float(out["num_color_samples"].sum()), "density": float(out["num_density_samples"].sum()),
               "spikes1": float(out["ray_spikes_lif1"].sum()), "spikes2": float(out["ray_spikes_lif2"].sum()),
               "pixels": float(out["rgb"].shape[0] * out["rgb"].shape[1])}
        e = renderer_energy_metrics(out["num_density_samples"], out["num_color_samples"], out["ray_sops"],
                                    RendererShape.of_field(model.field))
        row.update({k: e[k] for k in ("renderer_snn_energy_uj_per_image", "renderer_ann_energy_uj_per_image",
                                      "colour_net_snn_energy_uj_per_image", "colour_net_ann_energy_uj_per_image",
                                      "colour_net_reduction", "renderer_reduction")})
        for k, val in row.items():
            acc[k] = acc.get(k, 0.0) + val / len(views)
    return acc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load-config", type=Path, required=True)
    ap.add_argument("--views", type=int, default=2, help="test views, evenly spaced")
    ap.add_argument("--vth-bits", type=int, default=10, help="threshold mantissa 2^vth_bits")
    ap.add_argument("--copies", type=int, default=128 // 3, help="copies of the 3-core net sharing the rays "
                    "(Loihi: 128 cores)")
    ap.add_argument("--output-json", type=Path, default=None)
    args = ap.parse_args(argv)

    pipeline = load(args.load_config)
    model, field = pipeline.model, pipeline.model.field
    if not field.spiking:
        raise SystemExit(f"{args.load_config} is an ANN run: give the spiking run (its twin is priced from it)")
    n = len(pipeline.datamanager.eval_dataset)
    views = torch.linspace(0, n - 1, min(args.views, n)).round().long().tolist()
    trained_mode = field.pack_mode
    field.pack_mode = "padding"
    rows = {"float TP": measure(pipeline, views)}
    for fl in ("off-chip", "on-chip"):
        rows[f"chip TP, fc1 {fl}"] = measure(pipeline, views, chip_color(field, chip_net(field, fl, args.vth_bits)))
    field.pack_mode = "condensing"
    rows["float TCP"] = measure(pipeline, views)
    rows["chip TCP, fc1 off-chip"] = measure(pipeline, views, chip_color(field, chip_net(field, "off-chip",
                                                                                          args.vth_bits)))
    field.pack_mode = trained_mode

    widths = (field.in_dim, field.hidden_dim, field.hidden_dim, 3)
    bias = field.fc2.bias is not None
    report = {"views": views, "trained_layout": trained_mode, "rows": rows, "cost": {}}
    print(f"{len(views)} test views {views}; trained layout {trained_mode}; per image:")
    print(f"{'':26s} {'PSNR dB':>8s} {'steps':>10s} {'spikes':>10s} {'chip uJ':>9s} {'latency ms':>10s}")
    for name, r in rows.items():
        tp = "TP" in name
        c = chip_cost(ChipCounts(r["steps_tp"] if tp else r["valid"], r["valid"], (r["spikes1"], r["spikes2"]),
                                 widths, bias, "on-chip" if "on-chip" in name else "off-chip"),
                      cores_in_parallel=args.copies)
        report["cost"][name] = {"energy_pj": c.energy_pj, "total_uj": c.total_pj * 1e-6,
                                "latency_ms": c.latency_ns * 1e-6, "steps": c.steps, "synops": c.synops,
                                "messages": c.messages, "weight_bits": c.weight_bits}
        print(f"{name:26s} {r['psnr']:8.2f} {c.steps:10.0f} {r['spikes1'] + r['spikes2']:10.0f} "
              f"{c.total_pj * 1e-6:9.2f} {c.latency_ns * 1e-6:10.3f}")
    base = rows["float TP"]
    twin_uj = base["valid"] * field.ann_macs_per_sample() * E_MAC_PJ * 1e-6
    report["twin_uj"] = twin_uj
    print(f"{'ANN twin (4.6 pJ/MAC)':26s} {'':8s} {base['valid']:10.0f} {'':10s} {twin_uj:9.2f}")
    print(f"colour net (project's count: fc1 MACs + 0.9 pJ SOPs): SNN {base['colour_net_snn_energy_uj_per_image']:.2f} uJ, "
          f"twin {base['colour_net_ann_energy_uj_per_image']:.2f} uJ ({100 * base['colour_net_reduction']:.1f} % less)")
    print(f"whole renderer: SNN {base['renderer_snn_energy_uj_per_image']:.2f} uJ, twin "
          f"{base['renderer_ann_energy_uj_per_image']:.2f} uJ ({100 * base['renderer_reduction']:.1f} % less)")
    print(f"fixed point: off-chip fc1 {rows['chip TP, fc1 off-chip']['psnr'] - base['psnr']:+.3f} dB, "
          f"on-chip fc1 {rows['chip TP, fc1 on-chip']['psnr'] - base['psnr']:+.3f} dB against float TP")
    if args.output_json:
        args.output_json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
