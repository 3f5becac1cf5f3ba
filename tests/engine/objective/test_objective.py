"""The objective against torch.func brute force, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from lossatlas.engine import DataBundle, Objective, ShapeError, Split
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def regression_data(n: int = 40, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 2 - 1
    y = torch.sin(x.sum(1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=g)
    return DataBundle(Split(x[:30], y[:30]), Split(x[30:], y[30:]), "regression", 1)


CASES = {
    "digits-relu": dict(data="digits", hidden=[7], activation="relu"),
    "digits-tanh-deep": dict(data="digits", hidden=[5, 4], activation="tanh"),
    "regression-sigmoid": dict(data="regression", hidden=[6], activation="sigmoid"),
}


def make(case: str, device: str = "cpu", batch_size: int | None = None) -> Objective:
    spec = CASES[case]
    if spec["data"] == "digits":
        data = Digits().load(DigitsOptions(limit=120), seed=0)
    else:
        data = regression_data()
    model = MLPModel().build(
        MLPOptions(hidden=spec["hidden"], activation=spec["activation"]), data, seed=3
    )
    return Objective(model, data, device=device, dtype=torch.float64, batch_size=batch_size)


def reference_loss(obj: Objective, split: str = "train"):
    """L(x) written independently of the objective: a plain module forward."""
    s = obj.splits[split]
    names = obj.layout.names

    def f(x: torch.Tensor) -> torch.Tensor:
        params = {}
        offset = 0
        for name, p in obj.model.named_parameters():
            n = p.numel()
            params[name] = x[offset : offset + n].reshape(p.shape)
            offset += n
        out = functional_call(obj.model, params, (s.inputs,))
        if obj.task == "classification":
            return nn.functional.cross_entropy(out, s.targets)
        return nn.functional.mse_loss(out, s.targets)

    assert len(names) == len(list(obj.model.parameters()))
    return f


def point(obj: Objective, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return obj.x0 + 0.3 * torch.randn(obj.D, generator=g, dtype=torch.float64).to(obj.device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_grad_hvp_match_brute_force(case: str, device: str) -> None:
    obj = make(case, device)
    f = reference_loss(obj)
    x = point(obj)
    assert torch.allclose(obj.loss(x), f(x), rtol=1e-12, atol=1e-14)
    g_ref = torch.func.grad(f)(x)
    assert torch.allclose(obj.grad(x), g_ref, rtol=1e-10, atol=1e-12)
    H = torch.func.hessian(f)(x)
    v = torch.randn(obj.D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    v = v.to(device)
    assert torch.allclose(obj.hvp(x, v), H @ v, rtol=1e-9, atol=1e-11)
    at = obj.hvp_at(x)  # the gradient's graph kept: the same products, again and again
    for _ in range(2):
        assert torch.allclose(at(v), H @ v, rtol=1e-9, atol=1e-11)
    assert torch.allclose(at(2 * v + 1), H @ (2 * v + 1), rtol=1e-9, atol=1e-11)
    V = torch.randn(4, obj.D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    V = V.to(device)
    for method in ("forward", "reverse"):
        got = obj.hvp_many(x, V, method=method)
        assert torch.allclose(got, V @ H, rtol=1e-9, atol=1e-11), method
    assert torch.allclose(obj.hessian(x), H, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case", sorted(CASES))
def test_minibatches_are_weighted_by_size(case: str) -> None:
    """Batches of 7 (the last one smaller) give the full-batch values."""
    full = make(case)
    mini = make(case, batch_size=7)
    x = point(full)
    assert torch.allclose(mini.loss(x), full.loss(x), rtol=1e-12)
    assert torch.allclose(mini.grad(x), full.grad(x), rtol=1e-10, atol=1e-13)
    assert mini.hvp_at(x) is None  # one graph per batch would be held: not offered
    v = torch.randn(full.D, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(mini.hvp(x, v), full.hvp(x, v), rtol=1e-9, atol=1e-12)
    X = torch.stack([x, full.x0, 0 * x])
    a, b = full.evaluate(X), mini.evaluate(X)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_evaluate_equals_pointwise(case: str) -> None:
    obj = make(case)
    f = reference_loss(obj, "validation")
    X = torch.stack([point(obj, s) for s in range(9)])
    got = obj.evaluate(X, "validation", chunk=4)  # chunks of 4, 4, 1
    want = np.array([f(x).item() for x in X])
    np.testing.assert_allclose(got["loss"], want, rtol=1e-12)
    if obj.task == "classification":
        s = obj.splits["validation"]
        acc = []
        for x in X:
            out = obj._forward(x, s.inputs)
            acc.append((out.argmax(1) == s.targets).double().mean().item())
        np.testing.assert_allclose(got["accuracy"], acc)
    both = obj.evaluate_both(X)
    assert set(both) == {f"{s}_{m}" for s in ("train", "validation") for m in obj.metric_names()}


def test_subspace_hessian_dense_and_sparse() -> None:
    obj = make("digits-tanh-deep")
    x0 = point(obj)
    d = 6
    g = torch.Generator().manual_seed(11)
    M = torch.randn(obj.D, d, generator=g, dtype=torch.float64)
    f = reference_loss(obj)
    ref = torch.func.hessian(lambda t: f(x0 + M @ t))(torch.zeros(d, dtype=torch.float64))
    got = obj.subspace_hessian(x0, M)
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-11)
    # sparse M: a few non-zeros per column
    rows = torch.randint(0, obj.D, (d * 5,), generator=g)
    cols = torch.arange(d).repeat_interleave(5)
    vals = torch.randn(d * 5, generator=g, dtype=torch.float64)
    S = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (obj.D, d)).coalesce()
    ref_s = torch.func.hessian(lambda t: f(x0 + S.to_dense() @ t))(
        torch.zeros(d, dtype=torch.float64)
    )
    got_s = obj.subspace_hessian(x0, S, chunk=4)
    assert torch.allclose(got_s, ref_s, rtol=1e-9, atol=1e-11)


def test_layout_knows_layers_and_kinds() -> None:
    obj = make("digits-tanh-deep")
    kinds = [(e.name, e.kind, e.layer) for e in obj.layout.entries]
    assert kinds == [
        ("1.weight", "weight", 0),
        ("1.bias", "bias", 0),
        ("3.weight", "weight", 1),
        ("3.bias", "bias", 1),
        ("5.weight", "weight", 2),
        ("5.bias", "bias", 2),
    ]
    first = obj.layout.entries[0]
    assert (first.fan_in, first.fan_out, first.shape) == (64, 5, (5, 64))
    assert obj.D == 64 * 5 + 5 + 5 * 4 + 4 + 4 * 10 + 10
    w = obj.layout.mask("weight")
    assert int(w.sum()) == 64 * 5 + 5 * 4 + 4 * 10
    x = point(obj)
    assert math.isclose(float(obj.layout.radius(x)), float(x[w].norm()))
    back = obj.layout.flatten(obj.layout.unflatten(x))
    assert torch.equal(back, x)


def test_shape_mismatch_is_a_clear_error() -> None:
    data = Digits().load(DigitsOptions(limit=50), seed=0)
    wrong_out = nn.Sequential(nn.Linear(64, 5))
    with pytest.raises(ShapeError, match="10 classes"):
        Objective(wrong_out, data)
    wrong_in = nn.Sequential(nn.Linear(30, 10))
    with pytest.raises(ShapeError, match="cannot take the data set's inputs"):
        Objective(wrong_in, data)


def test_memory_is_bounded_by_chunks() -> None:
    """The chunk size follows the budget, not the number of points."""
    data = Digits().load(DigitsOptions(limit=200), seed=0)
    model = MLPModel().build(MLPOptions(hidden=[50]), data, seed=0)
    small = Objective(model, data, memory_budget=2**20)
    assert 1 <= small.point_chunk() < 50
    X = small.x0.unsqueeze(0).repeat(120, 1)
    out = small.evaluate(X)
    assert out["loss"].shape == (120,) and np.allclose(out["loss"], out["loss"][0], rtol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mlp_fast_path_equals_the_vmapped_forward(case: str) -> None:
    """MLPs take a fused baddbmm path in evaluate; it must equal the generic vmap path."""
    obj = make(case)
    assert obj.fast_path is not None and obj.evaluation_path.name == "mlp-fast-path"
    X = torch.stack([point(obj, s) for s in range(5)])
    fast = obj.evaluate_both(X)
    obj.fast_path = None
    slow = obj.evaluate_both(X)
    for k in fast:
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-12)


@pytest.mark.parametrize(
    ("hidden", "bias", "task"),
    [([], True, "digits"), ([6, 5], False, "digits"), ([], False, "regression")],
)
def test_mlp_fast_path_edges(hidden: list[int], bias: bool, task: str) -> None:
    """No hidden layer, no biases, forward blocks smaller than a chunk, and a point
    where every logit ties (accuracy then counts class 0, the first maximum, as
    argmax does): the fast path still equals the vmapped forward."""
    data = Digits().load(DigitsOptions(limit=90), seed=0) if task == "digits" else regression_data()
    model = MLPModel().build(MLPOptions(hidden=hidden, bias=bias), data, seed=1)
    obj = Objective(model, data, dtype=torch.float64)
    assert obj.fast_path is not None
    obj.fast_path.cache_bytes = 1  # one point per forward block, inside chunks of 4
    assert obj.fast_path.cache_chunk(len(obj.splits["train"])) == 1
    X = torch.stack([point(obj, s) for s in range(6)] + [0 * obj.x0])
    fast = obj.evaluate_both(X, chunk=4)
    obj.fast_path = None
    slow = obj.evaluate_both(X, chunk=4)
    for k in fast:
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-12)
    if task == "digits":
        s = obj.splits["train"]
        assert fast["train_accuracy"][-1] == pytest.approx((s.targets == 0).double().mean().item())


def test_other_models_take_the_vmapped_path() -> None:
    data = Digits().load(DigitsOptions(limit=50), seed=0)

    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) * 2

    obj = Objective(Custom(), data, dtype=torch.float64)
    assert obj.fast_path is None and obj.evaluation_path.name == "generic"
    assert "Custom is not a plain torch.nn.Sequential" in obj.evaluation_path.reason
    out = obj.evaluate(obj.x0.unsqueeze(0))
    assert out["loss"][0] == pytest.approx(obj.loss(obj.x0).item(), rel=1e-12)


def test_misuse_of_the_api_is_one_line_shape_errors() -> None:
    """The review's raw Python errors: torch.cat's ValueError for a model without
    parameters, IndexError for a 1-D basis, a reshape RuntimeError for an HVP vector of
    the wrong length, IndexError for labels ≥ n_outputs. Each is one ShapeError line."""
    from lossatlas.engine.curvature import hvp_operator

    data = Digits().load(DigitsOptions(limit=40), seed=0)

    class Zeros(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 10)

    cases = []
    with pytest.raises(ShapeError) as info:
        Objective(Zeros(), data)
    cases.append((info, "has no parameters"))
    frozen = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).requires_grad_(False)
    with pytest.raises(ShapeError) as info:
        Objective(frozen, data)
    cases.append((info, "include_frozen = true"))
    obj = Objective(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), data, dtype=torch.float64)
    with pytest.raises(ShapeError) as info:
        obj.subspace_hessian(obj.x0, torch.ones(obj.D, dtype=torch.float64))
    cases.append((info, "basis.reshape(-1, 1)"))
    with pytest.raises(ShapeError) as info:
        hvp_operator(obj, obj.x0)(torch.ones(5, dtype=torch.float64))
    cases.append((info, "given vectors of shape (5,)"))
    with pytest.raises(ShapeError) as info:
        obj.hvp(obj.x0, torch.ones(3, dtype=torch.float64))
    cases.append((info, "has 3 entries"))
    bad = DataBundle(
        Split(data.train.inputs, data.train.targets % 10 + 2),
        data.validation,
        "classification",
        10,
    )
    with pytest.raises(ShapeError) as info:
        Objective(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), bad)
    cases.append((info, "labels must lie in 0 … 9"))
    for info, words in cases:
        text = str(info.value)
        assert words in text and "\n" not in text, text


def test_the_common_paths_import_no_symbolic_shapes() -> None:
    """Evaluating at many points (vmap), a gradient and HVPs (one at a point, the
    double-backward one) must not import sympy: torch imports it for ``nll_loss`` under
    vmap and for ``autograd.grad(..., grad_outputs=v)``, ~1 s of a small run's time."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from lossatlas.engine import Objective\n"
        "from lossatlas.plugins.datasets.digits import Digits, DigitsOptions\n"
        "from lossatlas.plugins.models.mlp import MLPModel, MLPOptions\n"
        "d = Digits().load(DigitsOptions(limit=100), 0)\n"
        "obj = Objective(MLPModel().build(MLPOptions(hidden=[8]), d, 0), d, fast_path=False)\n"
        "x = obj.x0\n"
        "obj.evaluate(torch.stack([x, 2 * x]))\n"
        "obj.grad(x)\n"
        "v = torch.ones_like(x)\n"
        "obj.hvp_at(x)(v)\n"
        "obj.hvp(x, v)\n"
        "print(sorted(m for m in ('sympy', 'torch.fx.experimental.symbolic_shapes') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hvps_equal_the_product_with_grad_outputs_bit_for_bit(dtype: torch.dtype) -> None:
    d = Digits().load(DigitsOptions(limit=200), 0)
    obj = Objective(MLPModel().build(MLPOptions(hidden=[8]), d, 0), d, dtype=dtype)
    v = torch.randn(obj.D, generator=torch.Generator().manual_seed(1), dtype=dtype)
    xi = obj.x0.clone().requires_grad_(True)
    inputs, targets = obj._split_tensors("train")
    g = obj._grad_graph(xi, inputs, targets, len(inputs))
    (want,) = torch.autograd.grad(g, xi, grad_outputs=v)
    assert torch.equal(obj.hvp_at(obj.x0)(v), want)
    assert torch.equal(obj.hvp(obj.x0, v), want)
