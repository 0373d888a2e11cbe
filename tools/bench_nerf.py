"""Benchmark SpikingNeRF: padding vs condensing vs the ANN twin on one scene (Blender, or a real capture).

Trains each variant with ``ns-train`` (same iterations / seed), then renders a fixed subset of test views
in-process and prints PSNR / SSIM, training it/s, render time per image, energy and firing rate.

    .venv/bin/python tools/bench_nerf.py --data ../shared/data/nerf-synthetic-lego-400 --iterations 600 --views 4
    .venv/bin/python tools/bench_nerf.py --preset full --views 4     # the ~20-minute CPU schedule on lego-400
    .venv/bin/python tools/bench_nerf.py --preset capture --parser colmap --data ../shared/data/beer-can-colmap \
        --parser-args "--colmap-path sparse/0 --downscale-factor 4" --variants snn-condensing ann --views 9 \
        --picture docs/img/beer_gt_snn_ann.png   # the ~30-minute real-capture preset, all 9 held-out views
    .venv/bin/python tools/bench_nerf.py --preset full --iterations 1500 --views 16 --ablation \
        --output-dir /tmp/abl --json /tmp/abl.json   # DVGO's fine-stage rules, each switched alone, one run
    .venv/bin/python tools/bench_nerf.py --threads-compare --busy 2  # OpenMP wait policies side by side, under load
    .venv/bin/python tools/bench_nerf.py --render-compare outputs/<run>/config.yml  # render in place vs time blocks
    .venv/bin/python tools/bench_nerf.py --commits-compare 0463030 HEAD --config outputs/<run>/config.yml \
        --views 4 --repeats 3                                            # the render path at two commits
    .venv/bin/python tools/bench_nerf.py --commits-compare 0463030 HEAD --config outputs/<run>/config.yml \
        --compare step --views 20 --repeats 3                            # a training step at two commits
    .venv/bin/python tools/bench_nerf.py --step-compare outputs/<run>/config.yml    # a training step, the same
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from spikenerf.snn.process import configure_process

VARIANTS = {
    "snn-padding": ("spikingnerf", ["--pipeline.model.pack-mode", "padding"]),
    "snn-condensing": ("spikingnerf", ["--pipeline.model.pack-mode", "condensing"]),
    "ann": ("spikingnerf-ann", []),
    # the colour neuron's options (condensing); "official": the neuron of the authors' SpikingNeRF-D code
    "snn-official": ("spikingnerf", ["--pipeline.model.reset", "hard", "--pipeline.model.surrogate", "sigmoid",
                                     "--pipeline.model.detach-reset", "True"]),
    "snn-hard": ("spikingnerf", ["--pipeline.model.reset", "hard"]),
    "snn-plif": ("spikingnerf", ["--pipeline.model.neuron", "plif"]),
    "snn-soft": ("spikingnerf", ["--pipeline.model.reset", "soft"]),
    "snn-vth": ("spikingnerf", ["--pipeline.model.threshold", "learnable"]),
    # DVGOv2's random training background (unbounded scenes)
    "snn-randbg": ("spikingnerf", ["--pipeline.model.random-background", "True"]),
    # DVGO's total variation of the fine density grid: its unbounded-360 weight (1e-6) and its T&T one (1e-5)
    "snn-tv": ("spikingnerf", ["--pipeline.model.loss-coefficients.tv-density", "1e-6"]),
    "snn-tv5": ("spikingnerf", ["--pipeline.model.loss-coefficients.tv-density", "1e-5"]),
}
M = "--pipeline.model."
ABLATION = {  # DVGO's fine-stage rules, each switched from the default alone: name -> (what it changes, flags)
    "abl-no-cache": ("no occupancy cache (MaskGrid off, no refresh)",
                     [M + "occupancy-threshold", "0", M + "occupancy-refresh-every", "0",
                      M + "refresh-on-upscale", "False"]),
    "abl-no-refresh": ("cache never refreshed in the fine stage",
                       [M + "occupancy-refresh-every", "0", M + "refresh-on-upscale", "False"]),
    "abl-full-box": ("fine grids on the data parser's box, not the coarse geometry's",
                     [M + "tighten-fine-box", "False"]),
    "abl-shift-decay": ("+ DVGO's activation-shift decay after each up-scale (off by default)",
                        [M + "decay-after-scale", "1"]),
    "abl-no-entropy": ("no fine background-entropy loss (0.001)", [M + "loss-coefficients.entropy-loss", "0"]),
    "abl-no-rgbper": ("no per-point colour loss (fine 0.01, coarse 0.1)",
                      [M + "loss-coefficients.rgbper-loss", "0", M + "loss-coefficients.coarse-rgbper-loss", "0"]),
    "abl-in-cache-rays": ("+ rays drawn in the occupancy cache (off by default)", [M + "in-cache-rays", "True"]),
    "abl-pervoxel-lr": ("+ per-voxel learning rate by view count (off by default)", [M + "pervoxel-lr", "True"]),
    "abl-no-bias": ("the paper's colour net: no bias in any Linear layer", [M + "color-bias", "False"]),
    "abl-masked-adam": ("+ DVGO's masked Adam on the grids (off by default)",
                        ["--optimizers.grids.optimizer.masked", "True", "--optimizers.grids.optimizer.betas",
                         "0.9", "0.99"]),
}
VARIANTS.update({name: ("spikingnerf", flags) for name, (_, flags) in ABLATION.items()})
ENV_METHODS = ("spikingnerf=spikenerf.nerf.method_configs:spikingnerf,"
               "spikingnerf-ann=spikenerf.nerf.method_configs:spikingnerf_ann,"
               "spikingnerf-full=spikenerf.nerf.method_configs:spikingnerf_full,"
               "spikingnerf-ann-full=spikenerf.nerf.method_configs:spikingnerf_ann_full,"
               "spikingnerf-capture=spikenerf.nerf.method_configs:spikingnerf_capture,"
               "spikingnerf-ann-capture=spikenerf.nerf.method_configs:spikingnerf_ann_capture")


def train(name: str, method: str, extra: list[str], args: argparse.Namespace) -> tuple[Path, float]:
    out = args.output_dir / name
    if args.preset != "mini":
        method += "-" + args.preset
    iters = ["--max-num-iterations", str(args.iterations)] if args.iterations else []
    cmd = [str(Path(sys.executable).with_name("ns-train")), method, "--output-dir", str(out),
           "--machine.device-type", args.device, "--vis", "tensorboard", *iters,
           "--steps-per-eval-image", "1000000", "--steps-per-eval-batch", "1000000",
           *extra, *args.model_args, args.parser, "--data", str(args.data), *shlex.split(args.parser_args)]
    env = dict(os.environ)
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", ENV_METHODS)
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    dt = time.time() - t0
    configs = sorted(out.rglob("config.yml"), key=lambda p: p.stat().st_mtime)
    done = torch.load(next((configs[-1].parent / "nerfstudio_models").glob("*.ckpt")), map_location="cpu",
                      weights_only=True)["step"] + 1
    return configs[-1], done / dt


def ablation_table(results: dict[str, dict[str, float]], base: str = "snn-condensing") -> str:
    """Markdown: each ``abl-*`` row's change against ``base`` (PSNR, SSIM, training PSNR, fine-stage step,
    colour samples, render time)."""
    nan = float("nan")
    ref = results.get(base)
    lines = ["| rule switched | PSNR | dPSNR vs default | SSIM | train PSNR (last 10 logged) | fine s/it (x default) "
             "| colour samples / ray | render s / view |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name != base and name not in ABLATION:
            continue
        what = "the default" if name == base else ABLATION[name][0]
        d = r["psnr"] - ref["psnr"] if ref else nan
        speed = r.get("fine_s_per_it", nan) / ref.get("fine_s_per_it", nan) if ref else nan
        lines.append(f"| {what} (`{name}`) | {r['psnr']:.2f} | {d:+.2f} | {r['ssim']:.3f} | "
                     f"{r.get('train_psnr', nan):.2f} | {r.get('fine_s_per_it', nan):.3f} ({speed:.2f}x) | "
                     f"{r.get('color_samples_per_ray', nan):.1f} | {r.get('render_s', nan):.2f} |")
    return "\n".join(lines)


def train_scalars(run_dir: Path, tags: tuple[str, ...], last: int = 10, fine_from: int = 200) -> dict[str, float]:
    """Mean of the last ``last`` logged values of some training scalars (tensorboard event files)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, float] = {}
    for ev in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            key = tag.split("/")[-1]
            if key in tags:
                vals = [e.value for e in acc.Scalars(tag)][-last:]
                if vals:
                    out["train_" + key] = sum(vals) / len(vals)
            elif key == "Train Iter (time)":  # running mean of the step time, logged every 10 steps
                pts = acc.Scalars(tag)
                fine = [e.value for e in pts if e.step >= fine_from]
                out["train_s_per_it"] = sum(e.value for e in pts) / max(1, len(pts))
                if fine:
                    out["fine_s_per_it"] = sum(fine) / len(fine)
    return out


