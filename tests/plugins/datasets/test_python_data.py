"""The python data set: the user's data by import path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from lossatlas.engine import ConfigError, DataBundle, DataError, parse_options
from lossatlas.plugins.datasets.importpath import PythonData, PythonDataOptions

WHERE = "dataset 'python'"

MODULE = """
import numpy as np
import torch
from lossatlas.engine import DataBundle, Split

def pair(n=20):
    x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    return x, np.arange(n) % 3

def four():
    x = torch.randn(10, 4)
    return x, x.sum(1), x[:3], x[:3].sum(1)

def seeded(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10, 2, generator=g), torch.randint(0, 2, (10,), generator=g)

def bundle():
    s = Split(torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))
    return DataBundle(s, s, "classification", 2, description="mine")

def broken():
    raise RuntimeError("no data today")

def wrong():
    return "a string"

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "la_user_data_mod.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "la_user_data_mod", raising=False)
    return "la_user_data_mod"


def load(seed: int = 0, **table):
    return PythonData().load(parse_options(PythonDataOptions, table, WHERE), seed)


def test_pair_is_split_by_seed(user_module: str) -> None:
    data = load(function=f"{user_module}:pair", kwargs={"n": 30}, validation=0.2)
    assert data.task == "classification" and data.n_outputs == 3
    assert len(data.train) == 24 and len(data.validation) == 6
    assert data.attrs["kwargs"] == {"n": 30}


def test_four_tuple_regression_and_seed_passed(user_module: str) -> None:
    data = load(function=f"{user_module}:four")
    assert data.task == "regression" and len(data.validation) == 3
    assert data.train.targets.shape == (10, 1)
    a = load(seed=7, function=f"{user_module}:seeded")
    b = load(seed=7, function=f"{user_module}:seeded")
    c = load(seed=8, function=f"{user_module}:seeded")
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert not torch.equal(a.train.inputs, c.train.inputs)


def test_databundle_returned_as_is(user_module: str) -> None:
    data = load(function=f"{user_module}:bundle")
    assert isinstance(data, DataBundle) and data.description == "mine"


def test_search_path_option(tmp_path: Path) -> None:
    (tmp_path / "la_user_data_sp.py").write_text(
        "import numpy as np\ndef f():\n    return np.zeros((6, 2)), np.zeros(6)\n"
    )
    data = load(function="la_user_data_sp:f", search_path=[str(tmp_path)])
    assert len(data.train) + len(data.validation) == 6


def test_errors_name_the_import_path(user_module: str) -> None:
    with pytest.raises(ConfigError, match=r"'no_such_pkg_la.mod:f'.*no_such_pkg_la"):
        load(function="no_such_pkg_la.mod:f")
    with pytest.raises(ConfigError, match=rf"'{user_module}:missing'.*no attribute"):
        load(function=f"{user_module}:missing")
    with pytest.raises(ConfigError, match=r"not a function"):
        load(function=f"{user_module}:NOT_CALLABLE")
    with pytest.raises(ConfigError, match=rf"'{user_module}:broken'.*no data today"):
        load(function=f"{user_module}:broken")
    with pytest.raises(ConfigError, match=r"unexpected keyword"):
        load(function=f"{user_module}:pair", kwargs={"m": 1})
    with pytest.raises(DataError, match=r"returned a str"):
        load(function=f"{user_module}:wrong")
    with pytest.raises(ConfigError, match=r"package.module:name"):
        parse_options(PythonDataOptions, {"function": "just_a_module"}, WHERE)
