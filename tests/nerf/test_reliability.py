"""Crashes, divergence and schedules: atomic checkpoints, torn files skipped, the NaN guard, resume semantics.

In-process tests cover the checkpoint helpers and the schedule fitting; the command-line tests kill a real
``ns-train`` in the middle of writing a checkpoint and resume it, resume a finished run, and let a huge
learning rate diverge. Each ``ns-train`` start is ~20-40 s on two shared CPU cores.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikenerf.nerf.checkpoints import atomic_save, checkpoint_files, load_latest_checkpoint
from spikenerf.nerf.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).parent))
from test_nerf_cli import BIN, BUNDLED, TINY, _env, _ok, make_tiny_scene  # noqa: E402

needs_scene = pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(),
                                 reason="needs the bundled scene data/lego-mini")


def _state(step: int) -> dict:
    return {"step": step, "pipeline": {"w": torch.full((3,), float(step))}, "optimizers": {}, "schedulers": {},
            "scalers": {}}


# -- checkpoint files (in-process) ------------------------------------------------------------------

def test_atomic_save_leaves_no_temporary_and_loads(tmp_path):
    path = atomic_save(_state(5), tmp_path / "step-000000005.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["step-000000005.ckpt"]
    assert torch.load(path, weights_only=True)["step"] == 5


def test_torn_checkpoints_are_skipped_with_a_warning_naming_them(tmp_path):
    atomic_save(_state(10), tmp_path / "step-000000010.ckpt")
    good = (tmp_path / "step-000000010.ckpt").read_bytes()
    (tmp_path / "step-000000030.ckpt").write_bytes(b"")  # killed at the start of a save
    (tmp_path / "step-000000020.ckpt").write_bytes(good[: len(good) // 2])  # killed half-way
    (tmp_path / ".tmp-99999-step-000000040.ckpt").write_bytes(b"partial")  # an atomic save's leftover
    assert [p.name for p in checkpoint_files(tmp_path)] == ["step-000000030.ckpt", "step-000000020.ckpt",
                                                            "step-000000010.ckpt"]
    with pytest.warns(RuntimeWarning) as record:
        path, state = load_latest_checkpoint(tmp_path)
    assert path.name == "step-000000010.ckpt" and state["step"] == 10
    text = " ".join(str(w.message) for w in record)
    assert "step-000000030.ckpt (0 bytes) is torn" in text and "step-000000020.ckpt" in text


def test_no_loadable_checkpoint_names_every_file(tmp_path):
    (tmp_path / "step-000000001.ckpt").write_bytes(b"\x00" * 10)
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="step-000000001.ckpt"):
        load_latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_latest_checkpoint(tmp_path / "nowhere")


# -- schedules (in-process) -------------------------------------------------------------------------

def test_schedules_follow_max_num_iterations():
    from spikenerf.nerf.method_configs import spikingnerf, spiknerf_mlp

    cfg = copy.deepcopy(spikingnerf.config)
    cfg.max_num_iterations = 60
    changed = cfg.fit_schedules()
    assert cfg.pipeline.model.coarse_steps == 20 and tuple(cfg.pipeline.model.pg_scale_steps) == (10, 20)
    assert all(g["scheduler"].max_steps == 60 for g in cfg.optimizers.values())
    assert "pipeline.model.coarse_steps" in changed
    assert cfg.fit_schedules() == {}  # idempotent
    # a value set by hand is kept
    cfg = copy.deepcopy(spikingnerf.config)
    cfg.max_num_iterations = 60
    cfg.pipeline.model.coarse_steps = 7
    cfg.fit_schedules()
    assert cfg.pipeline.model.coarse_steps == 7 and cfg.optimizers["grids"]["scheduler"].max_steps == 60
    mlp = copy.deepcopy(spiknerf_mlp.config)
    mlp.max_num_iterations = 300
    mlp.fit_schedules()
    assert mlp.optimizers["fields"]["scheduler"].max_steps == 300
    assert mlp.pipeline.model.occupancy_warmup_steps == 100
    cfg.max_num_iterations = 0
    with pytest.raises(ValueError, match="max-num-iterations must be >= 1"):
        cfg.fit_schedules()


# -- command line -----------------------------------------------------------------------------------

KILL_DURING_SECOND_SAVE = r"""
import os, signal, sys, torch
real_save = torch.save
calls = []
def torn_save(obj, f, *a, **k):
    calls.append(1)
    if len(calls) < 2:
        return real_save(obj, f, *a, **k)
    f.write(b"PK\x03\x04 half a checkpoint")  # the process dies in the middle of writing
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = torn_save
from nerfstudio.scripts.train import entrypoint
sys.argv = ["ns-train", *sys.argv[1:]]
entrypoint()
"""


def _ns_train(args, cwd, timeout=400, script=None):
    if script is None:
        cmd = [str(BIN / "ns-train"), *map(str, args)]
    else:
        cmd = [sys.executable, "-c", script, *map(str, args)]
    return subprocess.run(cmd, env=_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _args(scene, out, *extra):
    return ["spikingnerf", *TINY, *extra, "--output-dir", out, "blender-data", "--data", scene]


@needs_scene
def test_killed_during_save_resumes_from_the_last_good_checkpoint(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))
    r = _ns_train(_args(scene, tmp_path / "out"), tmp_path, script=KILL_DURING_SECOND_SAVE)
    assert r.returncode == -9, (r.returncode, r.stderr[-3000:])
    ckpt_dir = next((tmp_path / "out").rglob("nerfstudio_models"))
    # the first save (step 12) is complete; the killed one left only a hidden temporary
    assert [p.name for p in checkpoint_files(ckpt_dir)] == ["step-000000012.ckpt"]
    assert any(p.name.startswith(".tmp-") for p in ckpt_dir.iterdir())
    # a torn file as nerfstudio's in-place save leaves it: newer, so it would be picked first
    (ckpt_dir / "step-000000020.ckpt").write_bytes(b"")

    r = _ns_train(_args(scene, tmp_path / "resumed", "--load-dir", ckpt_dir), tmp_path)
    _ok(r)
    text = r.stdout + r.stderr
    assert "step-000000020.ckpt (0 bytes) is torn" in text, text[-3000:]
    assert "Resuming from" in text and "step-000000012.ckpt (step 12 of 24)" in text
    resumed = next((tmp_path / "resumed").rglob("nerfstudio_models"))
    final = checkpoint_files(resumed)
    assert [p.name for p in final] == ["step-000000023.ckpt"]  # --max-num-iterations is the total
    assert torch.load(final[0], weights_only=True)["step"] == 23
    assert "200" not in "".join(line for line in text.splitlines() if "%)" in line)  # progress against 24

    # ns-eval's loader (patched) also skips the torn file
    from nerfstudio.utils.eval_utils import eval_setup

    config = next((tmp_path / "out").rglob("config.yml"))
    with pytest.warns(RuntimeWarning, match="step-000000020.ckpt"):
        _, pipeline, path, step = eval_setup(config, test_mode="test")
    assert path.name == "step-000000012.ckpt" and step == 12

    # resuming the finished run trains nothing and keeps its checkpoint
    r = _ns_train(_args(scene, tmp_path / "again", "--load-dir", resumed), tmp_path)
    _ok(r)
    assert "nothing to do" in r.stdout + r.stderr
    assert [p.name for p in checkpoint_files(resumed)] == ["step-000000023.ckpt"]
    assert not list((tmp_path / "again").rglob("*.ckpt"))


NAN_FROM_STEP_14 = r"""
import sys
from spikenerf.nerf.trainer import SpikingNeRFPipeline
real = SpikingNeRFPipeline.get_train_loss_dict
def poisoned(self, step):
    outputs, loss_dict, metrics = real(self, step)
    if step >= 14:
        loss_dict["rgb_loss"] = loss_dict["rgb_loss"] * float("nan")
    return outputs, loss_dict, metrics
