"""write_vts: a VTK XML structured grid read back by a small independent parser equals
the map it was written from (NaN and inf included); heights; bad input."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from lossatlas.engine import ConfigError
from lossatlas.engine.vtk import write_vts


def read_vts(path: Path) -> tuple[tuple[int, int], np.ndarray, dict[str, np.ndarray]]:
    """(nx, ny), points (nx·ny, 3) and point arrays of a .vts written with inline
    base64 binary arrays (UInt64 byte count, then little-endian float64)."""
    root = ET.parse(path).getroot()
    assert root.get("type") == "StructuredGrid" and root.get("byte_order") == "LittleEndian"
    assert root.get("header_type") == "UInt64"
    grid = root.find("StructuredGrid")
    e = [int(v) for v in grid.get("WholeExtent").split()]
    assert e[4] == e[5] == 0
    nx, ny = e[1] - e[0] + 1, e[3] - e[2] + 1
    piece = grid.find("Piece")
    assert piece.get("Extent") == grid.get("WholeExtent")

    def decode(el: ET.Element) -> np.ndarray:
        assert el.get("type") == "Float64" and el.get("format") == "binary"
        raw = base64.b64decode(el.text.strip())
        (n,) = struct.unpack("<Q", raw[:8])
        assert n == len(raw) - 8
        return np.frombuffer(raw[8:], dtype="<f8")

    points = decode(piece.find("Points/DataArray")).reshape(-1, 3)
    arrays = {}
    for el in piece.find("PointData").findall("DataArray"):
        # VTK order: i (x) fastest, so a (nx, ny) map was written transposed
        arrays[el.get("Name")] = decode(el).reshape(ny, nx).T
    return (nx, ny), points, arrays


def test_a_map_reads_back_exactly(tmp_path: Path) -> None:
    x = np.linspace(-1.0, 1.0, 7)
    y = np.array([0.0, 0.5, 2.0, 3.0])
    rng = np.random.default_rng(0)
    loss = rng.random((7, 4)) * 3
    loss[2, 1] = np.nan
    loss[5, 3] = np.inf
    acc = rng.random((7, 4))
    out = write_vts(tmp_path / "m.vts", x, y, {"train_loss": loss, "train accuracy [1]": acc})
    (nx, ny), points, arrays = read_vts(out)
    assert (nx, ny) == (7, 4)
    np.testing.assert_array_equal(arrays["train_loss"], loss)  # NaN, inf and all
    np.testing.assert_array_equal(arrays["train accuracy [1]"], acc)
    X, Y = np.meshgrid(x, y, indexing="ij")
    np.testing.assert_array_equal(points[:, 0].reshape(ny, nx).T, X)
    np.testing.assert_array_equal(points[:, 1].reshape(ny, nx).T, Y)
    assert np.all(points[:, 2] == 0)


def test_a_height_lifts_the_grid(tmp_path: Path) -> None:
    x, y = np.arange(3.0), np.arange(2.0)
    z = np.array([[1.0, 2.0], [np.nan, 4.0], [5.0, 6.0]])
    out = write_vts(tmp_path / "m.vts", x, y, {"z": z}, z="z", comments={"what": "a -- b"})
    _shape, points, arrays = read_vts(out)
    height = points[:, 2].reshape(2, 3).T
    assert height[1, 0] == 0.0 and height[2, 1] == 6.0  # non-finite heights are 0
    assert np.isnan(arrays["z"][1, 0])
    assert "a - - b" in out.read_text()  # "--" cannot appear inside an XML comment


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    x, y = np.arange(3.0), np.arange(2.0)
    with pytest.raises(ConfigError, match="shape"):
        write_vts(tmp_path / "m.vts", x, y, {"a": np.zeros((2, 3))})
    with pytest.raises(ConfigError, match="2 × 2"):
        write_vts(tmp_path / "m.vts", x[:1], y, {"a": np.zeros((1, 2))})
    with pytest.raises(ConfigError, match="height 'b'"):
        write_vts(tmp_path / "m.vts", x, y, {"a": np.zeros((3, 2))}, z="b")
    assert not (tmp_path / "m.vts").exists()
