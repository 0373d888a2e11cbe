"""CLI end to end on the offline digits set: train, resume, eval, export, missing data, DDP (torchrun, gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikenerf.vision.cli import main

FAST = ["--no-progress", "--no-tensorboard", "--max-batches", "3", "--batch-size", "32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    main(["train", "digits-demo", "--epochs", "1", "--output-dir", str(out), *FAST])
    return out


def test_train_writes_weights_only_checkpoint(trained):
    state = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and state["config"]["model"] == "vgg11" and "model" in state
    assert not list(trained.glob("*.tmp"))


def test_resume_continues(trained, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(trained, out)
    main(["train", "digits-demo", "--epochs", "2", "--resume", "--output-dir", str(out), *FAST])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 6


def test_eval_and_export(trained, capsys):
    main(["eval", "--checkpoint", str(trained / "checkpoint.pt"), "--no-progress", "--max-batches", "2"])
    text = capsys.readouterr().out
    assert "accuracy" in text and "SOPs" in text and "ANN twin" in text and "firing rates" in text
    main(["export", "--checkpoint", str(trained / "checkpoint.pt"), "--batches", "2"])
    text = capsys.readouterr().out
    assert "predictions equal on" in text and ": True" in text
    exp = torch.load(trained / "exported.pt", weights_only=True)
    assert exp["report"]["predictions_equal"] and exp["report"]["bn_folded"] == 8


def test_method_flags_train(tmp_path):
    # RMP-Loss, then IM-Loss + ESG (tanh surrogate), each with MPBN + soft reset/MPR, one short run each
    neuron = ["--neuron.surrogate", "tanh", "--neuron.mpbn", "--neuron.reset", "soft", "--neuron.mpr"]
    main(["train", "digits-demo", "--epochs", "1", "--output-dir", str(tmp_path / "rmp"), *FAST, *neuron,
          "method:rmp", "--method.weight", "0.1"])
    main(["train", "digits-demo", "--epochs", "1", "--output-dir", str(tmp_path), *FAST, *neuron,
          "method:im-loss", "--method.weight", "0.1", "--method.esg"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["method"]["esg"]["step_count"] == 3


def test_joint_train_and_export(tmp_path, capsys):
    main(["train", "digits-demo", "--epochs", "1", "--output-dir", str(tmp_path), *FAST, "method:joint"])
    main(["export", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--batches", "1"])
    assert ": True" in capsys.readouterr().out


def test_missing_dataset_exits_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "resnet19-cifar10", "--data-root", str(tmp_path), "--no-progress", "--no-tensorboard",
              "--output-dir", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun missing")
def test_ddp_two_processes_gloo(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m", "spikenerf.vision.cli", "train",
           "digits-demo", "--epochs", "1", "--output-dir", str(tmp_path), *FAST]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and state["step"] == 3
