"""Every time layout of the colour net against its per-ray reference loop (values and gradients), and the one
place that chooses among them."""

from __future__ import annotations

import pytest
import torch

from nerf_reference import lif_per_ray, lif_per_sample_repeated  # tests/nerf is on sys.path
from spikenerf.nerf.spiknerf_neuron import DeployedNeuron, make_neuron
from spikenerf.nerf.time_layout import (DenseBlock, RaggedRows, RayBlock, RepeatSteps, Segments, TimeBuckets,
                                        choose_layout, time_steps_of)
from spikenerf.snn import make_node
from spikenerf.snn.deploy import deployed_spikes


def _samples(R=23, S=13, H=6, seed=0, p=0.5):
    """A mask with holes, an empty ray and rays of very different lengths; first-layer currents ``[N, H]``."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(R, S, generator=gen) < p * torch.rand(R, 1, generator=gen) * 2
    mask[1] = False
    mask[2, :] = True  # one full ray
    xv = 1.5 * torch.randn(int(mask.sum()), H, generator=gen)
    return mask, xv


def _lif(**kw):
    return make_node("lif", tau=2.0, v_threshold=0.5, **kw)


def _values_and_grads(layer, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    return y.detach(), g


def _compare(layout_fn, ref_fn, xv, params=()):
    w = torch.randn(xv.shape[0], xv.shape[1], generator=torch.Generator().manual_seed(1))
    y, g = _values_and_grads(layout_fn, xv, w)
    y_ref, g_ref = _values_and_grads(ref_fn, xv, w)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-6)
    assert float(y.abs().sum()) > 0 and float(g.abs().sum()) > 0  # the layer fired, gradients flow


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_time_buckets_with_padding_holes_equal_the_per_ray_loop(flip, reset):
    """Padding: each ray runs all of its steps, the masked samples are zero input (holes)."""
    mask, xv = _samples(seed=3)
    lif = _lif(reset=reset)
    layout = choose_layout(mask, pack_mode="padding", flip=flip, training=True, neurons=[lif])
    assert isinstance(layout, TimeBuckets)
    _compare(lambda x: layout.run(lif, x), lambda x: lif_per_ray(lif, x, mask, "padding", flip), xv)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("in_place", [True, False])
def test_condensing_in_training_equals_the_per_ray_loop(flip, in_place):
    """Condensing with gradients: hole-free segments in place on the CPU, time blocks otherwise."""
    mask, xv = _samples(seed=4)
    lif = _lif()
    layout = choose_layout(mask, pack_mode="condensing", flip=flip, training=True, in_place=in_place, neurons=[lif])
    assert isinstance(layout, Segments if in_place else TimeBuckets)
    _compare(lambda x: layout.run(lif, x), lambda x: lif_per_ray(lif, x, mask, "condensing", flip), xv)


@pytest.mark.parametrize("mode", ["padding", "condensing"])
@pytest.mark.parametrize("flip", [False, True])
def test_ragged_rows_at_inference_equal_the_per_ray_loop(mode, flip):
    """Inference in place (no gradient): the ragged scan, whole or block by block, gives the loop's spikes."""
    mask, xv = _samples(seed=5)
    lif = _lif()
    layout = choose_layout(mask, pack_mode=mode, flip=flip, training=False, neurons=[lif])
    assert isinstance(layout, RaggedRows) and not isinstance(layout, Segments) and layout.blockwise
    with torch.no_grad():
        ref = lif_per_ray(lif, xv, mask, mode, flip)
        assert torch.equal(layout.run(lif, xv), ref) and float(ref.sum()) > 0
        pieces = [blk.run(lif, xv[r0:r1]) for r0, r1, blk in layout.blocks(17)]
    assert len(pieces) > 2 and torch.equal(torch.cat(pieces), ref)


