"""The GPU check: correctness on CUDA, speed, and time-boxed paper rows, in one command (<= 8 min on one H100).

On the GPU machine (the data folder is the repository's ``../shared/data`` when it is there)::

    python tools/gpu_check.py --device cuda --out $OUT/gpu_check --data-root ../shared/data

On a CPU (what CI runs through tests/test_gpu_check.py; a couple of minutes)::

    python tools/gpu_check.py --device cpu --quick --out /tmp/gpu_check

Sections, in order, each a list of rows (``ok`` / ``FAIL`` / ``skipped`` with the reason) in ``gpu_check.json``
and ``gpu_check.md`` under ``--out`` (both rewritten after every row, so a killed run keeps what it did):

1. ``triton``: the Triton scan against the per-step reference loop (``spikenerf.snn.scan_reference``), values and
   gradients, for every spike code x reset (hard / soft, detached or not), through the cases of
   tests/snn/test_triton_scan.py (spikes exact; membrane and gradients 1e-5 in float32). On the CPU they run in
   Triton's interpreter when this process was started with ``TRITON_INTERPRET=1`` (``--quick`` samples one
   surrogate per code and reset), else the row is skipped with the reason.
2. ``nerf``: one tiny training run (a few steps crossing the occupancy build, refreshes and up-scaling) and one
   render of each NeRF method (:mod:`spikenerf.nerf.selfcheck`) on ``--device`` against the CPU with the same
   weights and batches; losses ``rtol=1e-3``, images ``atol=1e-3`` on CUDA (TF32 off; float32 kernels sum in
   another order), ``1e-5`` for the CPU's stand-in for the CUDA path (C off, time blocks) against its default.
3. ``speed``: Linear+LIF (tools/bench_gpu.py's benchmark and peers on CUDA, tools/bench_neuron.py's on the CPU) at
   n = 512 / 4096 / 16384 (``--quick``: 64 / 256); ``spikingnerf-full`` it/s (``ns-train`` on lego-400), a 400x400
   render (``--quick``: 40x40) of a spikingnerf-full-sized model; a ResNet-20 epoch on CIFAR-10.
4. ``paper``: ``spikingnerf-full`` on the paper's lego-400 schedule (5k coarse + 40k fine steps, 8,192 rays) as
   far as its time box goes, ``spiknerf-mlp-paper`` for up to 3 minutes: steps reached, training-batch PSNR
   against steps (tensorboard), test PSNR of the last checkpoint (every 1,000 / 2,000 steps) on 8 / 4 test views;
   a CIFAR-10 ResNet-20 run of about 2 minutes (test accuracy). ``--quick``: ``spikingnerf`` on the bundled
   lego-mini for 40 steps (the same ns-train, tensorboard and checkpoint-evaluation code).

``--budget-s`` (default 460) is the whole run's time; each section gets a share of what is left and reports
the seconds it took; a row that would start past the budget is skipped with that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
import bench_gpu  # noqa: E402
import bench_neuron  # noqa: E402
from spikenerf.snn.process import configure_process  # noqa: E402
import bench_nerf  # noqa: E402
from bench_nerf import ENV_METHODS  # noqa: E402

from spikenerf.nerf import selfcheck  # noqa: E402
from spikenerf.nerf.method_configs import FULL  # noqa: E402
from spikenerf.vision.config import VisionConfig  # noqa: E402
from spikenerf.vision.data import DatasetNotFoundError  # noqa: E402
from spikenerf.vision.engine import train as vision_train  # noqa: E402

LEGO = "nerf-synthetic-lego-400"
CIFAR = "cifar10-jpeg"
EPOCH_LINE = re.compile(r"^epoch \d+: .*\| ([\d.]+)s$", re.M)
SHARES = {"triton": 0.15, "nerf": 0.15, "speed": 0.45, "paper": 1.0}
"""Each section's share of the budget left when it starts (the last one takes the rest)."""


