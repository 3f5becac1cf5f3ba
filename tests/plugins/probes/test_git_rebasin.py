"""Permutation groups found by tracing, and Git Re-Basin's matchings, in float64.

Every free group's permutation must leave the function unchanged — on the built-in
MLP, CNN and ResNets (with BatchNorm, both kinds of shortcut) and on models the tracer
was not written for: weight tying, a module used twice, LayerNorm and GELU,
concatenation, a depthwise convolution, a frozen parameter, an op it does not know.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from lossatlas.plugins.models.cnn import CNN
from lossatlas.plugins.models.mlp import MLP
from lossatlas.plugins.models.resnet import ResNet
from lossatlas.plugins.probes.git_rebasin import (
    _trace,
    activation_matching,
    apply_permutation,
    identity_permutation,
    matching_objective,
    model_with,
    random_permutation,
    trace_permutations,
    weight_matching,
)


class Tied(nn.Module):
    """An MLP with one weight matrix shared by two layers (weight tying), a layer applied
    twice (a reused module) and a frozen bias."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 8)
        self.mid = nn.Linear(8, 8)
        self.twin = nn.Linear(8, 8)
        self.twin.weight = self.mid.weight  # tied
        self.twin.bias.requires_grad_(False)  # frozen
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = torch.relu(self.mid(h))
        h = torch.relu(self.twin(h))
        h = torch.tanh(self.mid(h))  # reused
        return self.out(h)


