"""Every bad input: a one-paragraph error, a non-zero exit status, no traceback (the table in docs/vision.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikenerf.vision.cli import main

FAST = ["--epochs", "1", "--max-batches", "1", "--batch-size", "16", "--no-progress", "--no-tensorboard"]
OLD = Path(__file__).resolve().parent / "data" / "old_format_digits_rmp.pt"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    main(["train", "digits-demo", "--output-dir", str(out), *FAST])
    return out


def _fails(capsys, argv, code=2, expect=""):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expect in err, err
    return err


@pytest.mark.parametrize("cmd", ["eval", "export"])
def test_missing_truncated_and_foreign_files(tmp_path, capsys, run, cmd):
    _fails(capsys, [cmd, "--checkpoint", str(tmp_path / "nope.pt")], expect="not found")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((run / "last.pt").read_bytes()[:2000])
    _fails(capsys, [cmd, "--checkpoint", str(trunc)], expect="truncated or not a torch file")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    _fails(capsys, [cmd, "--checkpoint", str(text)], expect="not a readable checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    _fails(capsys, [cmd, "--checkpoint", str(tmp_path / "foreign.pt")], expect="not a spikenerf-vision checkpoint")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    _fails(capsys, [cmd, "--checkpoint", str(tmp_path / "tensor.pt")], expect="holds a Tensor")


def test_checkpoint_of_another_width(tmp_path, capsys, run):
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"]["width"] = 0.25  # weights of width 0.125 under a config that says 0.25
    torch.save(state, tmp_path / "w.pt")
    _fails(capsys, ["eval", "--checkpoint", str(tmp_path / "w.pt")], expect="do not fit the network")
    _fails(capsys, ["train", "digits-demo", "--width", "0.25", "--resume", "--output-dir", str(run), *FAST],
           expect="width: 0.125 -> 0.25")


def test_teacher_of_another_width(tmp_path, capsys, run):
    fast = ["--dataset", "digits", "--width", "0.25", "--no-augment", "--test-subset", "32", *FAST]
    main(["train", "subbit-binary-resnet20-cifar10", "--output-dir", str(tmp_path / "bin"), *fast])
    _fails(capsys, ["train", "subbit-resnet20-cifar10", *fast[:2], "--width", "0.5", *fast[4:], "--output-dir",
                    str(tmp_path / "s2"), "--method.teacher", str(tmp_path / "bin" / "last.pt")],
           expect="must be the stage-1 binary run")


def test_unknown_preset_and_bad_config(tmp_path, capsys):
    _fails(capsys, ["train", "digits-dmeo"], expect="Did you mean digits-demo")
    _fails(capsys, ["train", "--config", str(tmp_path / "none.yaml")], expect="not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: {name: ltmd, dropuot: 0.1}\n")
    _fails(capsys, ["train", "--config", str(bad)], expect="no field(s) dropuot")


def test_own_loop_checkpoint_given_to_eval(tmp_path, capsys):
    main(["train", "stdp-ncg-digits", "--method.extractor", "pixels", "--epochs", "1", "--train-subset", "50",
          "--test-subset", "20", "--no-progress", "--output-dir", str(tmp_path)])
    capsys.readouterr()
    _fails(capsys, ["eval", "--checkpoint", str(tmp_path / "checkpoint.pt")], expect="holds no network weights")


def test_help_texts_name_real_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "type: ignore" not in text and "--neuron.spike-code" in text
    with pytest.raises(SystemExit):
        main(["train", "digits-demo", "--help"])
    assert "--neuron.spike-code" in capsys.readouterr().out
