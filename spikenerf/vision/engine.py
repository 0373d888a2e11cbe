"""Training, evaluation and export loops behind ``spikenerf-vision`` (single process or torchrun DDP).

DDP: when launched by ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (``gloo`` on
CPU, ``nccl`` on CUDA), the training set is split with a ``DistributedSampler`` and gradients are
all-reduced by ``DistributedDataParallel``; rank 0 alone evaluates, logs and writes checkpoints.
Checkpoints hold only tensors and plain Python values and are written atomically every epoch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from .build import dataset_info, make_method, restore
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import VisionConfig, config_to_dict
from .data import DatasetInfo, get_dataset, to_sequence
from .energy_report import OpReport, count_ops
from .blocks import spike_acts
from .methods.base import Method, OwnLoopMethod
from .models import SeqClassifier, build_model
from .nir_export import from_nir, read_nir, to_nir, write_nir

__all__ = ["train", "evaluate", "evaluate_checkpoint", "export_checkpoint", "save_checkpoint", "load_checkpoint",
           "seed_everything", "TrainingDiverged", "lr_factor"]


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(cfg: VisionConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _steps_for(cfg: VisionConfig, info: DatasetInfo, spiking: bool, T: int | None = None) -> int:
    # a ReLU net is stateless: repeating a static input over T gives T identical outputs
    T = cfg.timesteps if T is None else T
    if not spiking and info.kind != "events":
        return 1
    return T


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _loader(ds: Dataset, batch_size: int, shuffle: bool, cfg: VisionConfig, sampler=None) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=cfg.num_workers, generator=g, drop_last=False)


def _epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s data order (and worker seeds): a function of the run seed and the epoch only, so
    a resumed run draws the same order as an uninterrupted one."""
    return (seed * 1_000_003 + epoch) % (2 ** 63)


# ----------------------------------------------------------------------------- checkpoints of a run
class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the run stopped and its last good checkpoint is untouched (CLI exit status 3)."""


RESUMABLE_CHANGES = {"epochs", "resume", "progress", "tensorboard", "output_dir", "data_root", "num_workers", "device",
                     "eval_batch_size"}
"""Config fields a resumed run may change. ``epochs`` is applied explicitly: the learning-rate schedule is a
function of (epoch, epochs), so it is re-planned for the new length from the resumed epoch on (and said so)."""


def _rng_state() -> dict:
    """Every random stream a training step draws from, as plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    v, t, h = state["python"]
    random.setstate((v, tuple(t), h))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _resume_file(out_dir: Path) -> Path | None:
    for name in ("last.pt", "checkpoint.pt"):  # checkpoint.pt: runs written before last.pt existed
        if (out_dir / name).is_file():
            return out_dir / name
    return None


