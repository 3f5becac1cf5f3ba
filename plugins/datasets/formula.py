"""Regression data from a formula y = f(x) over an interval (generated, no files).

The formula is a Python expression in ``x`` built from numbers, arithmetic and the
numpy functions listed in :data:`FUNCTIONS`; it is parsed and checked node by node
(no attribute access, no builtins, no names other than ``x``, ``pi``, ``e`` and those
functions) before it is evaluated, so a config cannot run code through it.

Presets for the seed papers:

- ``fb2017-quadratic`` / ``fb2017-cubic``: seed 002 (Freeman & Bruna 2017, §4.1),
  polynomial regression restricted to x ∈ [0, 1]: y = 0.5x² + 0.25x + 0.1 and
  y = 8x³ − 10x² + 3x, 10,000 training and 10,000 test points drawn uniformly, as in
  the authors' code (``LaunchScripts/QUADRATICS.py``, ``CUBICS.py`` of
  github.com/danielfreeman11/convex-nets; the paper's text lost these numbers).
- ``x-squared`` / ``x-cubed``: y = x² and y = x³ on [−1, 1], 100 points each (these
  were called ``quadratic``/``cubic`` before; they are *not* seed 002's tasks, and the
  old names are refused with a message naming both).
- ``function-approximation``: seed 001 (Böttcher & Wheeler, Appendix D), a smooth
  1-D target, 50 training points drawn uniformly at random, the test loss on 1,000
  random points. The target is f(x) = log(sin(10x) + 2) + sin(x) on [−1, 1], the
  smooth 1-D function of Adcock & Dexter (2021), whom Appendix D follows (the
  formula is garbled in our copy of the paper: check eq. 42 and set ``expression``
  if it differs).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossatlas.engine import ConfigError, DataBundle, DatasetPlugin, Split

__all__ = ["FUNCTIONS", "PRESETS", "Formula", "FormulaOptions", "compile_expression"]

#: The numpy functions an expression may call.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(np, name)
    for name in """
        sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh
        exp expm1 exp2 log log1p log2 log10 sqrt cbrt square abs absolute sign floor ceil
        round minimum maximum clip where heaviside sinc hypot power mod
    """.split()
}
#: The constants an expression may use besides ``x``.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "e": float(np.e)}

_OPERATORS = (
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.UAdd,
    ast.USub,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Eq,
    ast.NotEq,
)

#: preset -> (expression, low, high, n_train, n_validation, grid)
PRESETS: dict[str, tuple[str, float, float, int, int, bool]] = {
    "fb2017-quadratic": ("0.5*x**2 + 0.25*x + 0.1", 0.0, 1.0, 10_000, 10_000, False),
    "fb2017-cubic": ("8*x**3 - 10*x**2 + 3*x", 0.0, 1.0, 10_000, 10_000, False),
    "x-squared": ("x**2", -1.0, 1.0, 100, 100, False),
    "x-cubed": ("x**3", -1.0, 1.0, 100, 100, False),
    "function-approximation": ("log(sin(10*x) + 2) + sin(x)", -1.0, 1.0, 50, 1000, False),
}
#: Presets renamed in 0.2 -> (new name, what it is), for a clear error on the old name.
RENAMED: dict[str, tuple[str, str]] = {
    "quadratic": ("x-squared", "y = x² on [−1, 1]"),
    "cubic": ("x-cubed", "y = x³ on [−1, 1]"),
}
#: Values of the options that are neither given nor set by a preset.
DEFAULTS: dict[str, Any] = {
    "low": -1.0,
    "high": 1.0,
    "n_train": 50,
    "n_validation": 200,
    "grid": False,
}


def compile_expression(text: str) -> Callable[[np.ndarray], np.ndarray]:
    """Check ``text`` (an expression in ``x``) and return ``f(x) -> array``.

    Raises :class:`ConfigError` naming the expression if it does not parse or uses
    anything but numbers, ``x``, ``pi``, ``e``, arithmetic, comparisons and the
    functions in :data:`FUNCTIONS`.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"expression {text!r} is not valid Python syntax: {exc.msg}") from None
    allowed_names = {"x", *CONSTANTS, *FUNCTIONS}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ConfigError(
                    f"expression {text!r}: only numbers are allowed as "
                    f"constants, got {node.value!r}"
                )
            # Floats, so that 9**9**9 overflows at once instead of running for ever.
            node.value = float(node.value)
        elif isinstance(node, ast.Name):
            if node.id not in allowed_names:
                raise ConfigError(
                    f"expression {text!r}: unknown name '{node.id}'; use x, pi, e and "
                    f"the functions {', '.join(sorted(FUNCTIONS))}"
                )
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ConfigError(
                    f"expression {text!r}: only the functions "
                    f"{', '.join(sorted(FUNCTIONS))} may be called"
                )
            if node.keywords:
                raise ConfigError(f"expression {text!r}: keyword arguments are not allowed")
        elif not isinstance(
            node,
            (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Load, *_OPERATORS),
        ):
            raise ConfigError(
                f"expression {text!r}: {type(node).__name__} is not allowed; use numbers, "
                "x, arithmetic and numpy functions such as sin(3*x)"
            )
    code = compile(tree, "<formula>", "eval")
    namespace: dict[str, Any] = {"__builtins__": {}, **CONSTANTS, **FUNCTIONS}

    def f(x: np.ndarray) -> np.ndarray:
        try:
            with np.errstate(all="ignore"):
                y = eval(code, namespace, {"x": x})
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise ConfigError(f"expression {text!r} cannot be evaluated: {exc}") from None
        return np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape).copy()

    return f


