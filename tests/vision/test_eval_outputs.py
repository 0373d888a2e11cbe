"""eval --json / --plot, and exported checkpoints that load back and reproduce the predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikenerf.vision.build import restore
from spikenerf.vision.cli import main
from spikenerf.vision.data import get_dataset, to_sequence

FAST = ["--epochs", "1", "--max-batches", "3", "--batch-size", "32", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    main(["train", "digits-demo", "--output-dir", str(out), "--lr", "0.01", "--neuron.mpbn", "--neuron.real-spike",
          *FAST])
    return out


def test_eval_json_is_strict_and_complete(run, tmp_path, capsys):
    js, png = tmp_path / "e.json", tmp_path / "e.png"
    main(["eval", "--checkpoint", str(run / "last.pt"), "--no-progress", "--test-subset", "7", "--json", str(js),
          "--plot", str(png)])
    d = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    ev = d["per_T"]["4"]
    cm = torch.tensor(ev["confusion_matrix"])
    assert cm.shape == (10, 10) and int(cm.sum()) == ev["samples"] == 7
    assert abs(ev["accuracy"] - float(cm.diag().sum()) / 7) < 1e-12
    rows = cm.sum(1)
    for i, a in enumerate(ev["per_class_accuracy"]):  # null where the subset holds no sample of the class
        assert (a is None) == (int(rows[i]) == 0)
        if a is not None:
            assert abs(a - float(cm[i, i]) / float(rows[i])) < 1e-12
    assert set(ev["firing_rates"]) and all(0 <= r <= 1 for r in ev["firing_rates"].values())
    assert ev["energy"]["energy_uJ"] > 0 and ev["ann_twin_energy"]["macs"] > 0 and ev["energy_ratio"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exported_checkpoint_loads_back_and_reproduces_predictions(run, capsys):
    main(["export", "--checkpoint", str(run / "last.pt"), "--batches", "2"])
    assert ": True" in capsys.readouterr().out
    cfg, ref, info, _ = restore(run / "last.pt")
    _, folded, _, state = restore(run / "exported.pt")
    assert state["exported"] and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    ds, _ = get_dataset(cfg.dataset, False, subset=128)
    x = to_sequence(torch.stack([ds[i][0] for i in range(len(ds))]), info.kind, cfg.timesteps)
    with torch.no_grad():
        assert torch.equal(ref(x).argmax(1), folded(x).argmax(1))
    main(["eval", "--checkpoint", str(run / "exported.pt"), "--no-progress"])
    out_exp = capsys.readouterr().out
    main(["eval", "--checkpoint", str(run / "last.pt"), "--no-progress"])
    out_ref = capsys.readouterr().out
    acc = [line.split("accuracy ")[1].split("%")[0] for line in (out_exp, out_ref)]
    assert acc[0] == acc[1]


def test_nir_export_round_trip_and_refusals(tmp_path, capsys):
    pytest.importorskip("nir")
    from spikenerf.vision.nir_export import from_nir, read_nir

    out = tmp_path / "bin"
    main(["train", "digits-demo", "--output-dir", str(out), *FAST])
    main(["export", "--checkpoint", str(out / "last.pt"), "--batches", "2", "--format", "nir"])
    assert "same predictions: True" in capsys.readouterr().out
    g = read_nir(out / "exported.nir")
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert {"Conv2d", "LIF", "AvgPool2d", "Affine"} <= kinds
    # the graph read back is the folded network: same logits on any input
    _, folded, _, _ = restore(out / "exported.pt")
    x = torch.rand(4, 3, 1, 8, 8) * 3
    with torch.no_grad():
        assert torch.allclose(from_nir(g)(x), folded(x), atol=1e-5)
    for flags, feature in ((["--neuron.reset", "soft"], "soft reset"),
                           (["--neuron.spike-code", "ternary"], "ternary spikes"),
                           (["--neuron.spike-code", "multibit"], "multibit spikes")):
        d = tmp_path / feature.replace(" ", "-")
        main(["train", "digits-demo", "--output-dir", str(d), *FAST, *flags])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(["export", "--checkpoint", str(d / "last.pt"), "--batches", "1", "--format", "nir"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and feature in err and "Traceback" not in err
