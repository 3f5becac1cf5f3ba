"""The formula data set: safe expressions, presets, grid/random inputs, noise."""

from __future__ import annotations

import numpy as np
import pytest

from lossatlas.engine import ConfigError, parse_options
from lossatlas.plugins.datasets.formula import Formula, FormulaOptions, compile_expression

WHERE = "dataset 'formula'"


def load(seed: int = 0, **table):
    return Formula().load(parse_options(FormulaOptions, table, WHERE), seed)


def test_expression_values_and_shapes() -> None:
    data = load(expression="sin(3*x) + x**2", low=-2, high=2, n_train=40, n_validation=30)
    assert data.task == "regression" and data.n_outputs == 1
    assert data.train.inputs.shape == (40, 1) and data.train.targets.shape == (40, 1)
    assert data.validation.inputs.shape == (30, 1)
    x = data.train.inputs[:, 0].double().numpy()
    np.testing.assert_allclose(
        data.train.targets[:, 0].numpy(), np.sin(3 * x) + x**2, rtol=1e-5, atol=1e-6
    )
    assert x.min() >= -2 and x.max() <= 2


def test_grid_is_even_and_random_depends_on_seed() -> None:
    grid = load(expression="x", low=0, high=1, n_train=11, grid=True)
    np.testing.assert_allclose(grid.train.inputs[:, 0].numpy(), np.linspace(0, 1, 11), atol=1e-7)
    a, b, c = (load(seed=s, expression="x") for s in (1, 1, 2))
    assert np.array_equal(a.train.inputs, b.train.inputs)
    assert not np.array_equal(a.train.inputs, c.train.inputs)


def test_noise_on_training_targets_only() -> None:
    data = load(expression="0*x + 1", noise=0.5, n_train=500, n_validation=50)
    assert abs(float(data.train.targets.std()) - 0.5) < 0.08
    assert np.allclose(data.validation.targets.numpy(), 1.0)


def test_presets_and_overrides() -> None:
    fa = load(preset="function-approximation")
    assert len(fa.train) == 50 and len(fa.validation) == 1000
    x = fa.train.inputs[:, 0].double().numpy()
    np.testing.assert_allclose(
        fa.train.targets[:, 0].numpy(), np.log(np.sin(10 * x) + 2) + np.sin(x), rtol=1e-5
    )
    cubic = load(preset="x-cubed", n_train=7)
    assert len(cubic.train) == 7
    xc = cubic.train.inputs[:, 0].double().numpy()
    np.testing.assert_allclose(cubic.train.targets[:, 0].numpy(), xc**3, rtol=1e-5, atol=1e-7)
    quad = load(preset="x-squared", expression="x**4")  # a given option wins over the preset
    assert quad.attrs["expression"] == "x**4"


def test_seed_002_presets_are_the_authors_tasks() -> None:
    """Freeman & Bruna §4.1 as in their code: 10,000 uniform points of [0, 1] each for
    train and test, y = 0.5x² + 0.25x + 0.1 (quadratic) and 8x³ − 10x² + 3x (cubic)."""
    for name, f in (
        ("fb2017-quadratic", lambda x: 0.5 * x**2 + 0.25 * x + 0.1),
        ("fb2017-cubic", lambda x: 8 * x**3 - 10 * x**2 + 3 * x),
    ):
        data = load(preset=name)
        assert len(data.train) == 10_000 and len(data.validation) == 10_000
        x = data.train.inputs[:, 0].double().numpy()
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() - x.min() > 0.99
        np.testing.assert_allclose(data.train.targets[:, 0].numpy(), f(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("old", "new", "fb"),
    [("quadratic", "x-squared", "fb2017-quadratic"), ("cubic", "x-cubed", "fb2017-cubic")],
)
def test_renamed_presets_say_their_new_names(old: str, new: str, fb: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(preset=old)
    text = str(info.value)
    assert f"'{old}' was renamed '{new}'" in text and f"is '{fb}'" in text
    assert "\n" not in text
    with pytest.raises(ConfigError, match="did you mean 'x-squared'"):
        load(preset="x-squard")


@pytest.mark.parametrize(
    "expression, fragment",
    [
        ("__import__('os').system('true')", "__import__"),
        ("x.__class__", "Attribute"),
        ("open('/etc/passwd')", "open"),
        ("(lambda: 1)()", "may be called"),
        ("x if x else 1", "IfExp"),
        ("x +", "syntax"),
        ("foo(x)", "foo"),
        ("sin(x, out=x)", "keyword"),
        ("'a' * 3", "numbers"),
        ("9**9**9", "9**9**9"),
    ],
)
def test_unsafe_or_bad_expressions_are_config_errors(expression: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_options(FormulaOptions, {"expression": expression}, WHERE)
    msg = str(info.value)
    assert msg.startswith(WHERE) and repr(expression) in msg and fragment in msg


def test_other_option_errors() -> None:
    with pytest.raises(ConfigError, match=r"'expression' is required"):
        parse_options(FormulaOptions, {}, WHERE)
    with pytest.raises(ConfigError, match=r"'low'"):
        parse_options(FormulaOptions, {"expression": "x", "low": 1, "high": 0}, WHERE)
    with pytest.raises(ConfigError, match=r"not finite"):
        load(expression="log(x)", low=-1, high=1)


def test_compile_expression_broadcasts_constants() -> None:
    f = compile_expression("2*pi")
    np.testing.assert_allclose(f(np.zeros(3)), [2 * np.pi] * 3)