class Report:
    """Rows by section, written to ``gpu_check.json`` and ``gpu_check.md`` after every row."""

    def __init__(self, out: Path, meta: Dict[str, Any]) -> None:
        self.out, self.meta = out, meta
        self.sections: Dict[str, Dict[str, Any]] = {}
        out.mkdir(parents=True, exist_ok=True)

    def row(self, section: str, name: str, status: str, **values: Any) -> None:
        self.sections.setdefault(section, {"rows": []})["rows"].append({"name": name, "status": status, **values})
        print(f"[{section}] {name}: {status} {values}", flush=True)
        self.write()

    def section_done(self, section: str, seconds: float, budget_s: float) -> None:
        self.sections.setdefault(section, {"rows": []}).update(seconds=round(seconds, 1), budget_s=round(budget_s, 1))
        self.write()

    def write(self) -> None:
        data = {**self.meta, "sections": self.sections}
        (self.out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str))
        lines = [f"# gpu_check on {self.meta['device_name']} ({self.meta['date']}, torch {self.meta['torch']})", ""]
        for sec, body in self.sections.items():
            took = f" ({body['seconds']} s of {body['budget_s']} s)" if "seconds" in body else ""
            lines += [f"## {sec}{took}", "", "| row | status | values |", "|---|---|---|"]
            for r in body["rows"]:
                vals = "; ".join(f"{k} {v}" for k, v in r.items() if k not in ("name", "status"))
                lines.append(f"| {r['name']} | {r['status']} | {vals.replace('|', '/')} |")
            lines.append("")
        (self.out / "gpu_check.md").write_text("\n".join(lines))


def guarded(report: Report, section: str, name: str, deadline: float, fn: Callable[[], Dict[str, Any]]) -> None:
    """One row: ``fn()`` returns its values (``status`` in them overrides ``ok``); an exception is a FAIL row."""
    if time.time() > deadline:
        report.row(section, name, "skipped", reason="time budget spent")
        return
    t0 = time.time()
    try:
        values = fn()
        status = values.pop("status", "ok")
    except Exception as err:  # noqa: BLE001 - one failed row must not lose the rest of the check
        status, values = "FAIL", {"error": f"{type(err).__name__}: {str(err)[:300]}",
                                  "where": traceback.format_exc(limit=3)[-400:]}
    report.row(section, name, status, seconds=round(time.time() - t0, 2), **values)


# ----------------------------------------------------------------------------- 1. Triton against the reference
def triton_section(report: Report, args, deadline: float) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "snn"))
    import test_triton_scan as tts  # the cases and their tolerances, one source (imported for its CHECKS)

    device = args.device
    if device == "cpu" and not tts.triton_interpreting():
        report.row("triton", "all cases", "skipped",
                   reason="CPU without TRITON_INTERPRET=1 at start-up (Triton reads it when a kernel is defined)")
        return
    if not tts.HAS_TRITON:
        report.row("triton", "all cases", "skipped", reason=tts.NO_TRITON)
        return
    # first one surrogate per spike code and reset, plus the cases that are not a grid point; then (not --quick)
    # the other surrogates while the section's time lasts (each case compiles its own kernels)
    first, rest, seen = [], [], set()
    for n, (fn, case) in tts.CHECKS.items():
        key = case[:3] + (case[4],) if fn is tts.check_grid else n
        (rest if key in seen else first).append(n)
        seen.add(key)
    names = first if args.quick else first + rest
    for i, n in enumerate(names):
        if time.time() > deadline:
            report.row("triton", f"{len(names) - i} more cases", "skipped", reason="section's time budget spent",
                       cases=names[i:])
            break
        fn, case = tts.CHECKS[n]
        guarded(report, "triton", n, deadline, lambda fn=fn, case=case: (fn(device, *case), {})[1])
    if args.quick and rest:
        report.row("triton", f"{len(rest)} other surrogates", "skipped",
                   reason="--quick samples one per code and reset")


# ----------------------------------------------------------------------------- 2. NeRF methods, device vs CPU
def _diff(a: selfcheck.RunResult, b: selfcheck.RunResult) -> Dict[str, float]:
    return {"loss_rel": float(((a.losses - b.losses).abs() / b.losses.abs().clamp_min(1e-12)).max()),
            **{f"{k}_abs": float((a.images[k] - b.images[k]).abs().max()) for k in ("rgb", "depth", "accumulation")}}


