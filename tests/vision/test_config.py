"""Configs: the method union, YAML files, presets stored under configs/vision/, old checkpoints, and the layering
(methods never import the engine; the engine names no method)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from spikenerf.vision.build import restore
from spikenerf.vision.cli import main
from spikenerf.vision.config import (PRESETS, ConfigFileError, VisionConfig, config_from_dict, config_to_dict,
                                     load_config_file, save_config_file)
from spikenerf.vision.methods.registry import METHODS
from spikenerf.vision.methods.im_loss import IMLossConfig
from spikenerf.vision.methods.joint_asnn import JointConfig
from spikenerf.vision.methods.ltmd import LTMDConfig
from spikenerf.vision.methods.rmp import RMPConfig
from spikenerf.vision.methods.subbit import SubBitConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


def test_every_preset_round_trips_through_dict_and_yaml(tmp_path):
    for name, (_, cfg) in PRESETS.items():
        assert config_from_dict(config_to_dict(cfg)) == cfg, name
        assert load_config_file(save_config_file(cfg, tmp_path / f"{name}.yaml")) == cfg, name


def test_stored_preset_files_match_presets():
    stored = sorted(p.stem for p in (ROOT / "configs" / "vision").glob("*.yaml"))
    assert stored == sorted(PRESETS)
    for name, (_, cfg) in PRESETS.items():
        assert load_config_file(ROOT / "configs" / "vision" / f"{name}.yaml") == cfg, name


def test_cli_method_subcommand_and_config_files(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    main(["train", "digits-demo", "--epochs", "3", "method:ltmd", "--method.dropout", "0.3", "--save-config", str(out)])
    cfg = load_config_file(out)
    assert cfg.epochs == 3 and cfg.method == LTMDConfig(dropout=0.3) and cfg.model == "vgg11"
    main(["train", "--config", str(out), "--width", "0.25", "--save-config", str(tmp_path / "d.yaml")])
    cfg2 = load_config_file(tmp_path / "d.yaml")
    assert cfg2 == dataclasses.replace(cfg, width=0.25)
    with pytest.raises(SystemExit):
        main(["train", "digits-demo", "method:ltmd", "--help"])
    text = capsys.readouterr().out
    assert "--method.dropout" in text and "--method.weight" not in text and "type: ignore" not in text


def test_bad_config_file_is_one_paragraph(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: vgg11\nepochz: 3\n")
    with pytest.raises(SystemExit) as e:
        main(["train", "--config", str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "epochz" in err and "Traceback" not in err
    with pytest.raises(ConfigFileError):
        config_from_dict({"method": {"name": "nope"}})


def test_old_flat_configs_map_onto_methods():
    old = {"model": "resnet20", "dataset": "digits", "rmp_loss": 0.2, "im_loss": 0.0, "esg": False, "joint": False,
           "efficiency": {"method": "none"}}
    assert config_from_dict(old).method == RMPConfig(weight=0.2)
    assert config_from_dict({**old, "rmp_loss": 0.0, "im_loss": 1.0, "esg": True, "esg_k_max": 5.0}).method == \
        IMLossConfig(weight=1.0, esg=True, k_max=5.0)
    # an old joint config was trained with logit distillation only: it keeps that form (no hybrid branches)
    assert config_from_dict({**old, "joint": True, "joint_rank_ratio": 0.5}).method == \
        JointConfig(rank_ratio=0.5, branches=False)
    eff = {"method": "subbit", "subbit_stage": "binary", "subbit_codebook": 8, "ltmd_dropout": 0.1}
    assert config_from_dict({**old, "efficiency": eff}).method == SubBitConfig(stage="binary", codebook=8)


def test_checkpoint_written_before_the_method_field_still_loads(tmp_path, capsys):
    """tests/vision/data/old_format_digits_rmp.pt was written by the pre-refactor code (digits-demo, width 1/16,
    --rmp-loss 0.1; optimizer state dropped to keep the file small); its logits on a fixed input were stored."""
    cfg, model, _, state = restore(DATA / "old_format_digits_rmp.pt")
    assert isinstance(cfg.method, RMPConfig) and cfg.method.weight == 0.1 and cfg.width == 0.0625
    ref = torch.load(DATA / "old_format_digits_rmp_ref.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(model(ref["x"]), ref["logits"], atol=1e-6)
    for k, v in state["model"].items():
        assert torch.equal(model.state_dict()[k], v)
    main(["eval", "--checkpoint", str(DATA / "old_format_digits_rmp.pt"), "--no-progress", "--max-batches", "1"])
    assert "accuracy" in capsys.readouterr().out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_layering_methods_never_import_engine_and_engine_names_no_method():
    vision = ROOT / "spikenerf" / "vision"
    for f in (vision / "methods").glob("*.py"):
        mods = _imports(f)
        for bad in ("engine", "config", "cli", "build"):
            assert not any(m.lstrip(".").split(".")[-1] == bad or m.endswith(f"vision.{bad}") for m in mods), (f, bad)
    engine = (vision / "engine.py").read_text()
    eng_imports = _imports(vision / "engine.py")
    assert not any(m.startswith(".methods.") and m != ".methods.base" for m in eng_imports)
    for name in METHODS:
        if name != "plain":
            assert f'"{name}"' not in engine, name
    # no function-local imports in the vision package (they hide import circles), optional packages aside
    optional = {"h5py", "tonic", "torchvision.models", "sklearn.datasets", "tqdm.auto", "torch.utils.tensorboard",
                "torchvision", "torchvision.datasets", "matplotlib", "matplotlib.pyplot", "nir"}
    for f in vision.rglob("*.py"):
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom):
                        assert node.level == 0 and node.module in optional, (f, fn.name, node.module)
                    elif isinstance(node, ast.Import):
                        assert all(a.name in optional for a in node.names), (f, fn.name)


def test_adding_a_method_is_one_registry_line(tmp_path, monkeypatch):
    """A toy method module (config + Method) registered with one line trains through the unchanged engine."""
    import spikenerf.vision.config as config_mod
    from spikenerf.vision import engine
    from spikenerf.vision.methods import registry
    from spikenerf.vision.methods.base import Method, MethodConfig

    calls = []

    class Toy(Method):
        def after_step(self, model):
            calls.append(1)

    @dataclasses.dataclass
    class ToyConfig(MethodConfig):
        _target: type = dataclasses.field(default_factory=lambda: Toy)

    monkeypatch.setitem(registry.METHODS, "toy", ToyConfig)
    cfg = dataclasses.replace(PRESETS["digits-demo"][1], method=ToyConfig(), epochs=1, max_batches=2, progress=False,
                              tensorboard=False, output_dir=str(tmp_path))
    engine.train(cfg)
    assert len(calls) == 2
    assert config_mod.config_from_dict(config_to_dict(cfg)).method == ToyConfig()