@dataclass
class FormulaOptions:
    expression: str | None = field(
        default=None,
        metadata={
            "doc": 'y as a numpy expression in x, e.g. "x**2", "sin(3*x)" '
            "(required unless a preset is given)"
        },
    )
    preset: str = field(
        default="",
        metadata={
            "doc": "fill the options not given from a named task: fb2017-quadratic, "
            "fb2017-cubic (seed 002 §4.1), function-approximation (seed 001 App. D), "
            "x-squared, x-cubed"
        },
    )
    low: float | None = field(
        default=None, metadata={"doc": "left end of the interval (default -1)"}
    )
    high: float | None = field(
        default=None, metadata={"doc": "right end of the interval (default 1)"}
    )
    n_train: int | None = field(default=None, metadata={"doc": "training points (default 50)"})
    n_validation: int | None = field(
        default=None, metadata={"doc": "validation points (default 200)"}
    )
    noise: float = field(
        default=0.0,
        metadata={
            "doc": "std of Gaussian noise added to the training targets (validation "
            "targets are exact)"
        },
    )
    grid: bool | None = field(
        default=None,
        metadata={
            "doc": "evenly spaced inputs (true) or drawn uniformly at random by seed "
            "(false, the default)"
        },
    )

    def resolved(self) -> dict[str, Any]:
        """Every option's value after the preset and the defaults are applied."""
        values = dict(DEFAULTS)
        if self.preset:
            expr, low, high, n_train, n_val, grid = PRESETS[self.preset]
            values.update(
                expression=expr, low=low, high=high, n_train=n_train, n_validation=n_val, grid=grid
            )
        for key in ("expression", "low", "high", "n_train", "n_validation", "grid"):
            given = getattr(self, key)
            if given is not None:
                values[key] = given
        values["noise"] = self.noise
        return values

    def validate(self) -> None:
        if self.preset in RENAMED:
            new, what = RENAMED[self.preset]
            fb = self.preset.replace("quadratic", "fb2017-quadratic").replace(
                "cubic", "fb2017-cubic"
            )
            raise ValueError(
                f"option 'preset': '{self.preset}' was renamed '{new}' ({what}); seed 002's "
                f"task (Freeman & Bruna §4.1, on [0, 1]) is '{fb}'"
            )
        if self.preset and self.preset not in PRESETS:
            close = difflib.get_close_matches(self.preset, list(PRESETS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"option 'preset': '{self.preset}' is not a preset{hint}; "
                f"presets: {', '.join(PRESETS)}"
            )
        v = self.resolved()
        if v.get("expression") is None:
            raise ValueError(
                "option 'expression' is required (e.g. expression = \"x**2\") unless a "
                f"preset is given ({', '.join(PRESETS)})"
            )
        if not v["low"] < v["high"]:
            raise ValueError(f"options 'low' ({v['low']}) must be less than 'high' ({v['high']})")
        if v["n_train"] < 1:
            raise ValueError(f"option 'n_train' must be at least 1, got {v['n_train']}")
        if v["n_validation"] < 1:
            raise ValueError(f"option 'n_validation' must be at least 1, got {v['n_validation']}")
        if self.noise < 0:
            raise ValueError(f"option 'noise' must be ≥ 0, got {self.noise}")
        f = compile_expression(v["expression"])
        probe = np.linspace(v["low"], v["high"], 5)
        f(probe)  # raises ConfigError if it cannot be evaluated


def _inputs(n: int, low: float, high: float, grid: bool, rng: np.random.Generator) -> np.ndarray:
    if grid:
        return np.linspace(low, high, n)
    return np.sort(rng.uniform(low, high, size=n))


class Formula(DatasetPlugin[FormulaOptions]):
    """y = f(x) + noise on [low, high]; inputs (N, 1), targets (N, 1), regression."""

    name = "formula"
    summary = "1-D regression data y = f(x) from a numpy expression (presets: seeds 001, 002)"
    Options = FormulaOptions

    def load(self, options: FormulaOptions, seed: int) -> DataBundle:
        v = options.resolved()
        f = compile_expression(v["expression"])
        rng = np.random.default_rng(seed)
        x_tr = _inputs(v["n_train"], v["low"], v["high"], v["grid"], rng)
        x_va = _inputs(v["n_validation"], v["low"], v["high"], v["grid"], rng)
        y_tr, y_va = f(x_tr), f(x_va)
        bad = ~np.isfinite(np.concatenate([y_tr, y_va]))
        if bad.any():
            at = np.concatenate([x_tr, x_va])[bad][0]
            raise ConfigError(
                f"dataset 'formula': expression {v['expression']!r} is not finite at "
                f"x = {at:g} in [{v['low']:g}, {v['high']:g}]; change the interval"
            )
        if v["noise"] > 0:
            y_tr = y_tr + rng.normal(0.0, v["noise"], size=y_tr.shape)

        def split(x: np.ndarray, y: np.ndarray) -> Split:
            return Split(
                torch.as_tensor(x[:, None], dtype=torch.float32),
                torch.as_tensor(y[:, None], dtype=torch.float32),
            )

        return DataBundle(
            train=split(x_tr, y_tr),
            validation=split(x_va, y_va),
            task="regression",
            n_outputs=1,
            description=f"y = {v['expression']} on [{v['low']:g}, {v['high']:g}]",
            attrs={"source": "formula", "split_seed": seed, **v, "preset": options.preset},
        )
