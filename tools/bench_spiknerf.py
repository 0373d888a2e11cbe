"""Benchmark Spik-NeRF on a Blender scene: the ANN twin (teacher), spike codes and distillation, either backbone.

Rows (``--variants``; default the issue's five, the KD row in the models' default alpha form): ``ann`` (the ANN
twin, trained first: it is the teacher of the ``+KD`` rows), ``binary``, ``ternary012`` {0,1,2}, ``ternary``
(signed {-1,0,1} x learnable amplitude), ``ternary012+KD-alpha`` (densities compared as the alpha of one sampling
step), ``ternary012+KD`` (as sigma per world unit, the paper's form; also ``binary+KD`` / ``ternary+KD``).
``--backbone grid`` trains ``spiknerf`` (voxel grids),
``--backbone mlp`` trains ``spiknerf-mlp`` (the NeRF MLP). Every row has the same schedule, seed and data;
training runs in-process (nerfstudio's Trainer, so it/s excludes start-up), the train PSNR is logged every
``--log-every`` steps (the loss curve), then each model is rendered on a fixed subset of test views
(``--views``, evenly spaced; ``--views 200 --downscale 1`` is the full lego-400 test split at 400x400) with
the re-parameterized network. Columns: PSNR / SSIM, the teacher's PSNR beside each KD row, train it/s,
energy under **both** MAC conventions for repeated inputs (``input once``: a real-valued input that is the
same at every step is multiplied once; ``input xT``: counted at every step, as the SpikingNeRF authors' code
counts a repeated input), the deployed event rate (what the energy counts: for ternary012 a silent neuron
sends -1) beside the training-code firing rate (non-zero outputs of the training code), samples per ray.

    .venv/bin/python tools/bench_spiknerf.py --backbone mlp --steps 300 --views 4 --downscale 4 \\
        --json /tmp/bench_spiknerf_mlp.json

``--throughput`` times train steps only, side by side in one process on the same lego rays: nerfstudio's
``vanilla-nerf`` model (its LPIPS is stubbed here only: it downloads AlexNet weights at start-up and fails
offline), ``spiknerf-mlp`` at the paper's size with every sample (HEAD-of-tree paper protocol), the same
with the occupancy cache, and the ANN twin.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from spikenerf.snn.process import configure_process

# the Spik-NeRF presets by name, even where the installed package metadata predates them (ns-eval's lookup)
_PRESETS = ["spiknerf", "spiknerf-ann", "spiknerf-full", "spiknerf-ann-full", "spiknerf-mlp", "spiknerf-mlp-ann",
            "spiknerf-mlp-cpu", "spiknerf-mlp-ann-cpu", "spiknerf-mlp-paper", "spiknerf-mlp-ann-paper"]
os.environ["NERFSTUDIO_METHOD_CONFIGS"] = ",".join(
    [e for e in os.environ.get("NERFSTUDIO_METHOD_CONFIGS", "").split(",") if e]
    + [f"{n}=spikenerf.nerf.method_configs:{n.replace('-', '_')}" for n in _PRESETS])

VARIANTS = {  # name: (spiking, spike_code, distil: None or the space densities are compared in)
    "ann": (False, None, None),
    "binary": (True, "binary", None),
    "ternary012": (True, "ternary012", None),
    "ternary": (True, "ternary", None),
    "ternary012+KD": (True, "ternary012", "sigma"),
    "binary+KD": (True, "binary", "sigma"),
    "ternary+KD": (True, "ternary", "sigma"),
    # sigma per world unit spans 0..~1e3 inside the object, so its MSE dwarfs the photometric loss; alpha is in [0, 1]
    "ternary012+KD-alpha": (True, "ternary012", "alpha"),
}
DEFAULT_ROWS = ["ann", "binary", "ternary012", "ternary", "ternary012+KD-alpha"]


def make_config(name: str, args: argparse.Namespace, teacher: Path | None):
    from spikenerf.nerf import method_configs as mc

    spiking, code, distil = VARIANTS[name]
    if args.backbone == "grid":
        spec = mc.METHODS[args.preset if spiking else args.preset.replace("spiknerf", "spiknerf-ann", 1)]
    else:
        spec = mc.METHODS[args.preset if spiking else args.preset.replace("spiknerf-mlp", "spiknerf-mlp-ann", 1)]
    cfg = copy.deepcopy(spec.config)
    m = cfg.pipeline.model
    if args.backbone == "grid":
        if args.coarse_steps is not None:
            m.coarse_steps = args.coarse_steps
        steps = m.coarse_steps + (args.fine_steps if args.fine_steps is not None else
                                  cfg.max_num_iterations - m.coarse_steps)
        if args.pg_scale_steps:
            m.pg_scale_steps = tuple(args.pg_scale_steps)
        for k in ("fine_resolution", "coarse_resolution"):
            if getattr(args, k) is not None:
                setattr(m, k, getattr(args, k))
    else:
        steps = args.steps if args.steps is not None else cfg.max_num_iterations
        if args.samples:
            m.num_coarse_samples, m.num_importance_samples = args.samples
        if args.occupancy is not None:
            m.occupancy_resolution = args.occupancy
        if args.lr:
            cfg.optimizers["fields"]["optimizer"].lr, cfg.optimizers["fields"]["scheduler"].lr_final = args.lr
    if args.hidden is not None:
        m.hidden_dim = args.hidden
    if args.time_steps is not None and spiking:
        m.time_steps = args.time_steps
    cfg.max_num_iterations = steps
    if hasattr(cfg, "preset_steps"):  # a trainer that rescales schedules from --max-num-iterations
        cfg.preset_steps = steps
    cfg.steps_per_eval_image = cfg.steps_per_eval_batch = cfg.steps_per_eval_all_images = 10 ** 9
    cfg.steps_per_save = steps
    cfg.vis = "tensorboard"
    cfg.machine.device_type = args.device
    cfg.machine.seed = args.seed
    cfg.output_dir = args.output_dir
    cfg.experiment_name = f"{args.backbone}-{name}"
    cfg.viewer.quit_on_train_completion = True
    cfg.pipeline.datamanager.dataparser.data = args.data
    if args.rays is not None:
        cfg.pipeline.datamanager.train_num_rays_per_batch = args.rays
    if code is not None:
        m.spike_code = code
    if distil:
        m.teacher_config = teacher
        m.distill_density_space = distil
    for opt in cfg.optimizers.values():
        opt["scheduler"].max_steps = steps
    return cfg


def train(cfg, log_every: int) -> tuple[Path, float, list]:
    """Train in-process; returns the config path, iterations/s and the loss curve [(step, train psnr, loss)]."""
    from nerfstudio.scripts.train import _set_random_seed

    cfg.set_timestamp()
    cfg.save_config()
    _set_random_seed(cfg.machine.seed)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    curve, pipe = [], trainer.pipeline
    inner = pipe.get_train_loss_dict

    def logged(step: int):
        out, loss, metrics = inner(step)
        if step % log_every == 0 or step == cfg.max_num_iterations - 1:
            curve.append((step, float(metrics.get("psnr", float("nan"))),
                          float(sum(v.detach() for v in loss.values()))))
        return out, loss, metrics

    pipe.get_train_loss_dict = logged
    t0 = time.time()
    trainer.train()
    dt = time.time() - t0
    return cfg.get_base_dir() / "config.yml", cfg.max_num_iterations / dt, curve


def test_views(data: Path, views: int, downscale: int):
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    out = BlenderDataParserConfig(data=data).setup().get_dataparser_outputs("test")
    n = len(out.image_filenames)
    idx = np.linspace(0, n - 1, min(views, n)).round().astype(int).tolist()
    items = []
    for i in idx:
        cam = out.cameras[i : i + 1]
        cam.rescale_output_resolution(1.0 / downscale)
        rgba = torch.from_numpy(np.asarray(Image.open(out.image_filenames[i]).convert("RGBA"))).float() / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])  # white background
        gt = F.avg_pool2d(rgb.permute(2, 0, 1)[None], downscale)[0].permute(1, 2, 0)
        items.append((i, cam, gt))
    return idx, items


def evaluate(config: Path, items) -> dict[str, float]:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config, test_mode="inference")
    model = pipeline.model
    model.eval()
    rows = []
    for _, cam, gt in items:
        t0 = time.time()
        out = model.get_outputs_for_camera(cam.to(model.device))
        m, _ = model.get_image_metrics_and_images(out, {"image": gt.to(model.device)})
        m["render_s"] = time.time() - t0
        if "macs_per_image_input_xT" not in m and "macs_per_image" in m:  # the grid model: fc1 is the MAC layer
            T = float(m.get("time_steps", 1.0))
            e = (T * m["macs_per_image"] * 4.6 + m["sops_per_image"] * 0.9) * 1e-6
            m["energy_uj_per_image_input_xT"] = e
            m["energy_reduction_vs_ann_input_xT"] = m["ann_energy_uj_per_image"] / e if e > 0 else float("nan")
        if "samples_per_ray" not in m and "color_samples_per_ray" in m:  # grid: samples that ran the colour net
            m["samples_per_ray"] = m["color_samples_per_ray"]
        rows.append(m)
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([r.get(k, float("nan")) for r in rows])) for k in keys}


# ----------------------------------------------------------------------------- throughput
def throughput(args: argparse.Namespace) -> dict:
    """Train steps of vanilla-nerf and spiknerf-mlp on the same lego rays, alternating (shared CPU)."""
    import torchmetrics.image.lpip as tm_lpip
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.models.vanilla_nerf import VanillaModelConfig

    from spikenerf.nerf.nerf_mlp import NeRFMLPModelConfig

    class _NoLPIPS(torch.nn.Module):  # benchmark only: vanilla-nerf's LPIPS needs AlexNet weights (offline)
        def __init__(self, *a, **k):
            super().__init__()

    tm_lpip.LearnedPerceptualImagePatchSimilarity = _NoLPIPS  # vanilla-nerf imports it when it builds
    dp = BlenderDataParserConfig(data=args.data).setup().get_dataparser_outputs("train")
    box, cams, n_img = dp.scene_box, dp.cameras, len(dp.image_filenames)
    R = args.rays or 1024
    W = args.hidden or 256
    samples = args.samples or (64, 128)
    models = {
        f"vanilla-nerf (nerfstudio, 8x256, {samples[0]}+{samples[1]})": VanillaModelConfig(
            num_coarse_samples=samples[0], num_importance_samples=samples[1]),
        f"spiknerf-mlp-ann ({W}, every sample)": NeRFMLPModelConfig(spiking=False, hidden_dim=W,
                                                                 num_coarse_samples=samples[0],
                                                                 num_importance_samples=samples[1]),
        f"spiknerf-mlp T=2 ({W}, every sample)": NeRFMLPModelConfig(hidden_dim=W, num_coarse_samples=samples[0],
                                                                 num_importance_samples=samples[1]),
        f"spiknerf-mlp T=2 ({W}, occupancy box cull)": NeRFMLPModelConfig(
            hidden_dim=W, num_coarse_samples=samples[0], num_importance_samples=samples[1],
            occupancy_resolution=64),
    }
    occ = None
    if args.occupancy_from is not None:  # a trained run's cache: the samples a converged scene keeps
        import yaml

        from spikenerf.nerf.distill import latest_checkpoint

        ckpt, _ = latest_checkpoint(args.occupancy_from, yaml.load(args.occupancy_from.read_text(), Loader=yaml.Loader))
        occ = torch.load(ckpt, map_location="cpu", weights_only=True)["pipeline"]["_model.occupancy"]
        models[f"spiknerf-mlp T=2 ({W}, occupancy of a trained run)"] = NeRFMLPModelConfig(
            hidden_dim=W, num_coarse_samples=samples[0], num_importance_samples=samples[1],
            occupancy_resolution=occ.shape[0])
        models[f"spiknerf-mlp-ann ({W}, occupancy of a trained run)"] = NeRFMLPModelConfig(
            spiking=False, hidden_dim=W, num_coarse_samples=samples[0], num_importance_samples=samples[1],
            occupancy_resolution=occ.shape[0])
    built = {}
    for name, mc in models.items():
        torch.manual_seed(0)
        m = mc.setup(scene_box=box, num_train_data=n_img, metadata={})
        m.train()
        if occ is not None and "trained run" in name:
            m.occupancy.copy_(occ)
            m.occupancy_swept.fill_(True)
        built[name] = (m, torch.optim.Adam([p for g in m.get_param_groups().values() for p in g], lr=5e-4))
    g = torch.Generator().manual_seed(args.seed)

    def batch():
        ci = torch.randint(0, n_img, (R, 1), generator=g)
        y = torch.randint(0, int(cams.height[0]), (R, 1), generator=g).float() + 0.5
        x = torch.randint(0, int(cams.width[0]), (R, 1), generator=g).float() + 0.5
        return cams.generate_rays(camera_indices=ci, coords=torch.cat([y, x], -1)), torch.rand(R, 3, generator=g)

    def step(m, opt, rb, img):
        out = m(rb)
        loss = m.get_loss_dict(out, {"image": img}, m.get_metrics_dict(out, {"image": img}))
        opt.zero_grad()
        sum(loss.values()).backward()
        opt.step()
        return out

    times = {k: [] for k in built}
    samples_per_ray = {k: [] for k in built}
    for it in range(args.throughput_steps + 1):
        rb, img = batch()
        for name, (m, opt) in built.items():
            t0 = time.perf_counter()
            out = step(m, opt, copy.deepcopy(rb), img)
            if it > 0:  # the first step warms up allocators / the C kernel build
                times[name].append(time.perf_counter() - t0)
                samples_per_ray[name].append(float(out["ray_samples"].mean()) if "ray_samples" in out else
                                             float(samples[0] + samples[0] + samples[1]))
    res = {k: {"s_per_step": float(np.mean(v)), "rays_per_s": R / float(np.mean(v)),
               "samples_per_ray": float(np.mean(samples_per_ray[k]))} for k, v in times.items()}
    base = res[next(iter(res))]["rays_per_s"]
    print(f"train step, {R} rays, {args.throughput_steps} steps each, alternating in one process")
    print("| model | s/step | rays/s | x vanilla-nerf | samples/ray |\n|---|---|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v['s_per_step']:.2f} | {v['rays_per_s']:.1f} | {v['rays_per_s'] / base:.2f} | "
              f"{v['samples_per_ray']:.1f} |")
    return res


# ----------------------------------------------------------------------------- main
COLS = [("psnr", "PSNR"), ("teacher_psnr", "teacher PSNR"), ("ssim", "SSIM"), ("train_it_s", "train it/s"),
        ("render_s", "render s/img"), ("energy_uj_per_image", "energy uJ/img (input once)"),
        ("energy_uj_per_image_input_xT", "energy uJ/img (input xT)"),
        ("energy_reduction_vs_ann", "x less than ANN (once)"),
        ("energy_reduction_vs_ann_input_xT", "x less than ANN (xT)"),
        ("firing_rate", "deployed event rate"), ("train_spike_rate", "training firing rate"),
        ("samples_per_ray", "samples/ray")]


def table(results: dict) -> str:
    lines = ["| variant | " + " | ".join(c[1] for c in COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k, _ in COLS) + " |")
    return "\n".join(lines)


RUN_ARGS_FREE = {"variants", "json", "resume", "teacher", "output_dir", "log_every", "plot"}
"""Arguments a resumed run may change: they do not change the rows' schedule, data or views."""


