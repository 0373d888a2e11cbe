"""``spikenerf-quickstart``: train a spiking NeRF on the bundled scene, evaluate it and render a video.

It only strings together the standard nerfstudio commands (``ns-train``, ``ns-eval``, ``ns-render``) so
that what it does is exactly what a user would type; each command is printed before it runs.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from .startup import start_process

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "lego-mini"


def _bin(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else the one on PATH."""
    cand = Path(sys.executable).with_name(name)
    return str(cand) if cand.exists() else name


def _run(cmd: list[str]) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _latest_config(root: Path) -> Path:
    configs = sorted(root.rglob("config.yml"), key=lambda p: p.stat().st_mtime)
    if not configs:
        raise SystemExit(f"no config.yml under {root}: training did not write a run")
    return configs[-1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", default="spikingnerf", help="spikingnerf | spikingnerf-ann | ...")
    ap.add_argument("--data", type=Path, default=BUNDLED, help="Blender-format scene (default: bundled lego-mini)")
    ap.add_argument("--iterations", type=int, default=None, help="training iterations (default: the method's)")
    ap.add_argument("--output-dir", type=Path, default=Path("outputs"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-render", action="store_true")
    args = ap.parse_args(argv)
    start_process()  # the commands below inherit the OpenMP wait policy (PASSIVE unless set) and PATH
    if not (args.data / "transforms_train.json").exists():
        raise SystemExit(f"transforms_train.json not found in {args.data}: --data needs a Blender-format scene")

    run_root = args.output_dir / "quickstart"
    train = [_bin("ns-train"), args.method, "--output-dir", str(run_root), "--machine.device-type", args.device,
             "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True"]
    if args.iterations is not None:
        train += ["--max-num-iterations", str(args.iterations)]
    train += ["blender-data", "--data", str(args.data)]
    _run(train)
    config = _latest_config(run_root)
    run_dir = config.parent
    _run([_bin("ns-eval"), "--load-config", str(config), "--output-path", str(run_dir / "eval.json")])
    if not args.skip_render:
        _run([_bin("ns-render"), "interpolate", "--load-config", str(config), "--output-path",
              str(run_dir / "video.mp4"), "--downscale-factor", "1", "--frame-rate", "12",
              "--interpolation-steps", "6", "--order-poses", "True"])
    print(f"\nrun: {run_dir}\n  eval: {run_dir / 'eval.json'}\n  video: {run_dir / 'video.mp4'}\n"
          f"  view it: {_bin('spikenerf-viewer')} --load-config {config}\n"
          f"  resume / train on: {_bin('ns-train')} {args.method} --load-dir {run_dir / 'nerfstudio_models'} "
          "--max-num-iterations <total>")


if __name__ == "__main__":
    main()