@pytest.mark.parametrize("T", [1, 3])
def test_repeat_steps_equal_the_per_sample_loop(T):
    """Spik-NeRF's time: each sample's input repeated T times, samples the batch; the read-out averages."""
    _, xv = _samples(seed=6)
    lif = make_neuron("ternary012", tau=4.0, v_threshold=0.5)
    layout = choose_layout(torch.ones(2, 2, dtype=torch.bool), time_mode="repeat", T=T)
    assert isinstance(layout, RepeatSteps) and layout.steps_per_sample == T
    # [N, H] -> [T, N, H] -> read back [N, H]: compared per sample through the read-out
    _compare(lambda x: layout.read_out(layout.run(lif, layout.enter(x))),
             lambda x: lif_per_sample_repeated(lif, x, T).mean(0), xv)
    s = layout.run(lif, layout.enter(xv))
    torch.testing.assert_close(layout.per_sample(s), s.sum((0, 2)))


def test_ray_block_equals_the_per_ray_loop():
    """The NeRF MLP's ray time without masks: ``[R * S, C]`` samples as one ``[S, R, C]`` block and back."""
    R, S, H = 5, 7, 4
    mask = torch.ones(R, S, dtype=torch.bool)
    xv = 1.5 * torch.randn(R * S, H, generator=torch.Generator().manual_seed(7))
    lif = _lif()
    layout = choose_layout(None, time_mode="ray", rays=(R, S))
    assert isinstance(layout, RayBlock)
    _compare(lambda x: layout.read_out(layout.run(lif, layout.enter_input(x))),
             lambda x: lif_per_ray(lif, x, mask, "condensing"), xv)


@pytest.mark.parametrize("training", [False, True])
def test_deployed_neuron_sends_the_shifted_code_on_every_layout(training):
    """A deployed ternary012 neuron sends s - 1 whatever the layout (in place: no gradient, the same values)."""
    mask, xv = _samples(seed=8)
    lif = make_neuron("ternary012", tau=4.0, v_threshold=0.5).eval()
    dep = DeployedNeuron(lif)
    blocks = choose_layout(mask, pack_mode="condensing", training=training, in_place=False, neurons=[lif])
    in_place = choose_layout(mask, pack_mode="condensing", training=training, neurons=[lif])
    with torch.no_grad():
        ref = lif_per_ray(lambda x: deployed_spikes(lif, x), xv, mask, "condensing")
        assert torch.equal(blocks.run(dep, xv), ref) and torch.equal(in_place.run(dep, xv), ref)
        assert torch.equal(ref + 1, blocks.run(lif, xv))
    assert set(ref.unique().tolist()) == {-1.0, 0.0, 1.0}


class _NoRagged:
    """A neuron the in-place scans cannot reproduce (e.g. a membrane transform, per-channel parameters)."""

    def supports_ragged(self) -> bool:
        return False


def test_choose_layout_is_the_one_decision():
    mask, _ = _samples(seed=9)
    lif = _lif()
    pick = lambda **kw: type(choose_layout(mask, neurons=[lif], **kw))  # noqa: E731
    assert pick(pack_mode="padding", training=False) is RaggedRows
    assert pick(pack_mode="padding", training=True) is TimeBuckets  # holes: no in-place scan with gradients
    assert pick(pack_mode="condensing", training=True) is Segments
    assert pick(pack_mode="condensing", training=False, in_place=False) is TimeBuckets
    assert pick(time_mode="repeat", T=2) is RepeatSteps
    assert type(choose_layout(None, rays=(2, 3))) is RayBlock
    assert isinstance(choose_layout(None, rays=(2, 3)), DenseBlock)
    # an empty mask: no sequence, tensor density 0
    empty = choose_layout(torch.zeros(3, 4, dtype=torch.bool), pack_mode="condensing")
    assert isinstance(empty, TimeBuckets) and empty.density == 0.0
    # a neuron the in-place scans cannot reproduce runs in time blocks
    assert type(choose_layout(mask, training=False, neurons=[lif, _NoRagged()])) is TimeBuckets


def test_time_steps_rule():
    assert time_steps_of(True, "repeat", 4) == 4
    assert time_steps_of(True, "ray", 4) == 1 and time_steps_of(False, "repeat", 4) == 1
    with pytest.raises(ValueError, match="time_mode"):
        time_steps_of(True, "zigzag", 2)
    with pytest.raises(ValueError, match="time_steps"):
        time_steps_of(True, "repeat", 0)