SpikingNeRFPipeline.get_train_loss_dict = poisoned
from nerfstudio.scripts.train import entrypoint
sys.argv = ["ns-train", *sys.argv[1:]]
entrypoint()
"""


def _diverged_line(r) -> str:
    assert r.returncode != 0, r.stdout[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("TrainingDiverged: training diverged at step "), r.stderr[-3000:]
    return last


@needs_scene
def test_divergence_stops_with_step_and_loss_terms(tmp_path):
    """A NaN loss from step 14 on: training stops there, names the step, the loss terms and the last good
    checkpoint (step 12, kept), and exits non-zero; the terminal table shows the loss."""
    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))
    r = _ns_train(_args(scene, tmp_path / "out"), tmp_path, script=NAN_FROM_STEP_14)
    line = _diverged_line(r)
    assert "at step 14: non-finite loss" in line and "rgb_loss=nan" in line and "entropy_loss=" in line
    assert "step-000000012.ckpt" in line
    ckpts = checkpoint_files(next((tmp_path / "out").rglob("nerfstudio_models")))
    assert [p.name for p in ckpts] == ["step-000000012.ckpt"]
    state = torch.load(ckpts[0], weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["pipeline"].values()
               if torch.is_tensor(v) and v.is_floating_point())
    assert "Train Loss" in r.stdout


@needs_scene
def test_huge_learning_rate_diverges_and_exits_non_zero(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))
    r = _ns_train(_args(scene, tmp_path / "out", "--optimizers.grids.optimizer.lr", "1e38"), tmp_path)
    line = _diverged_line(r)
    assert "non-finite" in line and "rgb_loss=" in line
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_skip_step_policy_skips_then_gives_up():
    """``--nan-policy skip-step`` drops a non-finite step; too many in a row still stop (in-process)."""
    from spikenerf.nerf.errors import TrainingDiverged
    from spikenerf.nerf.trainer import SpikingNeRFTrainer, SpikingNeRFTrainerConfig

    trainer = SpikingNeRFTrainer.__new__(SpikingNeRFTrainer)
    trainer.config = SpikingNeRFTrainerConfig(nan_policy="skip-step", max_skipped_steps=2)
    trainer.skipped_in_a_row, trainer.last_checkpoint = 0, None
    loss = {"rgb_loss": torch.tensor(float("nan"))}
    trainer._diverged(5, "loss", loss)
    trainer._diverged(6, "loss", loss)
    with pytest.raises(TrainingDiverged, match="step 7: non-finite loss .*rgb_loss=nan"):
        trainer._diverged(7, "loss", loss)


def test_failed_start_removes_a_run_folder_holding_only_its_config(tmp_path):
    """A set-up that fails after config.yml was written (e.g. no loadable checkpoint) leaves no run folder."""
    from spikenerf.nerf.trainer import _remove_lone_config

    run = tmp_path / "out" / "unnamed" / "spikingnerf" / "2026-01-01_000000"
    run.mkdir(parents=True)
    (run / "config.yml").write_text("x")
    _remove_lone_config(run)
    assert not (tmp_path / "out" / "unnamed").exists() and (tmp_path / "out").is_dir()
    run.mkdir(parents=True)
    (run / "config.yml").write_text("x")
    (run / "nerfstudio_models").mkdir()
    (run / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"x")
    _remove_lone_config(run)
    assert (run / "config.yml").is_file()  # a run with anything else in it is kept


def test_every_method_runs_on_the_guarded_trainer():
    """Every registered method gets the atomic checkpoints, the divergence guard and the fitted schedules."""
    from spikenerf.nerf.method_configs import METHODS
    from spikenerf.nerf.trainer import SpikingNeRFPipelineConfig, SpikingNeRFTrainerConfig

    for name, spec in METHODS.items():
        cfg = spec.config
        assert isinstance(cfg, SpikingNeRFTrainerConfig), name
        assert isinstance(cfg.pipeline, SpikingNeRFPipelineConfig), name
        assert cfg.preset_steps == cfg.max_num_iterations and cfg.preset_schedule, name
        for g, group in cfg.optimizers.items():
            if group["scheduler"] is None:  # spikingnerf-t: the model sets TensoRF's rates from its own schedule
                assert "pipeline.model.tensorf.num_steps" in cfg.preset_schedule, name
            else:
                assert f"optimizers.{g}.scheduler.max_steps" in cfg.preset_schedule, name
