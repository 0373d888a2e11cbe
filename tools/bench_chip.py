"""The colour net on a Loihi-class chip: PSNR in fixed point against float, and the per-image cost of padding
(TP), condensing (TCP) and the ANN twin on the same rendered views (issue 32; ``docs/energy.md``).

    PYTHONPATH=. .venv/bin/python tools/bench_chip.py --load-config outputs/.../config.yml --views 20 \
        --max-seconds 600 --output-json chip.json

The run must use the paper's neuron (``--pipeline.model.reset hard``, a fixed ``lif``): that is the chip's.
Each of ``--views`` test views (evenly spaced; 0: all) is rendered once for every column (:class:`Columns`):

- ``float TP`` / ``float TCP``: the model in the padding / condensing layout;
- ``chip TP, fc1 off-chip`` / ``chip TP, fc1 on-chip`` / ``chip TCP, fc1 off-chip``: the colour net in Loihi
  fixed point (:class:`~spikenerf.snn.chip.ChipColourNet`), fc1 on the host or on the chip with 8-bit inputs;

then one image (the views' mean) is priced with :func:`~spikenerf.snn.chip.chip_cost` and the whole renderer
with :mod:`spikenerf.nerf.renderer_energy`. A line is printed per view as it finishes (wall and CPU seconds,
PSNR of each chip column against the ground truth and against its float render) and the JSON (``per_view``,
``rows``: the means, ``cost``) is rewritten after every view, so a stopped run keeps its views.
``--max-seconds`` starts no view that would end past the limit. ``--threads`` defaults to 1: the chip model's
per-step ops are small, and a second OpenMP thread on a busy 2-core machine slowed a view ~9x.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import time

import torch
from energy_map import load, render_view
from torch import Tensor

from spikenerf.nerf.metrics import ground_truth, psnr
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


# the table's columns: (name, packing layout, fc1 placement on the chip or None for the float model)
COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("float TP", "padding", None),
    ("chip TP, fc1 off-chip", "padding", "off-chip"),
    ("chip TP, fc1 on-chip", "padding", "on-chip"),
    ("float TCP", "condensing", None),
    ("chip TCP, fc1 off-chip", "condensing", "off-chip"),
)


def active_columns(nets: dict[str, tuple[ChipColourNet, str]]) -> list[tuple[str, str, str | None]]:
    """The float columns and the chip columns that have a net in ``nets``."""
    return [c for c in COLUMNS if c[2] is None or c[0] in nets]


def chip_columns(field, nets: dict[str, tuple[ChipColourNet, str]], xyz: Tensor, dirs: Tensor, mask: Tensor,
                 time_index: Tensor | None = None, chunk_steps: int = 1 << 16
                 ) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Colour of the masked samples through each chip net ``{name: (net, layout)}``: per name ``rgb``
    ``[R, S, 3]`` and the spikes of LIF1 / LIF2 per ray ``[R]`` (float64).

    The grid look-up is made once, and each layout's packing once per chunk and shared by its nets. Each ray
    runs alone (no state crosses rays), so the rays are sorted by their sequence length in the layout and
    chunked: a chunk's packed tensor is then barely longer than its rays (in the
    order the renderer gives them, half of it was holes of short rays). A chunk holds at most ``chunk_steps``
    ray-steps (its rays times its longest), which bounds memory: about ``chunk_steps x hidden x 40`` bytes. Under padding each ray's time starts
    at its first valid sample: the steps before it are a LIF at rest (no input, and the bias synapse is
    driven by the valid flag), skipped exactly; the image's padded step count is the probe's, unchanged.
    """
    R, S = mask.shape
    out = {k: (xyz.new_zeros(R, S, 3), torch.zeros(R, dtype=torch.float64), torch.zeros(R, dtype=torch.float64))
           for k in nets}
    r_of, s_of = mask.nonzero(as_tuple=True)
    if not r_of.numel():
        return out
    x = field.colour_net_inputs(xyz[r_of, s_of], dirs[r_of]).double()
    ti = torch.arange(S, device=mask.device).expand(R, S) if time_index is None else time_index
    rel = ti - ti.masked_fill(~mask, torch.iinfo(ti.dtype).max).amin(1, keepdim=True)
    counts = mask.sum(1)
    first_sample = counts.cumsum(0) - counts  # [R] where each ray's samples start in r_of's row-major order
    rank = mask.cumsum(1) - 1  # [R, S] a sample's rank within its ray
    lengths = {"padding": rel.masked_fill(~mask, -1).amax(1) + 1, "condensing": counts}
    for layout in sorted({lay for _, lay in nets.values()}):
        order = lengths[layout].argsort(stable=True)
        order = order[counts[order] > 0]
        for rows in _chunks(order, lengths[layout][order].tolist(), chunk_steps):
            sub = mask[rows]
            i, j = sub.nonzero(as_tuple=True)  # the chunk's samples, row-major in its own row order
            idx = first_sample[rows][i] + rank[rows][i, j]  # their place in r_of / x
            info = pack_index(sub, layout, field.flip, rel[rows] if layout == "padding" else None)
            xp = scatter_valid(x[idx], info)
            at, r, s = (info.t_idx, info.b_idx), r_of[idx], s_of[idx]
            for name, (net, lay) in nets.items():
                if lay != layout:
                    continue
                logits, n1, n2 = net.run_counts(xp, info.packed_mask)
                rgb, sp1, sp2 = out[name]
                rgb[r, s] = torch.sigmoid(logits[at]).to(rgb.dtype)
                sp1.index_add_(0, r, n1[at].double())  # spikes on valid steps, as the float model counts
                sp2.index_add_(0, r, n2[at].double())
    return out