class Opaque(nn.Module):
    """A weight used transposed as another layer's matrix: the tracer cannot follow it
    and must leave its units alone."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 8)
        self.hid = nn.Linear(8, 6)
        self.back = nn.Linear(6, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = torch.relu(self.hid(h))
        h = torch.relu(self.back(h))
        return nn.functional.linear(h, self.inp.weight.t()[:3])


class Transformerish(nn.Module):
    """LayerNorm, GELU, a residual stream, concatenation and an op the tracer does not
    know (cumsum over features), which must fix only its own group."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(12, 16)
        self.norm = nn.LayerNorm(16)
        self.up = nn.Linear(16, 24)
        self.down = nn.Linear(24, 16)
        self.side = nn.Linear(16, 6)
        self.odd = nn.Linear(16, 5)
        self.head = nn.Linear(16 + 6 + 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.down(nn.functional.gelu(self.up(self.norm(h))))
        s = torch.sigmoid(self.side(h))
        o = torch.cumsum(self.odd(h), dim=-1)  # mixes units: this group must stay fixed
        return self.head(torch.cat([h, s, o], dim=-1))


class Depthwise(nn.Module):
    """A depthwise-separable block with a frozen pointwise bias and a 1-D conv path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.bn = nn.BatchNorm2d(6)
        self.pw = nn.Conv2d(6, 4, 1)
        self.pw.bias.requires_grad_(False)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 8, 8)
        h = torch.relu(self.bn(self.dw(torch.relu(self.conv(x)))))
        h = nn.functional.max_pool2d(torch.relu(self.pw(h)), 2)
        return self.fc(h.flatten(1))


def _randomise_bn(model: nn.Module, g: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)


CASES = {
    "mlp": lambda: (MLP(64, [32, 16], 10), 64),
    "cnn": lambda: (CNN((1, 8, 8), [4, 8], 10, hidden=[16]), 64),
    "resnet20-pad": lambda: (ResNet((1, 8, 8), 10, depth=20, shortcut="pad"), 64),
    "resnet20-conv": lambda: (ResNet((1, 8, 8), 10, depth=20, shortcut="conv"), 64),
    "resnet8-noskip": lambda: (ResNet((1, 8, 8), 10, depth=8, skip=False), 64),
    "tied": lambda: (Tied(), 12),
    "opaque": lambda: (Opaque(), 12),
    "transformerish": lambda: (Transformerish(), 12),
    "depthwise": lambda: (Depthwise(), 64),
}


def _model(case: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, n_in = CASES[case]()
    model = model.double().eval()
    _randomise_bn(model, torch.Generator().manual_seed(1))
    return model, torch.randn(32, n_in, dtype=torch.float64)


def _params(model: nn.Module) -> tuple[dict, dict]:
    return (
        {k: v.detach().clone() for k, v in model.named_parameters()},
        {k: v.detach().clone() for k, v in model.named_buffers()},
    )


@pytest.mark.parametrize("case", list(CASES))
def test_any_permutation_of_the_free_groups_keeps_the_function(case: str) -> None:
    model, x = _model(case)
    spec = trace_permutations(model, x[:2])
    assert spec.n_groups > 0
    params, bufs = _params(model)
    moved = 0
    for seed in range(3):
        perm = random_permutation(spec, torch.Generator().manual_seed(seed))
        moved += sum(int(np.sum(p != np.arange(len(p)))) for p in perm)
        p2, b2 = apply_permutation(spec, perm, params, bufs)
        with torch.no_grad():
            diff = (model(x) - model_with(model, p2, b2)(x)).abs().max().item()
        assert diff < 1e-12, (case, diff)
    assert moved > 0  # the permutations really moved units


def test_resnet_streams_are_tied_and_batchnorm_follows() -> None:
    model, x = _model("resnet20-conv")
    spec = trace_permutations(model, x[:2])
    # conv + 3 stage streams; one inner group per block (9 blocks)
    assert spec.n_groups == 12
    assert sum("tied" in label for label in spec.labels) == 3
    assert "blocks.0.bn1.running_mean" in spec.buffers
    assert spec.fixed == []  # nothing had to be given up
    # Option A shortcuts zero-pad a stream into a wider one: the wider stream is split
    # into the padded runs (free) and the middle run (tied to the narrower stream), so
    # still every output channel of every convolution is permutable.
    pad = trace_permutations(_model("resnet20-pad")[0], x[:2])
    convs = [k for k in pad.params if "conv" in k and k.endswith("weight")]
    assert len(convs) == 19
    for name in convs:
        assert all(g >= 0 for *_rest, g in pad.params[name][0]), name
    split = [axes[0] for axes in pad.params.values() if len(axes.get(0, [])) == 3]
    assert split  # the stage-2 and stage-3 streams: [padding | old stream | padding]


def test_unknown_ops_fix_only_their_own_group() -> None:
    model, x = _model("transformerish")
    spec = trace_permutations(model, x[:2])
    fixed = {label: reason for label, _n, reason in spec.fixed}
    assert "odd.weight" in fixed and "cumsum" in fixed["odd.weight"]
    labels = " ".join(spec.labels)
    assert "embed.weight" in labels and "up.weight" in labels and "side.weight" in labels
    assert "norm.weight" in spec.params  # LayerNorm's scale follows the stream


def test_tied_weights_and_reused_layers_share_one_group() -> None:
    model, x = _model("tied")
    spec = trace_permutations(model, x[:2])
    assert spec.sizes == [8]  # inp, mid, twin and the reused mid: one stream
    assert set(spec.params) == {"inp.weight", "inp.bias", "mid.weight", "mid.bias",
                                "twin.bias", "out.weight"}  # fmt: skip
    assert sorted(spec.params["mid.weight"]) == [0, 1]  # P W Pᵀ


def test_frozen_parameters_fix_the_groups_they_follow() -> None:
    """A frozen parameter is no coordinate of the point being permuted: its values stay,
    so every group it follows must stay fixed, or the function would change."""
    model, x = _model("depthwise")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["pw.bias"]
    params, bufs = _params(model)
    trainable = {k: v for k, v in params.items() if k not in frozen}
    free = trace_permutations(model, x[:2])  # every parameter may move
    spec = trace_permutations(model, x[:2], frozen=frozen)
    assert "pw.bias" in free.params and "pw.bias" not in spec.params
    assert list(spec.params["pw.weight"]) == [1]  # its input side only: pw's units stay
    assert spec.n_groups == free.n_groups - 1
    assert [(label, reason) for label, _n, reason in spec.fixed] == [
        ("pw.weight", "frozen parameter 'pw.bias'")
    ]
    with torch.no_grad():
        ref = model(x)
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            p2, b2 = apply_permutation(spec, random_permutation(spec, g), trainable, bufs)
            assert (ref - model_with(model, p2, b2)(x)).abs().max().item() < 1e-12
        # the control: the spec that may move pw's units changes the function when the
        # frozen bias keeps its values
        p2, b2 = apply_permutation(free, random_permutation(free, g), trainable, bufs)
        assert (ref - model_with(model, p2, b2)(x)).abs().max().item() > 1e-3
    # tied weights: the frozen bias sits on the one stream, so nothing is free
    tied, x = _model("tied")
    spec = trace_permutations(tied, x[:2], frozen=["twin.bias"])
    assert spec.n_groups == 0
    assert "frozen parameter 'twin.bias'" in [reason for *_x, reason in spec.fixed]


def test_a_weight_used_outside_a_layer_is_left_alone() -> None:
    model, x = _model("opaque")
    spec = trace_permutations(model, x[:2])
    assert "inp.weight" not in spec.params
    assert spec.sizes == [6]  # only hid's units are free
    assert any("op 't'" in reason for _l, _n, reason in spec.fixed)


@pytest.mark.parametrize("case", ["mlp", "cnn", "resnet20-pad"])
def test_matchings_recover_a_permuted_copy_exactly(case: str) -> None:
    model, x = _model(case)
    spec = trace_permutations(model, x[:2])
    a, bufs = _params(model)
    hidden = random_permutation(spec, torch.Generator().manual_seed(7))
    b, b_bufs = apply_permutation(spec, hidden, a, bufs)
    found, iterations = weight_matching(spec, a, b, torch.Generator().manual_seed(0))
    back, _ = apply_permutation(spec, found, b)
    assert all(torch.equal(back[k], a[k]) for k in a)
    assert iterations <= 5
    found = activation_matching(spec, model, model_with(model, b, b_bufs), [x])
    back, back_bufs = apply_permutation(spec, found, b, b_bufs)
    # Units that are dead on every sample (all-zero after the ReLU) cannot be told apart
    # by their activations; every activation of the matched copy must equal A's.
    keep = {i for i, _axis, _runs in spec.activations}
    ours, _ = _trace(model, x, keep)
    theirs, _ = _trace(model_with(model, back, back_bufs), x, keep)
    for i in keep:
        assert torch.allclose(ours.outputs[i], theirs.outputs[i], rtol=0, atol=1e-12)
    if case == "mlp":  # no dead unit here: the permutation itself is recovered
        assert all(torch.equal(back[k], a[k]) for k in a)


def test_weight_matching_with_one_hidden_layer_is_the_brute_force_optimum() -> None:
    torch.manual_seed(3)
    a_model, b_model = MLP(5, [4], 3).double(), MLP(5, [4], 3).double()
    x = torch.randn(2, 5, dtype=torch.float64)
    spec = trace_permutations(a_model, x)
    a, _ = _params(a_model)
    b, _ = _params(b_model)
    best = max(
        matching_objective(spec, [np.asarray(p)], a, b) for p in itertools.permutations(range(4))
    )
    found, _ = weight_matching(spec, a, b, torch.Generator().manual_seed(0))
    assert matching_objective(spec, found, a, b) == pytest.approx(best, rel=1e-12)
    assert matching_objective(spec, found, a, b) >= matching_objective(
        spec, identity_permutation(spec), a, b
    )
