"""Evaluation options: autocast (bf16/fp16 forward), channels-last image batches, and the
CUDA path (batched evaluation chunked by the GPU's free memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, Objective
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.cnn import CNNModel, CNNOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions

DATA = Digits().load(DigitsOptions(limit=200), 0)


def _mlp(**kw: object) -> Objective:
    return Objective(MLPModel().build(MLPOptions(hidden=[32]), DATA, 0), DATA, **kw)


def _points(obj: Objective, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return obj.x0 + 0.5 * torch.randn(n, obj.D, generator=g).to(obj.dtype)


@pytest.mark.parametrize("low", ["bf16", "fp16"])
def test_autocast_costs_little_accuracy_and_leaves_derivatives_alone(low: str) -> None:
    full, half = _mlp(), _mlp(autocast=low)
    assert half.autocast is not None and half.evaluation_path.name == "generic"
    assert low in half.evaluation_path.reason
    P = _points(full)
    want, got = full.evaluate(P)["loss"], half.evaluate(P)["loss"]
    rel = np.abs(got - want) / np.abs(want)
    # bf16 keeps 8 bits of mantissa, fp16 11: the loss moves by about that, not more
    assert rel.max() < (3e-2 if low == "bf16" else 5e-3), rel
    assert rel.max() > 0  # the forward really ran in lower precision
    torch.testing.assert_close(half.grad(P[0]), full.grad(P[0]), rtol=0, atol=0)


def test_bad_evaluation_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="autocast"):
        _mlp(autocast="int8")
    with pytest.raises(ConfigError, match="memory_format"):
        _mlp(memory_format="nhwc")


def test_channels_last_gives_the_same_losses() -> None:
    model = CNNModel().build(CNNOptions(channels=[4]), DATA, 0)
    a = Objective(model, DATA, dtype=torch.float64)
    b = Objective(model, DATA, dtype=torch.float64, memory_format="channels_last")
    P = _points(a, 3)
    np.testing.assert_allclose(b.evaluate(P)["loss"], a.evaluate(P)["loss"], rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cuda_evaluation_matches_cpu_and_is_chunked_by_free_memory(model: str) -> None:
    if model == "mlp":
        build = lambda: MLPModel().build(MLPOptions(hidden=[32]), DATA, 0)  # noqa: E731
    else:
        build = lambda: CNNModel().build(CNNOptions(channels=[4]), DATA, 0)  # noqa: E731
    cpu = Objective(build(), DATA, dtype=torch.float64)
    gpu = Objective(build(), DATA, dtype=torch.float64, device="cuda")
    free, _ = torch.cuda.mem_get_info()
    assert gpu.device_budget >= min(gpu.memory_budget, free // 2)
    P = _points(cpu, 40)
    for split in ("train", "validation"):
        np.testing.assert_allclose(
            gpu.evaluate(P, split)["loss"], cpu.evaluate(P, split)["loss"], rtol=1e-10
        )
    v = torch.ones(cpu.D, dtype=torch.float64)
    torch.testing.assert_close(gpu.hvp(P[0], v).cpu(), cpu.hvp(P[0], v), rtol=1e-9, atol=1e-12)
    half = Objective(build(), DATA, device="cuda", autocast="fp16")
    got = half.evaluate(P.float())["loss"]
    np.testing.assert_allclose(got, cpu.evaluate(P)["loss"], rtol=5e-3)


def test_compiled_evaluation_gives_the_losses_of_the_plain_one() -> None:
    """``compile=True``: the compiled batched forward takes the data as arguments, so
    mini-batches of one shape are each evaluated on their own samples (a compiled
    closure over the first batch gave 4 % off losses in bench_big, caught by its
    accuracy column)."""
    data = Digits().load(DigitsOptions(limit=160), 0)
    build = lambda: MLPModel().build(MLPOptions(hidden=[8]), data, 0)  # noqa: E731
    plain = Objective(build(), data, batch_size=32, fast_path=False)
    compiled = Objective(build(), data, batch_size=32, fast_path=False, compile=True)
    P = _points(plain, 3)
    for split in ("train", "validation"):
        np.testing.assert_allclose(
            compiled.evaluate(P, split)["loss"], plain.evaluate(P, split)["loss"], rtol=1e-5
        )