def _check_resumable(saved: dict, cfg: VisionConfig, path: Path) -> list[str]:
    """Differences between the saved and the current config; a change other than RESUMABLE_CHANGES is refused."""
    now = config_to_dict(cfg)
    diff = [k for k in now if k in saved and _plain(saved[k]) != _plain(now[k])]
    refused = [k for k in diff if k not in RESUMABLE_CHANGES]
    if refused:
        pairs = "; ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in refused)
        raise CheckpointError(f"--resume from {path}: the run's config changed ({pairs}). A resumed run must be the "
                              f"same run (only {', '.join(sorted(RESUMABLE_CHANGES))} may change); start a new run "
                              "with another --output-dir instead.")
    return [k for k in diff if k == "epochs"]


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (a hard link, atomically replaced; a copy where links fail)."""
    tmp = dst.with_name(f".{dst.name}.link")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _tqdm(it, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: SeqClassifier, loader: DataLoader, info: DatasetInfo, T: int, device: torch.device,
             max_batches: int | None = None, progress: bool = False, count_energy: bool = False,
             ) -> dict[str, Any]:
    """Accuracy, confusion matrix ``[true, predicted]``, per-layer firing rates and (optionally) op counts of
    ``model`` at ``T`` steps."""
    model.eval()
    acts = spike_acts(model)
    for _, a in acts:
        a.reset_stats()
        a.record_stats = True
    correct, total, loss_sum = 0, 0, 0.0
    confusion = torch.zeros(info.num_classes, info.num_classes, dtype=torch.long)
    seqs: list[Tensor] = []
    try:
        for i, (x, y) in enumerate(_tqdm(loader, progress, desc=f"eval T={T}", leave=False)):
            if max_batches is not None and i >= max_batches:
                break
            x_seq, y = to_sequence(x.to(device), info.kind, T), y.to(device)
            logits = model(x_seq)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            pred = logits.argmax(1)
            correct += int((pred == y).sum())
            total += y.numel()
            confusion += torch.bincount(y.cpu() * info.num_classes + pred.cpu(),
                                        minlength=info.num_classes ** 2).reshape(info.num_classes, -1)
            if count_energy and len(seqs) < 2:
                seqs.append(x_seq)
    finally:
        for _, a in acts:
            a.record_stats = False
    out: dict[str, Any] = {
        "accuracy": correct / max(total, 1),
        "loss": loss_sum / max(total, 1),
        "samples": total,
        "timesteps": T,
        "firing_rates": {n: a.firing_rate for n, a in acts},
        "confusion": confusion,
    }
    rates = [a.firing_rate for _, a in acts]
    out["mean_firing_rate"] = float(np.mean(rates)) if rates else 0.0
    if count_energy and seqs:
        out["ops"] = count_ops(model, seqs, spiking=model.spiking, first_layers=model.first_layers())
    return out


# ----------------------------------------------------------------------------- training
def lr_factor(cfg: VisionConfig, epoch: int) -> float:
    """Learning-rate multiplier of epoch ``epoch`` (0-based).

    Warm-up: ``(e + 1) / W`` for ``e < W = warmup_epochs``; then ``cosine``: ``(1 + cos(pi (e - W) / (E - W))) / 2``
    over the remaining epochs, ``step``: ``gamma^(number of step_epochs <= e)``, ``none``: 1.
    """
    w = max(0, cfg.warmup_epochs)
    if epoch < w:
        return (epoch + 1) / w
    if cfg.scheduler == "cosine":
        span = max(cfg.epochs - w, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch - w, span) / span))
    if cfg.scheduler == "step":
        return cfg.step_gamma ** sum(1 for m in cfg.step_epochs if epoch >= m)
    return 1.0


def _autocast(cfg: VisionConfig, device: torch.device):
    """The mixed-precision context of a training step (``nullcontext`` when ``amp`` is off)."""
    if cfg.amp == "off":
        return contextlib.nullcontext()
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device (its gradient scaler is CUDA-only); use --amp bf16 on a CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for parameters; buffers (BN statistics, thresholds) copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _make_optimizer(cfg: VisionConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _datasets(cfg: VisionConfig) -> tuple[Dataset, Dataset, DatasetInfo]:
    """The run's (train, test) sets with the configured subsets, and the data's description."""
    train_ds, info = get_dataset(cfg.dataset, True, cfg.data_root, T=cfg.timesteps,
                                 augment=cfg.augment_recipe if cfg.augment else False,
                                 n_points=cfg.n_points, subset=cfg.train_subset, seed=cfg.seed,
                                 image_size=cfg.image_size)
    test_ds, _ = get_dataset(cfg.dataset, False, cfg.data_root, T=cfg.timesteps, augment=False,
                             n_points=cfg.n_points, subset=cfg.test_subset, seed=cfg.seed, info=info)
    return train_ds, test_ds, info


def run_own_loop(cfg: VisionConfig, method: OwnLoopMethod) -> dict[str, Any]:
    """The one runner of the methods with their own training loop: seed, ``fit``, atomic checkpoint, summary."""
    seed_everything(cfg.seed)
    method.check_data()
    t0 = time.time()
    res = method.fit()
    metrics = dict(res.metrics, train_s=time.time() - t0)
    path = Path(cfg.output_dir) / "checkpoint.pt"
    save_checkpoint(path, {"state": res.state, "config": config_to_dict(cfg), "result": metrics})
    metrics["checkpoint"] = str(path)
    print(f"done: {res.summary}, checkpoint {path}", flush=True)
    return metrics


def _resume(cfg: VisionConfig, out_dir: Path, model: nn.Module, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler, method: Method, scaler: torch.amp.GradScaler | None,
            ema: nn.Module | None, main: bool) -> tuple[int, int, float]:
    """``--resume``: load the newest checkpoint of ``out_dir`` into the run's model, optimizer, schedule, method,
    scaler, EMA and random streams; returns ``(first epoch to train, step, best accuracy)``. A config change
    other than ``RESUMABLE_CHANGES`` is refused (:func:`_check_resumable`)."""
    best_path = out_dir / "best.pt"
    src = _resume_file(out_dir)
    if src is None:
        raise CheckpointError(f"--resume: no checkpoint in {out_dir} (last.pt or checkpoint.pt); train without "
                              "--resume to start the run, or pass the --output-dir of the run to continue.")
    state = load_checkpoint(src, need=("model", "optimizer", "epoch", "step", "config"))
    changed = _check_resumable(state["config"], cfg, src)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    for g, base_lr in zip(opt.param_groups, sched.base_lrs):
        g["lr"] = base_lr * lr_factor(cfg, sched.last_epoch)
    method.load_state_dict(state.get("method") or ({"esg": state["esg"]} if state.get("esg") else {}))
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("ema_model"):
        ema.load_state_dict(state["ema_model"])
    start_epoch, best = int(state["epoch"]) + 1, float(state["best_accuracy"])
    if main and not best_path.is_file() and state.get("accuracy") == best:
        _link(src, best_path)  # killed between writing the checkpoint and linking it as the best one
    if "rng" in state:
        _set_rng_state(state["rng"])
    else:  # checkpoints written before every stream was saved
        torch.set_rng_state(state["rng_cpu"])
    if main:
        print(f"resumed from {src} at epoch {start_epoch}")
        if changed:
            print(f"note: --epochs changed on resume ({state['config']['epochs']} -> {cfg.epochs}): the "
                  f"learning-rate schedule is re-planned for {cfg.epochs} epochs from epoch {start_epoch}, so "
                  "this run differs from an uninterrupted one from here on.")
    return start_epoch, int(state["step"]), best


def train(cfg: VisionConfig) -> dict[str, Any]:
    """Train per ``cfg``; returns the final evaluation dict (rank 0) or ``{}`` (other ranks)."""
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    device = _device(cfg)
    sets: list = []

    def datasets() -> tuple[Dataset, Dataset]:
        if not sets:
            sets.extend(_datasets(cfg))
        return sets[0], sets[1]

    method = make_method(cfg, dataset_info(cfg), device, datasets)
    if method.own_loop:
        return run_own_loop(cfg, method)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0
    seed_everything(cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights

    train_ds, test_ds = datasets()
    info = sets[2]
    method.ctx.info, method.ctx.device = info, device
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed) if distributed else None
    train_loader = _loader(train_ds, cfg.batch_size, True, cfg, sampler)
    test_loader = _loader(test_ds, cfg.eval_batch_size, False, cfg)

    model = method.build().to(device)
    T_train = _steps_for(cfg, info, method.spiking)
    opt = _make_optimizer(cfg, method.param_groups(model))
    steps_per_epoch = len(train_loader) if cfg.max_batches is None else min(len(train_loader), cfg.max_batches)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    # the schedule is a pure function of (epoch, cfg): resuming restores the epoch counter, and a changed --epochs
    # re-plans the remaining epochs explicitly
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(cfg, e))
    method.start(model, total_steps)
    _autocast(cfg, device)  # refuses fp16 without CUDA before any work
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema > 0 else None

    out_dir = Path(cfg.output_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    start_epoch, step, best = 0, 0, -1.0
    if cfg.resume:
        start_epoch, step, best = _resume(cfg, out_dir, model, opt, sched, method, scaler, ema, main)

    raw_model = model
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = None
    if main and cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard may be absent

            writer = SummaryWriter(str(out_dir / "tb"))
        except Exception as e:  # noqa: BLE001 - logging is optional
            print(f"tensorboard disabled: {e}")

    result: dict[str, Any] = {}
    saved_epoch = start_epoch - 1 if start_epoch > 0 else None
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_loader.generator.manual_seed(_epoch_seed(cfg.seed, epoch))  # data order of this epoch
        model.train()
        t0, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        bar = _tqdm(train_loader, main and cfg.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch)
        for i, (x, y) in enumerate(bar):
            if cfg.max_batches is not None and i >= cfg.max_batches:
                break
            x, y = x.to(device), y.to(device)
            with _autocast(cfg, device):
                logits, loss = method.loss(model, to_sequence(x, info.kind, T_train), y, step, total_steps)
            if not bool(torch.isfinite(loss.detach())):
                kept = (f"its last good checkpoint {last_path} (after epoch {saved_epoch + 1}) is kept"
                        if saved_epoch is not None else "no checkpoint had been written yet")
                raise TrainingDiverged(f"training diverged: the loss became {float(loss.detach())} at step {step} "
                                       f"(epoch {epoch + 1}, batch {i + 1}); the run stopped and {kept}. Lower --lr, "
                                       "add warm-up, or check the data for non-finite values.")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            method.after_step(raw_model)
            if ema is not None:
                _ema_update(ema, raw_model, cfg.ema)
            step += 1
            seen += y.numel()
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * y.numel()
            if main and cfg.progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        sched.step()
        if main:
            ev = evaluate(method.eval_model(ema if ema is not None else _unwrap(raw_model)), test_loader, info,
                          T_train, device, cfg.max_batches, progress=cfg.progress)
            is_best = ev["accuracy"] > best
            best = max(best, ev["accuracy"])
            msg = (f"epoch {epoch + 1}: train loss {loss_sum / max(seen, 1):.4f} acc {correct / max(seen, 1):.4f} | "
                   f"test acc {ev['accuracy']:.4f} (best {best:.4f}) | firing {ev['mean_firing_rate']:.3f} | "
                   f"{time.time() - t0:.1f}s")
            print(msg, flush=True)
            if writer is not None:
                writer.add_scalar("train/loss", loss_sum / max(seen, 1), epoch)
                writer.add_scalar("train/accuracy", correct / max(seen, 1), epoch)
                writer.add_scalar("test/accuracy", ev["accuracy"], epoch)
                writer.add_scalar("test/mean_firing_rate", ev["mean_firing_rate"], epoch)
                writer.add_scalar("lr", opt.param_groups[0]["lr"], epoch)
                writer.flush()
            save_checkpoint(last_path, {
                "model": raw_model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "method": method.state_dict(),
                "epoch": epoch,
                "step": step,
                "best_accuracy": best,
                "accuracy": ev["accuracy"],
                "rng": _rng_state(),
                "config": config_to_dict(cfg),
                "data_info": dataclasses.asdict(info),
                "scaler": scaler.state_dict() if scaler is not None else {},
                **({"ema_model": ema.state_dict()} if ema is not None else {}),
            })
            saved_epoch = epoch
            _link(last_path, out_dir / "checkpoint.pt")  # the name earlier runs and scripts read
            if is_best:
                _link(last_path, best_path)
            result = {"accuracy": ev["accuracy"], "best_accuracy": best, "mean_firing_rate": ev["mean_firing_rate"],
                      "epoch": epoch, "checkpoint": str(last_path), "best_checkpoint": str(best_path)}
        if distributed:
            dist.barrier()
    if main and result:
        rep = method.report(raw_model, to_sequence(next(iter(test_loader))[0][:32].to(device), info.kind, T_train))
        result["method_report"] = rep
        text = method.format_report(rep) if rep else ""
        if text:
            print(text, flush=True)
    if writer is not None:
        writer.close()
    if distributed:
        dist.destroy_process_group()
    return result


# ----------------------------------------------------------------------------- eval / export of a checkpoint
def _twin_ops(cfg: VisionConfig, info: DatasetInfo, seqs_of: Any, device: torch.device) -> OpReport:
    twin = build_model(cfg.model, info.num_classes, info.in_channels, False, cfg.neuron, cfg.width,
                       info.input_size).to(device)
    return count_ops(twin, seqs_of(1), spiking=False, first_layers=twin.first_layers())


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | None = None, batch_size: int = 256,
                        max_batches: int | None = None, test_subset: int | None = None,
                        timesteps: tuple[int, ...] = (), device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Accuracy, firing rates, SOPs/MACs and energy vs the ANN twin, for each evaluated ``T``."""
    cfg, model, info, _ = restore(checkpoint)
    if data_root is not None:
        cfg.data_root = data_root
    cfg.device = device  # type: ignore[assignment]
    dev = _device(cfg)
    model.to(dev)
    ts = tuple(timesteps) or tuple(cfg.eval_timesteps) or (cfg.timesteps,)
    ds, _ = get_dataset(cfg.dataset, False, cfg.data_root, T=max(ts) if info.kind != "events" else cfg.timesteps,
                        augment=False, n_points=cfg.n_points, subset=test_subset if test_subset is not None else cfg.test_subset,
                        seed=cfg.seed, info=info)
    loader = _loader(ds, batch_size, False, cfg)
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "model": cfg.model, "dataset": cfg.dataset,
                               "spiking": model.spiking, "classes": list(info.classes), "per_T": {}}
    first_x = next(iter(loader))[0][: min(batch_size, 32)].to(dev)
    for T in ts:
        T_eff = _steps_for(cfg, info, model.spiking, T)
        if info.kind == "events" and T != cfg.timesteps:
            print(f"note: event frames were binned with T={cfg.timesteps}; evaluating at that T")
            T_eff = cfg.timesteps
        ev = evaluate(model, loader, info, T_eff, dev, max_batches, progress, count_energy=True)
        twin = _twin_ops(cfg, info, lambda t: [to_sequence(first_x, info.kind, _steps_for(cfg, info, False, T_eff))], dev)
        ev["ann_twin_ops"] = twin
        results["per_T"][T_eff] = ev
    return results


