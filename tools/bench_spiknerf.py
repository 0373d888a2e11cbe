"""Benchmark Spik-NeRF on a Blender scene: spike codes, distillation, and the ANN twin, on one short schedule.

Variants (all ``spiknerf`` voxel-grid models with the same schedule, seed and data): the ANN twin
(``spiknerf-ann``, trained first; it is also the distillation teacher), then binary, ternary012 {0,1,2} and
signed ternary {-1,0,1} spikes, each without and with ANN-teacher distillation. Training runs in-process
(nerfstudio's Trainer, so iterations/s exclude start-up and data loading); each model is then rendered on a
fixed subset of test views at reduced resolution (GT box-downsampled to the same size), with the
re-parameterized network (the default at inference).

    .venv/bin/python tools/bench_spiknerf.py --data ../shared/data/nerf-synthetic-lego-400 \\
        --coarse-steps 100 --fine-steps 200 --views 4 --downscale 4 --json /tmp/bench_spiknerf.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

VARIANTS = {  # name: (method, spike_code, distil)
    "ann": ("spiknerf-ann", None, False),
    "binary": ("spiknerf", "binary", False),
    "ternary012": ("spiknerf", "ternary012", False),
    "ternary": ("spiknerf", "ternary", False),
    "binary+KD": ("spiknerf", "binary", True),
    "ternary012+KD": ("spiknerf", "ternary012", True),
    "ternary+KD": ("spiknerf", "ternary", True),
}


def make_config(name: str, args: argparse.Namespace, teacher: Path | None):
    from spikenerf.nerf import method_configs as sk

    method, code, distil = VARIANTS[name]
    spec = sk.spiknerf_ann if method == "spiknerf-ann" else sk.spiknerf
    import copy

    cfg = copy.deepcopy(spec.config)
    steps = args.coarse_steps + args.fine_steps
    cfg.max_num_iterations = steps
    cfg.steps_per_eval_image = cfg.steps_per_eval_batch = cfg.steps_per_eval_all_images = 10 ** 9
    cfg.steps_per_save = steps
    cfg.vis = "tensorboard"
    cfg.machine.device_type = args.device
    cfg.machine.seed = args.seed
    cfg.output_dir = args.output_dir
    cfg.experiment_name = name
    cfg.viewer.quit_on_train_completion = True
    cfg.pipeline.datamanager.dataparser.data = args.data
    cfg.pipeline.datamanager.train_num_rays_per_batch = args.rays
    m = cfg.pipeline.model
    m.coarse_steps = args.coarse_steps
    m.pg_scale_steps = tuple(args.pg_scale_steps)
    m.fine_resolution, m.coarse_resolution, m.hidden_dim = args.fine_resolution, args.coarse_resolution, args.hidden
    if code is not None:
        m.spike_code = code
    if distil:
        m.teacher_config = teacher
    for opt in cfg.optimizers.values():
        opt["scheduler"].max_steps = steps
    return cfg


def train(cfg) -> tuple[Path, float]:
    from nerfstudio.scripts.train import _set_random_seed

    cfg.set_timestamp()
    cfg.save_config()
    _set_random_seed(cfg.machine.seed)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    t0 = time.time()
    trainer.train()
    dt = time.time() - t0
    return cfg.get_base_dir() / "config.yml", cfg.max_num_iterations / dt


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
        rows.append(m)
    return {k: float(np.mean([r.get(k, float("nan")) for r in rows])) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
                    / "nerf-synthetic-lego-400")
    ap.add_argument("--coarse-steps", type=int, default=100)
    ap.add_argument("--fine-steps", type=int, default=200)
    ap.add_argument("--pg-scale-steps", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--coarse-resolution", type=int, default=40)
    ap.add_argument("--fine-resolution", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--rays", type=int, default=512)
    ap.add_argument("--views", type=int, default=4, help="test views, evenly spaced over the test split")
    ap.add_argument("--downscale", type=int, default=4, help="render / GT resolution divisor")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--output-dir", type=Path, default=Path("outputs/bench_spiknerf"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (args.data / "transforms_train.json").exists():
        raise SystemExit(f"no Blender scene at {args.data}")
    idx, items = test_views(args.data, args.views, args.downscale)
    h, w = items[0][2].shape[:2]
    print(f"test views {idx} at {w}x{h}", flush=True)
    variants = list(args.variants)
    if any(VARIANTS[v][2] for v in variants) and "ann" not in variants:
        variants.insert(0, "ann")  # the teacher
    variants.sort(key=lambda v: v != "ann")
    results, teacher = {}, None
    for name in variants:
        cfg = make_config(name, args, teacher)
        config, its = train(cfg)
        if name == "ann":
            teacher = config
        res = evaluate(config, items)
        res["train_it_s"] = its
        print(name, json.dumps(res), flush=True)
        results[name] = res
        if args.json:
            args.json.write_text(json.dumps({"views": idx, "size": [w, h], "args": {k: str(v) for k, v in
                                                                               vars(args).items()},
                                             "results": results}, indent=2))
    cols = [("psnr", "PSNR"), ("ssim", "SSIM"), ("train_it_s", "train it/s"), ("render_s", "render s/img"),
            ("energy_uj_per_image", "energy uJ/img"), ("energy_reduction_vs_ann", "x less than ANN"),
            ("firing_rate", "event rate")]
    print("| variant | " + " | ".join(c[1] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k, _ in cols) + " |")


if __name__ == "__main__":
    main()
