"""Experiment configuration, named presets, and config files for ``spikenerf-vision``.

Every field of :class:`VisionConfig` (and of the nested :class:`~spikenerf.vision.blocks.NeuronConfig` and of the
selected method's config) is a CLI flag, so a preset is only a starting point::

    spikenerf-vision train resnet19-cifar10 --epochs 2 --neuron.decay 0.25
    spikenerf-vision train resnet20-cifar10 method:ltmd --method.dropout 0.3

The method is one field, ``method``: a union of the configs registered in
:mod:`spikenerf.vision.methods.registry` (CLI subcommands ``method:<name>``; only the chosen method's knobs show
in ``--help``). Configs convert to plain dicts (:func:`config_to_dict`, stored in checkpoints) and YAML files
(:func:`save_config_file`, :func:`load_config_file`; ``--config FILE`` / ``--save-config FILE``). Dicts written
before the method field existed (flat ``rmp_loss`` / ``joint`` / ``efficiency`` fields) still load:
:func:`config_from_dict` maps them onto the matching method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .blocks import NeuronConfig
from .methods.registry import (AdaptiveBitsConfig, HetSynConfig, IMLossConfig, JointConfig, LTMDConfig, MethodUnion,
                               NeuroCLIPConfig, PlainConfig, RateBPConfig, RMPConfig, STDPNCGConfig, SubBitConfig,
                               method_from_dict, method_to_dict)

__all__ = ["VisionConfig", "PRESETS", "config_to_dict", "config_from_dict", "save_config_file", "load_config_file",
           "ConfigFileError"]


class ConfigFileError(ValueError):
    """A config file or dict that does not describe a :class:`VisionConfig` (the CLI prints it, exit 2)."""


@dataclass
class VisionConfig:
    """One training / evaluation run."""

    model: Literal["resnet19", "resnet20", "vgg11", "vgg16", "sew-resnet18", "sew-resnet34", "spiking-pointnet",
                   "spikformer"] = "resnet19"
    """Architecture (each has an ANN twin: ``--no-spiking``; own-loop methods bring their own network)."""
    dataset: Literal["digits", "synthetic", "cifar10-jpeg", "cifar10", "cifar100", "mnist", "fashion-mnist", "nmnist",
                     "shd", "modelnet10-2class", "modelnet10", "modelnet40", "imagenet", "cifar10-dvs",
                     "dvs128-gesture", "image-folder", "event-folder"] = "cifar10-jpeg"
    """``image-folder`` / ``event-folder``: your own ``DIR/{train,test}/<class>/*`` (``--data-root DIR``); class count
    and input size come from the data."""
    data_root: str | None = None
    """Folder holding the datasets (default ``$SPIKENERF_DATA`` or ``../shared/data``); for image-folder /
    event-folder the folder itself."""
    image_size: int | None = None
    """image-folder: side the images are resized to (None: the first training image's larger side)."""
    spiking: bool = True
    """False trains the ANN twin (ReLU in every neuron slot, one time step for static inputs)."""
    timesteps: int = 4
    """T for training (direct encoding repeats the input T times; event sets are binned into T frames)."""
    eval_timesteps: tuple[int, ...] = ()
    """Extra T values to evaluate at (Spiking PointNet: trained at T=1, evaluated at T=1..4)."""
    width: float = 1.0
    """Channel multiplier (small values for CPU runs and tests)."""
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    method: MethodUnion = field(default_factory=PlainConfig)
    """Training method (``method:<name>``; see spikenerf.vision.methods.registry)."""
    epochs: int = 100
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    """Learning rate per epoch after the warm-up: cosine to 0, step (x step_gamma at each of step_epochs), constant."""
    warmup_epochs: int = 0
    """Linear warm-up: epoch e < warmup_epochs runs at lr * (e + 1) / warmup_epochs."""
    step_epochs: tuple[int, ...] = ()
    """Epochs (0-based) at which the step schedule multiplies the learning rate by step_gamma."""
    step_gamma: float = 0.1
    amp: Literal["off", "bf16", "fp16"] = "off"
    """Mixed precision: bf16 autocast (CPU or CUDA), or fp16 autocast with a gradient scaler (CUDA only)."""
    ema: float = 0.0
    """Exponential moving average of the weights with this decay per step (0 = off); evaluated and saved as
    ``ema_model`` (eval / export use it)."""
    augment: bool = True
    augment_recipe: Literal["crop-flip", "autoaugment", "cutout", "autoaugment-cutout"] = "crop-flip"
    """Image augmentation when augment is on (spikenerf.vision.data.augment)."""
    n_points: int = 1024
    """Points per shape for ModelNet."""
    train_subset: int | None = None
    """Keep this many training samples (spread over the set) for short runs."""
    test_subset: int | None = None
    max_batches: int | None = None
    """Stop each training epoch (and evaluation) after this many batches."""
    seed: int = 0
    num_workers: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: str = "outputs/vision/run"
    resume: bool = False
    """Continue from ``output_dir/checkpoint.pt``."""
    progress: bool = True
    """tqdm progress bars (rank 0 only)."""
    tensorboard: bool = True


# ----------------------------------------------------------------------------- dicts and files
_TUPLES = {"eval_timesteps", "step_epochs"}
_NEURON_TUPLES = {"init_membrane"}
# fields of the flat layout written before ``method`` existed; config_from_dict maps them onto a method
_LEGACY = {"efficiency", "rmp_loss", "im_loss", "esg", "esg_k_min", "esg_k_max", "joint", "joint_rank_ratio",
           "distill_weight", "distill_tau"}


def config_to_dict(cfg: VisionConfig) -> dict:
    """Plain Python values only (lists / str / numbers / None), safe for ``torch.load(weights_only=True)`` and YAML."""
    d = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    d["neuron"] = dataclasses.asdict(cfg.neuron)
    d["method"] = method_to_dict(cfg.method)
    return d


def _legacy_method(d: dict):
    """The method an old flat config described (joint > efficiency method > IM-Loss > RMP-Loss > plain)."""
    eff = d.get("efficiency") or {}
    m = eff.get("method", "none")
    if d.get("joint"):
        return JointConfig(rank_ratio=d.get("joint_rank_ratio", 1.0), distill_weight=d.get("distill_weight", 1.0),
                           distill_tau=d.get("distill_tau", 4.0), branches=False)  # trained logits-only
    if m == "adaptive-bits":
        keys = ("t_max", "spike_bits", "spike_bits_max", "weight_bits", "weight_bits_max", "step", "decay",
                "budget_target", "sace_target_m", "budget_weight", "bits_lr")
        return AdaptiveBitsConfig(**{k: eff[f"ab_{k}"] for k in keys if f"ab_{k}" in eff})
    if m == "subbit":
        keys = ("stage", "teacher", "codebook", "os_kappa", "mpfd")
        return SubBitConfig(**{k: eff[f"subbit_{k}"] for k in keys if f"subbit_{k}" in eff})
    if m == "rate-bp":
        return RateBPConfig()
    if m == "ltmd":
        return LTMDConfig(**{k: eff[f"ltmd_{k}"] for k in ("dropout", "alpha") if f"ltmd_{k}" in eff})
    if d.get("im_loss", 0.0) > 0 or d.get("esg"):
        # an old run with both RMP- and IM-Loss comes back as IM-Loss (the model is the same either way)
        return IMLossConfig(weight=d.get("im_loss", 0.0), esg=bool(d.get("esg")), k_min=d.get("esg_k_min", 1.0),
                            k_max=d.get("esg_k_max", 10.0))
    if d.get("rmp_loss", 0.0) > 0:
        return RMPConfig(weight=d["rmp_loss"])
    return PlainConfig()


def config_from_dict(d: dict) -> VisionConfig:
    """Inverse of :func:`config_to_dict`; also reads the flat layout of checkpoints written before ``method``."""
    if not isinstance(d, dict):
        raise ConfigFileError(f"a vision config is a mapping of field names to values, not a {type(d).__name__}")
    d = dict(d)
    known = {f.name for f in dataclasses.fields(VisionConfig)}
    unknown = sorted(set(d) - known - _LEGACY)
    if unknown:
        raise ConfigFileError(f"unknown config field(s) {', '.join(unknown)}; VisionConfig fields: {', '.join(sorted(known))}")
    neuron = dict(d.pop("neuron", None) or {})
    n_known = {f.name for f in dataclasses.fields(NeuronConfig)}
    if set(neuron) - n_known:
        raise ConfigFileError(f"unknown neuron field(s) {', '.join(sorted(set(neuron) - n_known))}")
    for k in _NEURON_TUPLES:
        if neuron.get(k) is not None:
            neuron[k] = tuple(neuron[k])
    for k in _TUPLES:
        if k in d:
            d[k] = tuple(d[k] or ())
    method = d.pop("method", None)
    try:
        mcfg = method_from_dict(method) if isinstance(method, dict) else _legacy_method(d)
    except (TypeError, ValueError) as e:
        raise ConfigFileError(f"bad method block: {e}") from None
    return VisionConfig(neuron=NeuronConfig(**neuron), method=mcfg, **{k: v for k, v in d.items() if k in known})


def save_config_file(cfg: VisionConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (``--save-config``); :func:`load_config_file` reads it back to an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    path.write_text(yaml.safe_dump(plain(config_to_dict(cfg)), sort_keys=False))
    return path


def load_config_file(path: str | Path) -> VisionConfig:
    """A :class:`VisionConfig` from a YAML file (``--config``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"config file {path} not found (write one with `spikenerf-vision train <preset> "
                              "--save-config FILE`; presets are stored under configs/vision/)")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigFileError(f"{path} is not valid YAML: {e}") from None
    try:
        return config_from_dict(d)
    except ConfigFileError as e:
        raise ConfigFileError(f"{path}: {e}") from None
    except TypeError as e:
        raise ConfigFileError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- presets
def _resnet19(**kw) -> VisionConfig:
    base = dict(model="resnet19", dataset="cifar10-jpeg", timesteps=4, epochs=200, batch_size=64, lr=0.1)
    base.update(kw)
    return VisionConfig(**base)


def _resnet20(**kw) -> VisionConfig:
    base = dict(model="resnet20", dataset="cifar10-jpeg", timesteps=4, epochs=200)
    base.update(kw)
    return VisionConfig(**base)


_GUO = dict(decay=0.25, v_threshold=0.5)
"""The neuron of the Guo-group papers' released code: u = 0.25 u + x, V_th = 0.5, hard reset."""
_MPR_PAPER = dict(kind="if", v_threshold=1.0, reset="soft", mpr=True, mpr_tails="cuberoot", mpr_scale=2.0)
"""InfLoR-SNN (ECCV 2022): integrate-and-fire, no decay, fires on 2 phi(u) >= 1, soft reset subtracting V_th = 1."""

PRESETS: dict[str, tuple[str, VisionConfig]] = {
    "resnet19-cifar10": ("[project defaults] Spiking ResNet-19 on CIFAR-10 (JPEG folders), T=4, LIF decay 0.5, "
                         "V_th 0.5.", _resnet19(output_dir="outputs/vision/resnet19-cifar10")),
    "ternary-resnet19-cifar10": ("[paper] Ternary Spike (AAAI 2024): {-1,0,1} spikes, layer-wise learnable "
                                 "amplitude; authors' neuron decay 0.25, V_th 0.5.",
                                 _resnet19(neuron=NeuronConfig(spike_code="ternary", amplitude="learnable", **_GUO),
                                           output_dir="outputs/vision/ternary-resnet19-cifar10")),
    "mpbn-resnet19-cifar10": ("[paper] MPBN (ICCV 2023): BN on the membrane before firing, folded into thresholds "
                              "at export; decay 0.25, V_th 0.5.",
                              _resnet19(neuron=NeuronConfig(mpbn=True, **_GUO),
                                        output_dir="outputs/vision/mpbn-resnet19-cifar10")),
    "rmp-resnet19-cifar10": ("[paper] RMP-Loss (ICCV 2023): CE + lambda * membrane-to-spike-value regularizer; "
                             "decay 0.25, V_th 0.5.",
                             _resnet19(method=RMPConfig(weight=0.1), neuron=NeuronConfig(**_GUO),
                                       output_dir="outputs/vision/rmp-resnet19-cifar10")),
    "im-resnet19-cifar10": ("[paper] IM-Loss (NeurIPS 2022) with the evolving (tanh, K 1->10) surrogate gradient; "
                            "decay 0.25, V_th 0.5.",
                            _resnet19(method=IMLossConfig(weight=1.0, esg=True),
                                      neuron=NeuronConfig(surrogate="tanh", **_GUO),
                                      output_dir="outputs/vision/im-resnet19-cifar10")),
    "mpr-resnet20-cifar10": ("[paper] InfLoR-SNN (ECCV 2022) on ResNet-20: IF neuron (no decay), soft reset by "
                             "V_th = 1, membrane potential rectifier (cube-root tails) before firing.",
                             _resnet20(neuron=NeuronConfig(**_MPR_PAPER),
                                       output_dir="outputs/vision/mpr-resnet20-cifar10")),
    "realspike-resnet20-cifar10": ("[paper] Real Spike (ECCV 2022): per-channel learnable spike amplitudes, folded "
                                   "at export; decay 0.25, V_th 0.5.",
                                   _resnet20(neuron=NeuronConfig(real_spike=True, **_GUO),
                                             output_dir="outputs/vision/realspike-resnet20-cifar10")),
    "joint-resnet20-cifar10": ("[paper] Joint A-SNN (PR 2023): shared SVD factors, multi-branch ANN->SNN distillation; "
                               "decay 0.25, V_th 0.5.",
                               _resnet20(method=JointConfig(), neuron=NeuronConfig(**_GUO),
                                         output_dir="outputs/vision/joint-resnet20-cifar10")),
    "sew-resnet18-cifar10": ("[project defaults] SEW-ResNet-18 (ADD connection, CIFAR stem).",
                             VisionConfig(model="sew-resnet18", dataset="cifar10-jpeg", timesteps=4, epochs=200,
                                          output_dir="outputs/vision/sew-resnet18-cifar10")),
    "vgg11-nmnist": ("[project defaults] Spiking VGG-11 on the N-MNIST subset, T=10 frames.",
                     VisionConfig(model="vgg11", dataset="nmnist", timesteps=10, epochs=30, batch_size=32,
                                  optimizer="adam", lr=1e-3, weight_decay=0.0, width=0.5,
                                  output_dir="outputs/vision/vgg11-nmnist")),
    "spiking-pointnet-modelnet10": ("[paper] Spiking PointNet (NeurIPS 2023), ModelNet10 chair/monitor: train T=1 "
                                    "with membrane perturbation U(0, 0.5), drawn at test time too; evaluate T=1..4.",
                                    VisionConfig(model="spiking-pointnet", dataset="modelnet10-2class", timesteps=1,
                                                 eval_timesteps=(1, 2, 3, 4), epochs=50, batch_size=32,
                                                 optimizer="adam", lr=1e-3, weight_decay=1e-4, n_points=1024,
                                                 neuron=NeuronConfig(init_membrane=(0.0, 0.5),
                                                                     init_membrane_at_test=True),
                                                 output_dir="outputs/vision/spiking-pointnet-modelnet10")),
    "digits-demo": ("[project defaults] Offline demo: small VGG-11 on scikit-learn's 8x8 digits, a minute on a CPU.",
                    VisionConfig(model="vgg11", dataset="digits", timesteps=4, width=0.125, epochs=10, batch_size=64,
                                 optimizer="adam", lr=3e-3, weight_decay=0.0, augment=False,
                                 output_dir="outputs/vision/digits-demo")),
}


def _project(name: str, what: str, neuron: NeuronConfig) -> tuple[str, VisionConfig]:
    """The paper preset ``name`` with the project's default neuron instead of the authors' (``<name>-project``)."""
    cfg = PRESETS[name][1]
    return (f"[project defaults] {what} with the project's neuron (decay 0.5, V_th 0.5, hard reset unless named); "
            f"`{name}` has the authors' settings.",
            dataclasses.replace(cfg, neuron=neuron, output_dir=cfg.output_dir + "-project"))


PRESETS.update({
    f"{name}-project": _project(name, what, neuron) for name, what, neuron in (
        ("ternary-resnet19-cifar10", "Ternary Spike", NeuronConfig(spike_code="ternary", amplitude="learnable")),
        ("mpbn-resnet19-cifar10", "MPBN", NeuronConfig(mpbn=True)),
        ("rmp-resnet19-cifar10", "RMP-Loss", NeuronConfig()),
        ("im-resnet19-cifar10", "IM-Loss + ESG (tanh surrogate)", NeuronConfig(surrogate="tanh")),
        ("mpr-resnet20-cifar10", "soft reset (subtracting 0.5) + MPR (constant tails)",
         NeuronConfig(reset="soft", mpr=True)),
        ("realspike-resnet20-cifar10", "Real Spike", NeuronConfig(real_spike=True)),
        ("joint-resnet20-cifar10", "Joint A-SNN", NeuronConfig()),
        ("spiking-pointnet-modelnet10", "Spiking PointNet, membrane perturbation in training only",
         NeuronConfig(init_membrane=(0.0, 0.5))),
    )
})


# ----------------------------------------------------------------------------- issue 6: efficiency methods
def _eff(model: str, dataset: str, name: str, method, **kw) -> VisionConfig:
    base = dict(model=model, dataset=dataset, timesteps=4, epochs=200, output_dir=f"outputs/vision/{name}")
    if model == "spikformer":
        base.update(optimizer="adamw", lr=1e-3, weight_decay=1e-2)
    base.update(kw)
    return VisionConfig(method=method, **base)


_LTMD_NEURON = dict(decay=0.25, threshold_mode="tanh", v_threshold=0.46211715726000974, surrogate="rect",
                    surrogate_alpha=1.0)  # V_th = tanh(0.5), |u - V_th| < 0.5 window, as in LTMD's code

PRESETS.update({
    "adaptive-bits-resnet20-cifar10": (
        "Adaptive bit allocation: learnable per-layer T, spike / weight bits, budget loss (ResNet-20).",
        _eff("resnet20", "cifar10-jpeg", "adaptive-bits-resnet20-cifar10", AdaptiveBitsConfig(budget_target=16.0))),
    "adaptive-bits-spikformer-cifar10": (
        "Adaptive bit allocation on a small Spikformer (2 blocks, dim 256).",
        _eff("spikformer", "cifar10-jpeg", "adaptive-bits-spikformer-cifar10", AdaptiveBitsConfig(budget_target=16.0))),
    "subbit-binary-resnet20-cifar10": (
        "S2NN stage 1: binary-weight ResNet-20 SNN (the codebook source and MPFD teacher).",
        _eff("resnet20", "cifar10-jpeg", "subbit-binary-resnet20-cifar10", SubBitConfig(stage="binary"))),
    "subbit-resnet20-cifar10": (
        "S2NN stage 2: codebook sub-bit weights + OS-Quant + MPFD (--method.teacher <stage-1 checkpoint>).",
        _eff("resnet20", "cifar10-jpeg", "subbit-resnet20-cifar10", SubBitConfig(stage="subbit"))),
    "ratebp-resnet20-cifar10": (
        "Rate-based backpropagation (graph-free forward over T, one backward on rates), ResNet-20.",
        _eff("resnet20", "cifar10-jpeg", "ratebp-resnet20-cifar10", RateBPConfig(),
             neuron=NeuronConfig(reset="soft", surrogate="sigmoid"))),
    "ratebp-vgg11-nmnist": (
        "Rate-based backpropagation on N-MNIST (VGG-11, T=10 frames).",
        _eff("vgg11", "nmnist", "ratebp-vgg11-nmnist", RateBPConfig(), timesteps=10, epochs=30,
             batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0, width=0.5,
             neuron=NeuronConfig(reset="soft", surrogate="sigmoid"))),
    "ltmd-resnet20-cifar10": (
        "[paper] LTMD (NeurIPS 2022): tanh(w) learnable thresholds (w = 0.5), decay 0.25, the authors' "
        "|u - V_th| < 0.5 surrogate window, moderate dropout with the two-run consistency loss.",
        _eff("resnet20", "cifar10-jpeg", "ltmd-resnet20-cifar10", LTMDConfig(), neuron=NeuronConfig(**_LTMD_NEURON))),
})

# ----------------------------------------------------------------------------- own-loop methods (issue 6, part 2)
PRESETS.update({
    "hetsyn-nmnist": ("HetSyn: HetSynLIF (per-synapse learnable decays + reset current) on N-MNIST events.",
                      VisionConfig(dataset="nmnist", method=HetSynConfig(), timesteps=10, epochs=3, batch_size=32,
                                   optimizer="adam", lr=2e-3, output_dir="outputs/vision/hetsyn-nmnist")),
    "hetsyn-shd": ("HetSyn on SHD (needs <data-root>/shd/shd_{train,test}.h5; nothing is downloaded).",
                   VisionConfig(dataset="shd", method=HetSynConfig(), timesteps=50, epochs=3, batch_size=32,
                                optimizer="adam", lr=2e-3, output_dir="outputs/vision/hetsyn-shd")),
    "stdp-ncg-digits": ("S2-STDP + Neuronal Competition Groups (first-spike, no backprop) on 8x8 digits, "
                        "features from an unsupervised-STDP extractor.",
                        VisionConfig(dataset="digits", method=STDPNCGConfig(), timesteps=16, epochs=5,
                                     augment=False, output_dir="outputs/vision/stdp-ncg-digits")),
    "neuroclip-nmnist": ("NeuroCLIP inter-timestep spiking adapter, few-shot N-MNIST, on a frozen local encoder "
                         "(--method.encoder-weights required; nothing is downloaded).",
                         VisionConfig(dataset="nmnist", method=NeuroCLIPConfig(), timesteps=6, epochs=60,
                                      batch_size=32, optimizer="adamw", lr=1e-3,
                                      output_dir="outputs/vision/neuroclip-nmnist")),
})