def _chunks(order: Tensor, lengths: list[int], budget: int) -> list[Tensor]:
    """``order`` (rays sorted by ``lengths``, ascending) cut into runs of at most ``budget`` ray-steps each (a
    run's size times its longest ray; a single ray longer than the budget is a run of its own)."""
    runs, i, n = [], 0, len(lengths)
    while i < n:
        guess = max(1, budget // max(lengths[i], 1))  # from the shortest: the most rays a run can hold
        k = max(1, min(guess, budget // max(lengths[min(i + guess, n) - 1], 1)))
        runs.append(order[i:i + k])
        i += k
    return runs


class Columns:
    """Renders every column of the table in one pass of the renderer (a context manager).

    The marching, the density look-ups and the compositing weights do not depend on the colour net, so one
    render serves all columns: the colour hook runs the float model in each layout and the chip nets on the
    same samples and returns their colours side by side (``[R, S, 3 * columns]``); compositing is linear in
    the colour, so the rendered ``rgb`` comes back as ``[H, W, 3 * columns]`` (the background is repeated to
    match). The hook returns the first column's :class:`~spikenerf.nerf.field.ColorStats` (the float model's, as a plain render
    would); each column's spike totals are in :attr:`spikes`.
    """

    def __init__(self, model, nets: dict[str, tuple[ChipColourNet, str]], chunk_steps: int = 1 << 16) -> None:
        self.model, self.nets, self.chunk_steps = model, nets, chunk_steps
        self.columns = active_columns(nets)
        self.names = [name for name, _, _ in self.columns]
        self.spikes: dict[str, list[float]] = {}

    def __enter__(self) -> "Columns":
        model = self.model
        self._float_color, self._mode = model.field.color, model.field.pack_mode
        background = model.background
        model.background = lambda ref: background(ref[..., :3]).repeat(len(self.names))  # shadows the method
        self.spikes = {k: [0.0, 0.0] for k in self.names}
        return self

    def __exit__(self, *exc) -> None:
        del self.model.background
        self.model.field.pack_mode = self._mode

    def color(self, xyz, dirs, mask, time_index=None):
        field = self.model.field
        chip = chip_columns(field, self.nets, xyz, dirs, mask, time_index, self.chunk_steps)
        rgbs, first = [], None
        for name, layout, fc1 in self.columns:
            if fc1 is None:
                field.pack_mode = layout
                rgb, stats = self._float_color(xyz, dirs, mask, time_index)
                sp = [float(t.sum()) for t in stats.ray_spikes_per_layer]
                first = first or stats
            else:
                rgb, sp1, sp2 = chip[name]
                sp = [float(sp1.sum()), float(sp2.sum())]
            rgbs.append(rgb)
            self.spikes[name] = [a + b for a, b in zip(self.spikes[name], sp)]
        field.pack_mode = self._mode
        return torch.cat(rgbs, -1), first


def render_columns(pipeline, view: int, nets: dict[str, tuple[ChipColourNet, str]],
                   chunk_steps: int = 1 << 16) -> dict:
    """One test view rendered once for every column: per column its PSNR against the ground truth and
    against the float render of its layout, max |rgb diff| to that render, and spikes; and the image's counts
    and whole-renderer energy (the float TP model's)."""
    model = pipeline.model
    with Columns(model, nets, chunk_steps) as cols:
        out, batch = render_view(pipeline, view, cols.color)
    images = dict(zip(cols.names, out["rgb"].clamp(0, 1).split(3, -1)))
    gt = ground_truth(batch, images[cols.names[0]], model.config.background_color)[..., :3]
    row: dict = {"view": view, "steps_tp": float(out["ray_padded_steps"].sum()),
                 "valid": float(out["num_color_samples"].sum()), "density": float(out["num_density_samples"].sum()),
                 "pixels": float(gt.shape[0] * gt.shape[1]), "columns": {}}
    for name, layout, fc1 in cols.columns:
        ref = images["float TP" if layout == "padding" else "float TCP"]
        img = images[name]
        row["columns"][name] = {"psnr": float(psnr(img, gt)), "psnr_vs_float": float(psnr(img, ref)),
                                "max_abs_diff_vs_float": float((img - ref).abs().max()),
                                "spikes1": cols.spikes[name][0], "spikes2": cols.spikes[name][1]}
    e = renderer_energy_metrics(out["num_density_samples"], out["num_color_samples"], out["ray_sops"],
                                RendererShape.of_field(model.field))
    row.update({k: e[k] for k in ("renderer_snn_energy_uj_per_image", "renderer_ann_energy_uj_per_image",
                                  "colour_net_snn_energy_uj_per_image", "colour_net_ann_energy_uj_per_image",
                                  "colour_net_reduction", "renderer_reduction")})
    return row


def mean_rows(per_view: list[dict]) -> dict[str, dict[str, float]]:
    """Per column, the views' mean of its numbers and of the image's counts and energies (the old ``rows``)."""
    shared = [k for k, v in per_view[0].items() if isinstance(v, float)]
    rows = {}
    for name in per_view[0]["columns"]:
        acc: dict[str, float] = {}
        for v in per_view:
            for k, val in [*((k, v[k]) for k in shared), *v["columns"][name].items()]:
                acc[k] = acc.get(k, 0.0) + val / len(per_view)
        rows[name] = acc
    return rows


def summarise(rows: dict[str, dict[str, float]], field, copies: int) -> tuple[dict, list[str]]:
    """Per-image chip cost of each column from its mean counts, the twin's and the renderer's energy: the
    report's ``cost`` / ``twin_uj`` and the printed table."""
    widths = (field.in_dim, field.hidden_dim, field.hidden_dim, 3)
    bias = field.fc2.bias is not None
    report: dict = {"cost": {}}
    lines = [f"{'':26s} {'PSNR dB':>8s} {'vs float':>8s} {'steps':>10s} {'spikes':>10s} {'chip uJ':>9s} "
             f"{'latency ms':>10s}"]
    for name, r in rows.items():
        c = chip_cost(ChipCounts(r["steps_tp"] if "TP" in name else r["valid"], r["valid"],
                                 (r["spikes1"], r["spikes2"]), widths, bias,
                                 "on-chip" if "on-chip" in name else "off-chip"), cores_in_parallel=copies)
        report["cost"][name] = {"energy_pj": c.energy_pj, "total_uj": c.total_pj * 1e-6,
                                "latency_ms": c.latency_ns * 1e-6, "steps": c.steps, "synops": c.synops,
                                "messages": c.messages, "weight_bits": c.weight_bits}
        vs = "" if name.startswith("float") else f"{r['psnr_vs_float']:8.2f}"
        lines.append(f"{name:26s} {r['psnr']:8.2f} {vs:>8s} {c.steps:10.0f} {r['spikes1'] + r['spikes2']:10.0f} "
                     f"{c.total_pj * 1e-6:9.2f} {c.latency_ns * 1e-6:10.3f}")
    base = rows["float TP"]
    twin_uj = base["valid"] * field.ann_macs_per_sample() * E_MAC_PJ * 1e-6
    report["twin_uj"] = twin_uj
    lines += [
        f"{'ANN twin (4.6 pJ/MAC)':26s} {'':8s} {'':8s} {base['valid']:10.0f} {'':10s} {twin_uj:9.2f}",
        f"colour net (project's count: fc1 MACs + 0.9 pJ SOPs): SNN {base['colour_net_snn_energy_uj_per_image']:.2f}"
        f" uJ, twin {base['colour_net_ann_energy_uj_per_image']:.2f} uJ ({100 * base['colour_net_reduction']:.1f} % less)",
        f"whole renderer: SNN {base['renderer_snn_energy_uj_per_image']:.2f} uJ, twin "
        f"{base['renderer_ann_energy_uj_per_image']:.2f} uJ ({100 * base['renderer_reduction']:.1f} % less)",
        "fixed point against float (dB): " + _deltas(rows),
    ]
    return report, lines


def _deltas(rows: dict[str, dict[str, float]]) -> str:
    """Each chip column's PSNR change against its layout's float render, and its PSNR to that render."""
    parts = []
    for name, layout, fc1 in COLUMNS:
        if fc1 and name in rows:
            ref = rows["float TP" if layout == "padding" else "float TCP"]
            parts.append(f"{name[5:]} {rows[name]['psnr'] - ref['psnr']:+.3f} ({rows[name]['psnr_vs_float']:.1f} dB to float)")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load-config", type=Path, required=True)
    ap.add_argument("--views", type=int, default=2, help="test views, evenly spaced (0: all)")
    ap.add_argument("--vth-bits", type=int, default=10, help="threshold mantissa 2^vth_bits")
    ap.add_argument("--copies", type=int, default=128 // 3, help="copies of the 3-core net sharing the rays "
                    "(Loihi: 128 cores)")
    ap.add_argument("--chunk-steps", type=int, default=1 << 16, help="ray-steps per chip-model chunk (memory: "
                    "about chunk_steps x hidden x 40 bytes)")
    ap.add_argument("--max-seconds", type=float, default=None, help="start no view that would end past this "
                    "many seconds from the start, loading included (at least one view runs; the views so far "
                    "are reported)")
    ap.add_argument("--output-json", type=Path, default=None, help="written after every view")
    ap.add_argument("--fc1", choices=("both", "off-chip"), default="both", help="off-chip: leave out the "
                    "'chip TP, fc1 on-chip' column (a third of the chip model's time)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the chip model's "
                    "per-step ops are small, and on a loaded 2-core machine a second OpenMP thread made each "
                    "step ~40x slower)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    pipeline = load(args.load_config)
    model, field = pipeline.model, pipeline.model.field
    if not field.spiking:
        raise SystemExit(f"{args.load_config} is an ANN run: give the spiking run (its twin is priced from it)")
    model.compute_normals = False  # not part of the colour; saves the density probes
    n = len(pipeline.datamanager.eval_dataset)
    k = n if args.views <= 0 else min(args.views, n)
    views = torch.linspace(0, n - 1, k).round().long().tolist()
    nets = {name: (chip_net(field, fc1, args.vth_bits), layout) for name, layout, fc1 in COLUMNS
            if fc1 and (args.fc1 == "both" or fc1 == "off-chip")}
    report: dict = {"views_planned": views, "trained_layout": field.pack_mode, "per_view": []}
    print(f"{len(views)} of {n} test views {views}; trained layout {field.pack_mode}; loaded in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    t_views = time.perf_counter()
    for i, v in enumerate(views):
        spent = time.perf_counter() - t0
        per_view = (time.perf_counter() - t_views) / i if i else 0.0
        if args.max_seconds is not None and i and spent + per_view > args.max_seconds:
            print(f"stopping after {i} views: the next would end past --max-seconds {args.max_seconds:.0f} "
                  f"({spent:.0f} s spent, {per_view:.0f} s per view)", flush=True)
            break
        t1, c1 = time.perf_counter(), time.process_time()
        row = render_columns(pipeline, v, nets, args.chunk_steps)
        row["seconds"], row["cpu_seconds"] = time.perf_counter() - t1, time.process_time() - c1
        report["per_view"].append(row)
        c = row["columns"]
        print(f"view {v} ({i + 1}/{len(views)}, {row['seconds']:.1f} s, CPU {row['cpu_seconds']:.1f} s, "
              f"{row['valid'] / row['pixels']:.1f} colour samples/ray): float TP {c['float TP']['psnr']:.2f} dB; "
              f"chip: {_deltas({k: c[k] for k in c})}", flush=True)
        rows = mean_rows(report["per_view"])
        summary, lines = summarise(rows, field, args.copies)
        report.update({"views": [r["view"] for r in report["per_view"]], "rows": rows, **summary})
        if args.output_json:
            args.output_json.write_text(json.dumps(report, indent=1))
    print(f"per image, mean of {len(report['per_view'])} views:")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