def plot(results: dict, curves: dict, path: Path, smooth: int = 8) -> None:
    """Two panels: each row's train PSNR against the step (a running mean over ``smooth`` logged batches: one
    batch is noisy) and its held-out PSNR beside the deployed event and training firing rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for name, c in curves.items():
        pts = [(s, p) for s, p, _ in c if math.isfinite(p)]
        if not pts:
            continue
        steps, psnr = np.array(pts).T
        k = min(smooth, len(psnr))
        ax.plot(steps[k - 1:], np.convolve(psnr, np.ones(k) / k, mode="valid"), label=name)
    ax.set(xlabel="step", ylabel=f"train PSNR (dB, mean of {smooth} batches)", title="training")
    ax.grid(alpha=0.3)
    ax.legend()
    names = list(results)
    x = np.arange(len(names))
    bx.bar(x, [results[n].get("psnr", float("nan")) for n in names], color="tab:blue")
    lo = min(results[n].get("psnr", 99.0) for n in names)
    bx.set_ylim(max(0.0, lo - 2.0), None)
    bx.set_ylabel("held-out PSNR (dB)")
    bx.set_xticks(x, names, rotation=30, ha="right")
    rx = bx.twinx()
    rx.plot(x, [results[n].get("firing_rate", float("nan")) for n in names], "o", color="tab:red",
            label="deployed event rate")
    rx.plot(x, [results[n].get("train_spike_rate", float("nan")) for n in names], "s", color="tab:orange",
            label="training firing rate")
    rx.set(ylabel="events / neuron / step", ylim=(0.0, 1.0))
    rx.legend(loc="upper right", fontsize=8)
    bx.set_title("test views")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def git_commit() -> str:
    """The project's commit the rows were run at (``unknown`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def resumed_rows(args: argparse.Namespace, idx: list, size: list) -> tuple[dict, dict]:
    """The rows and curves of ``--json`` when it was run on the same schedule, data and views (else exit)."""
    if args.json is None or not args.json.exists():
        return {}, {}
    old = json.loads(args.json.read_text())
    now = {k: str(v) for k, v in vars(args).items()}
    diff = sorted(k for k in set(now) | set(old.get("args", {}))
                  if k not in RUN_ARGS_FREE and old.get("args", {}).get(k) != now.get(k))
    if diff or old.get("views") != idx or old.get("size") != size:
        raise SystemExit(f"--resume: {args.json} was run with other settings ({', '.join(diff) or 'views'}); "
                         "use a new --json")
    return old.get("results", {}), old.get("curves", {})


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
                    / "nerf-synthetic-lego-400")
    ap.add_argument("--backbone", choices=["grid", "mlp"], default="grid")
    ap.add_argument("--preset", default=None, help="spiking method whose config the rows start from "
                    "(default spiknerf-full / spiknerf-mlp-cpu); its ANN twin is the same name with -ann")
    ap.add_argument("--steps", type=int, default=None, help="mlp: training steps (default: the preset's)")
    ap.add_argument("--coarse-steps", type=int, default=None, help="grid: coarse-stage steps")
    ap.add_argument("--fine-steps", type=int, default=None, help="grid: fine-stage steps")
    ap.add_argument("--pg-scale-steps", type=int, nargs="+", default=None)
    ap.add_argument("--coarse-resolution", type=int, default=None)
    ap.add_argument("--fine-resolution", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--time-steps", type=int, default=None)
    ap.add_argument("--samples", type=int, nargs=2, default=None, metavar=("COARSE", "FINE"), help="mlp")
    ap.add_argument("--occupancy", type=int, default=None, help="mlp: occupancy cache resolution (0 = off)")
    ap.add_argument("--lr", type=float, nargs=2, default=None, metavar=("START", "END"), help="mlp")
    ap.add_argument("--rays", type=int, default=None)
    ap.add_argument("--views", type=int, default=4, help="test views, evenly spaced over the test split")
    ap.add_argument("--downscale", type=int, default=4, help="render / GT resolution divisor")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_ROWS, choices=list(VARIANTS))
    ap.add_argument("--teacher", type=Path, default=None, help="config.yml of a trained ANN twin (skips its training)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--output-dir", type=Path, default=Path("outputs/bench_spiknerf"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in --json (same schedule and views) and run only the missing ones; "
                         "its ann row is the teacher")
    ap.add_argument("--plot", type=Path, default=None,
                    help="write the train PSNR curves and held-out PSNR / rates of the rows as a PNG "
                    "(with --resume and no rows left to run: plot a finished --json)")
    ap.add_argument("--throughput", action="store_true", help="only time train steps vs vanilla-nerf")
    ap.add_argument("--throughput-steps", type=int, default=3)
    ap.add_argument("--occupancy-from", type=Path, default=None,
                    help="--throughput: also time the MLP with the occupancy cache of this trained run's config.yml")
    args = ap.parse_args()
    if not (args.data / "transforms_train.json").exists():
        raise SystemExit(f"no Blender scene at {args.data}")
    if args.throughput:
        res = throughput(args)
        if args.json:
            args.json.write_text(json.dumps({"throughput": res, "rays": args.rays or 1024}, indent=2))
        return
    if args.preset is None:
        args.preset = "spiknerf-full" if args.backbone == "grid" else "spiknerf-mlp-cpu"
    idx, items = test_views(args.data, args.views, args.downscale)
    h, w = items[0][2].shape[:2]
    print(f"test views {idx} at {w}x{h}", flush=True)
    variants = list(args.variants)
    if any(VARIANTS[v][2] for v in variants) and "ann" not in variants and args.teacher is None:
        variants.insert(0, "ann")  # the teacher
    variants.sort(key=lambda v: v != "ann")
    results, curves, teacher = {}, {}, args.teacher
    if args.resume:
        results, curves = resumed_rows(args, idx, [w, h])
        if "ann" in results and teacher is None:
            teacher = Path(results["ann"]["config"])
        variants = [v for v in variants if v not in results]
        print(f"resumed rows {list(results)} from {args.json}; to run: {variants}", flush=True)
    if teacher is not None and not any(k.startswith("ann") for k in results):
        results["ann (loaded teacher)"] = evaluate(teacher, items)
    for name in variants:
        cfg = make_config(name, args, teacher)
        config, its, curve = train(cfg, args.log_every)
        if name == "ann":
            teacher = config
        res = evaluate(config, items)
        res["train_it_s"] = its
        if VARIANTS[name][2]:
            t_res = results.get("ann") or results.get("ann (loaded teacher)") or {}
            res["teacher_psnr"] = t_res.get("psnr", float("nan"))
        res["config"] = str(config)
        res["commit"] = git_commit()
        print(name, json.dumps(res), flush=True)
        results[name], curves[name] = res, curve
        if args.json:
            tmp = args.json.with_suffix(".tmp")  # atomic: a crash mid-write never loses the rows already run
            tmp.write_text(json.dumps({"views": idx, "size": [w, h], "args": {k: str(v) for k, v in
                                                                          vars(args).items()},
                                       "results": results, "curves": curves}, indent=2))
            tmp.replace(args.json)
    print(table(results))
    print("train PSNR curve (step: psnr)")
    for name, c in curves.items():
        print(name, " ".join(f"{s}:{p:.2f}" for s, p, _ in c if not math.isnan(p)))
    if args.plot is not None:
        plot(results, curves, args.plot)


if __name__ == "__main__":
    main()
