"""BatchNorm folding against torch.nn.BatchNorm2d in eval mode (the oracle)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mpc_export.errors import UserError
from mpc_export.fold.passes import fold_batchnorm

floats = st.floats(-4, 4, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 8),
    data=st.data(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
)
def test_fold_matches_torch_batchnorm_eval(channels, data, eps):
    gamma = data.draw(arrays(np.float64, channels, elements=floats))
    beta = data.draw(arrays(np.float64, channels, elements=floats))
    mean = data.draw(arrays(np.float64, channels, elements=floats))
    var = data.draw(arrays(np.float64, channels, elements=st.floats(0, 9, width=64)))
    x = data.draw(arrays(np.float64, (2, channels, 3, 3), elements=floats))
    bn = torch.nn.BatchNorm2d(channels, eps=eps).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
        bn.running_mean.copy_(torch.from_numpy(mean))
        bn.running_var.copy_(torch.from_numpy(var))
        expected = bn(torch.from_numpy(x)).numpy()
    new_gamma, new_beta = fold_batchnorm(gamma, beta, mean, var, eps)
    got = x * new_gamma[None, :, None, None] + new_beta[None, :, None, None]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_fold_refuses_nonpositive_variance():
    with pytest.raises(UserError, match="running_var"):
        fold_batchnorm(np.ones(2), np.zeros(2), np.zeros(2), np.array([1.0, -1.0]), 1e-5)