def format_eval(results: dict[str, Any]) -> str:
    lines = [f"{results['model']} on {results['dataset']} ({'SNN' if results['spiking'] else 'ANN'}) "
             f"- {results['checkpoint']}"]
    for T, ev in results["per_T"].items():
        ops: OpReport = ev["ops"]
        twin: OpReport = ev["ann_twin_ops"]
        lines.append(f"T={T}: accuracy {ev['accuracy'] * 100:.2f}% on {ev['samples']} samples, "
                     f"mean firing rate {ev['mean_firing_rate']:.4f}")
        lines.append(f"  per sample: MACs {ops.macs / 1e6:.3f} M, SOPs {ops.sops / 1e6:.3f} M, "
                     f"energy {ops.energy_pj * 1e-6:.4f} uJ | ANN twin MACs {twin.macs / 1e6:.3f} M, "
                     f"energy {twin.energy_pj * 1e-6:.4f} uJ | ratio {ops.energy_pj / max(twin.energy_pj, 1e-12):.3f}")
        if results["spiking"]:
            lines.append("  firing rates: " + ", ".join(f"{n}={r:.3f}" for n, r in ev["firing_rates"].items()))
    return "\n".join(lines)


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None, data_root: str | None = None,
                      batches: int = 4, batch_size: int = 64, atol: float = 1e-4, fmt: str = "torch") -> dict[str, Any]:
    """Apply the inference re-parameterizations and check predictions are unchanged on test batches.

    ``fmt='nir'`` also writes the folded network as a NIR graph (:mod:`.nir_export`; ``exported.nir``), reads it
    back and checks that the graph predicts the same classes."""
    cfg, model, info, _ = restore(checkpoint)
    method = make_method(cfg, info)
    with torch.no_grad():
        # Fold and compare in float64: a fold is exact in real arithmetic, but in float32 a membrane that
        # lands within rounding of the threshold can flip one spike and change a logit (seen with MPBN).
        ref64 = copy.deepcopy(model).double()
        folded64 = copy.deepcopy(ref64)
        report = method.export(folded64)  # a method that cannot be folded says why (ValueError)
    if data_root is not None:
        cfg.data_root = data_root
    ds, _ = get_dataset(cfg.dataset, False, cfg.data_root, T=cfg.timesteps, augment=False, n_points=cfg.n_points,
                        subset=batches * batch_size, seed=cfg.seed, info=info)
    loader = _loader(ds, batch_size, False, cfg)
    T = _steps_for(cfg, info, model.spiking)
    xs = [to_sequence(x, info.kind, T) for i, (x, _) in zip(range(batches), loader)]
    with torch.no_grad():
        before = [ref64(x.double()) for x in xs]
        after = [folded64(x.double()) for x in xs]
        folded = folded64.float()
    same = all(bool((a.argmax(1) == b.argmax(1)).all()) for a, b in zip(before, after))
    max_diff = max(float((a - b).abs().max()) for a, b in zip(before, after))
    report.update({"predictions_equal": same, "max_logit_diff": max_diff, "checked_samples": sum(x.shape[1] for x in xs)})
    out = Path(output) if output is not None else Path(checkpoint).with_name("exported.pt")
    thresholds = {n: a.neuron.v_threshold.detach().clone() for n, a in spike_acts(folded) if a.spiking}
    save_checkpoint(out, {"model": folded.state_dict(), "thresholds": thresholds, "config": config_to_dict(cfg),
                          "report": {k: v for k, v in report.items()}, "exported": True,
                          "data_info": dataclasses.asdict(info)})
    report["output"] = str(out)
    if not same:
        raise RuntimeError(f"export changed predictions (max logit diff {max_diff:g}); report: {report}")
    if fmt == "nir":
        shape = tuple(xs[0].shape[2:])
        path = write_nir(to_nir(folded, shape), out.with_suffix(".nir"))
        back = from_nir(read_nir(path)).eval()
        with torch.no_grad():
            nir_same = all(bool((back(x).argmax(1) == folded(x).argmax(1)).all()) for x in xs)
        report.update({"nir_output": str(path), "nir_predictions_equal": nir_same})
        if not nir_same:
            raise RuntimeError(f"the NIR graph read back from {path} predicts other classes than the folded network")
    return report
