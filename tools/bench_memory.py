"""The memory policy (spikenerf/snn/memory.py) side by side: training steps with freed memory kept vs glibc's default.

Each arm is a fresh process (glibc's policy is per process) training the same preset, seed and data for
``--coarse-steps`` + ``--fine-steps`` steps; it reports, per fine-stage step after ``--warmup`` of them, the
wall time, the CPU time in user and kernel mode, and the page faults. Arms alternate (keep, system, keep,
system, ...) so that a shared machine's load falls on both alike; the table gives each arm's median and the
ratios. Kernel time and page faults are what the policy removes; user time should not change.

    .venv/bin/python tools/bench_memory.py                       # spiknerf-full on lego-400, 2 rounds
    .venv/bin/python tools/bench_memory.py --preset spikingnerf-full --rounds 3
    .venv/bin/python tools/bench_memory.py --load-config outputs/.../config.yml --views 3   # renders instead

With ``--load-config`` each arm renders ``--views`` test views of that trained run at full resolution
(after one untimed view) and reports the same per view.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from spikenerf.snn.process import configure_process

ROOT = Path(__file__).resolve().parents[1]


def _per_item(w0: float, r0, w1: float, r1, n: int) -> dict:
    """Wall, user and kernel ms and page faults per item between two (perf_counter, getrusage) readings."""
    from spikenerf.snn import memory_policy

    return {"policy": memory_policy(), "wall_ms": 1e3 * (w1 - w0) / n,
            "user_ms": 1e3 * (r1.ru_utime - r0.ru_utime) / n, "sys_ms": 1e3 * (r1.ru_stime - r0.ru_stime) / n,
            "faults": (r1.ru_minflt - r0.ru_minflt) / n}


def render_arm(args: argparse.Namespace) -> dict:
    """Render ``args.views`` test views of a trained run in this process; per-view means after one warm-up."""
    import torch
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(args.load_config, test_mode="test")
    model = pipeline.model.eval()
    cams = pipeline.datamanager.eval_dataset.cameras
    idx = torch.linspace(0, len(cams) - 1, args.views + 1).round().long().tolist()
    with torch.no_grad():
        model.get_outputs_for_camera(cams[idx[0]: idx[0] + 1].to(model.device))
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        for i in idx[1:]:
            model.get_outputs_for_camera(cams[i: i + 1].to(model.device))
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return dict(_per_item(t0, r0, t1, r1, len(idx) - 1), views=len(idx) - 1)


def arm(args: argparse.Namespace) -> dict:
    """One training run in this process; returns per-step means over the timed fine-stage steps."""
    from nerfstudio.scripts.train import _set_random_seed

    from spikenerf.nerf import method_configs as mc

    cfg = copy.deepcopy(mc.METHODS[args.preset].config)
    m = cfg.pipeline.model
    m.coarse_steps = args.coarse_steps
    steps = args.coarse_steps + args.fine_steps
    cfg.max_num_iterations = steps
    if hasattr(cfg, "preset_steps"):
        cfg.preset_steps = steps
    cfg.steps_per_eval_image = cfg.steps_per_eval_batch = cfg.steps_per_eval_all_images = 10 ** 9
    cfg.steps_per_save = 10 ** 9
    cfg.vis = "tensorboard"
    cfg.machine.device_type = "cpu"
    cfg.output_dir = args.output_dir
    cfg.viewer.quit_on_train_completion = True
    cfg.pipeline.datamanager.dataparser.data = args.data
    cfg.set_timestamp()
    cfg.save_config()
    _set_random_seed(42)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    first, rec, inner = args.coarse_steps + args.warmup, {}, trainer.train_iteration

    def timed(step: int):
        if step == first:
            rec["start"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF))
        out = inner(step)
        if step == steps - 1:
            rec["end"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF))
        return out

    trainer.train_iteration = timed
    trainer.train()
    (w0, r0), (w1, r1) = rec["start"], rec["end"]
    return dict(_per_item(w0, r0, w1, r1, steps - first), steps=steps - first)


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="spiknerf-full")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nerf-synthetic-lego-400")
    ap.add_argument("--coarse-steps", type=int, default=100)
    ap.add_argument("--fine-steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10, help="fine-stage steps before the timing starts")
    ap.add_argument("--rounds", type=int, default=2, help="keep / system pairs")
    ap.add_argument("--load-config", type=Path, default=None, help="render this trained run's test views instead")
    ap.add_argument("--views", type=int, default=3, help="--load-config: timed views per arm")
    ap.add_argument("--output-dir", type=Path, default=Path("outputs/bench_memory"))
    ap.add_argument("--arm", action="store_true", help=argparse.SUPPRESS)  # internal: run one arm, print JSON
    args = ap.parse_args()
    if args.warmup >= args.fine_steps:
        raise SystemExit("--warmup must be smaller than --fine-steps")
    if args.arm:
        print("ARM " + json.dumps(render_arm(args) if args.load_config else arm(args)), flush=True)
        return
    if args.load_config is None and not args.data.exists():
        raise SystemExit(f"no scene at {args.data}")
    rows: dict[str, list[dict]] = {"keep": [], "system": []}
    for r in range(args.rounds):
        for mode in ("keep", "system"):
            env = dict(os.environ, SPIKENERF_MALLOC=mode)
            cmd = [sys.executable, __file__, "--arm", "--preset", args.preset, "--data", str(args.data),
                   "--coarse-steps", str(args.coarse_steps), "--fine-steps", str(args.fine_steps),
                   "--warmup", str(args.warmup), "--output-dir", str(args.output_dir), "--views", str(args.views)]
            if args.load_config:
                cmd += ["--load-config", str(args.load_config)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("ARM ")]
            if out.returncode != 0 or not line:
                raise SystemExit(f"the {mode} arm failed:\n{out.stderr[-3000:]}")
            rows[mode].append(json.loads(line[-1][4:]))
            print(f"round {r + 1} {mode}: {rows[mode][-1]}", flush=True)
    med = {mode: {k: statistics.median(x[k] for x in rs) for k in ("wall_ms", "user_ms", "sys_ms", "faults")}
           for mode, rs in rows.items()}
    what = (f"renders of {args.load_config}, {args.views} views per arm" if args.load_config else
            f"{args.preset}, {args.fine_steps - args.warmup} fine-stage steps per arm")
    unit = "view" if args.load_config else "step"
    print(f"\n{what}, {args.rounds} rounds, medians")
    print(f"| memory policy | wall ms/{unit} | user ms/{unit} | kernel ms/{unit} | page faults/{unit} |")
    print("|---|---|---|---|---|")
    for mode in ("keep", "system"):
        d = med[mode]
        print(f"| {rows[mode][0]['policy']} | {d['wall_ms']:.0f} | {d['user_ms']:.0f} | {d['sys_ms']:.1f} "
              f"| {d['faults']:.0f} |")
    k, s = med["keep"], med["system"]
    print(f"| system / keep | {s['wall_ms'] / k['wall_ms']:.2f}x | {s['user_ms'] / k['user_ms']:.2f}x | - | - |")


if __name__ == "__main__":
    main()
