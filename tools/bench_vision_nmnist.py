"""N-MNIST through the event-folder path: convert nmnist-small to DIR/{train,test}/<class>/*.npy, then train and
evaluate with the ordinary CLI on a schedule file (configs/bench/nmnist-event-folder.yaml); prints one markdown row.

    OMP_NUM_THREADS=2 .venv/bin/python tools/bench_vision_nmnist.py [--schedule FILE] [--out DIR] [--epochs N]

The conversion keeps every event (x, y, p, t in microseconds) as a structured .npy (tonic's field layout), so
this is also the worked example of bringing your own DVS recordings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_vision_schedule import row, run_schedule  # noqa: E402

from spikenerf.snn.process import configure_process  # noqa: E402
from spikenerf.vision.data import default_data_root, read_nmnist_bs2  # noqa: E402


def convert(src: Path, dst: Path) -> Path:
    """nmnist-small (.bs2 + train1K.txt / test100.txt) -> an event folder of structured .npy files."""
    for split, labels in (("train", "train1K.txt"), ("test", "test100.txt")):
        rows = [ln.split() for ln in (src / labels).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        for sid, label in rows:
            out = dst / split / f"digit{label}" / f"{sid}.npy"
            if out.is_file():
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            ev = read_nmnist_bs2(src / f"{sid}.bs2")
            a = np.zeros(len(ev["t"]), dtype=[("x", "<i2"), ("y", "<i2"), ("p", "<i1"), ("t", "<i8")])
            for k in "xypt":
                a[k] = ev[k]
            np.save(out, a)
    return dst


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedule", default=str(ROOT / "configs" / "bench" / "nmnist-event-folder.yaml"))
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench_vision_nmnist"))
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more CLI flags, e.g. --epochs 2")
    args = ap.parse_args()
    out = Path(args.out)
    data = convert(default_data_root() / "nmnist-small", out / "nmnist-event-folder")
    r = run_schedule(args.schedule, out, data, args.extra)
    print("\n| task | command | test acc % | firing rate | energy / ANN twin | wall s |\n|---|---|---|---|---|---|")
    print(row("N-MNIST (nmnist-small: 1,000 train / 100 test) via event-folder", r))


if __name__ == "__main__":
    main()
