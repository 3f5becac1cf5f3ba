"""Step-level artifacts in a step's scratch space: computed once, read by every cell.

A probe whose cells share an expensive result (hessian-directions' eigen-solve) asks the
step context for it (:meth:`lossatlas.engine.StepContext.artifact`); the first caller
computes it and writes it here, every later caller (another cell, another worker, the
resumed run) reads it back. Writes are atomic (a temporary file renamed into place) and a
file lock makes concurrent callers wait for the first instead of computing it twice.
Arrays go to ``NAME.npz``, everything else to ``NAME.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_or_compute"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: atomic writes still hold
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read(folder: Path, name: str) -> dict[str, Any] | None:
    arrays, meta = folder / f"{name}.npz", folder / f"{name}.json"
    if not meta.exists():  # written last: its presence marks a complete artifact
        return None
    out: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))
    if arrays.exists():
        with np.load(arrays, allow_pickle=False) as npz:
            out.update({k: npz[k] for k in npz.files})
    return out


def _write(folder: Path, name: str, values: dict[str, Any]) -> None:
    arrays = {k: np.asarray(v) for k, v in values.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in values.items() if k not in arrays}
    if arrays:
        tmp = folder / f".{name}.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, folder / f"{name}.npz")
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(rest, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / f"{name}.json")


def load_or_compute(
    folder: Path, name: str, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The artifact ``name`` of ``folder``: read back if complete, else computed by
    ``compute()`` (a dict of arrays and JSON-able values) and written, under a lock."""
    folder.mkdir(parents=True, exist_ok=True)
    found = _read(folder, name)
    if found is not None:
        return found
    with _locked(folder / f"{name}.lock"):
        found = _read(folder, name)  # computed by another process while we waited
        if found is not None:
            return found
        values = compute()
        bad = [k for k, v in values.items() if not isinstance(v, np.ndarray) and not _jsonable(v)]
        if bad:
            raise TypeError(f"artifact '{name}': values {bad} are neither arrays nor JSON")
        _write(folder, name, values)
    out = _read(folder, name)
    assert out is not None
    return out


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