def nerf_section(report: Report, args, deadline: float) -> None:
    cuda = args.device != "cpu"
    tol = {"loss_rel": 1e-3, "rgb_abs": 1e-3, "accumulation_abs": 1e-3, "depth_abs": 1e-2} if cuda else \
        {"loss_rel": 1e-5, "rgb_abs": 1e-5, "accumulation_abs": 1e-5, "depth_abs": 1e-4}
    torch.backends.cuda.matmul.allow_tf32 = False  # the CPU has no TF32: compare float32 with float32
    torch.backends.cudnn.allow_tf32 = False

    for method in selfcheck.CHECKED_METHODS:
        scenes = list(selfcheck.SCENES) if selfcheck.is_grid_method(method) else ["bounded"]
        for scene in scenes:
            def run(method=method, scene=scene) -> Dict[str, Any]:
                if cuda:
                    ref = selfcheck.train_and_render(method, scene=scene, device="cpu")
                    got = selfcheck.train_and_render(method, scene=scene, device=args.device)
                else:  # the CPU's stand-in for the CUDA path (C kernels off, time blocks) against its own
                    os.environ["SPIKENERF_DISABLE_C"] = "0"
                    ref = selfcheck.train_and_render(method, scene=scene)
                    os.environ["SPIKENERF_DISABLE_C"] = "1"
                    try:
                        got = selfcheck.train_and_render(method, scene=scene, time_blocks=True)
                    finally:
                        os.environ["SPIKENERF_DISABLE_C"] = "0"
                d = _diff(got, ref)
                bad = {k: v for k, v in d.items() if v > tol[k]}
                return {"status": "FAIL" if bad else "ok", **{k: f"{v:.2e}" for k, v in d.items()},
                        "tolerance": tol}
            guarded(report, "nerf", f"{method} {scene}", deadline, run)


# ----------------------------------------------------------------------------- 3. speed
def neuron_speed(report: Report, args, deadline: float) -> None:
    sizes = [64, 256] if args.quick else [512, 4096, 16384]
    for n in sizes:
        def run(n=n) -> Dict[str, Any]:
            if args.device != "cpu":
                ns = SimpleNamespace(steps=500, batch=16, reps=3)
                res, notes = bench_gpu.bench_size(n, ns, min(deadline, time.time() + 60))
                return {"ms_fwd_bwd": {k: round((f + b) * 1e3, 2) for k, (f, b, _) in res.items()}, "notes": notes}
            steps = 20 if args.quick else 100
            torch.manual_seed(0)
            linear = torch.nn.Linear(n, n)
            x = torch.randn(steps, 4, n)
            cands = {"Linear alone": None, "spikenerf (auto)": bench_neuron.ours("auto"),
                     **bench_neuron.peer_layers(n)}
            res = bench_neuron.time_interleaved(linear, cands, x, reps=1 if args.quick else 3)
            return {"ms_fwd_bwd": {k: round((f + b) * 1e3, 2) for k, (f, b) in res.items()},
                    "shape": f"T={steps} B=4"}
        guarded(report, "speed", f"Linear+LIF n={n}", deadline, run)


def render_speed(report: Report, args, deadline: float) -> None:
    side = 40 if args.quick else 400

    def run() -> Dict[str, Any]:
        sizes = dict(eval_num_rays_per_chunk=4096) if args.quick else dict(
            coarse_resolution=FULL.coarse_resolution, fine_resolution=FULL.fine_resolution, hidden_dim=FULL.hidden_dim,
            eval_num_rays_per_chunk=4096)
        model = selfcheck.tiny_model("spikingnerf-full", **sizes)
        selfcheck.randomize_grids(model, 0)
        model.to(args.device)
        model._set_step(model.config.coarse_steps + max(model.config.pg_scale_steps))  # fine, full size, cached
        model.eval()
        cam = selfcheck.tiny_camera(side, side, args.device)
        with torch.no_grad():
            model.get_outputs_for_camera(cam)  # warm-up (Triton compiles)
            _sync(args.device)
            t0 = time.perf_counter()
            model.get_outputs_for_camera(cam)
            _sync(args.device)
        return {"seconds_per_view": round(time.perf_counter() - t0, 3), "size": f"{side}x{side}",
                "model": "random grids at spikingnerf-full's sizes" if not args.quick else "tiny"}
    guarded(report, "speed", f"render {side}x{side}", deadline, run)


