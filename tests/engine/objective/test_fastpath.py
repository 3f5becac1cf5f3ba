"""The MLP fast path is used only where it computes the module's forward (float64).

Models the fast path was not written for — a module applied twice, weights tied between
layers, frozen layers, hooks, a Flatten that keeps a dim — must evaluate to the loss of
a plain module forward, and the objective must say which path ran and why.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lossatlas.engine import Objective
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions


@pytest.fixture(scope="module")
def digits():
    return Digits().load(DigitsOptions(limit=150), seed=0)


def reused(seed: int = 0) -> nn.Module:
    """The review's model: one Linear applied twice inside a Sequential."""
    torch.manual_seed(seed)
    s = nn.Linear(12, 12)
    return nn.Sequential(
        nn.Linear(64, 12), nn.Tanh(), s, nn.Tanh(), s, nn.Tanh(), nn.Linear(12, 10)
    )


def tied(seed: int = 0) -> nn.Module:
    """Two Linear layers sharing one weight tensor (biases their own)."""
    torch.manual_seed(seed)
    a, b = nn.Linear(12, 12), nn.Linear(12, 12)
    b.weight = a.weight
    return nn.Sequential(
        nn.Linear(64, 12), nn.Tanh(), a, nn.Tanh(), b, nn.Tanh(), nn.Linear(12, 10)
    )


