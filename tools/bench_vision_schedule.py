"""Run one benchmark schedule file (configs/bench/*.yaml) with the ordinary CLI: train, evaluate best.pt with
``--json``, print one markdown row (command, accuracy, firing rate, energy ratio, wall time).

    OMP_NUM_THREADS=2 .venv/bin/python tools/bench_vision_schedule.py configs/bench/cifar10-60min.yaml \\
        [--data-root DIR] [--out DIR] [--extra --epochs 1 ...]

The schedule says the whole run (model, method, epochs, learning-rate recipe, augmentation); ``--extra`` flags are
appended to ``train`` (e.g. ``--device cuda``, ``--max-batches 5`` for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from spikenerf.snn.process import configure_process

ROOT = Path(__file__).resolve().parents[1]


def run_schedule(schedule: str | Path, out: str | Path, data_root: str | Path | None = None,
                 extra: list[str] | None = None) -> dict:
    """Train per ``schedule`` into ``out/run``, evaluate ``best.pt``; returns the row's numbers and command."""
    out = Path(out)
    cli = [sys.executable, "-m", "spikenerf.vision.cli"]
    train = cli + ["train", "--config", str(schedule), "--output-dir", str(out / "run"), "--no-progress",
                   "--no-tensorboard"]
    if data_root is not None:
        train += ["--data-root", str(data_root)]
    train += list(extra or [])
    t0 = time.time()
    subprocess.run(train, check=True, cwd=ROOT)
    wall = time.time() - t0
    js = out / "eval.json"
    subprocess.run(cli + ["eval", "--checkpoint", str(out / "run" / "best.pt"), "--no-progress", "--json", str(js)],
                   check=True, cwd=ROOT)
    ev = next(iter(json.loads(js.read_text())["per_T"].values()))
    return {"command": "spikenerf-vision " + " ".join(train[3:]), "accuracy": ev["accuracy"],
            "firing": ev["mean_firing_rate"], "energy_ratio": ev["energy_ratio"], "wall_s": wall}


def row(name: str, r: dict) -> str:
    ratio = "-" if r["energy_ratio"] is None else f"{r['energy_ratio']:.3f}"
    fr = "-" if r["firing"] is None else f"{r['firing']:.3f}"
    return f"| {name} | `{r['command']}` | {r['accuracy'] * 100:.1f} | {fr} | {ratio} | {r['wall_s']:.0f} |"


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("schedule")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[])
    args = ap.parse_args()
    out = args.out or str(ROOT / "outputs" / "bench" / Path(args.schedule).stem)
    r = run_schedule(args.schedule, out, args.data_root, args.extra)
    print("\n| schedule | command | test acc % | firing rate | energy / ANN twin | wall s |\n|---|---|---|---|---|---|")
    print(row(Path(args.schedule).stem, r))


if __name__ == "__main__":
    main()
