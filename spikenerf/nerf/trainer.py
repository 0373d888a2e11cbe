"""The trainer and pipeline every method of this package runs on (``TrainerConfig._target``).

What :class:`SpikingNeRFTrainer` adds to nerfstudio's ``Trainer``:

- **Crash-safe checkpoints**: saved with :func:`~.checkpoints.atomic_save` (a temporary in the same
  folder, fsync, rename); older ones are deleted only after the new one is in place. Resuming
  (``--load-dir``) takes the newest checkpoint that loads and warns about each torn one it skips.
- **Divergence guard**: a non-finite loss or gradient stops training (``--nan-policy stop``, the default)
  with the step and every loss term, before the bad step touches the weights, keeping the last good
  checkpoint, and the command exits non-zero; ``--nan-policy skip-step`` drops such steps instead (at most
  ``--max-skipped-steps`` in a row). The terminal table shows the training loss.
- **Schedules follow** ``--max-num-iterations``: every step count of the preset (learning-rate decay,
  coarse stage, up-scaling steps, ...) that is still at the preset's value is scaled by
  ``max_num_iterations / preset_steps`` (:meth:`SpikingNeRFTrainerConfig.fit_schedules`); one you set
  yourself is kept.
- **Resume to a total**: with ``--load-dir``, ``--max-num-iterations`` is the total step count, not extra
  steps; progress and ETA count against it; resuming a finished run trains nothing.
- **Bad input before the run folder**: the scene is checked (:func:`~.datamanager.check_scene`) before the
  config is printed or ``config.yml`` written; a set-up that fails later removes the run folder it left
  holding only ``config.yml``.

:class:`SpikingNeRFPipeline` prints ``ns-eval``'s progress per image and reports metrics that are not
available (LPIPS offline) as ``None`` (``null`` in ``eval.json``, which strict JSON parsers accept).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import tyro
import yaml
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler, writer
from nerfstudio.utils.rich_utils import CONSOLE

from .checkpoints import atomic_save, checkpoint_files, load_checkpoint, load_latest_checkpoint, \
    remove_stale_temporaries
from .datamanager import check_scene
from .errors import ConfigError, TrainingDiverged
from .startup import start_process

__all__ = ["SCHEDULE_FIELDS", "SpikingNeRFTrainerConfig", "SpikingNeRFTrainer", "SpikingNeRFPipelineConfig",
           "SpikingNeRFPipeline", "finite_or_none"]

SCHEDULE_FIELDS = ("coarse_steps", "pg_scale_steps", "occupancy_warmup_steps")
"""Model-config fields that count training steps (scaled with ``--max-num-iterations``)."""

TRAIN_LOSS = "Train Loss"
"""The scalar nerfstudio logs every ``steps_per_log``; added to the terminal table."""


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _set(obj: Any, dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    if isinstance(obj, dict):
        obj[last] = value
    else:
        setattr(obj, last, value)


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, (tuple, list)):
        return tuple(max(1, int(round(v * factor))) for v in value)
    return max(1, int(round(value * factor)))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and tuple(a) == tuple(b)
    return a == b


def finite_or_none(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """``metrics`` with every NaN / infinite number replaced by ``None`` (strict JSON: ``null``)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