def frozen_first(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
    m[0].requires_grad_(False)
    return m


def reference_losses(
    obj: Objective, X: torch.Tensor, split: str = "train", model: nn.Module | None = None
) -> np.ndarray:
    """Cross-entropy of the *module itself* (its own forward, weights set by name), per
    point: independent of the fast path and of functional_call. ``model``: a copy made
    before the objective saw it (default: a copy of the objective's)."""
    s = obj.splits[split]
    model = copy.deepcopy(model if model is not None else obj.model).to(obj.dtype)
    sizes = dict(model.named_parameters())
    out = []
    with torch.no_grad():
        for x in X:
            offset = 0
            for p in sizes.values():
                if not p.requires_grad:
                    continue
                p.copy_(x[offset : offset + p.numel()].reshape(p.shape))
                offset += p.numel()
            out.append(float(nn.functional.cross_entropy(model(s.inputs), s.targets)))
    return np.asarray(out)


def points(obj: Objective, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.stack(
        [obj.x0]
        + [obj.x0 + 0.4 * torch.randn(obj.D, generator=g, dtype=obj.dtype) for _ in range(n)]
    )


@pytest.mark.parametrize("build", [reused, tied], ids=["reused-module", "tied-weight"])
def test_shared_parameters_evaluate_the_module_itself(digits, build) -> None:
    """The review found evaluate() 2.3397 vs loss() 2.3504 on the reused module (another
    network) and a KeyError on the tied one. Both are the module's own forward now."""
    model = build()
    original = copy.deepcopy(model)  # before the objective touches it
    obj = Objective(model, digits, dtype=torch.float64)
    X = points(obj)
    want = reference_losses(obj, X, model=original)
    np.testing.assert_allclose(obj.evaluate(X)["loss"], want, rtol=1e-12)
    np.testing.assert_allclose(obj.loss(X[1]).item(), want[1], rtol=1e-12)
    assert obj.fast_path is None and obj.evaluation_path.name == "generic"
    assert "applied twice" in obj.evaluation_path.reason or "tied" in obj.evaluation_path.reason
    # functional_call left the module holding its own Parameters (not x's views)
    assert all(isinstance(p, nn.Parameter) for p in obj.model.parameters())
    # A shared tensor is one block of x (counted once), and the layout says so.
    n_unique = sum(p.numel() for p in obj.model.parameters())
    assert obj.D == n_unique
    assert obj.layout.tied


def test_shared_weight_gradient_sums_both_uses(digits) -> None:
    """∇ w.r.t. a tied weight is the sum over its uses, as autograd on the module gives."""
    obj = Objective(tied(), digits, dtype=torch.float64)
    x = points(obj, 1)[1]
    model = obj.model
    s = obj.splits["train"]
    for name, t in obj.layout.unflatten(x).items():
        model.get_parameter(name).data.copy_(t)
    model.zero_grad()
    nn.functional.cross_entropy(model(s.inputs), s.targets).backward()
    want = torch.cat([model.get_parameter(n).grad.reshape(-1) for n in obj.layout.names])
    torch.testing.assert_close(obj.grad(x), want, rtol=1e-10, atol=1e-13)


def test_frozen_parameters_are_constants_by_default(digits) -> None:
    """requires_grad=False layers are not coordinates (D, layout, Hessian), but they are
    in every forward; include_frozen=True makes them coordinates."""
    obj = Objective(frozen_first(), digits, dtype=torch.float64)
    assert obj.D == 12 * 10 + 10
    assert obj.layout.frozen == ["0.weight", "0.bias"]
    assert obj.layout.frozen_size == 64 * 12 + 12
    assert "frozen" in obj.layout.describe()
    assert obj.fast_path is None and "frozen" in obj.evaluation_path.reason
    X = points(obj)
    np.testing.assert_allclose(obj.evaluate(X)["loss"], reference_losses(obj, X), rtol=1e-12)
    H = obj.hessian(X[1])
    assert H.shape == (130, 130)
    f = obj.function()
    torch.testing.assert_close(H, torch.func.hessian(f)(X[1]), rtol=1e-9, atol=1e-12)
    full = Objective(frozen_first(), digits, dtype=torch.float64, include_frozen=True)
    assert full.D == 64 * 12 + 12 + 130 and not full.layout.frozen
    assert full.fast_path is not None  # every Linear parameter is a coordinate again
    torch.testing.assert_close(full.loss(full.x0), obj.loss(obj.x0), rtol=1e-12, atol=0)


def test_structure_rules(digits) -> None:
    """Each rule of plan_stack, on a model that breaks it."""
    from lossatlas.engine import ParamLayout
    from lossatlas.engine.objective.fastpath import plan_stack

    base = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    ops, why = plan_stack(base, ParamLayout(base))
    assert ops is not None and "plain Sequential" in why

    class Sub(nn.Sequential):
        def forward(self, x):  # scales the input: another function
            return super().forward(2 * x)

    cases = {
        "subclass forward": (Sub(nn.Linear(64, 10)), "not a plain"),
        "buffer": (nn.Sequential(nn.Linear(64, 10), nn.BatchNorm1d(10)), "buffers"),
        "flatten not first": (nn.Sequential(nn.Linear(64, 10), nn.Flatten()), "Flatten"),
        "unknown layer": (nn.Sequential(nn.Linear(64, 10), nn.GELU()), "GELU"),
        "no linear": (nn.Sequential(nn.ReLU()), "no Linear"),
    }
    for label, (model, text) in cases.items():
        ops, why = plan_stack(model, ParamLayout(model))
        assert ops is None and text in why, label
    hooked = nn.Sequential(nn.Linear(64, 10))
    hooked[0].register_forward_hook(lambda m, i, o: o * 3)
    ops, why = plan_stack(hooked, ParamLayout(hooked))
    assert ops is None and "hooks" in why
    obj = Objective(hooked, digits, dtype=torch.float64)
    X = points(obj, 2)
    np.testing.assert_allclose(obj.evaluate(X)["loss"], reference_losses(obj, X), rtol=1e-12)


def test_numerical_confirmation_refuses_a_wrong_fast_path(digits, monkeypatch) -> None:
    """A fast path that passes the structural rule but computes something else is
    caught by the check at build time, and the generic path is used."""
    from lossatlas.engine.objective import fastpath

    real = fastpath.MLPFastPath.forward

    def off_by_a_bit(self, X, inputs, out=None, scratch=None):
        return real(self, X, inputs, out, scratch).mul_(1.001)

    monkeypatch.setattr(fastpath.MLPFastPath, "forward", off_by_a_bit)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    obj = Objective(model, digits, dtype=torch.float64)
    assert obj.fast_path is None
    assert "disagreed" in obj.evaluation_path.reason
    assert obj.evaluation_path.checked_difference > 1e-6
    monkeypatch.undo()
    ok = Objective(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), digits, dtype=torch.float64)
    assert ok.fast_path is not None and ok.evaluation_path.checked_difference < 1e-12


def test_cli_grid_of_a_reused_module_is_the_module(tmp_path, write_config, run_cli) -> None:
    """Through the CLI: a random-line grid (centre included) of a user model that applies
    one module twice equals the module's own loss, and the step attrs say which path ran."""
    (tmp_path / "reuse_net.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def make(data, seed):\n"
        "    torch.manual_seed(seed)\n"
        "    s = nn.Linear(12, 12)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.Tanh(), s, nn.Tanh(), s,\n"
        "                         nn.Tanh(), nn.Linear(12, 10))\n"
    )
    cfg = {
        "name": "reuse",
        "dtype": "float64",
        "model": {"plugin": "python", "factory": "reuse_net:make", "search_path": [str(tmp_path)]},
        "dataset": {"plugin": "digits", "limit": 120},
        "steps": [{"name": "line", "probe": "random-line", "points": 5, "directions": 2}],
    }
    store = tmp_path / "s.zarr"
    res = run_cli("run", write_config(cfg), "--store", store, "--quiet")
    assert res.exit_code == 0, res.output
    import xarray as xr

    ds = xr.open_zarr(store, group="reuse/line")
    from lossatlas.engine import make_registry
    from lossatlas.engine.config import parse_config
    from lossatlas.engine.context import StepContext

    config = parse_config(cfg)
    ctx = StepContext(make_registry(), config, config.steps[0])
    original = ctx.build_model()  # a fresh module, never given to an objective
    obj = ctx.objective
    centre = reference_losses(obj, obj.x0.unsqueeze(0), model=original)[0]
    mid = ds["train_loss"].sel(alpha=0.0)  # the centre of every line: the point itself
    np.testing.assert_allclose(np.asarray(mid.values, float), centre, rtol=1e-12)
    assert ds.attrs["evaluation_path"] == "generic"
    assert "applied twice" in ds.attrs["evaluation_path_reason"]
