"""module_at: a copy of a model at given parameters; frozen parameters keep their values."""

from __future__ import annotations

import pytest
import torch

from lossatlas.plugins.probes.module_state import module_at


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(), torch.nn.Linear(5, 2)
    ).double()
    net[3].bias.requires_grad_(False)  # frozen: not a coordinate
    return net.eval()


def test_the_copy_holds_the_given_values_and_keeps_frozen_ones() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = {n: torch.randn_like(p) for n, p in net.named_parameters() if p.requires_grad}
    buffers = {"1.running_mean": torch.full((5,), 0.5, dtype=torch.float64)}
    m = module_at(net, params, buffers)
    got = dict(m.named_parameters())
    for n, v in params.items():
        assert torch.equal(got[n], v)
    assert torch.equal(got["3.bias"], net[3].bias)  # the frozen bias: the model's own
    assert torch.equal(m[1].running_mean, buffers["1.running_mean"])
    assert torch.equal(m[1].running_var, net[1].running_var)  # not given: kept
    # the copy computes with those values (brute force, eval-mode BatchNorm)
    x = torch.randn(7, 4, dtype=torch.float64)
    h = x @ params["0.weight"].T + params["0.bias"]
    h = (h - 0.5) / torch.sqrt(net[1].running_var + net[1].eps)
    h = torch.relu(h * params["1.weight"] + params["1.bias"])
    ref = h @ params["3.weight"].T + net[3].bias
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=0, atol=1e-13)
    # the model itself is untouched
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_a_missing_trainable_parameter_is_an_error() -> None:
    net = _net()
    params = {n: p.detach() for n, p in net.named_parameters() if n != "0.weight"}
    with pytest.raises(KeyError, match="'0.weight'"):
        module_at(net, params)
