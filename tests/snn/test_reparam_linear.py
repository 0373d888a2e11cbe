import pytest
import torch
from torch import nn

from spikenerf.snn.affine import fold_input_affine


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("scale,shift", [(None, -1.0), (0.7, None), ("vec", "vec")])
def test_fold_input_affine_linear_exact(bias, scale, shift):
    torch.manual_seed(0)
    lin = nn.Linear(6, 4, bias=bias).double()
    s = torch.randint(-1, 2, (5, 6)).double()
    scale = torch.rand(6).double() + 0.5 if scale == "vec" else scale
    shift = torch.randn(6).double() if shift == "vec" else shift
    k = 1.0 if scale is None else scale
    c = 0.0 if shift is None else shift
    ref = lin(s * k + c)
    folded = fold_input_affine(lin, scale, shift)
    torch.testing.assert_close(folded(s), ref, rtol=0, atol=1e-12)
    # the original is untouched
    assert (lin.bias is None) == (not bias)


def test_fold_input_affine_rejects_wrong_size():
    with pytest.raises(ValueError, match="input features"):
        fold_input_affine(nn.Linear(3, 2), torch.ones(4))
