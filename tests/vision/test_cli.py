"""CLI end to end on the offline digits set: train, resume, eval, export, missing data, DDP (torchrun, gloo)."""

from __future__ import annotations

import dataclasses
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


# ---------------------------------------------------------------- resume = uninterrupted run; divergence guard
def _cfg(out, **kw):
    from spikenerf.vision.config import PRESETS

    base = dict(epochs=3, max_batches=3, batch_size=32, progress=False, tensorboard=False, output_dir=str(out),
                augment=True)
    base.update(kw)
    return dataclasses.replace(PRESETS["digits-demo"][1], **base)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, monkeypatch):
    from spikenerf.vision import engine

    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    engine.train(_cfg(ref_dir))
    ref = torch.load(ref_dir / "last.pt", weights_only=True)

    real_save = engine.save_checkpoint

    def save_then_die(path, state):  # the process is killed right after its first checkpoint
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.train(_cfg(cut_dir))
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert torch.load(cut_dir / "last.pt", weights_only=True)["epoch"] == 0
    engine.train(_cfg(cut_dir, resume=True))
    got = torch.load(cut_dir / "last.pt", weights_only=True)
    assert got["step"] == ref["step"] == 9
    for k, v in ref["model"].items():
        assert torch.allclose(got["model"][k].float(), v.float(), atol=1e-6), k
    assert (cut_dir / "best.pt").is_file() and torch.load(cut_dir / "best.pt", weights_only=True)["accuracy"] == \
        torch.load(cut_dir / "best.pt", weights_only=True)["best_accuracy"]


def test_resume_rules(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "digits-demo", "--resume", "--output-dir", str(tmp_path / "none"), *FAST])
    assert e.value.code == 2 and "no checkpoint" in capsys.readouterr().err
    main(["train", "digits-demo", "--epochs", "1", "--output-dir", str(tmp_path), *FAST])
    with pytest.raises(SystemExit) as e:
        main(["train", "digits-demo", "--epochs", "2", "--lr", "0.1", "--resume", "--output-dir", str(tmp_path), *FAST])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "lr: 0.003 -> 0.1" in err and "Traceback" not in err
    main(["train", "digits-demo", "--epochs", "3", "--resume", "--output-dir", str(tmp_path), *FAST])
    assert "re-planned for 3 epochs" in capsys.readouterr().out


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    from spikenerf.vision.methods import registry
    from spikenerf.vision.methods.base import Method, MethodConfig

    class Blows(Method):
        def loss(self, model, x_seq, y, step, total_steps):
            logits, loss = super().loss(model, x_seq, y, step, total_steps)
            return logits, loss * (float("nan") if step == 4 else 1.0)

    @dataclasses.dataclass
    class BlowsConfig(MethodConfig):
        _target: type = dataclasses.field(default_factory=lambda: Blows)

    from spikenerf.vision.engine import TrainingDiverged, train

    monkeypatch.setitem(registry.METHODS, "blows", BlowsConfig)
    train(_cfg(tmp_path, epochs=1, method=BlowsConfig()))
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(TrainingDiverged) as e:
        train(_cfg(tmp_path, epochs=2, method=BlowsConfig(), resume=True))
    assert "at step 4" in str(e.value) and "after epoch 1" in str(e.value) and "is kept" in str(e.value)
    assert (tmp_path / "last.pt").read_bytes() == before
    # through the CLI: a learning rate that overflows at once; exit status 3, one paragraph, no traceback
    with pytest.raises(SystemExit) as e:
        main(["train", "digits-demo", "--epochs", "1", "--optimizer", "sgd", "--lr", "1e38", "--output-dir",
              str(tmp_path / "cli"), *FAST])
    err = capsys.readouterr().err
    assert e.value.code == 3 and "diverged" in err and "at step" in err and "Traceback" not in err
