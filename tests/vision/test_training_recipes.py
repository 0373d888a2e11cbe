"""Learning-rate warm-up and schedules, mixed precision, EMA, augmentation recipes (issue 15, item 7)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torchvision import transforms as T

from spikenerf.vision import engine
from spikenerf.vision.cli import main
from spikenerf.vision.config import PRESETS
from spikenerf.vision.data import get_dataset
from spikenerf.vision.data.augment import Cutout, pil_augment, tensor_augment
from spikenerf.vision.methods import registry
from spikenerf.vision.methods.base import Method, MethodConfig


def _cfg(out, **kw):
    base = dict(epochs=1, max_batches=2, batch_size=16, test_subset=16, progress=False, tensorboard=False,
                output_dir=str(out))
    base.update(kw)
    return dataclasses.replace(PRESETS["digits-demo"][1], **base)


def test_lr_factor_warmup_cosine_and_step_by_hand():
    c = _cfg("x", epochs=6, warmup_epochs=2, scheduler="cosine")
    got = [engine.lr_factor(c, e) for e in range(6)]
    want = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    assert got == pytest.approx(want)
    s = _cfg("x", epochs=10, scheduler="step", step_epochs=(3, 6), step_gamma=0.1)
    assert [engine.lr_factor(s, e) for e in (0, 2, 3, 5, 6, 9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_training_follows_the_schedule(tmp_path):
    cfg = _cfg(tmp_path, epochs=3, warmup_epochs=2, scheduler="cosine")
    engine.train(cfg)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    # after the last epoch the optimizer holds the rate of the next epoch (index 3)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.lr * engine.lr_factor(cfg, 3))


def test_bf16_autocast_and_fp16_refusal(tmp_path, capsys):
    dtypes = []

    class Spy(Method):
        def loss(self, model, x_seq, y, step, total_steps):
            h = model.fc.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
            try:
                return super().loss(model, x_seq, y, step, total_steps)
            finally:
                h.remove()

    @dataclasses.dataclass
    class SpyConfig(MethodConfig):
        _target: type = dataclasses.field(default_factory=lambda: Spy)

    registry.METHODS["spy"] = SpyConfig
    try:
        res = engine.train(_cfg(tmp_path, amp="bf16", max_batches=1, batch_size=8, method=SpyConfig()))
    finally:
        del registry.METHODS["spy"]
    assert dtypes == [torch.bfloat16] and math.isfinite(res["accuracy"])
    with pytest.raises(SystemExit) as e:
        main(["train", "digits-demo", "--amp", "fp16", "--device", "cpu", "--no-progress", "--no-tensorboard",
              "--output-dir", str(tmp_path / "f")])
    assert e.value.code == 2 and "needs a CUDA device" in capsys.readouterr().err


def test_ema_of_the_weights_by_hand(tmp_path):
    seen = []

    class Keep(Method):
        def start(self, model, total_steps):
            seen.append({k: v.detach().clone() for k, v in model.named_parameters()})

        def after_step(self, model):
            seen.append({k: v.detach().clone() for k, v in model.named_parameters()})

    @dataclasses.dataclass
    class KeepConfig(MethodConfig):
        _target: type = dataclasses.field(default_factory=lambda: Keep)

    registry.METHODS["keep"] = KeepConfig
    try:
        engine.train(_cfg(tmp_path, ema=0.5, method=KeepConfig()))
    finally:
        del registry.METHODS["keep"]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    w0, w1, w2 = seen  # initial weights, after step 1, after step 2
    for k in w0:
        want = 0.5 * (0.5 * w0[k] + 0.5 * w1[k]) + 0.5 * w2[k]
        assert torch.allclose(state["ema_model"][k], want, atol=1e-6), k
        assert torch.equal(state["model"][k], w2[k])


def test_augmentation_recipes():
    torch.manual_seed(0)
    x = torch.ones(3, 32, 32)
    y = Cutout(16)(x)
    hole = int((y == 0).all(0).sum())
    assert 0 < hole <= 16 * 16 and int((y == 1).all(0).sum()) == 32 * 32 - hole
    assert any(isinstance(t, T.AutoAugment) for t in pil_augment("autoaugment-cutout", 32))
    assert any(isinstance(t, Cutout) for t in tensor_augment("autoaugment-cutout", 32))
    assert tensor_augment(True, 32) == [] and pil_augment(False, 32) == []
    with pytest.raises(ValueError):
        pil_augment("mixup", 32)
    ds, _ = get_dataset("digits", True)  # tensor sets (digits) have no image transforms: unchanged
    assert ds[0][0].shape == (1, 8, 8)
