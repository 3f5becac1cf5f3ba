"""The plugin's own tests, as docs/plugins.md recommends: lossatlas.testing runs a config
with the plugin from this working tree (not an installed copy) and the built-ins."""

from __future__ import annotations

import math

import lossatlas_spirals.plugin as plugin

import lossatlas.testing

CONFIG = {
    "name": "spirals-test",
    "dtype": "float64",
    "model": {"plugin": "softmax-regression"},
    "dataset": {"plugin": "spirals", "n": 90},
    "steps": [{"name": "scaling", "probe": "weight-scaling", "factors": [0.0, 1.0]}],
}


def test_the_probe_runs_on_the_plugins_data_and_model(tmp_path):
    tree = lossatlas.testing.run(CONFIG, tmp_path / "s.zarr", plugins=[plugin])
    loss = tree["scaling"].ds["train_loss"].values
    assert abs(loss[0] - math.log(3)) < 1e-12  # c = 0: every logit is 0


def test_the_context_a_probe_sees(lossatlas_context):
    ctx = lossatlas_context(CONFIG, plugins=[plugin])
    plan = plugin.WeightScaling().plan(ctx.options, ctx)
    assert list(plan.coords["factor"]) == [0.0, 1.0]