def _sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def scalar_series(run_dir: Path, key: str, points: int = 12) -> List[tuple[int, float]]:
    """``(step, value)`` of a logged training scalar (tensorboard tag ending in ``/key``), thinned to ``points``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: List[tuple[int, float]] = []
    for ev in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            if tag.split("/")[-1] == key:
                series += [(int(e.step), round(float(e.value), 2)) for e in acc.Scalars(tag)]
    series.sort()
    stride = max(1, -(-len(series) // points))
    return series[::stride] + ([series[-1]] if series and (len(series) - 1) % stride else [])


def ns_train(method: str, data: Path, seconds: float, extra: List[str], device: str, save_every: int = 1_000_000,
             eval_views: int = 0) -> Dict[str, Any]:
    """``ns-train method`` on ``data`` for at most ``seconds``: steps reached, it/s over the last two thirds, the
    training-batch PSNR against steps, and (``eval_views``) the test PSNR of the last checkpoint (saved every
    ``save_every`` steps and at the end) on that many evenly spaced test views."""
    if not data.is_dir():
        return {"status": "skipped", "reason": f"no data folder {data}"}
    if seconds < 10:
        return {"status": "skipped", "reason": f"time budget spent ({seconds:.0f} s left)"}
    out_dir = Path(tempfile.mkdtemp(prefix="gpu_check_ns_"))
    cmd = [str(Path(sys.executable).with_name("ns-train")), method, "--output-dir", str(out_dir),
           "--machine.device-type", device, "--vis", "tensorboard", "--logging.local-writer.max-log-size", "0",
           "--logging.steps-per-log", "10", "--steps-per-eval-image", "1000000", "--steps-per-eval-batch", "1000000",
           "--steps-per-eval-all-images", "1000000", "--steps-per-save", str(save_every), *extra,
           "blender-data", "--data", str(data)]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", ENV_METHODS)
    seen, tail = bench_gpu.logged_steps(cmd, env, seconds)
    if len(seen) < 2:
        return {"status": "FAIL", "error": "no step lines parsed", "tail": "\n".join(tail[-5:])}
    start = next((p for p in seen if p[0] >= seen[0][0] + (seen[-1][0] - seen[0][0]) / 3), seen[0])
    start = seen[0] if start == seen[-1] else start
    its = (seen[-1][1] - start[1]) / max(seen[-1][0] - start[0], 1e-9)
    res: Dict[str, Any] = {"steps_reached": seen[-1][1], "it_per_s": round(its, 2), "time_box_s": round(seconds),
                           "train_psnr_vs_step": scalar_series(out_dir, "psnr")}
    ckpts = sorted(out_dir.rglob("step-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if eval_views and ckpts:
        config = ckpts[-1].parents[1] / "config.yml"
        ev = bench_nerf.evaluate(config, eval_views)
        res.update(test_psnr=round(ev["psnr"], 2), test_ssim=round(ev["ssim"], 3), test_views=eval_views,
                   checkpoint_step=int(ckpts[-1].stem.split("-")[1]), render_s_per_view=round(ev["render_s"], 2))
    elif eval_views:
        res["test_psnr"] = f"no checkpoint within the time box (saved every {save_every} steps)"
    return res


def vision_run(args, seconds_target: float, epochs: int, subset: int) -> Dict[str, Any]:
    data = Path(args.data_root) / CIFAR
    if not data.is_dir():
        return {"status": "skipped", "reason": f"no data folder {data}"}
    with tempfile.TemporaryDirectory() as d:
        cfg = VisionConfig(model="resnet20", dataset="cifar10-jpeg", data_root=str(args.data_root),
                           width=0.25 if args.quick else 1.0, timesteps=2, epochs=epochs, train_subset=subset,
                           test_subset=200 if args.quick else 2000, batch_size=64 if args.quick else 128,
                           optimizer="adam", lr=2e-3, weight_decay=0.0, progress=False, tensorboard=False, seed=0,
                           device=args.device, output_dir=d)
        log = io.StringIO()
        t0 = time.time()
        try:
            with contextlib.redirect_stdout(log):
                ev = vision_train(cfg)
        except DatasetNotFoundError as err:
            return {"status": "skipped", "reason": str(err)[:200]}
        secs = time.time() - t0
    # the engine prints each epoch's wall time (its training loop and the test-subset evaluation after it);
    # the rest of ``secs`` is start-up (indexing the JPEG folders, building the model)
    epoch_s = [float(m.group(1)) for m in EPOCH_LINE.finditer(log.getvalue())]
    if not epoch_s:
        return {"status": "FAIL", "error": "no epoch lines in the engine's output", "tail": log.getvalue()[-300:]}
    rate = subset / epoch_s[-1]
    return {"train_samples": subset * epochs, "total_s": round(secs, 1), "epoch_s": [round(e, 1) for e in epoch_s],
            "samples_per_s": round(rate, 1), "full_epoch_s": round(50_000 / rate, 1),
            "test_accuracy": round(float(ev.get("accuracy", 0)), 4), "time_target_s": seconds_target}


def speed_section(report: Report, args, deadline: float) -> None:
    neuron_speed(report, args, deadline)
    render_speed(report, args, deadline)
    lego = Path(args.data_root) / LEGO
    nerf_s = 10 if args.quick else 45
    guarded(report, "speed", "spikingnerf-full it/s", deadline,
            lambda: {"status": "skipped", "reason": "--quick: no ns-train run"} if args.quick
            else ns_train("spikingnerf-full", lego, min(nerf_s, deadline - time.time()), [], args.device))
    subset = 256 if args.quick else 10_000  # a fifth of an epoch: the rate, and the epoch time it projects
    guarded(report, "speed", "ResNet-20 CIFAR-10 epoch rate", deadline,
            lambda: dict(vision_run(args, 0, 1, subset),
                         note="full_epoch_s = 50,000 / samples_per_s (epoch wall time, with its test-subset eval)"))


# ----------------------------------------------------------------------------- 4. paper rows, time-boxed
def paper_section(report: Report, args, deadline: float) -> None:
    lego = Path(args.data_root) / LEGO
    left = max(0.0, deadline - time.time())
    if args.quick:  # the same code on the bundled scene: a CPU-sized method, 40 steps, a checkpoint at the end
        guarded(report, "paper", "spikingnerf on lego-mini (quick stand-in)", deadline,
                lambda: ns_train("spikingnerf", ROOT / "data" / "lego-mini", min(60.0, left), [
                    "--max-num-iterations", "40", "--pipeline.model.coarse-steps", "20"], args.device,
                    save_every=20, eval_views=1))
    else:
        box = left * 0.35
        guarded(report, "paper", "spikingnerf-full, paper schedule (5k + 40k steps, 8192 rays)", deadline,
                lambda: ns_train("spikingnerf-full", lego, box, [
                    "--max-num-iterations", "45000", "--pipeline.model.coarse-steps", "5000",
                    "--pipeline.datamanager.train-num-rays-per-batch", "8192"], args.device, save_every=1000,
                    eval_views=8))
        guarded(report, "paper", "spiknerf-mlp-paper (<= 3 min)", deadline,
                lambda: ns_train("spiknerf-mlp-paper", lego, min(180.0, left * 0.35), [], args.device,
                                 save_every=2000, eval_views=4))
    # about 2 minutes of CIFAR-10, or what the budget leaves (--quick: a few seconds): epochs of a subset sized
    # from the epoch rate measured above
    target = 8.0 if args.quick else max(0.0, min(120.0, deadline - time.time() - 15.0))
    rate = next((r.get("samples_per_s") for r in report.sections.get("speed", {}).get("rows", [])
                 if r["name"].startswith("ResNet-20") and r.get("samples_per_s")), None)
    epochs = 2
    samples = int(target * rate) if rate else 2000
    guarded(report, "paper", f"CIFAR-10 ResNet-20 (~{target:.0f} s)", deadline,
            lambda: vision_run(args, target, epochs, max(64, min(50_000, samples // epochs))) if target >= 10 or
            args.quick else {"status": "skipped", "reason": f"time budget spent ({target:.0f} s left)"})


SECTIONS = {"triton": triton_section, "nerf": nerf_section, "speed": speed_section, "paper": paper_section}


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no ns-train runs (the CPU check of the script)")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "gpu_check"))
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"),
                    help=f"folder holding {LEGO}/ and {CIFAR}/ (rows whose data is missing are skipped)")
    ap.add_argument("--budget-s", type=float, default=460.0)
    ap.add_argument("--only", nargs="*", choices=list(SECTIONS), default=None)
    args = ap.parse_args(argv)
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but CUDA is not available here (use --device cpu --quick)", file=sys.stderr)
        return 2
    t_start = time.time()
    end = t_start + args.budget_s
    report = Report(Path(args.out), {
        "device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
        "quick": args.quick, "budget_s": args.budget_s, "data_root": args.data_root})
    for name, fn in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        share = (end - t0) * SHARES[name]
        try:
            fn(report, args, t0 + share)
        except Exception as err:  # noqa: BLE001 - the section's own failure, written as a row
            report.row(name, "section", "FAIL", error=f"{type(err).__name__}: {str(err)[:300]}")
        report.section_done(name, time.time() - t0, share)
    report.meta["total_s"] = round(time.time() - t_start, 1)
    report.write()
    fails = sum(r["status"] == "FAIL" for s in report.sections.values() for r in s["rows"])
    print(f"gpu_check: {fails} failed rows, {report.meta['total_s']} s; {Path(args.out) / 'gpu_check.md'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