# ----------------------------------------------------------------------------- pipeline
class SpikingNeRFPipeline(VanillaPipeline):
    """``VanillaPipeline`` whose whole-split evaluation shows progress and reports unavailable metrics as
    ``None`` when called without a step (``ns-eval``; during training they stay numbers for the loggers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        start_process()  # ns-eval / ns-render / ns-viewer: the process's settings and nerfstudio fixes
        super().__init__(*args, **kwargs)

    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None,
                                       get_std: bool = False):
        model = self.model
        total = len(self.datamanager.fixed_indices_eval_dataloader)
        done = [0]
        t0 = time.time()
        inner = model.get_image_metrics_and_images

        def counted(outputs, batch):
            result = inner(outputs, batch)
            done[0] += 1
            psnr = result[0].get("psnr")
            CONSOLE.print(f"evaluated image {done[0]}/{total} ({time.time() - t0:.1f} s)"
                          + (f", PSNR {float(psnr):.2f} dB" if psnr is not None else ""), highlight=False)
            return result

        CONSOLE.print(f"evaluating {total} images of the {self.datamanager.test_split} split", highlight=False)
        model.get_image_metrics_and_images = counted  # this call only (instance attribute, removed below)
        try:
            metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        finally:
            del model.get_image_metrics_and_images
        return finite_or_none(metrics) if step is None else metrics


@dataclass
class SpikingNeRFPipelineConfig(VanillaPipelineConfig):
    """``VanillaPipelineConfig`` of :class:`SpikingNeRFPipeline`."""

    _target: Type = field(default_factory=lambda: SpikingNeRFPipeline)


# ----------------------------------------------------------------------------- trainer config
@dataclass
class SpikingNeRFTrainerConfig(TrainerConfig):
    """``TrainerConfig`` of :class:`SpikingNeRFTrainer` (see the module docstring)."""

    _target: Type = field(default_factory=lambda: SpikingNeRFTrainer)
    nan_policy: Literal["stop", "skip-step"] = "stop"
    """A non-finite loss or gradient: ``stop`` training (exit non-zero, the last good checkpoint kept) or
    ``skip-step`` (drop the step's update and go on)."""
    max_skipped_steps: int = 20
    """With ``skip-step``: stop anyway after this many non-finite steps in a row."""
    preset_steps: int = 0
    """The step count the preset's schedules were written for (0: nothing is scaled). Step counts still at
    the preset's value are scaled by ``max_num_iterations / preset_steps``."""
    preset_schedule: tyro.conf.Suppress[Dict[str, Any]] = field(default_factory=dict)
    """Dotted config path -> the preset's step count (filled by ``method_configs.make_trainer_config``)."""

    def fit_schedules(self) -> Dict[str, Tuple[Any, Any]]:
        """Scale the step counts of :attr:`preset_schedule` that are still at their preset value to
        ``max_num_iterations``; returns ``{path: (old, new)}`` of what changed. Idempotent."""
        if self.max_num_iterations < 1:
            raise ConfigError(f"--max-num-iterations must be >= 1 (the total number of training steps), got "
                              f"{self.max_num_iterations}")
        if self.preset_steps <= 0:
            return {}
        factor = self.max_num_iterations / self.preset_steps
        changed = {}
        for path, preset in self.preset_schedule.items():
            current = _get(self, path)
            target = _scaled(preset, factor)
            if _same(current, preset) or _same(current, target):
                if not _same(current, target):
                    changed[path] = (current, target)
                _set(self, path, target)
        model = self.pipeline.model
        coarse = getattr(model, "coarse_steps", None)
        if coarse is not None and coarse >= self.max_num_iterations:
            CONSOLE.print(f"[bold yellow]Warning: the coarse stage ({coarse} steps) does not end before "
                          f"--max-num-iterations {self.max_num_iterations}: the fine stage will not train")
        return changed

    def keep_resumed_schedule(self) -> Dict[str, Tuple[Any, Any]]:
        """On resume (``--load-dir``), take the model's step counts from the resumed run's ``config.yml``:
        its coarse stage and up-scaling steps are what its grids went through, so a different
        ``--max-num-iterations`` re-fits only the learning-rate decay. Returns ``{path: (old, new)}``."""
        if self.load_dir is None:
            return {}
        saved = Path(self.load_dir).parent / "config.yml"
        if not saved.is_file():
            return {}
        try:
            previous = yaml.load(saved.read_text(), Loader=yaml.Loader)
        except Exception:  # an unreadable config: keep the fitted schedule
            return {}
        changed = {}
        for path in self.preset_schedule:
            if not path.startswith("pipeline.model."):
                continue
            try:
                value = _get(previous, path)
            except (AttributeError, KeyError):
                continue
            if not _same(value, _get(self, path)):
                changed[path] = (_get(self, path), value)
                _set(self, path, value)
        return changed

    def check_inputs(self) -> None:
        """Fit the schedules and check the scene (``SceneError``), before anything is printed or written."""
        start_process()  # ns-train's first call into this package: short errors from here on
        self.fit_schedules()
        self.keep_resumed_schedule()
        dm = self.pipeline.datamanager
        check_scene(dm.dataparser, self.data if self.data is not None else dm.data, ("train", "val"))

    def print_to_terminal(self) -> None:
        self.check_inputs()
        super().print_to_terminal()

    def save_config(self) -> None:
        self.check_inputs()
        super().save_config()


# ----------------------------------------------------------------------------- trainer
def _remove_lone_config(base_dir: Path) -> None:
    """Delete ``base_dir`` if a failed start left nothing in it but ``config.yml`` (and empty folders)."""
    if not base_dir.is_dir():
        return
    files = [p for p in base_dir.rglob("*") if p.is_file()]
    if all(p.name == "config.yml" and p.parent == base_dir for p in files):
        shutil.rmtree(base_dir, ignore_errors=True)
        parent = base_dir.parent
        for folder in (parent, parent.parent):  # <method>/ and <experiment>/ if now empty
            try:
                folder.rmdir()
            except OSError:
                break


class SpikingNeRFTrainer(Trainer):
    """nerfstudio's ``Trainer`` with atomic checkpoints, a divergence guard and total-step resume."""

    config: SpikingNeRFTrainerConfig

    def __init__(self, config: SpikingNeRFTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        start_process()  # every training process, DDP workers included
        super().__init__(config, local_rank, world_size)
        self.total_steps = int(config.max_num_iterations)
        self.skipped_in_a_row = 0
        self.last_checkpoint: Optional[Path] = None

    # -- set-up and resume ------------------------------------------------------------------------
    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        try:
            super().setup(test_mode)
        except BaseException:
            _remove_lone_config(self.base_dir)
            raise
        # max_num_iterations is the total: the loop runs what is left after the loaded step
        self.config.max_num_iterations = max(0, self.total_steps - self._start_step)
        writer.GLOBAL_BUFFER["max_iter"] = self.total_steps  # progress % and ETA against the total
        for w in writer.EVENT_WRITERS:
            if isinstance(w, writer.LocalWriter) and TRAIN_LOSS not in w.stats_to_track:
                w.stats_to_track.append(TRAIN_LOSS)

    def _load_checkpoint(self) -> None:
        cfg = self.config
        if cfg.load_dir is not None:
            path, state = load_latest_checkpoint(cfg.load_dir, cfg.load_step)
        elif cfg.load_checkpoint is not None:
            path, state = Path(cfg.load_checkpoint), load_checkpoint(cfg.load_checkpoint)
        else:
            CONSOLE.print("No checkpoint to load: training from scratch.")
            return
        self._start_step = int(state["step"]) + 1
        self.pipeline.load_pipeline(state["pipeline"], state["step"])
        self.optimizers.load_optimizers(state["optimizers"])
        if "schedulers" in state and cfg.load_scheduler:
            self.optimizers.load_schedulers(state["schedulers"])
        self.grad_scaler.load_state_dict(state["scalers"])
        self.last_checkpoint = path
        CONSOLE.print(f"Resuming from {path} (step {state['step']} of {self.total_steps})", highlight=False)

    def train(self) -> None:
        if self._start_step > 0 and self.config.max_num_iterations <= 0:
            CONSOLE.print(f"Already trained: the checkpoint is at step {self._start_step - 1} and "
                          f"--max-num-iterations is {self.total_steps} (the total); nothing to do. Pass a larger "
                          "--max-num-iterations to train on.", highlight=False)
            self.training_state = "completed"
            return
        super().train()

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        if self.local_rank != 0:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.checkpoint_dir)
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        bad = [k for k, v in state["pipeline"].items()
               if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # e.g. an update that overflowed: never overwrite a good checkpoint with it
            kept = self.last_checkpoint or "none saved yet"
            raise TrainingDiverged(f"training diverged by step {step}: non-finite parameters "
                                   f"{', '.join(bad[:5])}; not saved (the last good checkpoint: {kept}). Lower the "
                                   "learning rates (--optimizers.<group>.optimizer.lr).")
        path = atomic_save(state, self.checkpoint_dir / f"step-{step:09d}.ckpt")
        self.last_checkpoint = path
        if self.config.save_only_latest_checkpoint:
            for old in checkpoint_files(self.checkpoint_dir):
                if old != path:
                    old.unlink(missing_ok=True)

    # -- one step, guarded ------------------------------------------------------------------------
    def _non_finite_gradient(self) -> Optional[str]:
        """Name of the first parameter whose gradient is not finite, else ``None``."""
        named = [(n, p.grad) for n, p in self.pipeline.model.named_parameters() if p.grad is not None]
        if not named:
            return None
        norms = torch._foreach_norm([g for _, g in named])  # noqa: SLF001 (one pass over all gradients)
        if bool(torch.isfinite(torch.stack(norms).sum())):
            return None
        return next(n for (n, _), v in zip(named, norms) if not bool(torch.isfinite(v)))

    def _diverged(self, step: int, what: str, loss_dict: Dict[str, torch.Tensor]) -> None:
        terms = ", ".join(f"{k}={float(v):.6g}" for k, v in loss_dict.items())
        self.skipped_in_a_row += 1
        if self.config.nan_policy == "skip-step" and self.skipped_in_a_row <= self.config.max_skipped_steps:
            CONSOLE.print(f"[bold yellow]step {step}: non-finite {what} ({terms}); step skipped "
                          f"({self.skipped_in_a_row} in a row)")
            return
        kept = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint was saved before it")
        again = (f" ({self.skipped_in_a_row - 1} steps in a row skipped before)"
                 if self.config.nan_policy == "skip-step" else "")
        raise TrainingDiverged(
            f"training diverged at step {step}: non-finite {what}{again}; loss terms: {terms}. Nothing was "
            f"saved for this step; {kept}. Lower the learning rates (--optimizers.<group>.optimizer.lr) or pass "
            "--nan-policy skip-step.")

    @profiler.time_function
    def train_iteration(self, step: int):
        groups = list(self.optimizers.parameters.keys())
        accumulate = self.gradient_accumulation_steps
        self.optimizers.zero_grad_some([g for g in groups if step % accumulate[g] == 0])
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type=device_type, enabled=self.mixed_precision):
            _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
            loss = sum(loss_dict.values())
        logged = {k: v.detach() for k, v in loss_dict.items()}
        if not bool(torch.isfinite(loss.detach())):
            bad = "loss"
        else:
            self.grad_scaler.scale(loss).backward()
            # with a gradient scaler, inf gradients are its business (it skips the step and rescales)
            bad = None if self.use_grad_scaler else self._non_finite_gradient()
            bad = bad and f"gradient of {bad}"
        if bad:
            self._diverged(step, bad, logged)
            self.optimizers.zero_grad_all()
            return loss.detach(), logged, metrics_dict
        self.skipped_in_a_row = 0
        self.optimizers.optimizer_scaler_step_some(
            self.grad_scaler, [g for g in groups if step % accumulate[g] == accumulate[g] - 1])
        if self.config.log_gradients:
            norms = {f"Gradients/{n}": p.grad.norm() for n, p in self.pipeline.model.named_parameters()
                     if p.grad is not None}
            metrics_dict.update(norms)
            metrics_dict["Gradients/Total"] = sum(norms.values())
        scale = self.grad_scaler.get_scale()
        self.grad_scaler.update()
        if scale <= self.grad_scaler.get_scale():  # a lowered scale means the step was skipped
            self.optimizers.scheduler_step_all(step)
        return loss.detach(), logged, metrics_dict