def _rss_mb(reset_peak: bool = False) -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB (Linux). ``reset_peak`` first sets the peak to
    the current size (``/proc/self/clear_refs``), so the peak that follows is that of what runs next, not of the
    loading before it (the process's lifetime peak, ``ru_maxrss``, is often the checkpoint and dataset load)."""
    if reset_peak:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                vals[line.split(":")[0]] = float(line.split()[1]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


def evaluate(config: Path, views: int, big: int = 0) -> dict[str, float]:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    model = pipeline.model
    ds = pipeline.datamanager.eval_dataset
    extra: dict[str, float] = {}
    if big:
        cam = ds.cameras[0:1].to(model.device)
        cam.rescale_output_resolution(big / int(cam.height[0, 0]))
        before, _ = _rss_mb(reset_peak=True)
        t0 = time.time()
        out = model.get_outputs_for_camera(cam)
        extra = {f"render{big}_s": time.time() - t0, f"render{big}_peak_growth_mb": _rss_mb()[1] - before}
        assert out["rgb"].shape[:2] == (big, big)
        del out
    idx = torch.linspace(0, len(ds) - 1, min(views, len(ds))).round().long().tolist()  # fixed subset
    rows = []
    for i in idx:
        cam = ds.cameras[i : i + 1].to(model.device)
        batch = ds[i]
        t0 = time.time()
        out = model.get_outputs_for_camera(cam)
        dt = time.time() - t0
        m, _ = model.get_image_metrics_and_images(out, batch)
        m["render_s"] = dt
        rows.append(m)
    keys = rows[0].keys()
    res = {k: float(sum(r.get(k, float("nan")) for r in rows) / len(rows)) for k in keys}
    res.update(extra)
    return res


# one child per measurement: the OpenMP wait policy is read when torch loads, so it needs a fresh process
_STEP_CHILD = r"""
import sys, time, torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from spikenerf.nerf.model import SpikingNeRFModelConfig
from spikenerf.snn.process import configure_process
configure_process()
steps, rays = int(sys.argv[1]), int(sys.argv[2])
cfg = SpikingNeRFModelConfig(coarse_steps=1, coarse_resolution=32, fine_resolution=64, pg_scale_steps=(),
                             hidden_dim=64, scene="bounded", alpha_threshold=-1.0, weight_threshold=-1.0)
m = cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, metadata={})
m.train(); m._set_step(5)
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for grid in (m.field.density_grid, m.field.feature_grid):
        grid.grid.copy_(torch.randn(grid.grid.shape, generator=g))
o = torch.tensor([0.0, 0.0, 3.0]) + 0.1 * torch.randn(rays, 3, generator=g)
d = torch.nn.functional.normalize(-o + 0.3 * torch.randn(rays, 3, generator=g), dim=-1)
rb = RayBundle(origins=o, directions=d, pixel_area=torch.ones(rays, 1), camera_indices=torch.zeros(rays, 1).long())
batch = {"image": torch.rand(rays, 3, generator=g)}
def step():
    out = m(rb); sum(m.get_loss_dict(out, batch).values()).backward()
step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - t0) / steps)
"""
_BUSY_CHILD = "import torch\nx = torch.randn(256, 256)\nwhile True:\n    y = x @ x; z = torch.sigmoid(y).sum()\n"


def threads_compare(busy: int, steps: int, rays: int) -> dict[str, float]:
    """Seconds per training step with libgomp's default wait policy and with PASSIVE, quiet and with ``busy``
    busy torch processes beside it (themselves on the default policy, as a neighbour's job would be)."""
    res: dict[str, float] = {}
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for load in (0, busy):
        neighbours = [subprocess.Popen([sys.executable, "-c", _BUSY_CHILD], env=base) for _ in range(load)]
        try:
            for policy in ("default", "PASSIVE"):
                env = dict(base) if policy == "default" else {**base, "OMP_WAIT_POLICY": policy}
                out = subprocess.run([sys.executable, "-c", _STEP_CHILD, str(steps), str(rays)], env=env,
                                     check=True, capture_output=True, text=True).stdout.split()[-1]
                res[f"{policy}_busy{load}_s_per_step"] = float(out)
                print(policy, "busy", load, out, flush=True)
        finally:
            for p in neighbours:
                p.kill()
                p.wait()
    for load in (0, busy):
        res[f"passive_speedup_busy{load}"] = res[f"default_busy{load}_s_per_step"] / res[f"PASSIVE_busy{load}_s_per_step"]
    return res


def picture(configs: dict[str, Path], views: list[int], path: Path) -> None:
    """One PNG: a row per held-out view, ground truth then each variant's render, left to right."""
    import imageio.v2 as imageio
    from nerfstudio.utils.eval_utils import eval_setup

    cols: list[list[torch.Tensor]] = [[] for _ in views]
    for k, config in enumerate(configs.values()):
        _, pipe, _, _ = eval_setup(config, test_mode="test")
        ds = pipe.datamanager.eval_dataset
        for row, v in zip(cols, views):
            if k == 0:
                row.append(ds[v]["image"][..., :3].float())
            with torch.no_grad():
                row.append(pipe.model.get_outputs_for_camera(ds.cameras[v:v + 1].to(pipe.model.device))["rgb"].cpu())
    img = torch.cat([torch.cat(row, 1) for row in cols], 0).clamp(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, (img * 255).round().to(torch.uint8).numpy())
    print(f"wrote {path}: rows = views {views}, columns = ground truth | " + " | ".join(configs), flush=True)


_RENDER_CHILD = r"""
import sys, time, torch
from pathlib import Path
from nerfstudio.utils.eval_utils import eval_setup
import spikenerf
_, pipe, _, _ = eval_setup(Path(sys.argv[1]), test_mode="test")
model, cams = pipe.model, pipe.datamanager.eval_dataset.cameras
idx = torch.linspace(0, len(cams) - 1, min(int(sys.argv[2]), len(cams))).round().long().unique().tolist()
model.get_outputs_for_camera(cams[idx[0]:idx[0] + 1].to(model.device))  # warm-up: kernels, caches
t0, c0 = time.perf_counter(), time.process_time()
for i in idx:
    model.get_outputs_for_camera(cams[i:i + 1].to(model.device))
print((time.perf_counter() - t0) / len(idx), (time.process_time() - c0) / len(idx), spikenerf.__file__)
"""

_STEP_CHILD = r"""
import sys, time, torch
from pathlib import Path
from nerfstudio.utils.eval_utils import eval_setup
import spikenerf
_, pipe, _, step = eval_setup(Path(sys.argv[1]), test_mode="val")
model, n = pipe.model, int(sys.argv[2])
model.train()
def one(i):
    ray_bundle, batch = pipe.datamanager.next_train(step + i)
    model.zero_grad(set_to_none=True)
    out = model(ray_bundle)
    sum(model.get_loss_dict(out, batch, model.get_metrics_dict(out, batch)).values()).backward()
one(0)  # warm-up: kernels, caches
t0, c0 = time.perf_counter(), time.process_time()
for i in range(1, n + 1):
    one(i)
print((time.perf_counter() - t0) / n, (time.process_time() - c0) / n, spikenerf.__file__)
"""


def commits_compare(config: Path, commits: list[str], views: int, rounds: int, what: str = "render") -> dict[str, object]:
    """Seconds per held-out view (``what="render"``; ``"step"``: per training step, forward + loss + backward on
    the run's own batches, ``views`` steps) of one trained run by the package as it is at each of ``commits``
    (a git worktree each, imported through ``PYTHONPATH``, a fresh process per measurement), alternated round
    by round so that all see the same load; the medians and every round, of wall-clock seconds and of the
    process's CPU seconds (user + system, all threads: they tell time the process did not run from time it ran
    slowly; on this VM the two tracked each other)."""
    import statistics
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    times: dict[str, list[float]] = {c: [] for c in commits}
    cpu: dict[str, list[float]] = {c: [] for c in commits}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for c in commits:
            trees[c] = Path(tmp) / c.replace("/", "_")
            subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(trees[c]), c], check=True)
        try:
            for _ in range(rounds):
                for c in commits:
                    env = dict(os.environ, PYTHONPATH=str(trees[c]))
                    child = _STEP_CHILD if what == "step" else _RENDER_CHILD
                    out = subprocess.run([sys.executable, "-c", child, str(config), str(views)], env=env,
                                         cwd=tmp, capture_output=True, text=True, check=True).stdout
                    out = out.strip().splitlines()[-1].split()  # nerfstudio prints its set-up before
                    assert out[2].startswith(str(trees[c])), f"imported {out[2]}, not the worktree of {c}"
                    times[c].append(float(out[0]))
                    cpu[c].append(float(out[1]))
                    unit = "step" if what == "step" else "view"
                    print(c, f"{times[c][-1]:.3f} s/{unit}, {cpu[c][-1]:.3f} CPU s/{unit}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=False)
    return {"s_per_view": times, "median": {c: statistics.median(v) for c, v in times.items()},
            "cpu_s_per_view": cpu, "median_cpu": {c: statistics.median(v) for c, v in cpu.items()}}


def render_compare(config: Path, views: int, repeats: int) -> dict[str, float]:
    """Seconds per held-out view of a trained run, the colour net's LIF layers run on the samples in place
    (:class:`~spikenerf.nerf.time_layout.RaggedRows`, the inference path) and in time blocks
    (:class:`~spikenerf.nerf.time_layout.TimeBuckets`, the training layout), alternated view by view so that both
    see the same load; the two images must be equal."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipe, _, _ = eval_setup(config, test_mode="test")
    model, cams = pipe.model, pipe.datamanager.eval_dataset.cameras
    field = model.field
    idx = torch.linspace(0, len(cams) - 1, min(views, len(cams))).round().long().unique().tolist()
    times: dict[str, list[float]] = {"rows": [], "blocks": []}
    for _ in range(repeats):
        for i in idx:
            cam = cams[i:i + 1].to(model.device)
            imgs = {}
            for mode in ("rows", "blocks"):
                field.in_place = mode == "rows"
                t0 = time.perf_counter()
                with torch.no_grad():
                    imgs[mode] = model.get_outputs_for_camera(cam)["rgb"]
                times[mode].append(time.perf_counter() - t0)
            field.in_place = True
            if not torch.equal(imgs["rows"], imgs["blocks"]):
                raise SystemExit(f"view {i}: the in-place render differs from the time-block render")
    h, w = int(cams.height[0]), int(cams.width[0])
    res = {f"{k}_s_per_view": sum(v) / len(v) for k, v in times.items()}
    res.update(views=len(idx), repeats=repeats, height=h, width=w,
               speedup=res["blocks_s_per_view"] / res["rows_s_per_view"])
    return res


def step_compare(config: Path, steps: int) -> dict[str, float]:
    """Seconds per training step (forward + loss + backward, the run's own batches) of a trained run, the colour
    net's LIF layers in place (condensing: segments with gradients) and in time blocks, alternated on the same
    batch; the losses and the colour net's gradients must agree."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipe, _, step = eval_setup(config, test_mode="val")
    model, field = pipe.model, pipe.model.field
    model.train()
    times: dict[str, list[float]] = {"in_place": [], "blocks": []}
    for i in range(steps + 1):  # the first pair warms up
        ray_bundle, batch = pipe.datamanager.next_train(step + i)
        res = {}
        for mode in ("in_place", "blocks"):
            field.in_place = mode == "in_place"
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            out = model(ray_bundle)
            loss = sum(model.get_loss_dict(out, batch, model.get_metrics_dict(out, batch)).values())
            loss.backward()
            dt = time.perf_counter() - t0
            if i:
                times[mode].append(dt)
            res[mode] = (float(loss.detach()), field.fc2.weight.grad.clone())
        field.in_place = True
        (l1, g1), (l0, g0) = res["in_place"], res["blocks"]
        if abs(l1 - l0) > 1e-5 * max(1.0, abs(l0)) or not torch.allclose(g1, g0, rtol=1e-4, atol=1e-6):
            raise SystemExit(f"step {step + i}: the in-place step differs from the time-block step")
    res_t = {f"{k}_s_per_step": sum(v) / len(v) for k, v in times.items()}
    res_t.update(steps=steps, rays=int(ray_bundle.origins.shape[0]), pack_mode=field.pack_mode,
                 speedup=res_t["blocks_s_per_step"] / res_t["in_place_s_per_step"])
    return res_t


def _report(res: dict, path: Path | None) -> None:
    """Print a single-purpose mode's result as JSON, and write it to ``path`` too when given."""
    print(json.dumps(res, indent=2))
    if path:
        path.write_text(json.dumps(res, indent=2))


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
                    / "nerf-synthetic-lego-400")
    ap.add_argument("--preset", choices=["mini", "full", "capture"], default="mini",
                    help="method schedule: mini = spikingnerf / spikingnerf-ann, full / capture = the *-full / "
                         "*-capture methods")
    ap.add_argument("--parser", default="blender-data",
                    help="nerfstudio data parser of --data (blender-data, colmap, nerfstudio-data, ...)")
    ap.add_argument("--parser-args", default="", help='its options, one string, e.g. "--colmap-path sparse/0"')
    ap.add_argument("--picture", type=Path, default=None,
                    help="also write ground truth | each variant for --picture-views held-out views (PNG)")
    ap.add_argument("--picture-views", type=int, nargs="+", default=[0, 4])
    ap.add_argument("--iterations", type=int, default=None, help="override the preset's step count")
    ap.add_argument("--views", type=int, default=4, help="test views (evenly spaced, fixed)")
    ap.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                    help="default: every variant but the ablation's (see --ablation)")
    ap.add_argument("--ablation", action="store_true",
                    help="the default (snn-condensing) and each of DVGO's fine-stage rules switched alone "
                         "(the abl-* variants), then a table of each one's PSNR change")
    ap.add_argument("--output-dir", type=Path, default=Path("outputs/bench_nerf"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--big-render", type=int, default=0, metavar="N",
                    help="also render test view 0 at N x N (time and peak-RSS growth), e.g. 800")
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate an existing finished run under --output-dir/<variant> instead of training")
    ap.add_argument("--model-args", nargs=argparse.REMAINDER, default=[],
                    help="extra ns-train options for every variant (last on the command line), "
                         "e.g. --model-args --pipeline.model.fine-resolution 128")
    ap.add_argument("--threads-compare", action="store_true",
                    help="only time training steps with libgomp's default wait policy and with PASSIVE, "
                         "quiet and with --busy busy processes beside")
    ap.add_argument("--busy", type=int, default=2)
    ap.add_argument("--render-compare", type=Path, default=None, metavar="CONFIG",
                    help="only render --views held-out views of a trained run (its config.yml) with the colour "
                         "net in place and in time blocks, alternated, and print the seconds per view")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the views for --render-compare")
    ap.add_argument("--commits-compare", nargs="+", default=None, metavar="COMMIT",
                    help="only render --views held-out views of the run --config with the package at each of these "
                         "commits (git worktrees), alternated for --repeats rounds, and print the seconds per view")
    ap.add_argument("--config", type=Path, default=None, help="a trained run's config.yml (--commits-compare)")
    ap.add_argument("--compare", choices=["render", "step"], default="render",
                    help="--commits-compare: time a held-out view's render or a training step (--views steps)")
    ap.add_argument("--step-compare", type=Path, default=None, metavar="CONFIG",
                    help="only time training steps of a trained run (its config.yml) with the colour net in place "
                         "and in time blocks, alternated on the same batches")
    ap.add_argument("--steps", type=int, default=5, help="timed steps for --step-compare")
    args = ap.parse_args()
    if args.step_compare is not None:
        res = step_compare(args.step_compare, args.steps)
        _report(res, args.json)
        return
    if args.commits_compare is not None:
        if args.config is None:
            raise SystemExit("--commits-compare needs --config <run>/config.yml")
        res = commits_compare(args.config, args.commits_compare, args.views, args.repeats, args.compare)
        _report(res, args.json)
        return
    if args.render_compare is not None:
        res = render_compare(args.render_compare, args.views, args.repeats)
        _report(res, args.json)
        return
    if args.threads_compare:
        res = threads_compare(args.busy, steps=6, rays=512)
        _report(res, args.json)
        return
    # nerfstudio reads the method registry once at import; a stale editable install lacks the entry points
    os.environ.setdefault("NERFSTUDIO_METHOD_CONFIGS", ENV_METHODS)
    if args.parser == "blender-data" and not (args.data / "transforms_train.json").exists():
        raise SystemExit(f"no Blender scene at {args.data}")
    if not args.data.exists():
        raise SystemExit(f"no scene at {args.data}")
    if args.variants is None:
        args.variants = (["snn-condensing", *ABLATION] if args.ablation
                         else [v for v in VARIANTS if v not in ABLATION])
    configs: dict[str, Path] = {}
    results = {}
    for name in args.variants:
        method, extra = VARIANTS[name]
        done = sorted((args.output_dir / name).rglob("config.yml"), key=lambda p: p.stat().st_mtime)
        if args.reuse and done and list((done[-1].parent / "nerfstudio_models").glob("*.ckpt")):
            config, its = done[-1], float("nan")  # trained before (e.g. side by side): wall-clock it/s unknown
            print(f"reusing {config}", flush=True)
        else:
            config, its = train(name, method, extra, args)
        configs[name] = config
        res = evaluate(config, args.views, args.big_render)
        res["train_it_s"] = its
        from spikenerf.nerf.method_configs import CAPTURE, FULL, MINI

        sched = {"full": FULL, "capture": CAPTURE, "mini": MINI}[args.preset]
        fine_from = sched.coarse_steps * (args.iterations or sched.max_steps) // sched.max_steps  # --iterations scales it
        res.update(train_scalars(config.parent, ("tensor_density", "color_samples_per_ray", "psnr"), fine_from=fine_from))
        print(name, json.dumps(res), flush=True)
        results[name] = res
    cols = [("psnr", "PSNR"), ("ssim", "SSIM"), ("train_it_s", "it/s"), ("render_s", "render s/img"),
            ("energy_uj_per_image", "energy uJ/img"), ("energy_reduction_vs_ann", "x vs ANN"),
            ("energy_reduction_vs_ann_dir_once", "x vs ANN (dir once)"),
            ("firing_rate", "fire rate"), ("color_samples_per_ray", "col smp/ray"),
            ("train_tensor_density", "train tensor density"), ("fine_s_per_it", "fine s/it")]
    print("| variant | " + " | ".join(c[1] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k, _ in cols) + " |")
    if args.ablation:
        print(ablation_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.picture is not None:
        picture(configs, args.picture_views, args.picture)


if __name__ == "__main__":
    main()
