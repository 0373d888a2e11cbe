"""``spikenerf-vision``: train | eval | export.

Examples::

    spikenerf-vision train digits-demo                       # offline, about a minute on a CPU
    spikenerf-vision train resnet19-cifar10 --epochs 2 --width 0.25 --max-batches 20
    spikenerf-vision train ternary-resnet19-cifar10 --neuron.decay 0.25
    spikenerf-vision train resnet20-cifar10 method:ltmd --method.dropout 0.3   # any preset, any method
    spikenerf-vision train digits-demo --save-config my.yaml  # write the resolved config, do not train
    spikenerf-vision train --config configs/vision/digits-demo.yaml --epochs 2
    torchrun --nproc_per_node 2 -m spikenerf.vision.cli train digits-demo   # DDP (gloo on CPU)
    spikenerf-vision eval --checkpoint outputs/vision/digits-demo/checkpoint.pt
    spikenerf-vision export --checkpoint outputs/vision/digits-demo/checkpoint.pt
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Annotated, Literal

import tyro

from spikenerf.snn.process import configure_process

from .checkpoint import CheckpointError
from .config import PRESETS, ConfigFileError, VisionConfig, load_config_file, save_config_file
from .data import DatasetNotFoundError
from .engine import TrainingDiverged, evaluate_checkpoint, export_checkpoint, format_eval, train
from .report import plot_eval, write_json

__all__ = ["main", "EvalArgs", "ExportArgs"]

_USER_ERRORS = (DatasetNotFoundError, CheckpointError, ConfigFileError, ValueError)
"""Errors caused by the command's inputs: printed as one paragraph, exit status 2, no traceback."""


@dataclass
class EvalArgs:
    """Evaluate a checkpoint: accuracy, per-layer firing rates, SOPs/MACs and energy vs the ANN twin."""

    checkpoint: str
    data_root: str | None = None
    batch_size: int = 256
    max_batches: int | None = None
    test_subset: int | None = None
    timesteps: tuple[int, ...] = ()
    """T values to evaluate at (default: the config's eval_timesteps, else its training T)."""
    device: str = "auto"
    progress: bool = True
    json: str | None = None
    """Write accuracy, per-class accuracy, confusion matrix, firing rates and energy to this file (strict JSON)."""
    plot: str | None = None
    """Draw per-layer firing rates and the confusion matrix to this image (e.g. eval.png)."""


@dataclass
class ExportArgs:
    """Fold BN, spike amplitudes, Real Spike scales, MPBN and MPR for inference; check predictions are equal."""

    checkpoint: str
    output: str | None = None
    data_root: str | None = None
    batches: int = 4
    batch_size: int = 64
    format: Literal["torch", "nir"] = "torch"
    """torch: exported.pt (eval loads it); nir: also exported.nir, a NIR graph of the folded network (binary
    spikes, hard reset, the spiking VGG chain), read back and checked."""


Preset = tyro.extras.subcommand_type_from_defaults(
    {name: cfg for name, (_, cfg) in PRESETS.items()},
    descriptions={name: desc for name, (desc, _) in PRESETS.items()},
    prefix_names=False,
)


@dataclass
class Train:
    """Train a preset; every field is a flag (``--epochs 2``, ``--neuron.spike-code ternary``), the method is a
    subcommand with its own flags (``method:ltmd --method.dropout 0.3``). ``--config FILE`` starts from a YAML
    config instead of a preset; ``--save-config FILE`` writes the resolved config and exits."""

    config: Annotated[Preset, tyro.conf.arg(name="")]


def _train(cfg: VisionConfig) -> None:
    res = train(cfg)
    if res and "best_accuracy" in res:
        print(f"done: test accuracy {res['accuracy']:.4f} (best {res['best_accuracy']:.4f}), "
              f"mean firing rate {res['mean_firing_rate']:.4f}, checkpoint {res['checkpoint']}")


def _eval(args: EvalArgs) -> None:
    res = evaluate_checkpoint(args.checkpoint, args.data_root, args.batch_size, args.max_batches, args.test_subset,
                              args.timesteps, args.device, args.progress)
    print(format_eval(res))
    if args.json:
        print(f"wrote {write_json(res, args.json)}")
    if args.plot:
        print(f"wrote {plot_eval(res, args.plot)}")


def _export(args: ExportArgs) -> None:
    rep = export_checkpoint(args.checkpoint, args.output, args.data_root, args.batches, args.batch_size,
                            fmt=args.format)
    print(f"folded: BN {rep['bn_folded']}, amplitudes/Real Spike {rep['amplitudes_folded']}, "
          f"MPBN {rep['mpbn_folded']}, MPR dropped {rep['mpr_dropped']}")
    for line in rep["not_folded"]:
        print(f"  not folded: {line}")
    print(f"predictions equal on {rep['checked_samples']} samples: {rep['predictions_equal']} "
          f"(max logit diff {rep['max_logit_diff']:.2e}); wrote {rep['output']}")
    if "nir_output" in rep:
        print(f"NIR graph {rep['nir_output']}: read back, same predictions: {rep['nir_predictions_equal']}")


def _pop_option(argv: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` (or ``name=VALUE``) from ``argv``; returns VALUE."""
    for i, a in enumerate(argv):
        if a == name:
            if i + 1 >= len(argv):
                raise ConfigFileError(f"{name} needs a file name")
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
        if a.startswith(name + "="):
            del argv[i]
            return a.split("=", 1)[1]
    return None


_CONF = (tyro.conf.CascadeSubcommandArgs,)


def _check_preset(rest: list[str]) -> None:
    """An unknown preset name as one paragraph (tyro would print a box of every subcommand)."""
    if rest and not rest[0].startswith("-") and rest[0] not in PRESETS:
        near = difflib.get_close_matches(rest[0], list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ConfigFileError(f"unknown preset {rest[0]!r}.{hint} Presets: {', '.join(PRESETS)} "
                              "(`spikenerf-vision train --help` describes each), or start from a file with --config.")


def _parse(argv: list[str]):
    """``(command, save_config_path)`` from the command line."""
    if argv and argv[0] == "train":
        rest = argv[1:]
        config_file = _pop_option(rest, "--config")
        save_to = _pop_option(rest, "--save-config")
        if config_file is not None:
            cfg = tyro.cli(VisionConfig, default=load_config_file(config_file), args=rest,
                           prog=f"spikenerf-vision train --config {config_file}",
                           config=(tyro.conf.CascadeSubcommandArgs,))
            return cfg, save_to
        _check_preset(rest)
        cmd = tyro.cli(Annotated[Train, tyro.conf.subcommand("train")], args=rest, prog="spikenerf-vision train",
                       config=_CONF)
        return cmd.config, save_to
    cmd = tyro.cli(
        Annotated[Train, tyro.conf.subcommand("train")] | Annotated[EvalArgs, tyro.conf.subcommand("eval")]
        | Annotated[ExportArgs, tyro.conf.subcommand("export")],
        args=argv, prog="spikenerf-vision", config=_CONF,
    )
    return (cmd.config if isinstance(cmd, Train) else cmd), None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``spikenerf-vision`` console script."""
    configure_process()  # the core's OpenMP wait / allocator policy for this run and its workers
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cmd, save_to = _parse(argv)
        if isinstance(cmd, EvalArgs):
            _eval(cmd)
        elif isinstance(cmd, ExportArgs):
            _export(cmd)
        elif save_to is not None:
            print(f"wrote {save_config_file(cmd, save_to)}")
        else:
            _train(cmd)
    except _USER_ERRORS as e:  # a clear message, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()
