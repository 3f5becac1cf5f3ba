"""docs/datasets-and-models.md documents every built-in data set and model option."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lossatlas.plugins.datasets import lossatlas_register_datasets
from lossatlas.plugins.losses import lossatlas_register_losses
from lossatlas.plugins.models import lossatlas_register_models

DOC = Path(__file__).resolve().parents[3] / "docs" / "datasets-and-models.md"
DOCUMENTED = {
    "dataset": ["formula", "tensors", "python", "mnist", "cifar10", "mnist1d", "blobs", "moons"],
    "model": ["mlp", "cnn", "resnet", "python"],
    "loss": ["cross-entropy", "label-smoothing", "mse", "l1", "huber", "python"],
}
COMPONENTS = (
    [c for c in lossatlas_register_datasets() if c.name in DOCUMENTED["dataset"]]
    + [c for c in lossatlas_register_models() if c.name in DOCUMENTED["model"]]
    + [c for c in lossatlas_register_losses() if c.name in DOCUMENTED["loss"]]
)


def test_all_documented_components_are_registered() -> None:
    assert len(COMPONENTS) == sum(len(v) for v in DOCUMENTED.values())


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: f"{c.name}-{c.Options.__name__}")
def test_every_option_is_documented(component) -> None:
    text = DOC.read_text()
    assert f'plugin = "{component.name}"' in text
    for f in dataclasses.fields(component.Options):
        assert f.metadata.get("doc"), f"{component.name}.{f.name} has no doc"
        assert f"| `{f.name}` |" in text, f"{component.name}: option {f.name} not in docs"
